"""Item-group fairness metrics, registered into RecBole's evaluator.

Usable in ``metrics:`` and as ``valid_metric`` (RecBole finds the bigger/smaller flag by the name
before ``@``). All of them are ranking metrics read from one
:class:`~recbole_bifair.fairness.report.GroupReport` per evaluation (computed by the first metric
that needs it and kept in the evaluation's data struct), so they always agree with each other and
with the end-of-run report. Values are rounded to ``metric_decimal_place`` like RecBole's.

============================  ==========================================  =======  ===========
metric                        result keys                                 better   meaning
============================  ==========================================  =======  ===========
GroupNDCG / GroupRecall /     ``groupndcg@10[pop1]`` ... one per group    bigger   ``U_g``
GroupHit                      that has evaluated users
NDCGGap / RecallGap / HitGap  ``ndcggap@10``                              smaller  max - min
NDCGCV / RecallCV / HitCV     ``ndcgcv@10``                               smaller  std / mean
NDCGMinMean / RecallMinMean   ``ndcgminmean@10``                          bigger   min / mean
/ HitMinMean
GroupExposure                 ``groupexposure@10[pop1]`` ... every group  (n/a)    top-k share
ExposureDisparity             ``exposuredisparity@10``                    smaller  TV vs interactions
ItemExposureDisparity         ``itemexposuredisparity@10``                smaller  TV vs items
MGU / DGU                     ``mgu@10`` / ``dgu@10``                     smaller  IFairLRS
ARP                           ``arp@10``                                  smaller  Elliot
APLT / ACLT                   ``aplt@10`` / ``aclt@10``                   bigger   Elliot
PopREO / PopRSP               ``popreo@10`` / ``poprsp@10``               smaller  Elliot, Zhu et al.
TailNDCG / TailHit /          ``tailndcg@10`` ...                         bigger   LLM-ESR
HeadNDCG / HeadHit
============================  ==========================================  =======  ===========

The last four rows are the literature's names (definitions in ``report.py``); the long tail they
use is ``long_tail`` (``groups.py``). A figure that is undefined for an evaluation (PopREO when
no test target is long-tail, TailNDCG without tail targets, ...) is left out of the result, as
GroupNDCG leaves out a group without users, rather than reported as NaN.

Group names in keys are lower-cased because RecBole lower-cases ``valid_metric``; a selection on
the tail group reads ``valid_metric: GroupNDCG@10[pop5]``. RecBole's registry is module-level
state (``recbole.evaluator.register``) that Config and Evaluator imported by name, so
``register()`` adds to those very objects; importing ``recbole_bifair.fairness`` calls it.
"""

import math

from recbole.evaluator import register as recbole_register
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

from recbole_bifair.fairness.report import report_of

NEEDS = ["rec.items", "rec.positives", "data.item_groups"]


class _GroupMetric(AbstractMetric):
    metric_type = EvaluatorType.RANKING
    metric_need = NEEDS

    def __init__(self, config):
        super().__init__(config)
        self.config = config

    def calculate_metric(self, dataobject):
        report = report_of(dataobject, self.config["topk"])
        return {key: round(float(value), self.decimal_place) for key, value in self.values(report).items()}

    def values(self, report):
        raise NotImplementedError


class _PerGroup(_GroupMetric):
    column = None
    #: Accuracy exists only for groups with evaluated users; exposure exists for every group.
    evaluated_only = True

    def values(self, report):
        name = type(self).__name__.lower()
        rows = report.by_group[report.by_group["n_users"] > 0] if self.evaluated_only else report.by_group
        return {f"{name}@{k}[{group.lower()}]": value
                for k in report.topk
                for group, value in zip(rows["group"], rows[f"{self.column}@{k}"])}


class GroupNDCG(_PerGroup):
    column = "ndcg"


class GroupRecall(_PerGroup):
    column = "recall"


class GroupHit(_PerGroup):
    column = "hit"


class GroupExposure(_PerGroup):
    column, evaluated_only = "exposure", False


class _Spread(_GroupMetric):
    column = None
    figure = None

    def values(self, report):
        name = type(self).__name__.lower()
        unfairness = report.unfairness()
        return {f"{name}@{k}": unfairness[f"{self.column}@{k}"][self.figure] for k in report.topk}


class NDCGGap(_Spread):
    column, figure, smaller = "ndcg", "gap", True


class NDCGCV(_Spread):
    column, figure, smaller = "ndcg", "cv", True


class NDCGMinMean(_Spread):
    column, figure = "ndcg", "min_mean"


class RecallGap(_Spread):
    column, figure, smaller = "recall", "gap", True


class RecallCV(_Spread):
    column, figure, smaller = "recall", "cv", True


class RecallMinMean(_Spread):
    column, figure = "recall", "min_mean"


class HitGap(_Spread):
    column, figure, smaller = "hit", "gap", True


class HitCV(_Spread):
    column, figure, smaller = "hit", "cv", True


class HitMinMean(_Spread):
    column, figure = "hit", "min_mean"


class ExposureDisparity(_Spread):
    column, figure, smaller = "exposure", "vs_interactions", True


class ItemExposureDisparity(_Spread):
    column, figure, smaller = "exposure", "vs_items", True


class MGU(_Spread):
    column, figure, smaller = "exposure", "mgu", True


class DGU(_Spread):
    column, figure, smaller = "exposure", "dgu", True


class _Popularity(_GroupMetric):
    """One of ``unfairness()["popularity@k"]``, left out where undefined."""

    def values(self, report):
        name = type(self).__name__.lower()
        unfairness = report.unfairness()
        return {f"{name}@{k}": unfairness[f"popularity@{k}"][name] for k in report.topk
                if not math.isnan(unfairness[f"popularity@{k}"][name])}


class ARP(_Popularity):
    smaller = True


class APLT(_Popularity):
    pass


class ACLT(_Popularity):
    pass


class PopREO(_Popularity):
    smaller = True


class PopRSP(_Popularity):
    smaller = True


class _HeadTail(_GroupMetric):
    """Accuracy of the rows whose target is a head (long-tail) item: a row of ``by_tail``."""
    side, column = None, None

    def values(self, report):
        name = type(self).__name__.lower()
        row = report.by_tail.set_index("group").loc[self.side]
        return {f"{name}@{k}": row[f"{self.column}@{k}"] for k in report.topk if row["n_users"] > 0}


class TailNDCG(_HeadTail):
    side, column = "tail", "ndcg"


class TailHit(_HeadTail):
    side, column = "tail", "hit"


class HeadNDCG(_HeadTail):
    side, column = "head", "ndcg"


class HeadHit(_HeadTail):
    side, column = "head", "hit"


METRICS = [
    GroupNDCG, GroupRecall, GroupHit, GroupExposure,
    NDCGGap, NDCGCV, NDCGMinMean, RecallGap, RecallCV, RecallMinMean, HitGap, HitCV, HitMinMean,
    ExposureDisparity, ItemExposureDisparity,
    MGU, DGU, ARP, APLT, ACLT, PopREO, PopRSP, TailNDCG, TailHit, HeadNDCG, HeadHit,
]


def register():
    """Add the metrics to RecBole's registry in place (idempotent)."""
    for metric in METRICS:
        name = metric.__name__.lower()
        recbole_register.metrics_dict[name] = metric
        recbole_register.metric_information[name] = metric.metric_need
        recbole_register.metric_types[name] = metric.metric_type
        if metric.smaller and name not in recbole_register.smaller_metrics:
            recbole_register.smaller_metrics.append(name)
