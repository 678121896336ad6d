"""Imports of vectors made elsewhere: .npy/.pt + token list, LLM-ESR pickle + id map."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from recbole_bifair.embedding import import_llmesr, import_matrix
from recbole_bifair.embedding.feature_file import read_feature_file, read_metadata
from recbole_bifair.errors import DataError

RNG = np.random.default_rng(1)
MATRIX = RNG.standard_normal((5, 6)).astype(np.float32)
TOKENS = ["1", "22", "b07", "x y", "5"]


def _tokens_file(tmp_path, tokens=TOKENS):
    path = tmp_path / "tokens.txt"
    path.write_text("\n".join(tokens) + "\n\n")
    return str(path)


def test_npy_round_trip(tmp_path):
    np.save(tmp_path / "emb.npy", MATRIX)
    out = import_matrix(str(tmp_path / "emb.npy"), _tokens_file(tmp_path), str(tmp_path / "out.llmemb"))
    table = read_feature_file(out)
    assert table.tokens == TOKENS and np.array_equal(table.matrix, MATRIX)
    assert read_metadata(out)["source"] == "import:matrix"


def test_pt_round_trip_with_json_token_list(tmp_path):
    torch.save(torch.from_numpy(MATRIX), tmp_path / "emb.pt")
    (tmp_path / "tokens.json").write_text(json.dumps(TOKENS))
    out = import_matrix(str(tmp_path / "emb.pt"), str(tmp_path / "tokens.json"), str(tmp_path / "out.llmemb"))
    table = read_feature_file(out)
    assert table.tokens == TOKENS and np.array_equal(table.matrix, MATRIX)


def test_matrix_import_errors(tmp_path):
    out = str(tmp_path / "out.llmemb")
    np.save(tmp_path / "pad.npy", np.vstack([np.zeros((1, 6), np.float32), MATRIX]))
    with pytest.raises(DataError, match="6 rows but .* 5 tokens.*padding row"):
        import_matrix(str(tmp_path / "pad.npy"), _tokens_file(tmp_path), out)
    torch.save({"weight": torch.from_numpy(MATRIX)}, tmp_path / "dict.pt")
    with pytest.raises(DataError, match="holds a dict, not a tensor"):
        import_matrix(str(tmp_path / "dict.pt"), _tokens_file(tmp_path), out)
    np.save(tmp_path / "vec.npy", MATRIX[0])
    with pytest.raises(DataError, match="expected a \\[items, dim\\] matrix"):
        import_matrix(str(tmp_path / "vec.npy"), _tokens_file(tmp_path), out)
    np.save(tmp_path / "emb.npy", MATRIX)
    with pytest.raises(DataError, match="duplicate item token '1'"):
        import_matrix(str(tmp_path / "emb.npy"), _tokens_file(tmp_path, ["1", "2", "1", "3", "4"]), out)
    (tmp_path / "emb.csv").write_text("1,2")
    with pytest.raises(DataError, match="use a .npy or .pt"):
        import_matrix(str(tmp_path / "emb.csv"), _tokens_file(tmp_path), out)
    assert not os.path.exists(out)


@pytest.mark.parametrize("key", ["id2item", "item2id"])
def test_llmesr_round_trip(tmp_path, key):
    # LLM-ESR: row j of itm_emb_np.pkl is item id j+1; id_map.json maps ids to original item tokens
    originals = ["B00A", "B00B", "B00C", "B00D", "B00E"]
    with open(tmp_path / "itm_emb_np.pkl", "wb") as f:
        pickle.dump(MATRIX.astype(np.float64), f)
    id2item = {str(j + 1): tok for j, tok in enumerate(originals)}
    mapping = id2item if key == "id2item" else {tok: j for j, tok in id2item.items()}
    (tmp_path / "id_map.json").write_text(json.dumps({"user2id": {}, key: mapping}))
    out = import_llmesr(str(tmp_path / "itm_emb_np.pkl"), str(tmp_path / "id_map.json"), str(tmp_path / "o.llmemb"))
    table = read_feature_file(out)
    assert table.tokens == originals and np.array_equal(table.matrix, MATRIX)


def test_llmesr_id_map_that_does_not_fit(tmp_path):
    with open(tmp_path / "itm_emb_np.pkl", "wb") as f:
        pickle.dump(MATRIX, f)
    (tmp_path / "id_map.json").write_text(json.dumps({"id2item": {"1": "a", "2": "b", "4": "d", "5": "e", "6": "f"}}))
    with pytest.raises(DataError, match=r"no item for ids \[3\]"):
        import_llmesr(str(tmp_path / "itm_emb_np.pkl"), str(tmp_path / "id_map.json"), str(tmp_path / "o.llmemb"))
    (tmp_path / "id_map.json").write_text(json.dumps({"items": []}))
    with pytest.raises(DataError, match="'id2item'"):
        import_llmesr(str(tmp_path / "itm_emb_np.pkl"), str(tmp_path / "id_map.json"), str(tmp_path / "o.llmemb"))
    assert not os.path.exists(tmp_path / "o.llmemb")
