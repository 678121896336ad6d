"""``fair_method: bifair``: BiFair (Zhang et al., arXiv 2507.04294; docs/METHOD.md sections 4-5).

What the method sets, read by the trainer and the model:

- the per-group loop with adaptive group weights (``inner_balance``, default ``balance``: MGDA
  with an entropy term, ``recbole_bifair.trainer.balancing``): the inner level, training
  unfairness;
- the outer level (``outer_level``): ``E`` and the group score offsets refined by a hypergradient
  on a held-out meta split (``recbole_bifair.trainer.outer_level``): prior unfairness;
- the group score offsets (``group_offsets: outer``, METHOD.md 4a): ``K'`` training-only logit
  offsets ``b`` (``model.group_offset``), item ``i``'s training logit shifted by
  ``offset_basis[i] @ b`` (``score_offsets.py``); ranking takes them away, unless
  ``rank_with_offsets`` (a diagnostic: rank with the training logits).

The loop's keys (hypergradient, outer optimiser, meta split) are read by the trainer's
``OuterLevel``; all of them are listed in ``properties/method/bifair.yaml``.
"""

import torch
from torch import nn

from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness.groups import build_item_groups
from recbole_bifair.methods.base import FairMethod
from recbole_bifair.methods.registry import register_method
from recbole_bifair.methods.score_offsets import OFFSET_BASES, offset_basis

GROUP_OFFSETS = ("none", "outer")


@register_method
class BiFair(FairMethod):
    name = "bifair"
    group_loop = True
    refines_table = True

    def __init__(self, config):
        super().__init__(config)
        self.inner_balance = config["inner_balance"] or config["balance"]
        self.inner_balance_key = "inner_balance" if config["inner_balance"] else "balance"
        self.outer_level = bool(config["outer_level"])
        self.group_offsets = config["group_offsets"] or "none"
        if self.group_offsets not in GROUP_OFFSETS:
            raise ConfigError(f"group_offsets '{self.group_offsets}' is unknown; use one of {', '.join(GROUP_OFFSETS)}")
        self.basis_kind = config["offset_basis"] or "group"
        if self.basis_kind not in OFFSET_BASES:
            raise ConfigError(f"offset_basis '{self.basis_kind}' is unknown; use one of {', '.join(OFFSET_BASES)}")
        self.rank_with_offsets = bool(config["rank_with_offsets"])
        self.shifts_logits = self.group_offsets == "outer"

    def attach(self, model, dataset):
        model.group_offset = None
        if self.group_offsets == "outer":
            if model.loss_type != "CE":
                raise ConfigError(f"group_offsets: outer shifts the logits of the cross-entropy, and loss_type is "
                                  f"{model.loss_type}: set loss_type: CE or group_offsets: none")
            # the trainer's item groups: the same rule on the same training split
            groups = build_item_groups(self.config, dataset)
            basis = offset_basis(self.basis_kind, groups, model.item_train_count.numpy())
            model.register_buffer("offset_basis", basis, persistent=False)
            # K' training-only score offsets, an outer variable (METHOD.md 4a); 0: the plain CE
            model.group_offset = nn.Parameter(torch.zeros(basis.shape[1]))
        if self.rank_with_offsets and model.group_offset is None:
            raise ConfigError("rank_with_offsets: True adds the learned group offsets to the ranking scores, and "
                              f"this model has none (group_offsets: {self.group_offsets}): set group_offsets: outer "
                              "(BiFair with the outer level and CE) or rank_with_offsets: False")

    @staticmethod
    def offset_shift(model, items=None, dtype=torch.float32):
        """``offset_basis[items] @ b``: the learned offsets' shift of ``items`` (all ids when None).
        ``b`` is read from the model each time, so that ``torch.func.functional_call`` can stand
        another tensor in for it (the outer level's hypergradient)."""
        basis = model.offset_basis if items is None else model.offset_basis[items]
        return basis.to(dtype) @ model.group_offset.to(dtype)

    def train_logit_shift(self, model, items, dtype):
        if model.group_offset is None:
            return None
        return self.offset_shift(model, items, dtype)

    def ranking_shift(self, model, dtype):
        if not self.rank_with_offsets:
            return None
        offsets = self.offset_shift(model, dtype=dtype).detach()
        offsets[0] = 0.0  # padding keeps the backbone's score
        return offsets
