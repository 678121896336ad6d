"""How much of a fairness figure is sampling noise: the bootstrap over evaluated users.

Group NDCG@10 of a tail group on ml-100k rests on about 190 test users and a handful of hits,
so its CV moves a lot when the test users change. ``bootstrap`` resamples the evaluated rows
(users) with replacement and recomputes every figure of
:class:`~recbole_bifair.fairness.report.GroupReport` (``GroupReport.figures``: overall accuracy,
the group spreads, exposure disparity, MGU/DGU, the popularity-bias figures, head/tail accuracy)
on each resample; ``intervals`` turns the draws into percentile intervals. Two runs evaluated on the
same rows (same split, same row order) are compared *paired*: ``paired_difference`` draws the
same resamples for both, which is the test of "is method A fairer than method B on these users".

Every figure is a function of sums over the rows of per-row statistics (a row's NDCG for each
group, its top-k slots per group, its targets, ...): ``RowStatistics`` computes them once per run,
and a resample's sums are its draw counts times that table, so 1000 resamples of 22k users are
a few matrix products instead of 1000 reports (``figures`` still builds the report, and the
tests hold the two equal).
"""

import numpy as np

from recbole_bifair.fairness.groups import PADDING_GROUP
from recbole_bifair.fairness.report import (ACCURACY, TAIL_NAMES, GroupReport, _ratio, row_accuracy,
                                            spread, total_variation)

#: Resamples whose draw counts are multiplied at once (memory: this many x rows floats).
CHUNK = 100


def _prepare(topk_items, positives):
    """Top-k lists, positive pairs sorted by row, and each row's [start, end) slice of them:
    computed once per run, reused by every resample."""
    topk_items = np.asarray(topk_items, dtype=np.int64)
    n_rows = len(topk_items)
    positives = np.unique(np.asarray(positives, dtype=np.int64).reshape(-1, 2), axis=0)  # sorted by row
    starts = np.searchsorted(positives[:, 0], np.arange(n_rows), side="left")
    ends = np.searchsorted(positives[:, 0], np.arange(n_rows), side="right")
    return topk_items, positives, starts, ends


def resample_indices(n_rows, n_boot, seed):
    """``(n_boot, n_rows)`` row indices drawn with replacement (the same for the same arguments)."""
    return np.random.default_rng(seed).integers(0, n_rows, size=(n_boot, n_rows))


