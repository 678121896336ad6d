"""Per-group accuracy, exposure and unfairness: one computation, like fairlearn's MetricFrame.

``GroupReport`` computes, once, ``by_group`` (a DataFrame, one row per item group), ``overall``,
``by_tail`` (the same table for the two-way split head / long tail) and ``by_row`` (per evaluated
row: the popularity figures of its top-k list); everything else (``unfairness()``, ``figures()``,
the registered metrics, the logged table, the JSON, the figure and the bootstrap) is read from them.

Definitions (METHOD.md section 2):

- Every evaluated row (a user, or a test sample of sequential data) has one or more ground-truth
  items. Row ``r`` counts for group ``g`` when one of its ground-truth items is in ``g``; its
  ``ndcg/recall/hit@k`` for ``g`` are RecBole's formulas with only its ground-truth items of ``g``
  as relevant. ``U_g`` is the mean over the rows that count for ``g``. With one ground-truth item
  per row (leave-one-out) this is "the mean over users whose ground-truth item is in g"; with a
  single group it is RecBole's NDCG/Recall/Hit exactly.
- ``exposure@k``: the group's share of all top-k slots (padding never counts), so the shares sum
  to 1. ``train_share`` / ``item_share``: the group's share of training interactions / of items.
- Unfairness of ``U`` over the groups that have evaluated rows: ``gap = max - min``,
  ``cv = std / mean`` (population std), ``min_mean = min / mean`` (1 is fair). When every
  ``U_g`` is 0 the groups are equal: ``cv = 0``, ``min_mean = 1``. A group without evaluated rows
  has ``n_users = 0`` and no ``U_g``; it is left out of these figures and named in
  ``excluded_groups``.
- Exposure disparity: the total variation distance between exposure shares and training
  interaction shares, ``0.5 * sum_g |exposure_g - train_share_g|`` (``vs_items``: against item
  shares); 0 when exposure is proportional, 1 at most. Every group takes part.
- IFairLRS (Jiang et al., WWW 2024): the group proportion ``GP_g@k`` is ``exposure@k`` and the
  history proportion is ``train_share`` (the group's share of training interactions), so the
  group unfairness is ``GU_g@k = exposure_g@k - train_share_g``; ``mgu = mean_g |GU_g|`` and
  ``dgu = max_g GU_g - min_g GU_g``, over every group (``mgu`` is ``2 * vs_interactions / K``).
- Popularity bias (Elliot; Abdollahpouri et al. 2017/2019, Zhu et al. 2021), with the long tail
  of ``item_groups.tail`` and an item's popularity = its training interactions: per row, over the
  real items of its top-k list (padding slots are not items), ``arp`` = mean popularity, ``aplt``
  = share of long-tail items, ``aclt`` = number of long-tail items; each averaged over the rows
  (rows whose list holds no item are left out). ``by_tail`` has Zhu et al.'s
  ``rec_rate@k = P(R@k | g)`` (top-k slots of side g over n_rows * items of g: every item is a
  candidate, as in RecBole's sequential full ranking) and ``tpr@k = P(R@k | g, y=1)`` (test
  targets of side g found in the top-k over all test targets of side g); ``poprsp`` and
  ``popreo`` are std / mean of these over head and tail (``|a - b| / (a + b)``; 0 is fair).
- LLM-ESR's head/tail split: ``by_tail``'s ``ndcg@k`` / ``hit@k`` of the tail and head rows
  (users whose target is a long-tail / head item).
"""

import math
import os
from logging import getLogger

import numpy as np
import pandas as pd
from recbole.utils import EvaluatorType

from recbole_bifair.fairness import plots
from recbole_bifair.fairness.groups import PADDING_GROUP
from recbole_bifair.fairness.rankings import save_rankings

ACCURACY = ("ndcg", "recall", "hit")
SPREADS = ("gap", "cv", "min_mean")
POPULARITY = ("arp", "aplt", "aclt", "poprsp", "popreo")
TAIL_NAMES = ("head", "tail")
REPORT_KEY = "fairness.report"


