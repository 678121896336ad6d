"""GroupReport on crafted rankings: hand-computed values, RecBole's own metrics with one group,
exposure shares, groups without users, and one set of numbers behind table, JSON and figure."""

import json
import logging
import math

import numpy as np
import pytest
import torch
from recbole.evaluator.collector import DataStruct
from recbole.evaluator.evaluator import Evaluator
from recbole.evaluator.metrics import NDCG, Hit, Recall

import recbole_bifair.fairness  # noqa: F401  (registers the metrics)
from recbole_bifair.fairness import plots
from recbole_bifair.fairness.groups import PADDING_GROUP, ItemGroups
from recbole_bifair.fairness.report import GroupReport, spread

L3 = 1 / math.log2(3)  # discount of rank 2

# Items 1..7 in groups A = {1, 2}, B = {3, 4, 5}, C = {6}, D = {7}; D is never a target.
NAMES = ["A", "B", "C", "D"]
GROUP_OF = [PADDING_GROUP, 0, 0, 1, 1, 1, 2, 3]
TRAIN = [0, 10, 8, 3, 2, 1, 0, 0]
TOPK_ITEMS = [[1, 3, 6], [2, 1, 4], [5, 4, 3], [1, 2, 3], [6, 2, 5]]
POSITIVES = [[0, 3], [1, 1], [2, 5], [3, 4], [4, 6], [4, 5]]  # row 4 has two targets, in C and B


def crafted_groups():
    tokens = np.array(["[PAD]"] + [f"i{i}" for i in range(1, 8)], dtype=object)
    return ItemGroups("attribute", NAMES, GROUP_OF, TRAIN, tokens, "crafted")


@pytest.fixture
def report():
    return GroupReport(crafted_groups(), TOPK_ITEMS, POSITIVES, [1, 3])


def test_hand_computed_group_accuracy(report):
    table = report.by_group.set_index("group")
    assert table["n_users"].tolist() == [1, 4, 1, 0]
    assert table["n_items"].tolist() == [2, 3, 1, 1]
    assert table["n_train"].tolist() == [18, 6, 0, 0]
    # A: row 1 finds item 1 at rank 2.
    assert table.loc["A", ["ndcg@1", "ndcg@3", "recall@3", "hit@1", "hit@3"]].tolist() == pytest.approx([0, L3, 1, 0, 1])
    # B: rows 0 (rank 2), 2 (rank 1), 3 (miss), 4 (its B target, item 5, at rank 3).
    assert table.loc["B", "ndcg@3"] == pytest.approx((L3 + 1 + 0 + 0.5) / 4)
    assert table.loc["B", "ndcg@1"] == pytest.approx(1 / 4)
    assert table.loc["B", "recall@3"] == pytest.approx(3 / 4)
    # C: row 4's C target, item 6, at rank 1.
    assert table.loc["C", ["ndcg@1", "ndcg@3", "recall@1", "hit@3"]].tolist() == pytest.approx([1, 1, 1, 1])
    # Overall: row 4 has two targets, at ranks 1 and 3.
    row4 = (1 + 0.5) / (1 + L3)
    assert report.overall["ndcg@3"] == pytest.approx((L3 + L3 + 1 + 0 + row4) / 5)
    assert report.overall["recall@1"] == pytest.approx((1 + 0.5) / 5)
    assert report.overall["n_users"] == 5


def test_hand_computed_exposure_and_unfairness(report):
    table = report.by_group.set_index("group")
    assert table["exposure@3"].tolist() == pytest.approx([6 / 15, 7 / 15, 2 / 15, 0])
    assert table["exposure@1"].tolist() == pytest.approx([3 / 5, 1 / 5, 1 / 5, 0])
    for k in (1, 3):
        assert table[f"exposure@{k}"].sum() == pytest.approx(1.0)
    assert table["train_share"].tolist() == pytest.approx([18 / 24, 6 / 24, 0, 0])
    assert table["item_share"].tolist() == pytest.approx([2 / 7, 3 / 7, 1 / 7, 1 / 7])

    unfairness = report.unfairness()
    utilities = np.array([L3, (L3 + 1.5) / 4, 1.0])  # A, B, C; D has no users
    assert unfairness["ndcg@3"]["gap"] == pytest.approx(1.0 - (L3 + 1.5) / 4)
    assert unfairness["ndcg@3"]["cv"] == pytest.approx(np.sqrt(np.mean((utilities - utilities.mean()) ** 2)) / utilities.mean())
    assert unfairness["ndcg@3"]["min_mean"] == pytest.approx(utilities.min() / utilities.mean())
    assert unfairness["ndcg@3"]["excluded_groups"] == ["D"]
    assert unfairness["exposure@3"]["vs_interactions"] == pytest.approx(0.5 * (0.35 + (7 / 15 - 0.25) + 2 / 15))
    assert unfairness["exposure@3"]["vs_items"] == pytest.approx(
        0.5 * (abs(6 / 15 - 2 / 7) + abs(7 / 15 - 3 / 7) + abs(2 / 15 - 1 / 7) + 1 / 7))


