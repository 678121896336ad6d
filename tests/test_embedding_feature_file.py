"""The embedding feature file: exact round trip, line-accurate errors, atomic writes."""

import os

import numpy as np
import pytest

from recbole_bifair.embedding.feature_file import (
    HEADER, metadata_path, read_feature_file, read_metadata, write_feature_file,
)
from recbole_bifair.errors import DataError


def _write_raw(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def test_round_trip_is_exact_in_float32(tmp_path):
    rng = np.random.default_rng(0)
    matrix = (rng.standard_normal((50, 7)) * 10.0 ** rng.integers(-8, 8, (50, 7))).astype(np.float32)
    tokens = [f"tok {i}" if i % 7 == 0 else str(1000 - i) for i in range(50)]  # spaces are fine in a token
    path = write_feature_file(str(tmp_path / "e.llmemb"), tokens, matrix, {"encoder": "x"})
    table = read_feature_file(path)
    assert table.tokens == tokens
    assert table.matrix.dtype == np.float32 and np.array_equal(table.matrix, matrix)
    with open(path) as f:
        assert f.readline() == HEADER + "\n"
    assert read_metadata(path) == {"encoder": "x", "item_count": 50, "dimension": 7}


def test_writer_rejects_bad_vectors_and_leaves_no_file(tmp_path):
    path = str(tmp_path / "e.llmemb")
    bad = np.ones((3, 4), dtype=np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(DataError, match=r"NaN or Inf.*'b' \(row 1\)"):
        write_feature_file(path, ["a", "b", "c"], bad, {})
    with pytest.raises(DataError, match="duplicate item token 'a'"):
        write_feature_file(path, ["a", "b", "a"], np.ones((3, 4)), {})
    with pytest.raises(DataError, match="one row per token"):
        write_feature_file(path, ["a", "b"], np.ones((3, 4)), {})
    with pytest.raises(DataError, match="tabs or newlines"):
        write_feature_file(path, ["a", "b\tc"], np.ones((2, 4)), {})
    with pytest.raises(DataError, match="NaN or Inf"):  # finite in float64, infinite in float32
        write_feature_file(path, ["a"], np.full((1, 2), 1e300), {})
    assert os.listdir(tmp_path) == []


def test_a_failed_rewrite_keeps_the_previous_file(tmp_path):
    path = write_feature_file(str(tmp_path / "e.llmemb"), ["a"], np.ones((1, 2)), {"v": 1})
    with pytest.raises(DataError):
        write_feature_file(path, ["a"], np.full((1, 2), np.inf), {"v": 2})
    assert np.array_equal(read_feature_file(path).matrix, np.ones((1, 2), dtype=np.float32))
    assert sorted(os.listdir(tmp_path)) == ["e.llmemb", "e.llmemb.json"]


@pytest.mark.parametrize("lines, message", [
    ([HEADER, "a\t1 2 3", "b\t1 2"], r"line 3: item 'b' has 2 values, but the first vector \(line 2\) has 3"),
    ([HEADER, "a\t1 2", "b\t1 nan"], r"line 3: item 'b' has NaN or Inf"),
    ([HEADER, "a\t1 2", "b\tinf 2"], r"line 3: item 'b' has NaN or Inf"),
    ([HEADER, "a\t1 2", "", "b\t3 4", "a\t5 6"], r"line 5: duplicate item token 'a' \(first on line 2\)"),
    ([HEADER, "a\t1 x"], r"line 2: item 'a' has a value that is not a number"),
    ([HEADER, "a\t1 2\t3"], r"line 2: expected 2 tab-separated columns"),
    ([HEADER, "a\t"], r"line 2: item 'a' has 0 values"),
    ([HEADER], r"holds no vectors"),
    (["item_id:token\tvec:float", "a\t1"], r"line 1: header"),
])
def test_reader_errors_name_file_and_line(tmp_path, lines, message):
    path = _write_raw(tmp_path / "bad.llmemb", lines)
    with pytest.raises(DataError, match=message) as err:
        read_feature_file(path)
    assert "bad.llmemb" in str(err.value)


def test_reader_accepts_other_field_names_and_crlf(tmp_path):
    path = tmp_path / "x.emb"
    path.write_bytes(b"item_id:token\tvec:float_seq\r\n7\t1 2.5\r\n8\t-3 4e-2\r\n")
    table = read_feature_file(str(path))
    assert table.tokens == ["7", "8"]
    assert np.array_equal(table.matrix, np.array([[1, 2.5], [-3, 0.04]], dtype=np.float32))


def test_metadata_is_optional(tmp_path):
    path = _write_raw(tmp_path / "m.llmemb", [HEADER, "a\t1"])
    assert read_metadata(path) is None
    with open(metadata_path(path), "w") as f:
        f.write("{not json")
    assert read_metadata(path) is None
