"""What the search optimises, and how the chosen trial is picked from validation metrics.

Three forms, all on RecBole's lower-case ``valid_result`` keys (``ndcg@10``, ``ndcggap@10``):

- one metric: ``--objective=ndcg@10``: the best value wins;
- a metric under a constraint: ``--objective=ndcg@10 --constraint="ndcggap@10<=0.3"``: the best
  value among the trials that satisfy the constraint;
- a Pareto front: ``--objective=ndcg@10,ndcggap@10`` (accuracy, then unfairness): the front over
  both, and the chosen trial is its compromise point (closest to the ideal point once each axis
  is scaled to [0, 1] over the front).

A metric's direction is RecBole's: smaller is better when its name (before '@') is in
``recbole.evaluator.smaller_metrics`` (where registered metrics declare ``smaller = True``).
"""

import math
import operator
import re
from dataclasses import dataclass
from typing import Optional

from recbole.evaluator import smaller_metrics

from recbole_bifair.errors import ConfigError

_OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
# RecBole's result keys: name, name@k, and per-group keys such as groupndcg@10[pop5]
_KEY = r"[A-Za-z][A-Za-z0-9_\-]*(?:@\d+)?(?:\[[^\]]+\])?"
_CONSTRAINT = re.compile(rf"^\s*({_KEY})\s*(<=|>=|<|>)\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")
_METRIC = re.compile(rf"^{_KEY}$")


def smaller_is_better(metric):
    return metric.split("@")[0].lower() in smaller_metrics


def _metric_name(text, flag):
    name = text.strip().lower()
    if not _METRIC.fullmatch(name):
        raise ConfigError(f"{flag}: '{text}' is not a metric name: write it as RecBole reports it, e.g. ndcg@10")
    return name


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    bound: float

    def holds(self, value):
        return value is not None and not _missing(value) and _OPERATORS[self.op](value, self.bound)

    def __str__(self):
        return f"{self.metric}{self.op}{self.bound:g}"


def parse_constraint(text):
    match = _CONSTRAINT.match(text or "")
    if not match:
        raise ConfigError(
            f"--constraint='{text}' does not parse: write METRIC OP NUMBER, e.g. --constraint=\"ndcggap@10<=0.3\""
        )
    metric, op, bound = match.groups()
    return Constraint(_metric_name(metric, "--constraint"), op, float(bound))


@dataclass(frozen=True)
class Objective:
    metric: str
    unfairness: Optional[str] = None  # set: Pareto front over (metric, unfairness)
    constraint: Optional[Constraint] = None

    @classmethod
    def parse(cls, objective, constraint=None):
        names = [_metric_name(n, "--objective") for n in objective.split(",")]
        if len(names) > 2:
            raise ConfigError(
                f"--objective='{objective}': give one metric, or two (accuracy,unfairness) for a Pareto front"
            )
        if len(names) == 2 and names[0] == names[1]:
            raise ConfigError(f"--objective='{objective}': a Pareto front needs two different metrics")
        return cls(names[0], names[1] if len(names) == 2 else None,
                   parse_constraint(constraint) if constraint else None)

    @property
    def mode(self):
        """Ray Tune's mode for the (accuracy) metric that schedulers compare."""
        return "min" if smaller_is_better(self.metric) else "max"

    @property
    def pareto_axes(self):
        """(accuracy, unfairness) for the Pareto front: the second objective, else the constraint's
        metric; None when the search names no second metric."""
        second = self.unfairness or (self.constraint.metric if self.constraint else None)
        if second is None or second == self.metric:
            return None
        return self.metric, second

    @property
    def metrics(self):
        return list(dict.fromkeys(m for m in [self.metric, self.unfairness,
                                              self.constraint.metric if self.constraint else None] if m))

    def describe(self):
        if self.unfairness:
            text = f"Pareto front over {self.metric} and {self.unfairness} (compromise point)"
        else:
            text = f"{'minimise' if smaller_is_better(self.metric) else 'maximise'} {self.metric}"
        return text + (f" subject to {self.constraint}" if self.constraint else "")


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def dominates(a, b, smaller):
    """``a`` is at least as good as ``b`` on every axis and better on one."""
    better_or_equal = all((x <= y) if s else (x >= y) for x, y, s in zip(a, b, smaller))
    strictly = any((x < y) if s else (x > y) for x, y, s in zip(a, b, smaller))
    return better_or_equal and strictly


def pareto_mask(points, smaller):
    """For each point, whether no other point dominates it (points with a missing value: False)."""
    valid = [not any(_missing(v) for v in p) for p in points]
    return [
        ok and not any(valid[j] and dominates(points[j], p, smaller) for j in range(len(points)) if j != i)
        for i, (p, ok) in enumerate(zip(points, valid))
    ]


def compromise(points, smaller):
    """Index of the point closest to the ideal point after scaling each axis to [0, 1]."""
    scaled = []
    for axis, s in enumerate(smaller):
        values = [p[axis] for p in points]
        low, high = min(values), max(values)
        span = high - low
        # 0 = the best value on this axis, 1 = the worst
        scaled.append([0.0 if span == 0 else ((v - low) if s else (high - v)) / span for v in values])
    distances = [math.hypot(*(axis[i] for axis in scaled)) for i in range(len(points))]
    return distances.index(min(distances))


def select(rows, objective):
    """Mark feasible rows, the Pareto front, and the chosen row.

    ``rows`` are dicts of validation metrics (one per completed trial). Returns
    ``(feasible, pareto, chosen_index)``; ``chosen_index`` is None when no row qualifies.
    """
    feasible = [
        not _missing(r.get(objective.metric)) and (objective.constraint is None or
                                                   objective.constraint.holds(r.get(objective.constraint.metric)))
        for r in rows
    ]
    pareto = [False] * len(rows)
    axes = objective.pareto_axes
    if axes:
        idx = [i for i, ok in enumerate(feasible) if ok]
        points = [tuple(rows[i].get(m) for m in axes) for i in idx]
        smaller = [smaller_is_better(m) for m in axes]
        for i, on_front in zip(idx, pareto_mask(points, smaller)):
            pareto[i] = on_front
    candidates = [i for i, ok in enumerate(feasible) if ok]
    if objective.unfairness:
        candidates = [i for i in candidates if pareto[i]]
        if not candidates:
            return feasible, pareto, None
        smaller = [smaller_is_better(m) for m in axes]
        return feasible, pareto, candidates[compromise([tuple(rows[i][m] for m in axes) for i in candidates], smaller)]
    if not candidates:
        return feasible, pareto, None
    sign = 1 if smaller_is_better(objective.metric) else -1
    return feasible, pareto, min(candidates, key=lambda i: (sign * rows[i][objective.metric], i))
