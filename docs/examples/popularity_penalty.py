"""``fair_method: popularity_penalty``: a fairness method of your own, in one file (docs/extending.md).

The loss becomes ``mean loss + weight * max(0, L_tail - L_head)``: ``L_head`` and ``L_tail`` are
the batch's mean losses of the most popular item group (``pop1``) and of the least popular one
(``popK``), so the penalty pulls the tail group's loss down towards the head group's whenever it
is higher. ``weight`` is the config key ``popularity_penalty_weight`` (default 1.0; the plugin's
schema does not know it, so RecBole passes it through from your config unchecked).

    python run_recbole_bifair.py --model=LLMSASRec --dataset=ml-100k \\
        --method_modules=docs/examples/popularity_penalty.py --fair_method=popularity_penalty \\
        --popularity_penalty_weight=0.5
"""

from recbole_bifair.methods.base import FairMethod
from recbole_bifair.methods.registry import register_method

KEY = "popularity_penalty_weight"


@register_method
class PopularityPenalty(FairMethod):
    name = "popularity_penalty"  # the value of fair_method
    keys = (KEY,)
    group_loop = True  # the trainer's per-group loop: it computes the group losses L_g

    def __init__(self, config):
        super().__init__(config)
        # unset: the default; set: a finite number, or a ConfigError naming the key
        self.weight = 1.0 if config[KEY] is None else self.number(KEY)

    def loss_term(self, L_g, present):
        """Added to the batch's mean loss; None (nothing) when the head or the tail group has no
        target in the batch. Groups run from the most popular (0) to the least popular (K - 1)."""
        head, tail = 0, L_g.shape[0] - 1
        if not (present[head] and present[tail]):
            return None
        return self.weight * (L_g[tail] - L_g[head]).clamp(min=0)
