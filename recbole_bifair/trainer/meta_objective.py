"""The per-target loss the outer level balances across groups (``outer_objective``, METHOD.md 4c).

``ce``: the backbone's loss (the CE of the target against every item), as the inner level.
``soft_hit``: a smooth miss indicator at the ranking cut-off ``k``,

    l(y) = sigmoid((z_(k) - z_y) / T),

``z_(k)`` the k-th largest logit among the real items other than the target (padding excluded),
so that ``l`` is near 0 for a target inside the top k, near 1 far outside, and its gradient,
``sigmoid' / T``, vanishes for targets no shift of a few nats brings into the top k. A group's
mean is then a smooth version of its miss rate at k (1 - Hit@k), the quantity its NDCG@k lives
on, where the CE keeps growing with a target's distance from the top and puts the weight on the
groups (the rarest items) whose targets are hopeless.
"""

import dataclasses

import torch

from recbole_bifair.errors import ConfigError

def soft_miss(logits, targets, k, temperature):
    """``[N]`` ``sigmoid((z_(k) - z_y) / T)`` of ``logits [N, n_items]`` (column 0 = padding) and
    ``targets [N]``; ``z_(k)``: the k-th largest logit of row n over the columns ``1..`` other
    than ``targets[n]`` (k is capped at the number of those columns)."""
    n_other = logits.shape[1] - 2  # real items other than the target
    if n_other < 1:
        raise ValueError(f"soft_miss needs at least 2 real items, got logits of shape {tuple(logits.shape)}")
    k = min(int(k), n_other)
    rows = torch.arange(len(targets), device=logits.device)
    masked = logits.clone()
    masked[:, 0] = float("-inf")
    masked[rows, targets] = float("-inf")
    kth = masked.topk(k, dim=1).values[:, -1]
    return torch.sigmoid((kth - logits[rows, targets]) / temperature)


class MetaObjective:
    """``outer_objective`` with its settings (their types and ranges are the schema's), checked
    against the model once: ``losses(out)`` maps a ``TargetLosses`` of the meta batch to the
    per-target losses the outer level groups."""

    def __init__(self, config, softmax, model):
        self.name = config["outer_objective"] or "ce"
        self.k = config["soft_hit_k"]
        self.temperature = config["soft_hit_temperature"]
        if self.name != "soft_hit":
            return
        if model.loss_type != "CE":
            raise ConfigError(f"outer_objective: soft_hit ranks the meta targets by their logits, which a "
                              f"{model.loss_type}-trained backbone does not compute: set loss_type: CE or "
                              f"outer_objective: ce")
        if softmax == "sampled":
            raise ConfigError("outer_objective: soft_hit ranks the meta targets against the whole catalog; "
                              "the sampled outer step (outer_softmax: sampled, or auto above "
                              "outer_sampled_min_items items) scores a sample of it: set outer_softmax: full "
                              "or outer_objective: ce")

    def check_balancer(self, balancer, key):
        """mgda's closed-form Gram is the CE's (it differentiates the logits' softmax): refuse it."""
        if self.name == "soft_hit" and balancer.needs_gram:
            raise ConfigError(f"outer_objective: soft_hit with {key} '{balancer.mode}': the outer balancer's "
                              f"Gram is the CE's; set outer_balance: dro (or uniform, none)")

    def losses(self, out):
        if self.name == "ce":
            return out
        return dataclasses.replace(out, losses=soft_miss(out.logits, out.targets, self.k, self.temperature))
