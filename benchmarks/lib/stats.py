"""The statistics behind the fairness tables: paired bootstrap comparisons of two rows on the same
test users, the Pareto check of BiFair rows against the baselines, and the gap to LLM-SASRec's
post-hoc accuracy-fairness curve.

``result_files`` is ``{row: [result JSON per seed]}``; ``seeds`` is one list for every row (each
row has a file per seed, in that order) or ``{row: its seeds}`` (a table of finished runs only,
where rows may have different seeds)."""

import functools
import json

from benchmarks.lib.archive import ranking_files
from benchmarks.lib.methods import is_bifair
from benchmarks.lib.protocol import GROUPS, TOPK

N_BOOT = 1000  # bootstrap resamples of the test users (recbole_bifair/fairness/bootstrap.py)


@functools.lru_cache(maxsize=None)
def test_rankings(result_file):
    """``(item_groups, topk_items, positives, users)`` of a run's saved test rankings (read once
    per file: the paired checks read the same runs many times; nothing modifies the arrays)."""
    import pandas as pd

    from recbole_bifair.fairness.rankings import load_rankings

    rankings, item_groups = ranking_files(result_file)
    groups, topk, positives = load_rankings(rankings, item_groups)
    users = pd.read_csv(rankings, dtype=str, usecols=["user"])["user"].to_numpy()
    return groups, topk, positives, users


def item_split_unfairness(groups, topk, positives):
    """Group NDCG@k of the same test rankings under the equal-item-count popularity split."""
    from recbole_bifair.fairness.groups import ItemGroups
    from recbole_bifair.fairness.report import GroupReport

    by_items = ItemGroups.popularity(groups.train_count.numpy(), GROUPS, "items", groups.item_tokens)
    report = GroupReport(by_items, topk, positives, [TOPK])
    return report.by_group[f"ndcg@{TOPK}"].tolist(), report.unfairness()[f"ndcg@{TOPK}"]


def test_point(path):
    """``(NDCG@10, CV of group NDCG@10)`` of a run's test result."""
    with open(path) as f:
        t = json.load(f)["test_result"]
    return t[f"ndcg@{TOPK}"], t[f"ndcgcv@{TOPK}"]


def seeds_of(result_files, seeds, method):
    """``{seed: result file}`` of ``method``."""
    return dict(zip(seeds[method] if isinstance(seeds, dict) else seeds, result_files[method]))


def covers(result_files, seeds, method, baseline):
    """Whether ``baseline`` has a finished run for every seed of ``method`` (so they can be paired)."""
    return baseline in result_files and set(seeds_of(result_files, seeds, method)) <= set(
        seeds_of(result_files, seeds, baseline))


def paired_differences(result_files, seeds, method="BiFair", baseline="LLM-SASRec"):
    """``[(seed, paired_difference)]``: per seed of ``method``, the paired bootstrap (same resampled
    test users, resampling seeded by the seed) of method minus baseline. The baseline must have
    every seed of the method."""
    from recbole_bifair.fairness.bootstrap import paired_difference

    if not covers(result_files, seeds, method, baseline):
        raise ValueError(f"{baseline} lacks a finished run for some seed of {method}: no paired comparison")
    base = seeds_of(result_files, seeds, baseline)
    return [(seed, paired_difference(test_rankings(ours), test_rankings(base[seed]), TOPK, N_BOOT, seed=seed))
            for seed, ours in seeds_of(result_files, seeds, method).items()]


def paired_by_method(result_files, seeds, baseline="LLM-SASRec"):
    """``{method: paired_differences}`` of every BiFair row (name starting with ``BiFair``) whose
    seeds ``baseline`` all has; empty without the baseline. Computed once, read by both the
    ``cv_paired_hi`` column and the .md lines."""
    if baseline not in result_files:
        return {}
    return {m: paired_differences(result_files, seeds, m, baseline) for m in result_files
            if is_bifair(m) and result_files[m] and covers(result_files, seeds, m, baseline)}


def add_cv_paired_hi(table, paired):
    """``table`` with ``cv_paired_hi``: the highest over seeds of the 95% interval's upper end of CV
    minus the baseline's (NaN when a seed's interval is undefined, and for rows not in ``paired``)."""
    import numpy as np

    table = table.copy()
    table["cv_paired_hi"] = [float(np.max([d["cv"]["high"] for _, d in paired[m]])) if paired.get(m) else np.nan
                             for m in table["method"]]
    return table


def dominates(result_files, seeds, method, base):
    """``(at least as good in both point estimates, better beyond the noise in one)`` of row ``base``
    against row ``method`` on the method's seeds (see ``add_dominance``)."""
    import numpy as np

    from recbole_bifair.fairness.bootstrap import paired_difference

    ours, theirs = seeds_of(result_files, seeds, method), seeds_of(result_files, seeds, base)
    ours_ndcg, ours_cv = np.mean([test_point(p) for p in ours.values()], axis=0)
    base_ndcg, base_cv = np.mean([test_point(theirs[s]) for s in ours], axis=0)
    if not (base_ndcg >= ours_ndcg and base_cv <= ours_cv):
        return False, False
    diffs = [paired_difference(test_rankings(theirs[seed]), test_rankings(of), TOPK, N_BOOT, seed=seed)
             for seed, of in ours.items()]
    return True, all(d["ndcg"]["low"] > 0 for d in diffs) or all(d["cv"]["high"] < 0 for d in diffs)


