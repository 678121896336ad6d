"""``fair_method: groupdro``: online GroupDRO over the item groups (baseline, METHOD.md 6).

The per-group loop weights the group losses with exponentiated-gradient weights
``q_g <- q_g exp(groupdro_eta L_g)`` (Sagawa et al., ICLR 2020;
``recbole_bifair.trainer.balancing.OnlineGroupDRO``), kept across steps and in checkpoints.
"""

from recbole_bifair.methods.base import FairMethod
from recbole_bifair.methods.registry import register_method


@register_method
class GroupDRO(FairMethod):
    name = "groupdro"
    keys = ("groupdro_eta",)
    group_loop = True
    inner_balance = "groupdro"