class GroupReport:
    """Per-group metrics of one evaluation.

    Args:
        item_groups: :class:`~recbole_bifair.fairness.groups.ItemGroups` (its ``tail`` is the long tail).
        topk_items: ``(n_rows, >= max(topk))`` recommended internal item ids, best first (0: an
            empty slot, e.g. when k is larger than the catalog).
        positives: ``(n_pairs, 2)`` pairs ``(row, item id)`` of ground-truth items.
        topk: list of cut-offs k.
    """

    def __init__(self, item_groups, topk_items, positives, topk):
        self.item_groups = item_groups
        self.topk = sorted(int(k) for k in (topk if isinstance(topk, (list, tuple)) else [topk]))
        topk_items = np.asarray(topk_items, dtype=np.int64)
        positives = np.asarray(positives, dtype=np.int64)
        if positives.ndim != 2 or positives.shape[1] != 2:
            raise ValueError(f"positives must be (row, item id) pairs of shape (n, 2), not {positives.shape}")
        if topk_items.ndim != 2 or topk_items.shape[1] < max(self.topk):
            raise ValueError(f"top-k lists of shape {topk_items.shape} do not hold the {max(self.topk)} items topk asks for")
        topk_items = topk_items[:, :max(self.topk)]
        # A repeated pair is one relevant item, as in RecBole's positive matrix.
        positives = np.unique(positives, axis=0)
        self.n_rows = len(topk_items)
        self.by_group, self.overall, self.by_tail, self.by_row = self._compute(topk_items, positives)

    @classmethod
    def from_struct(cls, struct, topk):
        """From the data struct of a :class:`~recbole_bifair.fairness.collector.FairnessCollector`."""
        return cls(struct.get("data.item_groups"), struct.get("rec.items").numpy(),
                   struct.get("rec.positives").numpy(), topk)

    @property
    def metric_columns(self):
        return [f"{m}@{k}" for m in ACCURACY for k in self.topk]

    @property
    def exposure_columns(self):
        return [f"exposure@{k}" for k in self.topk]

    def _compute(self, topk_items, positives):
        groups = self.item_groups
        n_items = groups.n_items
        # (row, item) pairs as one integer each, so that membership is one vectorised isin.
        is_pos = np.isin(np.arange(self.n_rows)[:, None] * n_items + topk_items,
                         positives[:, 0] * n_items + positives[:, 1])
        by_group = self._partition(groups.group_of.numpy(), groups.names, topk_items, positives, is_pos)
        tail_of = groups.tail.astype(np.int64)
        tail_of[0] = PADDING_GROUP
        by_tail = self._partition(tail_of, TAIL_NAMES, topk_items, positives, is_pos, zhu=True)

        overall = _accuracy(is_pos, np.bincount(positives[:, 0], minlength=self.n_rows), self.topk)
        overall_row = {"group": "overall", "n_items": int(by_group["n_items"].sum()),
                       "n_train": int(by_group["n_train"].sum()), "n_users": self.n_rows}
        overall_row.update({c: overall[c] for c in self.metric_columns})
        overall_row.update({c: 1.0 for c in self.exposure_columns + ["train_share", "item_share"]})

        train_count, tail = groups.train_count.numpy(), groups.tail
        by_row = {}
        for k in self.topk:
            items = topk_items[:, :k]
            n_real = (items != 0).sum(axis=1).astype(float)
            n_real[n_real == 0] = np.nan  # a list without any item has no popularity figures
            n_tail = tail[items].sum(axis=1)
            by_row[f"arp@{k}"] = train_count[items].sum(axis=1) / n_real  # padding's count is 0
            by_row[f"aplt@{k}"] = n_tail / n_real
            by_row[f"aclt@{k}"] = np.where(np.isnan(n_real), np.nan, n_tail)
        return by_group, pd.Series(overall_row), by_tail, pd.DataFrame(by_row)

    def _partition(self, group_of, names, topk_items, positives, is_pos, zhu=False):
        """The per-group table of one partition of the items (``group_of``: id -> group, padding -1)."""
        n_groups = len(names)
        rec_group = group_of[topk_items]
        pos_rows, pos_group = positives[:, 0], group_of[positives[:, 1]]
        rows = []
        for g in range(n_groups):
            pos_len = np.bincount(pos_rows[pos_group == g], minlength=self.n_rows)
            rows.append(_accuracy(is_pos & (rec_group == g), pos_len, self.topk))
        real = group_of[1:]
        n_items = np.bincount(real, minlength=n_groups)
        n_train = np.bincount(real, weights=self.item_groups.train_count[1:].numpy(), minlength=n_groups).astype(np.int64)
        # Columns gathered first and framed once: a bootstrap builds thousands of these tables.
        table = {"group": list(names), "n_items": n_items, "n_train": n_train,
                 "n_users": [row["n_users"] for row in rows]}
        for column in self.metric_columns:
            table[column] = [row[column] for row in rows]
        slots = {}
        for k in self.topk:
            in_top = rec_group[:, :k]
            slots[k] = np.bincount(in_top[in_top != PADDING_GROUP], minlength=n_groups)
            table[f"exposure@{k}"] = _ratio(slots[k], slots[k].sum())
        table["train_share"] = _ratio(n_train, n_train.sum())
        table["item_share"] = _ratio(n_items, n_items.sum())
        if zhu:
            n_targets = np.bincount(pos_group[pos_group != PADDING_GROUP], minlength=n_groups)
            table["n_targets"] = n_targets
            for k in self.topk:
                table[f"rec_rate@{k}"] = _ratio(slots[k], self.n_rows * n_items)
                found = rec_group[:, :k][is_pos[:, :k]]
                table[f"tpr@{k}"] = _ratio(np.bincount(found, minlength=n_groups), n_targets)
        return pd.DataFrame(table)

    @property
    def excluded_groups(self):
        """Groups without evaluated rows: no accuracy, left out of gap / cv / min_mean."""
        return self.by_group.loc[self.by_group["n_users"] == 0, "group"].tolist()

    def unfairness(self):
        """``{"ndcg@10": {"gap", "cv", "min_mean", "excluded_groups"}, ...,
        "exposure@10": {"vs_interactions", "vs_items", "mgu", "dgu"}, ...,
        "popularity@10": {"arp", "aplt", "aclt", "poprsp", "popreo"}, ...}``, all derived from
        ``by_group``, ``by_tail`` and ``by_row``."""
        evaluated = self.by_group[self.by_group["n_users"] > 0]
        result = {}
        for column in self.metric_columns:
            result[column] = dict(spread(evaluated[column].to_numpy()), excluded_groups=self.excluded_groups)
        train_share = self.by_group["train_share"].to_numpy()
        for column in self.exposure_columns:
            exposure = self.by_group[column].to_numpy()
            group_unfairness = exposure - train_share  # IFairLRS's GU_g
            result[column] = {
                "vs_interactions": total_variation(exposure, train_share),
                "vs_items": total_variation(exposure, self.by_group["item_share"].to_numpy()),
                "mgu": float(np.mean(np.abs(group_unfairness))),
                "dgu": float(np.max(group_unfairness) - np.min(group_unfairness)),
            }
        for k in self.topk:
            result[f"popularity@{k}"] = {
                **{name: _nanmean(self.by_row[f"{name}@{k}"]) for name in ("arp", "aplt", "aclt")},
                "poprsp": spread(self.by_tail[f"rec_rate@{k}"].to_numpy())["cv"],
                "popreo": spread(self.by_tail[f"tpr@{k}"].to_numpy())["cv"],
            }
        return result

    def figures(self, k):
        """Every scalar figure at cut-off ``k`` in one flat dict (the row of a results table):
        overall ``ndcg``/``recall``/``hit``; ``gap``/``cv``/``min_mean`` of group NDCG and
        ``recall_gap``, ... ``hit_min_mean``; ``exposure_disparity``, ``item_exposure_disparity``,
        ``mgu``, ``dgu``; ``arp``, ``aplt``, ``aclt``, ``poprsp``, ``popreo``; ``head_ndcg``,
        ``tail_ndcg``, ``head_hit``, ``tail_hit``. NaN where a figure is undefined."""
        unfairness = self.unfairness()
        result = {m: float(self.overall[f"{m}@{k}"]) for m in ACCURACY}
        for m in ACCURACY:
            for name in SPREADS:
                result[name if m == "ndcg" else f"{m}_{name}"] = unfairness[f"{m}@{k}"][name]
        exposure = unfairness[f"exposure@{k}"]
        result.update(exposure_disparity=exposure["vs_interactions"], item_exposure_disparity=exposure["vs_items"],
                      mgu=exposure["mgu"], dgu=exposure["dgu"])
        result.update(unfairness[f"popularity@{k}"])
        tail = self.by_tail.set_index("group")
        for side in TAIL_NAMES:
            for m in ("ndcg", "hit"):
                result[f"{side}_{m}"] = float(tail.loc[side, f"{m}@{k}"])
        return result

    def to_json(self):
        """``{"group_report": [row, ...], "group_unfairness": {...}, "group_overall": row,
        "item_groups": ..., "tail_report": [head row, tail row], "long_tail": ...}`` with NaN
        (a group without evaluated rows) written as null."""
        return {
            "group_report": [_clean(row) for row in self.by_group.to_dict(orient="records")],
            "group_unfairness": _clean(self.unfairness()),
            "group_overall": _clean(self.overall.to_dict()),
            "item_groups": self.item_groups.description,
            "tail_report": [_clean(row) for row in self.by_tail.to_dict(orient="records")],
            "long_tail": self.item_groups.tail_description,
        }

    def format_table(self):
        """The per-group table, its unfairness lines and the head / long-tail table, as printed
        (4 decimals, ``n/a`` where a value is undefined)."""
        def number(value):
            return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}"

        table = pd.concat([self.by_group, self.overall.to_frame().T], ignore_index=True)
        lines = [f"item groups: {self.item_groups.description}",
                 table.to_string(index=False, float_format=number, na_rep="n/a")]
        for column, figures in self.unfairness().items():
            lines.append(f"{column}: " + ", ".join(
                f"{name} {number(value)}" for name, value in figures.items() if name != "excluded_groups"))
        if self.excluded_groups:
            lines.append(f"groups with n_users = 0 (no evaluated user; accuracy n/a and excluded from "
                         f"gap, cv and min_mean): {', '.join(self.excluded_groups)}")
        lines += [self.item_groups.tail_description,
                  self.by_tail.to_string(index=False, float_format=number, na_rep="n/a")]
        return "\n".join(lines)

    def log_table(self, logger):
        logger.info("per-group evaluation\n" + self.format_table())