def add_dominance(table, result_files, seeds):
    """``table`` with the Pareto check (docs/selection.md) on BiFair rows.

    A baseline row (any row not named ``BiFair...``) dominates a BiFair row when its mean
    NDCG@10 is at least the BiFair row's and its mean CV at most (``dominated_by_point``), and it
    is better beyond the bootstrap noise in one of the two (``dominated_by``): in every seed, the
    paired 95% interval of the baseline minus the BiFair row on the same test users excludes 0 in
    the baseline's favour (NDCG above 0, or CV below 0). Means are over the BiFair row's seeds,
    which the baseline must all have (with one list for all rows these are the table's means).
    Names are joined by ``"; "``; empty: none. Non-BiFair rows get empty strings."""
    table = table.copy()
    point, noise = [], []
    for method in table["method"]:
        found, beyond = [], []
        for base in table["method"] if is_bifair(method) else []:
            if is_bifair(base) or not covers(result_files, seeds, method, base):
                continue
            at_least, better = dominates(result_files, seeds, method, base)
            found += [base] if at_least else []
            beyond += [base] if better else []
        point.append("; ".join(found))
        noise.append("; ".join(beyond))
    table["dominated_by_point"] = point
    table["dominated_by"] = noise
    return table


def curve_cv(points, ndcg):
    """CV of an accuracy-fairness curve at accuracy ``ndcg``; ``points`` are ``(NDCG@10, CV)``.

    The curve is the points' lower envelope (those no other point matches in NDCG@10 and beats in
    CV), linear between neighbours in NDCG@10 (a setting between two measured ones, e.g. a
    ``posthoc_beta`` between two swept values, is taken to trade at the rate of the segment).
    Below the least accurate envelope point: that point's CV (it is as accurate and fairer);
    above the most accurate one: None (no point of the curve is as accurate)."""
    front = sorted({(n, c) for n, c in points if not any(m >= n and d < c or m > n and d <= c for m, d in points)})
    if not front or ndcg > front[-1][0]:
        return None
    if ndcg <= front[0][0]:
        return front[0][1]
    for (n0, c0), (n1, c1) in zip(front, front[1:]):
        if n0 <= ndcg <= n1:
            return c0 + (c1 - c0) * (ndcg - n0) / (n1 - n0)
    raise AssertionError("unreachable: ndcg lies inside the envelope's range")


def is_posthoc_curve(method):
    """The rows of LLM-SASRec's post-hoc curve: LLM-SASRec itself (``posthoc_beta`` 0) and ``PostHoc`` points."""
    return method in ("LLM-SASRec", "PostHoc") or method.startswith("PostHoc[")


def curve_gaps(result_files, seeds, method, curve_rows):
    """``{seed: (gap, why)}`` of row ``method``: its CV minus the curve's (``curve_cv`` through the
    ``curve_rows`` of that seed) at its NDCG@10; NaN with ``why`` ``above`` (more accurate than
    every point) or ``no curve`` (fewer than two points)."""
    gaps = {}
    for seed, path in seeds_of(result_files, seeds, method).items():
        points = [test_point(by_seed[seed]) for by_seed in
                  (seeds_of(result_files, seeds, m) for m in curve_rows) if seed in by_seed]
        ndcg, cv = test_point(path)
        at = curve_cv(points, ndcg) if len(points) >= 2 else None
        gaps[seed] = (float("nan"), "no curve" if len(points) < 2 else "above") if at is None else (cv - at, "")
    return gaps


def add_posthoc_curve_gap(table, result_files, seeds):
    """``table`` with ``cv_minus_posthoc_curve`` on BiFair rows: per seed of the row, its test CV
    minus the CV of LLM-SASRec's post-hoc curve of the same seed (LLM-SASRec and every ``PostHoc``
    row with that seed) at the row's NDCG@10 (``curve_gaps``); the mean over the row's seeds.
    Below 0: fairer than post-hoc debiasing at equal accuracy, beyond the curve, not only beyond
    its measured points (``dominated_by``). NaN when a seed has fewer than two curve points or the
    row is more accurate than every point of the curve.
    ``cv_minus_posthoc_curve_per_seed`` holds the per-seed gaps as text (``2020:+0.056 ...``;
    ``above`` for a seed more accurate than every curve point, ``no curve`` for one with fewer than
    two curve points), so that one such seed, which makes the mean NaN, does not hide the others."""
    import numpy as np

    table = table.copy()
    curve_rows = [m for m in table["method"] if is_posthoc_curve(m)]
    gaps, texts = [], []
    for method in table["method"]:
        per_seed = curve_gaps(result_files, seeds, method, curve_rows) if is_bifair(method) else {}
        gaps.append(float(np.mean([gap for gap, _ in per_seed.values()])) if per_seed else np.nan)
        texts.append(" ".join(f"{seed}:" + (why or f"{gap:+.3f}") for seed, (gap, why) in sorted(per_seed.items())))
    table["cv_minus_posthoc_curve"] = gaps
    table["cv_minus_posthoc_curve_per_seed"] = texts
    return table
