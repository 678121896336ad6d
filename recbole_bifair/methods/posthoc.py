"""``posthoc_beta``: post-hoc popularity re-ranking of any LLM-enhanced model (baseline, METHOD.md 6).

Ranking scores become ``score - posthoc_beta * log(train_count + 1)`` (padding keeps its score);
training is unchanged. It composes with every ``fair_method`` (PostHoc is ``fair_method: none``
with it, BiFair-PostHoc is BiFair with it), and, changing only the ranking, it can be applied to
a trained checkpoint (``quick_start.evaluate_checkpoint``): a sweep costs evaluations only.
"""

import torch


class PostHoc:
    """The re-ranking of one model; ``beta`` 0 is off."""

    def __init__(self, beta):
        self.beta = float(beta)

    def ranking_shift(self, train_count, dtype=torch.float32):
        """``[n_items]`` ``-beta * log(train_count + 1)``, 0 for padding (item 0); None when off."""
        if not self.beta:
            return None
        offset = self.beta * torch.log1p(train_count.to(dtype))
        offset[0] = 0.0  # padding keeps the backbone's score (log1p(0) is 0 already; made explicit)
        return -offset
