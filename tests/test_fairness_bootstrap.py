"""Bootstrap over evaluated users: a resample is the report of the duplicated rows, the spread
of overall NDCG matches the standard error of a mean, and a paired comparison of a run with
itself is exactly zero."""

import math

import numpy as np
import pytest

from recbole_bifair.fairness.bootstrap import bootstrap, figures, paired_difference
from recbole_bifair.fairness.groups import PADDING_GROUP, ItemGroups
from recbole_bifair.fairness.report import GroupReport


def random_run(n_rows=300, n_items=40, seed=0, second_target_every=7):
    rng = np.random.default_rng(seed)
    group_of = [PADDING_GROUP] + [i % 4 for i in range(n_items)]
    tokens = np.array(["[PAD]"] + [f"i{i}" for i in range(1, n_items + 1)], dtype=object)
    groups = ItemGroups("attribute", ["A", "B", "C", "D"], group_of, [0] + [1] * n_items, tokens, "random")
    topk = np.stack([rng.permutation(np.arange(1, n_items + 1))[:10] for _ in range(n_rows)])
    positives = [(r, int(rng.integers(1, n_items + 1))) for r in range(n_rows)]
    positives += [(r, int(rng.integers(1, n_items + 1))) for r in range(0, n_rows, second_target_every)]
    return groups, topk, np.array(positives)


def test_a_resample_is_the_report_of_the_duplicated_rows():
    groups, topk, positives = random_run(n_rows=30)
    rows = [3, 3, 0, 7, 29, 7, 7, 14]  # repeats, and rows 0/7/14 have two targets
    # Independent construction: copy the rows one by one, renumbering them.
    dup_topk = np.array([topk[r] for r in rows])
    dup_pos = np.array([(j, item) for j, r in enumerate(rows) for (row, item) in positives if row == r])
    report = GroupReport(groups, dup_topk, dup_pos, [10])
    got = figures(groups, topk, positives, 10, rows)
    assert got["ndcg"] == pytest.approx(report.overall["ndcg@10"], abs=1e-12)
    assert got["cv"] == pytest.approx(report.unfairness()["ndcg@10"]["cv"], abs=1e-12)
    assert got["min_mean"] == pytest.approx(report.unfairness()["ndcg@10"]["min_mean"], abs=1e-12)
    # No rows given: the plain report.
    full = GroupReport(groups, topk, positives, [10])
    assert figures(groups, topk, positives, 10)["cv"] == pytest.approx(full.unfairness()["ndcg@10"]["cv"])


def test_bootstrap_spread_of_overall_ndcg_is_the_standard_error():
    groups, topk, positives = random_run(n_rows=300, second_target_every=10**9)  # one target per row
    per_row = []
    for r in range(len(topk)):
        item = positives[positives[:, 0] == r][0, 1]
        hit = np.nonzero(topk[r] == item)[0]
        per_row.append(1 / math.log2(hit[0] + 2) if len(hit) else 0.0)
    standard_error = np.std(per_row, ddof=1) / math.sqrt(len(per_row))
    draws = bootstrap(groups, topk, positives, k=10, n_boot=400, seed=1)
    assert np.std(draws["ndcg"]) == pytest.approx(standard_error, rel=0.15)
    assert np.mean(draws["ndcg"]) == pytest.approx(np.mean(per_row), abs=2 * standard_error)
    assert draws["cv"].shape == (400,) and np.all(draws["cv"] >= 0)


def test_paired_difference_with_itself_is_zero_and_rows_must_match():
    groups, topk, positives = random_run(n_rows=50)
    users = np.arange(50)
    same = paired_difference((groups, topk, positives, users), (groups, topk, positives, users), n_boot=50)
    for name, d in same.items():
        assert d["estimate"] == 0 and d["low"] == 0 and d["high"] == 0, name
    other = random_run(n_rows=50, seed=3)
    diff = paired_difference((*other, users), (groups, topk, positives, users), n_boot=200)
    assert diff["ndcg"]["low"] <= diff["ndcg"]["estimate"] <= diff["ndcg"]["high"]
    with pytest.raises(ValueError, match="same rows"):
        paired_difference((groups, topk, positives, users), (groups, topk, positives, users[::-1]), n_boot=5)


def test_row_statistics_give_the_report_of_every_resample():
    """The fast path (column sums of per-row statistics) against the report built from the
    duplicated rows, for every figure, on rows with two targets, repeats and a row without any
    target in some groups; and an empty top-k slot (padding) in a list."""
    from recbole_bifair.fairness.bootstrap import RowStatistics, resample_indices

    groups, topk, positives = random_run(n_rows=60, second_target_every=4)
    topk = topk.copy()
    topk[5, 7:] = 0  # a list shorter than k: padding slots are not items
    stats = RowStatistics(groups, topk, positives, 10)
    reference = GroupReport(groups, topk, positives, [10]).figures(10)
    point = stats.point()
    assert set(point) == set(reference)
    for name in reference:
        assert point[name] == pytest.approx(reference[name], abs=1e-12, nan_ok=True), name
    indices = resample_indices(60, 12, seed=4)
    for rows, got in zip(indices, stats.resampled(indices)):
        expected = figures(groups, topk, positives, 10, rows)
        for name in expected:
            assert got[name] == pytest.approx(expected[name], abs=1e-12, nan_ok=True), name


def test_row_statistics_when_a_group_has_no_target_in_a_resample():
    """A resample without any target of a group leaves the group out of the spreads, as the
    report does (n_users = 0), and tail figures without tail targets are NaN in both."""
    from recbole_bifair.fairness.bootstrap import RowStatistics

    groups, topk, positives = random_run(n_rows=40, second_target_every=10**9)
    stats = RowStatistics(groups, topk, positives, 10)
    group_of = groups.group_of.numpy()
    rows = [r for r, item in positives if group_of[item] != 3][:15]  # no target of group D
    counts = np.bincount(rows, minlength=40)[None, :]
    got = stats.figures(stats.sums(counts)[0])
    expected = figures(groups, topk, positives, 10, rows)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-12, nan_ok=True), name
