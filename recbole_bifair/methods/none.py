"""``fair_method: none``: the LLM-enhanced baseline (LLM-SASRec), no fairness method.

Trained by RecBole's loop on the backbone's loss and ranked by its scores; ``posthoc_beta``
(``posthoc.py``) may still re-rank it.
"""

from recbole_bifair.methods.base import FairMethod
from recbole_bifair.methods.registry import register_method


@register_method
class NoMethod(FairMethod):
    name = "none"
