"""Early stopping that a noisy validation curve does not trip (``valid_window``, METHOD.md 3e).

RecBole's ``fit`` stops when its validation score has not improved for ``stopping_step``
validations and keeps the checkpoint of the best score. With ``valid_window: k`` that score is
the mean of the last ``k`` validations (fewer at the start), so one lucky or unlucky validation
neither resets nor ends the patience; ``k = 1`` is RecBole's rule on the raw score. The trainer
(trainer/base.py) and the benchmark that chose the default (benchmarks/stopping_replay.py) both
use ``replay``/``trailing_mean`` below, so what the benchmark measured is what a run does.
"""

import math


def trailing_mean(scores, window):
    """The mean of the last ``window`` of ``scores`` (all of them while there are fewer)."""
    if window < 1:
        raise ValueError(f"valid_window must be >= 1, got {window}")
    if not scores:
        raise ValueError("trailing_mean of no scores")
    tail = scores[-window:]
    return sum(tail) / len(tail)


def replay(curve, window, patience, bigger=True):
    """What RecBole's early stopping (``recbole.utils.early_stopping``) does on the trailing mean of
    ``curve`` (raw validation scores, one per validation): ``{"stop": the validation at which training
    stops, or None when the curve ends first; "best": the validation whose checkpoint is kept;
    "best_score": its trailing mean}``. Ties count as improvements, as in RecBole."""
    best_score = -math.inf if bigger else math.inf
    best, steps = None, 0
    for i in range(len(curve)):
        score = trailing_mean(curve[: i + 1], window)
        if (score >= best_score) if bigger else (score <= best_score):
            best, best_score, steps = i, score, 0
        else:
            steps += 1
            if steps > patience:
                return {"stop": i, "best": best, "best_score": best_score}
    return {"stop": None, "best": best, "best_score": best_score}