def test_group_without_users_is_reported_and_excluded(report, caplog):
    table = report.by_group.set_index("group")
    assert table.loc["D", "n_users"] == 0
    assert all(math.isnan(table.loc["D", c]) for c in report.metric_columns)
    assert table.loc["D", "exposure@3"] == 0  # exposure is still defined for it

    rows = {row["group"]: row for row in json.loads(json.dumps(report.to_json()))["group_report"]}
    assert rows["D"]["n_users"] == 0 and rows["D"]["ndcg@3"] is None

    caplog.set_level(logging.INFO)
    report.log_table(logging.getLogger())
    d_line = next(line for line in caplog.text.splitlines() if line.strip().startswith("D "))
    assert d_line.split()[4:10] == ["n/a"] * 6
    assert "groups with n_users = 0 (no evaluated user; accuracy n/a and excluded from gap, cv and min_mean): D" in caplog.text


def test_registered_metrics_read_the_same_report(report):
    struct = DataStruct()
    struct.set("rec.items", torch.tensor(TOPK_ITEMS))
    struct.set("rec.positives", torch.tensor(POSITIVES))
    struct.set("data.item_groups", crafted_groups())
    metrics = ["GroupNDCG", "GroupExposure", "NDCGGap", "NDCGCV", "NDCGMinMean", "RecallGap",
               "HitMinMean", "ExposureDisparity", "ItemExposureDisparity"]
    result = Evaluator({"metrics": metrics, "topk": [1, 3], "metric_decimal_place": 6}).evaluate(struct)
    unfairness = report.unfairness()
    table = report.by_group.set_index("group")
    assert result["groupndcg@3[b]"] == round(table.loc["B", "ndcg@3"], 6)
    assert "groupndcg@3[d]" not in result  # no users: no value invented
    assert result["groupexposure@3[d]"] == 0
    assert result["ndcggap@3"] == round(unfairness["ndcg@3"]["gap"], 6)
    assert result["ndcgcv@1"] == round(unfairness["ndcg@1"]["cv"], 6)
    assert result["ndcgminmean@3"] == round(unfairness["ndcg@3"]["min_mean"], 6)
    assert result["recallgap@3"] == round(unfairness["recall@3"]["gap"], 6)
    assert result["hitminmean@1"] == round(unfairness["hit@1"]["min_mean"], 6)
    assert result["exposuredisparity@3"] == round(unfairness["exposure@3"]["vs_interactions"], 6)
    assert result["itemexposuredisparity@1"] == round(unfairness["exposure@1"]["vs_items"], 6)
    assert len(result) == (3 + 4) * 2 + 7 * 2  # GroupNDCG: 3 groups with users; GroupExposure: 4


def test_group_metrics_without_the_fairness_collector_say_so():
    struct = DataStruct()
    struct.set("rec.items", torch.tensor(TOPK_ITEMS))  # what RecBole's own Collector keeps
    with pytest.raises(RuntimeError, match="need recbole_bifair.fairness.FairnessCollector"):
        Evaluator({"metrics": ["NDCGCV"], "topk": [3], "metric_decimal_place": 4}).evaluate(struct)


