"""How much of a fairness figure is sampling noise: the bootstrap over evaluated users.

Group NDCG@10 of a tail group on ml-100k rests on about 190 test users and a handful of hits,
so its CV moves a lot when the test users change. ``bootstrap`` resamples the evaluated rows
(users) with replacement and recomputes every figure of
:class:`~recbole_bifair.fairness.report.GroupReport` (``GroupReport.figures``: overall accuracy,
the group spreads, exposure disparity, MGU/DGU, the popularity-bias figures, head/tail accuracy)
on each resample; ``intervals`` turns the draws into percentile intervals. Two runs evaluated on the
same rows (same split, same row order) are compared *paired*: ``paired_difference`` draws the
same resamples for both, which is the test of "is method A fairer than method B on these users".
"""

import numpy as np

from recbole_bifair.fairness.report import GroupReport


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


def bootstrap(item_groups, topk_items, positives, k=10, n_boot=500, seed=0):
    """``{figure: array of n_boot values}`` for every figure of ``GroupReport.figures``."""
    prepared = _prepare(topk_items, positives)
    draws = [_figures(item_groups, prepared, k, rows) for rows in resample_indices(len(prepared[0]), n_boot, seed)]
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
    run_a, run_b = _prepare(topk_a, pos_a), _prepare(topk_b, pos_b)
    point_a, point_b = _figures(groups_a, run_a, k), _figures(groups_b, run_b, k)
    diffs = {name: [] for name in point_a}
    for rows in resample_indices(len(run_a[0]), n_boot, seed):
        a, b = _figures(groups_a, run_a, k, rows), _figures(groups_b, run_b, k, rows)
        for name in diffs:
            diffs[name].append(a[name] - b[name])
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