def _figures(item_groups, prepared, k, rows=None):
    topk_items, positives, starts, ends = prepared
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        counts = ends[rows] - starts[rows]
        first = np.repeat(starts[rows], counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        positives = np.column_stack([np.repeat(np.arange(len(rows)), counts), positives[first + within, 1]])
        topk_items = topk_items[rows]
    return GroupReport(item_groups, topk_items, positives, [k]).figures(k)


def figures(item_groups, topk_items, positives, k, rows=None):
    """``GroupReport.figures(k)`` (``ndcg``, ``cv``, ``min_mean``, ``gap`` of group NDCG@k, ...,
    ``mgu``, ``aplt``, ``popreo``, ...) on ``rows`` (row indices, repeats allowed; all rows when None)."""
    return _figures(item_groups, _prepare(topk_items, positives), k, rows)


class RowStatistics:
    """Per-row additive statistics of one run from which every figure of
    ``GroupReport.figures(k)`` follows, so that the figures of rows drawn with repeats are
    functions of ``counts @ table`` (``counts[r]``: how often row ``r`` was drawn).

    Columns, per partition (``group``: the item groups; ``tail``: head / long tail) and part ``g``:
    ``users`` (1 when the row has a target in ``g``), ``ndcg``/``recall``/``hit`` (the row's
    accuracy for ``g``, 0 when it has none), ``slots`` (its top-k slots holding items of ``g``),
    ``targets`` (its targets in ``g``), ``found`` (those in its top-k); ``all.*`` the same over every
    target; ``pop.rows`` (1 when its list holds an item) and ``pop.arp``/``aplt``/``aclt``.
    """

    def __init__(self, item_groups, topk_items, positives, k):
        topk_items = np.asarray(topk_items, dtype=np.int64)[:, :k]
        positives = np.unique(np.asarray(positives, dtype=np.int64).reshape(-1, 2), axis=0)
        self.k, self.n_rows = k, len(topk_items)
        n_items = item_groups.n_items
        is_pos = np.isin(np.arange(self.n_rows)[:, None] * n_items + topk_items,
                         positives[:, 0] * n_items + positives[:, 1])
        # The constants of the figures (shares, long-tail sizes) from the report of the run itself.
        reference = GroupReport(item_groups, topk_items, positives, [k])
        self.train_share = reference.by_group["train_share"].to_numpy()
        self.item_share = reference.by_group["item_share"].to_numpy()
        self.tail_items = reference.by_tail["n_items"].to_numpy()
        columns = {}

        def accuracy(prefix, hits, pos_len):
            columns[f"{prefix}.users"] = (pos_len > 0).astype(float)
            for m, values in row_accuracy(hits, pos_len, k).items():
                columns[f"{prefix}.{m}"] = values

        accuracy("all", is_pos, np.bincount(positives[:, 0], minlength=self.n_rows))
        tail_of = item_groups.tail.astype(np.int64)
        tail_of[0] = PADDING_GROUP
        for name, group_of, n_parts in (("group", item_groups.group_of.numpy(), len(item_groups.names)),
                                        ("tail", tail_of, len(TAIL_NAMES))):
            rec_group, pos_group = group_of[topk_items], group_of[positives[:, 1]]
            for g in range(n_parts):
                in_g = rec_group == g
                pos_len = np.bincount(positives[pos_group == g, 0], minlength=self.n_rows)
                accuracy(f"{name}{g}", is_pos & in_g, pos_len)
                columns[f"{name}{g}.slots"] = in_g.sum(axis=1)
                columns[f"{name}{g}.targets"] = pos_len
                columns[f"{name}{g}.found"] = (is_pos & in_g).sum(axis=1)
        self.n_groups = len(item_groups.names)
        n_real = (topk_items != 0).sum(axis=1)
        listed = n_real > 0
        n_tail = item_groups.tail[topk_items].sum(axis=1)
        columns["pop.rows"] = listed.astype(float)
        columns["pop.arp"] = np.where(listed, item_groups.train_count.numpy()[topk_items].sum(axis=1)
                                      / np.maximum(n_real, 1), 0.0)
        columns["pop.aplt"] = np.where(listed, n_tail / np.maximum(n_real, 1), 0.0)
        columns["pop.aclt"] = np.where(listed, n_tail, 0)
        self.index = {name: i for i, name in enumerate(columns)}
        self.table = np.column_stack([np.asarray(v, dtype=float) for v in columns.values()])

    def sums(self, counts):
        """``(n, n_columns)`` column sums of ``n`` draws (``counts``: ``(n, n_rows)``)."""
        return np.asarray(counts, dtype=float) @ self.table

    def _parts(self, sums, name, stat, n_parts):
        return np.array([sums[self.index[f"{name}{g}.{stat}"]] for g in range(n_parts)])

    def figures(self, sums):
        """``GroupReport.figures(k)`` of the rows whose column sums are ``sums`` (one draw)."""
        column = lambda name: sums[self.index[name]]  # noqa: E731
        mean = lambda total, n: float(total / n) if n > 0 else np.nan  # noqa: E731
        result = {m: mean(column(f"all.{m}"), column("all.users")) for m in ACCURACY}
        users = self._parts(sums, "group", "users", self.n_groups)
        evaluated = users > 0
        for m in ACCURACY:
            utility = self._parts(sums, "group", m, self.n_groups)[evaluated] / users[evaluated]
            for name, value in spread(utility).items():
                result[name if m == "ndcg" else f"{m}_{name}"] = value
        slots = self._parts(sums, "group", "slots", self.n_groups)
        exposure = _ratio(slots, slots.sum())
        group_unfairness = exposure - self.train_share
        result.update(exposure_disparity=total_variation(exposure, self.train_share),
                      item_exposure_disparity=total_variation(exposure, self.item_share),
                      mgu=float(np.mean(np.abs(group_unfairness))),
                      dgu=float(np.max(group_unfairness) - np.min(group_unfairness)))
        for name in ("arp", "aplt", "aclt"):
            result[name] = mean(column(f"pop.{name}"), column("pop.rows"))
        n_sides = len(TAIL_NAMES)
        rec_rate = _ratio(self._parts(sums, "tail", "slots", n_sides), self.n_rows * self.tail_items)
        result["poprsp"] = spread(rec_rate)["cv"]
        tpr = _ratio(self._parts(sums, "tail", "found", n_sides), self._parts(sums, "tail", "targets", n_sides))
        result["popreo"] = spread(tpr)["cv"]
        for side_index, side in enumerate(TAIL_NAMES):
            for m in ("ndcg", "hit"):
                result[f"{side}_{m}"] = mean(column(f"tail{side_index}.{m}"), column(f"tail{side_index}.users"))
        return result

    def point(self):
        """The figures of the run itself (every row once)."""
        return self.figures(self.table.sum(axis=0))

    def resampled(self, indices):
        """``[figures]`` of each resample (a row of ``indices``: the drawn row numbers)."""
        draws = []
        for start in range(0, len(indices), CHUNK):
            chunk = indices[start:start + CHUNK]
            flat = (np.arange(len(chunk))[:, None] * self.n_rows + chunk).ravel()
            counts = np.bincount(flat, minlength=len(chunk) * self.n_rows).reshape(len(chunk), self.n_rows)
            draws += [self.figures(s) for s in self.sums(counts)]
        return draws


def bootstrap(item_groups, topk_items, positives, k=10, n_boot=500, seed=0):
    """``{figure: array of n_boot values}`` for every figure of ``GroupReport.figures``."""
    stats = RowStatistics(item_groups, topk_items, positives, k)
    draws = stats.resampled(resample_indices(stats.n_rows, n_boot, seed))
    return {name: np.array([d[name] for d in draws]) for name in draws[0]}


def intervals(point, draws, level=0.95):
    """``{figure: {"estimate", "low", "high", "std"}}``: the point estimate and the percentile
    interval of the bootstrap draws (resamples where a figure is undefined, e.g. no tail target
    drawn, are left out of its interval; NaN when every draw is)."""
    tail = (1 - level) / 2 * 100
    result = {}
    for name, estimate in point.items():
        values = draws[name][~np.isnan(draws[name])]
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan, np.nan)
        result[name] = {"estimate": estimate, "low": float(low), "high": float(high),
                        "std": float(np.std(values)) if len(values) else np.nan}
    return result


