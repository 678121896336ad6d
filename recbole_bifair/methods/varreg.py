"""``fair_method: varreg``: the mean loss plus the variance of the group losses (baseline, METHOD.md 6).

``loss = mean loss + group_variance_weight * Var_g(L_g)`` over the groups present in the batch
(population variance), which pulls the groups' losses together.
"""

from recbole_bifair.methods.base import FairMethod
from recbole_bifair.methods.registry import register_method


@register_method
class VarReg(FairMethod):
    name = "varreg"
    keys = ("group_variance_weight",)
    group_loop = True

    def __init__(self, config):
        super().__init__(config)
        self.weight = self.number("group_variance_weight")

    def loss_term(self, L_g, present):
        return self.weight * L_g[present].var(unbiased=False)