def test_one_group_equals_recbole_ndcg_recall_hit():
    rng = np.random.default_rng(3)
    n_rows, n_items, topk = 60, 40, [1, 5, 10]
    topk_items = np.stack([rng.permutation(np.arange(1, n_items))[:10] for _ in range(n_rows)])
    positives = []
    for row in range(n_rows):
        # Half of the targets come from the row's own top-10, so that hits happen at every rank.
        pool = np.concatenate([topk_items[row], rng.integers(1, n_items, 10)])
        positives += [[row, item] for item in set(rng.choice(pool, rng.integers(1, 4)))]
    positives = np.array(positives)
    one_group = ItemGroups("attribute", ["all"], [PADDING_GROUP] + [0] * (n_items - 1),
                           [0] * n_items, np.array(["[PAD]"] * n_items, dtype=object), "one group")
    report = GroupReport(one_group, topk_items, positives, topk)

    pos_sets = [set(positives[positives[:, 0] == r, 1]) for r in range(n_rows)]
    pos_idx = np.array([[item in pos_sets[r] for item in topk_items[r]] for r in range(n_rows)], dtype=np.int64)
    struct = DataStruct()
    struct.set("rec.topk", torch.tensor(np.hstack([pos_idx, [[len(s)] for s in pos_sets]])))
    config = {"topk": topk, "metric_decimal_place": 12}
    recbole = {**NDCG(config).calculate_metric(struct), **Recall(config).calculate_metric(struct),
               **Hit(config).calculate_metric(struct)}
    assert 0 < recbole["ndcg@10"] < 1
    row = report.by_group.iloc[0]
    for key, value in recbole.items():
        assert row[key] == pytest.approx(value, abs=1e-11), key
        assert report.overall[key] == pytest.approx(value, abs=1e-11), key
    assert row["exposure@10"] == 1.0 and report.unfairness()["ndcg@10"]["gap"] == 0


def test_table_json_and_figure_show_the_same_numbers(report):
    as_json = json.loads(json.dumps(report.to_json()))
    table_lines = report.format_table().splitlines()
    headers = [line.split() for line in table_lines if line.split()[:2] == ["group", "n_items"]]
    assert len(headers) == 2  # the group table, then the head / long-tail table
    for rows, header in ((as_json["group_report"], headers[0]), (as_json["tail_report"], headers[1])):
        for row in rows:
            printed = dict(zip(header, next(line for line in table_lines if line.split()[0] == row["group"]).split()))
            for column, value in row.items():
                expected = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
                assert printed[column] == expected, (row["group"], column)
    for column, figures in as_json["group_unfairness"].items():
        line = next(line for line in table_lines if line.startswith(f"{column}: "))
        for name, value in figures.items():
            if name != "excluded_groups":
                assert f"{name} {'n/a' if value is None else f'{value:.4f}'}" in line
    assert as_json["group_unfairness"]["popularity@3"]["popreo"] is None  # D, the tail, is never a target

    fig = plots.draw_group_figure(report)
    ndcg_axes, share_axes, tail_axes = fig.axes
    heights = [patch.get_height() for patch in ndcg_axes.patches]
    expected = [row[f"ndcg@{k}"] or 0.0 for k in report.topk for row in as_json["group_report"]]
    assert heights == pytest.approx(expected, abs=1e-12)
    shares = ("exposure@3", "train_share", "item_share")
    heights = [patch.get_height() for patch in share_axes.patches]
    assert heights == pytest.approx([row[c] for c in shares for row in as_json["group_report"]], abs=1e-12)
    heights = [patch.get_height() for patch in tail_axes.patches]
    assert heights == pytest.approx([row[c] for c in shares for row in as_json["tail_report"]], abs=1e-12)
    unfairness = as_json["group_unfairness"]
    assert f"MGU@3 {unfairness['exposure@3']['mgu']:.3f}" in share_axes.get_title()
    assert f"APLT@3 {unfairness['popularity@3']['aplt']:.3f}" in tail_axes.get_title()
    assert "PopREO@3 n/a" in tail_axes.get_title()


def test_spread_conventions():
    assert spread([0.2, 0.2]) == {"gap": 0.0, "cv": 0.0, "min_mean": 1.0}
    assert spread([0.0, 0.0, 0.0]) == {"gap": 0.0, "cv": 0.0, "min_mean": 1.0}
    assert spread([0.1, 0.3]) == pytest.approx({"gap": 0.2, "cv": 0.5, "min_mean": 0.5})


def test_malformed_rankings_are_rejected():
    with pytest.raises(ValueError, match=r"top-k lists of shape \(5, 3\) do not hold the 10 items"):
        GroupReport(crafted_groups(), TOPK_ITEMS, POSITIVES, [10])
    # One target item per row must still come as (row, item) pairs, never be paired up silently.
    with pytest.raises(ValueError, match=r"positives must be \(row, item id\) pairs of shape \(n, 2\), not \(6,\)"):
        GroupReport(crafted_groups(), TOPK_ITEMS, [3, 1, 5, 4, 6, 5], [3])