def row_accuracy(hits, pos_len, k):
    """Per row, RecBole's NDCG / Recall / Hit@k (recbole/evaluator/metrics.py) with ``pos_len``
    relevant items: ``{"ndcg": ..., "recall": ..., "hit": ...}`` arrays of ``(n_rows,)``, 0 on rows
    with ``pos_len == 0`` (which no mean counts). ``hits``: ``(n_rows, >= k)`` bool."""
    hits = np.asarray(hits)[:, :k]
    pos_len = np.asarray(pos_len)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.concatenate([[0.0], np.cumsum(discount)])
    evaluated = pos_len > 0
    idcg = np.where(evaluated, ideal[np.minimum(pos_len, k)], 1.0)
    n_hits = hits.sum(axis=1)
    return {"ndcg": np.where(evaluated, (hits * discount).sum(axis=1) / idcg, 0.0),
            "recall": np.where(evaluated, n_hits / np.maximum(pos_len, 1), 0.0),
            "hit": (evaluated & (n_hits > 0)).astype(float)}


def _accuracy(hits, pos_len, topk):
    """``row_accuracy`` averaged over rows with ``pos_len > 0``, for every k of ``topk``, and
    their number ``n_users``; ``hits``: ``(n_rows, max k)`` bool, ``pos_len``: ``(n_rows,)``."""
    evaluated = pos_len > 0
    hits, pos_len = hits[evaluated], pos_len[evaluated]
    n_users = int(evaluated.sum())
    result = {"n_users": n_users}
    for k in topk:
        per_row = row_accuracy(hits, pos_len, k) if n_users else {}
        for m in ACCURACY:
            result[f"{m}@{k}"] = float(np.mean(per_row[m])) if n_users else np.nan
    return result


