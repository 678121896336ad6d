"""``fair_method: logit_adjust``: logit-adjusted cross-entropy (baseline, METHOD.md 6).

Training takes the CE of ``logits + logit_adjust_tau * log p``, ``p_i`` the training share of
item ``i`` (counts clamped to 1, so that ``log p`` is finite); ranking uses the unadjusted scores
(Menon et al., "Long-tail learning via logit adjustment", ICLR 2021). RecBole's loop trains it.
"""

import torch

from recbole_bifair.methods.base import FairMethod
from recbole_bifair.methods.registry import register_method


def log_prior(train_count, dtype=torch.float32):
    """``[n_items]`` ``log p_i``, ``p_i = max(train_count_i, 1) / sum_j max(train_count_j, 1)``
    over all ids (padding and items unseen in training count as 1; the normaliser is a constant
    shift of every logit, which the cross-entropy ignores)."""
    counts = train_count.to(torch.float64).clamp(min=1)
    return torch.log(counts / counts.sum()).to(dtype)


@register_method
class LogitAdjust(FairMethod):
    name = "logit_adjust"
    keys = ("logit_adjust_tau",)
    shifts_logits = True

    def __init__(self, config):
        super().__init__(config)
        self.tau = self.number("logit_adjust_tau")

    def attach(self, model, dataset):
        self.need_ce(model, "adjusts the logits of the cross-entropy")

    def train_logit_shift(self, model, items, dtype):
        return self.tau * log_prior(model.item_train_count, dtype)[items]
