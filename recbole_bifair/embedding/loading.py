"""Item embeddings as a matrix indexed by RecBole's internal item ids.

Row ``i`` is the vector of the token that RecBole maps to item id ``i``; row 0 (padding) is zero.
This gives the same rows as RecBole's own ``additional_feat_suffix`` + ``preload_weight``
mechanism (``dataset.get_preload_weight``), without adding a field to the dataset, and it checks
the file line by line where RecBole would silently fill zeros or NaN.
"""

from logging import getLogger

import numpy as np
import torch

from recbole_bifair.embedding.feature_file import read_feature_file
from recbole_bifair.embedding.generate import ensure_item_embeddings
from recbole_bifair.embedding.options import missing_mode
from recbole_bifair.errors import DataError


def load_item_embeddings(config, dataset, path=None):
    """FloatTensor ``[dataset.item_num, d]`` for the run; generates the file first when needed.

    ``path`` defaults to ``ensure_item_embeddings(config)``. Items of the dataset without a vector
    raise a DataError unless ``llm_emb_missing`` is ``zero`` or ``mean``.
    """
    path = path or ensure_item_embeddings(config)
    table = read_feature_file(path)
    id_tokens = dataset.field2id_token[dataset.iid_field]
    matrix = align_to_item_ids(table, id_tokens, missing_mode(config), config["dataset"])
    return torch.from_numpy(matrix)


def align_to_item_ids(table, id_tokens, missing="error", dataset_name="the dataset"):
    """Rows of ``table`` reordered so that row i is ``id_tokens[i]``'s vector (``id_tokens[0]`` is padding)."""
    row_of = {token: row for row, token in enumerate(table.tokens)}
    rows = np.array([row_of.get(str(token), -1) for token in id_tokens[1:]], dtype=np.int64)
    present = rows >= 0
    n_items = len(rows)
    if n_items and not present.any():
        raise DataError(
            f"none of the {n_items} items of {dataset_name} has a vector in {table.path} (e.g. its tokens "
            f"{', '.join(table.tokens[:3])} vs the dataset's {', '.join(map(str, id_tokens[1:4]))}): "
            f"is the file made for another dataset? Regenerate it or fix llm_emb_file"
        )
    matrix = np.zeros((n_items + 1, table.dimension), dtype=np.float32)
    matrix[1:][present] = table.matrix[rows[present]]
    absent = np.flatnonzero(~present) + 1
    if absent.size:
        examples = ", ".join(str(id_tokens[i]) for i in absent[:5])
        summary = f"{absent.size} of {n_items} items of {dataset_name} have no vector in {table.path} (e.g. {examples})"
        if missing == "error":
            raise DataError(f"{summary}: regenerate the file for this dataset (delete it, or point llm_emb_file "
                            f"at a new path), or set llm_emb_missing: zero or mean to fill them")
        if missing == "mean":
            matrix[absent] = matrix[1:][present].mean(axis=0)
        getLogger().warning(f"{summary}: filled with {'zeros' if missing == 'zero' else 'the mean vector'} "
                            f"(llm_emb_missing: {missing})")
    unused = len(table.tokens) - int(present.sum())
    if unused:
        getLogger().info(f"{unused} vectors of {table.path} belong to items that {dataset_name} does not have (ignored)")
    return matrix
