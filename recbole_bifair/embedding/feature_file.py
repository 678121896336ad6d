"""The item embedding file: a RecBole atomic feature file, plus a JSON metadata file beside it.

    iid:token<TAB>item_emb:float_seq
    1<TAB>0.0123 -0.456 ...

RecBole itself can read it (``additional_feat_suffix``, ``alias_of_item_id: [iid]``,
``preload_weight: {iid: item_emb}``) with its default separators (tab between fields, space
inside a sequence). Values are written with 9 significant digits, which round-trip float32
exactly. ``<file>.json`` records how the vectors were made; a generator compares its
``cache_key`` to decide whether the file can be reused.
"""

import json
import os
from dataclasses import dataclass
from typing import List

import numpy as np

from recbole_bifair.errors import DataError
from recbole_bifair.fileio import atomic_path, write_json_atomic

ID_FIELD = "iid"
VALUE_FIELD = "item_emb"
HEADER = f"{ID_FIELD}:token\t{VALUE_FIELD}:float_seq"


@dataclass
class EmbeddingTable:
    tokens: List[str]
    matrix: np.ndarray  # float32 [len(tokens), dim]
    path: str

    @property
    def dimension(self):
        return self.matrix.shape[1]


def metadata_path(path):
    return f"{path}.json"


def read_metadata(path):
    """The metadata of an embedding file, or None when it has none (or an unreadable one)."""
    try:
        with open(metadata_path(path), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_feature_file(path, tokens, matrix, metadata):
    """Write ``tokens``/``matrix`` (row i = token i) and the metadata; check the input first.

    Either both files appear complete or the embedding file is left untouched; an old metadata
    file is removed first so that it can never describe new vectors.
    """
    matrix = np.asarray(matrix)
    tokens = [str(t) for t in tokens]
    what = metadata.get("source_file") or path
    if matrix.ndim != 2 or matrix.shape[0] != len(tokens) or matrix.shape[1] == 0:
        raise DataError(f"{what}: expected a [items, dim] matrix with one row per token; got shape "
                        f"{tuple(matrix.shape)} for {len(tokens)} tokens")
    bad_tokens = [t for t in tokens if not t or any(c in t for c in "\t\r\n")]
    if bad_tokens:
        raise DataError(f"{what}: item tokens must be non-empty without tabs or newlines; got {bad_tokens[:3]!r}")
    _check_duplicates(tokens, what)
    try:
        with np.errstate(over="ignore"):  # values beyond float32 become Inf, reported just below
            matrix = matrix.astype(np.float32)
    except (TypeError, ValueError) as err:
        raise DataError(f"{what}: the vectors are not numbers ({err})") from None
    _check_finite(tokens, matrix, what)
    if os.path.exists(metadata_path(path)):
        os.remove(metadata_path(path))
    row_format = " ".join(["%.9g"] * matrix.shape[1])
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(HEADER + "\n")
            for token, row in zip(tokens, matrix):
                f.write(f"{token}\t{row_format % tuple(row.tolist())}\n")
    write_json_atomic(metadata_path(path), {**metadata, "item_count": len(tokens), "dimension": int(matrix.shape[1])})
    return path


def check_header(path):
    """Cheap check that ``path`` is an embedding feature file (header ``<id>:token<TAB><emb>:float_seq``)."""
    if not os.path.isfile(path):
        raise DataError(f"embedding file {path} not found or not a file (llm_emb_file); check the path, or unset "
                        f"llm_emb_file to generate one")
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n")
    columns = header.split("\t")
    if len(columns) != 2 or not columns[0].endswith(":token") or not columns[1].endswith(":float_seq"):
        raise DataError(
            f"{path} line 1: header is {header[:80]!r}, expected '{HEADER.replace(chr(9), '<TAB>')}' "
            f"(an item token column and a float_seq column): is this an embedding feature file?"
        )


def read_feature_file(path):
    """Parse and validate an embedding file; every error names the file and the line."""
    check_header(path)
    tokens, rows, first_line = [], [], {}
    dim = None
    with open(path, encoding="utf-8") as f:
        next(f)
        for line_no, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue  # blank lines, as pandas (hence RecBole) skips them
            parts = line.split("\t")
            if len(parts) != 2:
                raise DataError(f"{path} line {line_no}: expected 2 tab-separated columns (token, vector), got {len(parts)}")
            token, text = parts
            if token in first_line:
                raise DataError(f"{path} line {line_no}: duplicate item token '{token}' (first on line "
                                f"{first_line[token]}); keep one vector per item")
            try:
                # float64 then float32, as RecBole's float() parse followed by a float32 cast does
                with np.errstate(over="ignore"):  # beyond float32 range -> Inf, reported below
                    row = np.array(text.split(), dtype=np.float64).astype(np.float32)
            except ValueError as err:
                raise DataError(f"{path} line {line_no}: item '{token}' has a value that is not a number ({err})") from None
            if dim is None:
                dim = row.size
            if row.size == 0 or row.size != dim:
                raise DataError(f"{path} line {line_no}: item '{token}' has {row.size} values, but the first "
                                f"vector (line {min(first_line.values(), default=line_no)}) has {dim}: all vectors "
                                f"need the same dimension")
            if not np.isfinite(row).all():
                raise DataError(f"{path} line {line_no}: item '{token}' has NaN or Inf values (or values beyond "
                                f"float32 range); regenerate or fix it")
            first_line[token] = line_no
            tokens.append(token)
            rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no vectors (only a header); regenerate it")
    return EmbeddingTable(tokens, np.stack(rows), path)


def _check_duplicates(tokens, what):
    seen = {}
    for i, token in enumerate(tokens):
        if token in seen:
            raise DataError(f"{what}: duplicate item token '{token}' (rows {seen[token]} and {i}); keep one vector per item")
        seen[token] = i


def _check_finite(tokens, matrix, what):
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:
        examples = ", ".join(f"'{tokens[i]}' (row {i})" for i in bad[:3])
        raise DataError(f"{what}: {bad.size} vectors have NaN or Inf values (or values beyond float32 range), e.g. {examples}")
