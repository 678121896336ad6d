"""The literature's item-fairness metrics (IFairLRS's MGU/DGU, Elliot's ARP/APLT/ACLT/PopREO/PopRSP,
LLM-ESR's head/tail split) against hand computations on a tiny ranking, their long-tail rules, the
edge cases (a group without test users, a group never recommended, k larger than the catalog),
and the fairness report of a ranking file with its input errors."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.evaluator.collector import DataStruct
from recbole.evaluator.evaluator import Evaluator

import recbole_bifair.fairness  # noqa: F401  (registers the metrics)
from recbole_bifair.cli import run_cli
from recbole_bifair.errors import DataError
from recbole_bifair.fairness.bootstrap import intervals
from recbole_bifair.fairness.file_report import file_report, main
from recbole_bifair.fairness.groups import PADDING_GROUP, ItemGroups
from recbole_bifair.fairness.report import GroupReport

L3 = 1 / math.log2(3)  # discount of rank 2

# Items 1..8: pop1 = {1, 2}, pop2 = {3, 4}, pop3 = {5}, pop4 = {6, 7}, pop5 = {8}.
# pop3 is recommended once but is no row's target (no test users); pop5 is never recommended
# and never a target, yet has training interactions.
NAMES = ["pop1", "pop2", "pop3", "pop4", "pop5"]
GROUP_OF = [PADDING_GROUP, 0, 0, 1, 1, 2, 3, 3, 4]
TRAIN = [0, 30, 20, 10, 8, 6, 3, 2, 1]  # 80 in all; per group 50, 18, 6, 5, 1
TOPK_ITEMS = [[1, 3, 6], [2, 1, 4], [1, 2, 3], [3, 1, 5]]
TARGETS = [6, 4, 7, 1]
POSITIVES = [[row, item] for row, item in enumerate(TARGETS)]
TOKENS = np.array(["[PAD]"] + [f"i{i}" for i in range(1, 9)], dtype=object)


def groups(rule="threshold", share=0.8, threshold=7):
    # threshold 7: long tail = {5, 6, 7, 8} (fewer than 7 training interactions), head = {1, 2, 3, 4}
    return ItemGroups("attribute", NAMES, GROUP_OF, TRAIN, TOKENS, "crafted").set_long_tail(rule, share, threshold)


@pytest.fixture
def report():
    return GroupReport(groups(), TOPK_ITEMS, POSITIVES, [1, 3])


def test_mgu_and_dgu_by_hand(report):
    # Top-3 slots per group: pop1 6, pop2 4, pop3 1, pop4 1, pop5 0 of 12; training shares /80.
    gu3 = np.array([6 / 12 - 50 / 80, 4 / 12 - 18 / 80, 1 / 12 - 6 / 80, 1 / 12 - 5 / 80, 0 - 1 / 80])
    gu1 = np.array([3 / 4 - 50 / 80, 1 / 4 - 18 / 80, 0 - 6 / 80, 0 - 5 / 80, 0 - 1 / 80])
    unfairness = report.unfairness()
    for k, gu in ((3, gu3), (1, gu1)):
        assert unfairness[f"exposure@{k}"]["mgu"] == pytest.approx(np.abs(gu).mean(), abs=1e-12)
        assert unfairness[f"exposure@{k}"]["dgu"] == pytest.approx(gu.max() - gu.min(), abs=1e-12)
        # MGU is the exposure disparity (total variation) spread over the groups.
        assert unfairness[f"exposure@{k}"]["mgu"] == pytest.approx(2 * unfairness[f"exposure@{k}"]["vs_interactions"] / 5)
    # The never recommended group still counts (GU = -its training share); pop3 has no users but counts too.
    assert report.by_group.set_index("group").loc[["pop3", "pop5"], "n_users"].tolist() == [0, 0]
    assert report.excluded_groups == ["pop3", "pop5"]


def test_popularity_bias_by_hand(report):
    popularity = report.unfairness()["popularity@3"]
    # Per row, the mean training count of its top 3 items.
    assert popularity["arp"] == pytest.approx(((30 + 10 + 3) + (20 + 30 + 8) + (30 + 20 + 10) + (10 + 30 + 6)) / 12)
    # Long-tail items per list: row 0 has 6, row 3 has 5, rows 1 and 2 none.
    assert popularity["aplt"] == pytest.approx((1 / 3 + 0 + 0 + 1 / 3) / 4)
    assert popularity["aclt"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    # P(R@3 | head) = 10 head slots / (4 rows * 4 head items); tail: 2 / (4 * 4).
    head, tail = 10 / 16, 2 / 16
    assert popularity["poprsp"] == pytest.approx(np.std([head, tail]) / np.mean([head, tail]))
    assert popularity["poprsp"] == pytest.approx(2 / 3)
    # Head targets 4 and 1 are both in their lists; tail targets: 6 found, 7 not.
    assert popularity["popreo"] == pytest.approx(np.std([1.0, 0.5]) / np.mean([1.0, 0.5]))
    assert report.unfairness()["popularity@1"]["aplt"] == 0  # first items 1, 2, 1, 3: all head


def test_head_tail_split_by_hand(report):
    tail = report.by_tail.set_index("group")
    assert tail["n_items"].tolist() == [4, 4] and tail["n_users"].tolist() == [2, 2]
    # Tail rows 0 (target 6 at rank 3) and 2 (target 7 missed); head rows 1 (rank 3) and 3 (rank 2).
    assert tail.loc["tail", "ndcg@3"] == pytest.approx((0.5 + 0) / 2)
    assert tail.loc["tail", "hit@3"] == pytest.approx(0.5)
    assert tail.loc["head", "ndcg@3"] == pytest.approx((0.5 + L3) / 2)
    assert tail.loc["head", "hit@3"] == 1.0
    assert tail.loc["head", "ndcg@1"] == 0 and tail.loc["tail", "hit@1"] == 0
    figures = report.figures(3)
    assert figures["tail_ndcg"] == pytest.approx(0.25) and figures["head_hit"] == 1.0
    assert figures["mgu"] == report.unfairness()["exposure@3"]["mgu"]


def test_registered_metrics_read_the_same_report(report):
    struct = DataStruct()
    struct.set("rec.items", torch.tensor(TOPK_ITEMS))
    struct.set("rec.positives", torch.tensor(POSITIVES))
    struct.set("data.item_groups", groups())
    metrics = ["MGU", "DGU", "ARP", "APLT", "ACLT", "PopREO", "PopRSP", "TailNDCG", "TailHit", "HeadNDCG", "HeadHit"]
    result = Evaluator({"metrics": metrics, "topk": [1, 3], "metric_decimal_place": 6}).evaluate(struct)
    figures = report.figures(3)
    expected = {"mgu@3": "mgu", "dgu@3": "dgu", "arp@3": "arp", "aplt@3": "aplt", "aclt@3": "aclt",
                "popreo@3": "popreo", "poprsp@3": "poprsp", "tailndcg@3": "tail_ndcg", "tailhit@3": "tail_hit",
                "headndcg@3": "head_ndcg", "headhit@3": "head_hit"}
    for key, name in expected.items():
        assert result[key] == round(figures[name], 6), key
    assert len(result) == len(metrics) * 2


def test_long_tail_rules():
    # Elliot: the short head is the smallest most-popular prefix reaching the share (30, 50, 60, 68 of 80).
    assert np.flatnonzero(groups("share", 0.8).tail).tolist() == [5, 6, 7, 8]
    assert np.flatnonzero(groups("share", 0.5).tail).tolist() == [3, 4, 5, 6, 7, 8]
    assert not groups("share", 1.0).tail.any()  # the whole catalog holds all interactions
    assert np.flatnonzero(groups("threshold", threshold=3).tail).tolist() == [7, 8]
    assert np.flatnonzero(groups("group").tail).tolist() == [8]  # the last group, pop5
    assert "pop5" in groups("group").tail_description and "LLM-ESR" in groups().tail_description
    # Items never seen in training are long-tail under every rule, and padding never is.
    unseen = ItemGroups.popularity([0, 5, 3, 0], 2, "interactions", TOKENS[:4]).set_long_tail("share", 1.0)
    assert unseen.tail.tolist() == [False, False, False, True]


def test_undefined_figures_are_left_out_not_invented():
    # long tail = pop5 alone: never recommended and never a target.
    struct = DataStruct()
    struct.set("rec.items", torch.tensor(TOPK_ITEMS))
    struct.set("rec.positives", torch.tensor(POSITIVES))
    struct.set("data.item_groups", groups("group"))
    metrics = ["APLT", "PopREO", "PopRSP", "TailNDCG", "HeadNDCG"]
    result = Evaluator({"metrics": metrics, "topk": [3], "metric_decimal_place": 6}).evaluate(struct)
    assert "popreo@3" not in result and "tailndcg@3" not in result
    assert result["aplt@3"] == 0
    assert result["poprsp@3"] == 1.0  # head 12 slots / (4 * 7 items), tail 0: |a - 0| / (a + 0)
    assert result["headndcg@3"] == round(((0.5 + 0.5) + L3 + 0) / 4, 6)  # rows 0, 1, 3 found at 3, 3, 2


def test_k_larger_than_the_catalog():
    # Three items, lists of five: slots 4 and 5 are empty (padding, id 0), as RecBole's top-k
    # fills them when k exceeds the catalog.
    small = ItemGroups("attribute", ["head", "rest"], [PADDING_GROUP, 0, 1, 1], [0, 5, 2, 1],
                       TOKENS[:4], "small").set_long_tail("group")
    report = GroupReport(small, [[1, 2, 3, 0, 0], [2, 1, 3, 0, 0]], [[0, 3], [1, 1]], [5])
    by_group = report.by_group.set_index("group")
    assert by_group["exposure@5"].tolist() == pytest.approx([2 / 6, 4 / 6])  # 6 real slots, not 10
    popularity = report.unfairness()["popularity@5"]
    assert popularity["arp"] == pytest.approx((5 + 2 + 1) / 3)  # over the 3 items each list holds
    assert popularity["aplt"] == pytest.approx(2 / 3) and popularity["aclt"] == 2
    assert popularity["poprsp"] == 0  # head 2 / (2 rows * 1 item) = tail 4 / (2 rows * 2 items)
    assert report.overall["ndcg@5"] == pytest.approx((0.5 + L3) / 2)
    gu = np.array([2 / 6 - 5 / 8, 4 / 6 - 3 / 8])
    assert report.unfairness()["exposure@5"]["mgu"] == pytest.approx(np.abs(gu).mean())


def test_intervals_are_percentiles_of_the_defined_draws():
    draws = {"a": np.arange(101, dtype=float), "b": np.array([np.nan, 1.0, 3.0]), "c": np.array([np.nan, np.nan])}
    got = intervals({"a": 50.0, "b": 2.0, "c": math.nan}, draws, level=0.9)
    assert (got["a"]["low"], got["a"]["high"]) == pytest.approx((5.0, 95.0))
    assert got["a"]["std"] == pytest.approx(np.std(np.arange(101)))
    assert (got["b"]["low"], got["b"]["high"]) == pytest.approx((1.1, 2.9))
    assert math.isnan(got["c"]["low"]) and math.isnan(got["c"]["std"])


def write_files(folder, rows=None, items=None):
    rows = rows if rows is not None else [
        {"user": f"u{r}", "target": TOKENS[t], "topk": " ".join(TOKENS[TOPK_ITEMS[r]])} for r, t in enumerate(TARGETS)]
    items = items if items is not None else [
        {"item": TOKENS[i], "group": NAMES[GROUP_OF[i]], "train_count": TRAIN[i]} for i in range(1, 9)]
    rankings, item_groups = folder / "run.rankings.csv", folder / "run.item_groups.csv"
    pd.DataFrame(rows, columns=list(rows[0]) if rows else ["user", "target", "topk"]).to_csv(rankings, index=False)
    pd.DataFrame(items).to_csv(item_groups, index=False)
    return str(rankings), str(item_groups)


def test_file_report_computes_the_same_table(tmp_path, report, capsys):
    rankings, item_groups = write_files(tmp_path)
    loaded, table = file_report(rankings, item_groups, [1, 3], n_boot=200, seed=1,
                                long_tail="threshold", long_tail_threshold=7)
    assert loaded.to_json()["group_unfairness"] == report.to_json()["group_unfairness"]
    assert loaded.to_json()["tail_report"] == report.to_json()["tail_report"]
    at3 = table[table["k"] == 3].set_index("figure")
    for name, value in report.figures(3).items():
        assert at3.loc[name, "estimate"] == pytest.approx(value, nan_ok=True), name
    assert (at3["low"] <= at3["high"]).all()
    assert at3.loc["popreo", "low"] <= at3.loc["popreo", "estimate"] <= at3.loc["popreo", "high"]

    assert run_cli(main, [f"--rankings={rankings}", f"--item_groups={item_groups}", "--topk=3", "--n_boot=50",
                          "--long_tail=threshold", "--long_tail_threshold=7", f"--output={tmp_path}/out/fair"]) == 0
    printed = capsys.readouterr().out
    assert "long tail: items with fewer than 7 training interactions (LLM-ESR)" in printed
    assert "popularity@3: arp 17.2500" in printed
    written = json.loads((tmp_path / "out" / "fair.json").read_text())
    mgu = next(row for row in written["figures"] if row["figure"] == "mgu")
    assert mgu["estimate"] == pytest.approx(report.figures(3)["mgu"])
    assert pd.read_csv(tmp_path / "out" / "fair.csv").shape[0] == len(report.figures(3))


def test_file_report_default_k_is_the_list_length_and_padding_loads(tmp_path):
    rows = [{"user": "a", "target": "i3", "topk": "i1 i2 i3 [PAD] [PAD]"},
            {"user": "b", "target": "i1", "topk": "i2 i1 i3 [PAD] [PAD]"}]
    items = [{"item": "i1", "group": "head", "train_count": 5}, {"item": "i2", "group": "rest", "train_count": 2},
             {"item": "i3", "group": "rest", "train_count": 1}]
    report, _ = file_report(*write_files(tmp_path, rows, items), n_boot=0)
    assert report.topk == [5]
    assert report.unfairness()["popularity@5"]["aclt"] == 2  # the last group, rest, is the tail


@pytest.mark.parametrize("change, message", [
    (lambda rows, items: rows[2].update(topk="i1 nope i3"),
     r"run.rankings.csv row 4, column topk: item 'nope' is not in .*run.item_groups.csv"),
    (lambda rows, items: rows[3].update(target="i9"),
     r"run.rankings.csv row 5, column target: item 'i9' is not in .*run.item_groups.csv"),
    (lambda rows, items: rows[3].update(user="u1"),
     r"run.rankings.csv row 5, column user: 'u1' already appears in row 3; a rankings file has one row per evaluated user"),
    (lambda rows, items: [row.pop("target") for row in rows],
     r"run.rankings.csv row 1 \(header\): missing column\(s\) target; the file needs the columns user, target, topk"),
    (lambda rows, items: [item.pop("train_count") for item in items],
     r"run.item_groups.csv row 1 \(header\): missing column\(s\) train_count"),
    (lambda rows, items: items[4].update(train_count="many"),
     r"run.item_groups.csv row 6, column train_count: 'many' is not a count"),
    (lambda rows, items: items[5].update(item="i1"),
     r"run.item_groups.csv row 7, column item: 'i1' already appears in row 2"),
    (lambda rows, items: rows.clear(),
     r"run.rankings.csv has no row after the header \(row 1\)"),
    (lambda rows, items: rows[1].update(topk="i2 i1"),
     r"run.rankings.csv row 3, column topk: 2 items, row 2 has 3; pass k \(--topk\) no larger than the shortest list"),
])
def test_bad_ranking_files_name_the_file_and_row(tmp_path, change, message):
    rows = [{"user": f"u{r}", "target": TOKENS[t], "topk": " ".join(TOKENS[TOPK_ITEMS[r]])} for r, t in enumerate(TARGETS)]
    items = [{"item": TOKENS[i], "group": NAMES[GROUP_OF[i]], "train_count": TRAIN[i]} for i in range(1, 9)]
    change(rows, items)
    with pytest.raises(DataError, match=message):
        file_report(*write_files(tmp_path, rows, items), n_boot=0)


def test_empty_or_missing_files_are_named(tmp_path):
    rankings, item_groups = write_files(tmp_path)
    open(rankings, "w").close()
    with pytest.raises(DataError, match=r"run.rankings.csv is empty; row 1 must be the header user,target,topk"):
        file_report(rankings, item_groups, n_boot=0)
    with pytest.raises(DataError, match=r"nope.csv: no such file"):
        file_report(str(tmp_path / "nope.csv"), item_groups, n_boot=0)


def test_k_larger_than_the_lists_is_one_error_line(tmp_path, capsys):
    rankings, item_groups = write_files(tmp_path)
    assert run_cli(main, [f"--rankings={rankings}", f"--item_groups={item_groups}", "--topk=1,4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {rankings} row 2, column topk: 3 items, fewer than k = 4; "
                   f"pass a smaller k (--topk) or longer lists")
    assert run_cli(main, [f"--rankings={rankings}", "--n_boot=5"]) == 2
    assert "--item_groups=FILE is missing" in capsys.readouterr().err
    assert run_cli(main, [f"--rankings={rankings}", f"--item_groups={item_groups}", "--long_tail=pop"]) == 2
    assert "--long_tail=pop: choose one of group, share, threshold" in capsys.readouterr().err


def test_overall_yaml_defaults_match_the_code():
    from recbole_bifair.config import load_yaml_file, properties_dir
    from recbole_bifair.fairness.groups import GROUP_DEFAULTS, LONG_TAIL_DEFAULTS

    defaults = {**GROUP_DEFAULTS, **LONG_TAIL_DEFAULTS}
    listed = load_yaml_file(properties_dir() / "overall.yaml")
    assert {k: listed[k] for k in defaults} == defaults