def spread(values):
    """``gap``, ``cv`` and ``min_mean`` of per-group utilities (see the module docstring)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return {"gap": math.nan, "cv": math.nan, "min_mean": math.nan}
    mean = values.mean()
    if mean == 0:
        return {"gap": 0.0, "cv": 0.0, "min_mean": 1.0}
    return {"gap": float(values.max() - values.min()), "cv": float(values.std() / mean),
            "min_mean": float(values.min() / mean)}


def report_of(struct, topk):
    """The GroupReport of one evaluation's data struct, computed once and kept in the struct, so
    that every metric and the end-of-run report read the same object."""
    if REPORT_KEY not in struct:
        if "rec.positives" not in struct or "data.item_groups" not in struct:
            raise RuntimeError(
                "item-group metrics and reports need recbole_bifair.fairness.FairnessCollector as the "
                "trainer's eval_collector, after its data_collect(train_data) (trainer.fit does it)"
            )
        struct.set(REPORT_KEY, GroupReport.from_struct(struct, topk))
    return struct.get(REPORT_KEY)


def _ratio(numerator, denominator):
    """Element-wise ``numerator / denominator`` with NaN where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.broadcast_to(np.asarray(denominator, dtype=float), numerator.shape)
    return np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=denominator != 0)


def _nanmean(values):
    values = np.asarray(values, dtype=float)
    return float(np.mean(values[~np.isnan(values)])) if (~np.isnan(values)).any() else math.nan


