"""The basis of BiFair's training-only score offsets (``group_offsets: outer``, METHOD.md 4a).

The outer level learns a vector ``b`` (``model.group_offset``); item ``i``'s training logit is
shifted by ``B[i] @ b``, where ``B`` is the ``[n_items, K']`` basis chosen by ``offset_basis``:

- ``group`` (default): ``B[i]`` is the one-hot of item ``i``'s group, so ``b`` holds one offset
  per item group (``K' = K``): every item of a group moves by the same amount.
- ``interpolate``: ``K' = K`` knots, one per popularity group, at the mean ``log(train count)`` of
  the group's items; ``B[i]`` holds the piecewise-linear ("hat") weights of item ``i``'s
  ``log(train count)`` between the two nearest knots (clamped beyond the end knots). Items at a
  group's centre get that group's offset, items between two centres a mix, so the correction
  follows popularity inside a group instead of stepping at group borders.
- ``prior``: ``K' = 1``, ``B[i] = log(train count_i) - mean over items``: ``b`` is a single slope
  on log popularity, i.e. logit adjustment (Menon et al. 2021) with its ``tau`` learned by the
  outer level instead of set by hand.

Counts below 1 (items unseen in training) count as 1, as in ``log_prior``. The padding row (item 0)
is 0 except under ``group``, where it keeps the last group's offset, as the direct lookup
``b[group_of[0]]`` (``group_of[0] = -1``) gave before the basis existed, so results recorded
before it are reproduced exactly.
"""

import numpy as np
import torch

from recbole_bifair.errors import ConfigError

OFFSET_BASES = ("group", "interpolate", "prior")


def offset_basis(kind, groups, train_count):
    """``[n_items, K']`` float32 basis of ``kind`` for ``groups`` (``ItemGroups`` of the training
    split) and ``train_count`` (``[n_items]`` training interactions per item id)."""
    if kind not in OFFSET_BASES:
        raise ConfigError(f"offset_basis '{kind}' is unknown; use one of {', '.join(OFFSET_BASES)}")
    group_of = np.asarray(groups.group_of, dtype=np.int64)
    n_items, K = len(group_of), groups.n_groups
    if kind == "group":
        basis = np.zeros((n_items, K), dtype=np.float64)
        basis[np.arange(n_items), group_of % K] = 1.0  # padding's -1 -> the last group (see above)
        return torch.as_tensor(basis, dtype=torch.float32)
    x = np.log(np.maximum(np.asarray(train_count, dtype=np.float64), 1.0))
    real = np.arange(n_items) >= 1
    if kind == "prior":
        basis = np.where(real, x - x[real].mean(), 0.0)[:, None]
        return torch.as_tensor(basis, dtype=torch.float32)
    if groups.kind != "popularity":
        raise ConfigError(f"offset_basis: interpolate places its knots on item popularity and needs "
                          f"item_groups: popularity (the groups are '{groups.kind}'); use offset_basis: group or prior")
    knots = np.array([x[real & (group_of == g)].mean() if (real & (group_of == g)).any() else np.nan
                      for g in range(K)])
    order = np.argsort(knots)
    if np.isnan(knots).any() or np.any(np.diff(knots[order]) <= 0):
        raise ConfigError(f"offset_basis: interpolate needs every popularity group to have items and distinct "
                          f"mean log popularity (group centres {np.round(knots, 4).tolist()}); use "
                          f"offset_basis: group or fewer n_item_groups")
    basis = np.zeros((n_items, K), dtype=np.float64)
    for g in range(K):
        hat = np.zeros(K)
        hat[np.where(order == g)[0][0]] = 1.0
        basis[:, g] = np.interp(x, knots[order], hat)  # piecewise linear, constant beyond the ends
    basis[0] = 0.0
    return torch.as_tensor(basis, dtype=torch.float32)
