"""``fair_method: ips``: inverse-propensity weighting of the training targets (baseline, METHOD.md 6).

Each training target ``i`` is weighted by ``train_count_i ** -ips_alpha`` (items unseen in
training: 0), normalised to mean 1 over each batch, so that tail items count more in the mean
loss. The per-group loop runs with ``inner_balance`` none, i.e. the weighted mean loss.
"""

import torch

from recbole_bifair.methods.base import FairMethod
from recbole_bifair.methods.registry import register_method


@register_method
class IPS(FairMethod):
    name = "ips"
    keys = ("ips_alpha",)
    group_loop = True

    def __init__(self, config):
        super().__init__(config)
        self.alpha = self.number("ips_alpha")

    def target_weights(self, item_groups, device):
        counts = item_groups.train_count.double()
        weights = torch.where(counts > 0, counts.clamp(min=1) ** -self.alpha, 0.0)
        return weights.float().to(device)