def paired_difference(run_a, run_b, k=10, n_boot=500, seed=0):
    """Bootstrap of ``figure(a) - figure(b)`` over the same resampled rows.

    ``run_a``/``run_b``: ``(item_groups, topk_items, positives, row_keys)``; ``row_keys`` (e.g.
    the user of each row) must be equal, so that row i is the same user in both runs.
    Returns ``{figure: {"estimate", "low", "high", "p_below_zero"}}`` with the 95% percentile
    interval.
    """
    (groups_a, topk_a, pos_a, keys_a), (groups_b, topk_b, pos_b, keys_b) = run_a, run_b
    if len(keys_a) != len(keys_b) or not np.array_equal(np.asarray(keys_a), np.asarray(keys_b)):
        raise ValueError("the two runs do not evaluate the same rows in the same order: a paired bootstrap "
                         "needs the same split and evaluation order (compare the user columns)")
    stats_a, stats_b = RowStatistics(groups_a, topk_a, pos_a, k), RowStatistics(groups_b, topk_b, pos_b, k)
    point_a, point_b = stats_a.point(), stats_b.point()
    indices = resample_indices(stats_a.n_rows, n_boot, seed)
    draws_a, draws_b = stats_a.resampled(indices), stats_b.resampled(indices)
    diffs = {name: [a[name] - b[name] for a, b in zip(draws_a, draws_b)] for name in point_a}
    result = {}
    for name, values in diffs.items():
        values = np.array(values)
        values = values[~np.isnan(values)]  # resamples where the figure is undefined in a run
        if not len(values):
            result[name] = {"estimate": point_a[name] - point_b[name], "low": np.nan, "high": np.nan,
                            "p_below_zero": np.nan}
            continue
        result[name] = {"estimate": point_a[name] - point_b[name], "low": float(np.percentile(values, 2.5)),
                        "high": float(np.percentile(values, 97.5)), "p_below_zero": float(np.mean(values < 0))}
    return result
