"""Bring item vectors made elsewhere into the embedding file format.

- ``import_matrix``: a ``.npy`` or ``.pt`` matrix with a token list (row i = the i-th token), as
  AlphaRec-style pipelines save them.
- ``import_llmesr``: LLM-ESR's ``itm_emb_np.pkl`` (row j = item id j+1) with its ``id_map.json``
  (``id2item``, or ``item2id``) giving each id's original item token. A pickle can name any
  Python function to call while it loads; this one is read by ``ArrayUnpickler``, which rebuilds
  numpy arrays, numbers and lists and refuses everything else.
"""

import json
import os
import pickle
import time

import numpy as np
import torch

from recbole_bifair.embedding.feature_file import write_feature_file
from recbole_bifair.errors import DataError


def import_matrix(matrix_path, tokens_path, output):
    """Write ``output`` from a [n, d] matrix and a token file (one token per line, or a JSON list)."""
    matrix = _load_matrix(matrix_path)
    tokens = _read_tokens(tokens_path)
    if matrix.shape[0] != len(tokens):
        hint = " (is its first row a padding row? drop it first)" if matrix.shape[0] == len(tokens) + 1 else ""
        raise DataError(f"{matrix_path} has {matrix.shape[0]} rows but {tokens_path} lists {len(tokens)} tokens; "
                        f"row i must be the vector of the i-th token{hint}")
    return write_feature_file(output, tokens, matrix, _metadata("matrix", matrix_path, tokens_file=tokens_path))


#: The globals a pickled numpy array (or list of numpy numbers) refers to, for protocols 2 to 5,
#: written by numpy 1 (``numpy.core``) or numpy 2 (``numpy._core``). ``_codecs.encode`` is how
#: protocol 2 writes bytes.
ARRAY_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    *((f"numpy.{core}.multiarray", "_reconstruct") for core in ("core", "_core")),
    *((f"numpy.{core}.multiarray", "scalar") for core in ("core", "_core")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
})


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global (``module.name``) that ``ArrayUnpickler`` does not rebuild."""


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, numpy numbers and plain containers only: any
    other global a pickle names (``os.system``, a class) is refused before it is looked up."""

    def find_class(self, module, name):
        if (module, name) not in ARRAY_GLOBALS:
            raise RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def import_llmesr(pickle_path, id_map_path, output):
    """Write ``output`` from LLM-ESR's item embedding pickle and id map.

    The pickle is read by ``ArrayUnpickler``: a pickle that needs anything beyond numpy arrays and
    numbers is refused with a DataError naming the global, and nothing in it runs."""
    try:
        with open(pickle_path, "rb") as f:
            matrix = np.asarray(ArrayUnpickler(f).load())
    except RefusedGlobal as err:
        raise DataError(f"{pickle_path} was not loaded: it names the global {err}, and an LLM-ESR embedding pickle "
                        f"holds a numpy array only (a pickle can run code, so nothing else is read); save the "
                        f"matrix with np.save and use --import_matrix") from None
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DataError(f"cannot read the LLM-ESR embedding pickle {pickle_path} ({err})") from None
    if matrix.ndim != 2:
        raise DataError(f"{pickle_path}: expected a [items, dim] array, got shape {tuple(matrix.shape)}")
    id2item = _read_id_map(id_map_path)
    absent = [j + 1 for j in range(matrix.shape[0]) if j + 1 not in id2item]
    if absent:
        raise DataError(f"{id_map_path} has no item for ids {absent[:5]} (row j of {pickle_path} is id j+1; "
                        f"{len(absent)} rows without an item): use the id map that was made with this pickle")
    if len(id2item) != matrix.shape[0]:
        raise DataError(f"{id_map_path} maps {len(id2item)} items but {pickle_path} has {matrix.shape[0]} rows; "
                        f"use the id map that was made with this pickle")
    tokens = [id2item[j + 1] for j in range(matrix.shape[0])]
    return write_feature_file(output, tokens, matrix, _metadata("llm-esr", pickle_path, id_map_file=id_map_path))


def _load_matrix(path):
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            matrix = np.load(path, allow_pickle=False)
        elif ext in (".pt", ".pth"):
            matrix = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(matrix, torch.Tensor):
                raise DataError(f"{path} holds a {type(matrix).__name__}, not a tensor: save the matrix alone "
                                f"(torch.save(matrix, path))")
            matrix = matrix.detach().float().numpy()
        else:
            raise DataError(f"{path}: unknown matrix format '{ext}'; use a .npy or .pt file")
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as err:
        raise DataError(f"cannot read the matrix {path} ({err})") from None
    if matrix.ndim != 2:
        raise DataError(f"{path}: expected a [items, dim] matrix, got shape {tuple(matrix.shape)}")
    return matrix


def _read_tokens(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise DataError(f"cannot read the token list {path} ({err})") from None
    if path.lower().endswith(".json"):
        try:
            tokens = json.loads(text)
        except ValueError as err:
            raise DataError(f"{path} is not valid JSON ({err})") from None
        if not isinstance(tokens, list):
            raise DataError(f"{path}: expected a JSON list of item tokens")
        return [str(t) for t in tokens]
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError(f"{path} line {line_no} is empty; the file needs one item token per line")
    return [line.strip() for line in lines]


def _read_id_map(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the id map {path} ({err})") from None
    try:
        if isinstance(data, dict) and isinstance(data.get("id2item"), dict):
            return {int(k): str(v) for k, v in data["id2item"].items()}
        if isinstance(data, dict) and isinstance(data.get("item2id"), dict):
            return {int(v): str(k) for k, v in data["item2id"].items()}
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: ids must be integers ({err})") from None
    raise DataError(f"{path}: expected LLM-ESR's id map, a JSON object with 'id2item' (id -> item) or 'item2id'")


def _metadata(kind, source_file, **files):
    return {
        "source": f"import:{kind}",
        "source_file": os.path.abspath(source_file),
        **{k: os.path.abspath(v) for k, v in files.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