def total_variation(shares, reference):
    return float(0.5 * np.abs(np.asarray(shares) - np.asarray(reference)).sum())


def _clean(value):
    """JSON-ready copy: numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {key: _clean(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def end_of_run_report(config, trainer, test_data, run_dir, run_id):
    """Per-group report of the test evaluation that ``trainer.evaluate(test_data)`` just ran.

    Logs the table, writes ``<run_dir>/<run_id>.groups.png`` (and, with ``save_rankings: true``,
    ``<run_id>.rankings.csv`` and ``<run_id>.item_groups.csv``), and returns the entries for the
    run's result JSON: ``group_report``, ``group_unfairness``, ``group_overall``, ``item_groups``,
    ``group_figure`` and ``rankings_file`` / ``item_groups_file`` (paths or None). Value-based
    evaluations (no top-k lists) return ``{}``.
    """
    logger = getLogger()
    if config["eval_type"] != EvaluatorType.RANKING:
        logger.info("per-group report skipped: the evaluation is value-based, it has no top-k lists")
        return {}
    struct = getattr(trainer.eval_collector, "last_struct", None)
    if struct is None:
        raise RuntimeError("trainer.eval_collector must be a FairnessCollector that has evaluated test_data")
    if len(struct.get("rec.items")) != test_data.sample_size:
        raise RuntimeError(f"the last evaluation has {len(struct.get('rec.items'))} rows, "
                           f"test_data {test_data.sample_size}: call this right after trainer.evaluate(test_data)")
    report = report_of(struct, config["topk"])
    report.log_table(logger)
    result = report.to_json()
    figure_path = os.path.join(run_dir, f"{run_id}.groups.png")
    result["group_figure"] = plots.save_group_figure(
        report, figure_path, title=f"{run_id}: {report.item_groups.description}")
    result["rankings_file"] = result["item_groups_file"] = None
    if config["save_rankings"]:
        paths = save_rankings(run_dir, run_id, struct, test_data._dataset)
        result["rankings_file"], result["item_groups_file"] = paths
    return result
