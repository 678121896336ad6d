"""Group metrics inside RecBole's evaluator and the end-of-run report, with real trained models:
registration and bigger/smaller flags, the report against RecBole's own metrics, the rankings
files against an independent recomputation, one DataFrame behind JSON and figure, sampled and
general-model evaluation, and RecBole's item metrics (fixed by SafeCollector) against their
definitions."""

import contextlib
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from recbole.evaluator import register as recbole_register

import recbole_bifair.fairness  # noqa: F401  (registers the metrics)
from recbole_bifair.errors import DataError
from recbole_bifair.fairness import FairnessCollector, GroupReport, end_of_run_report, plots
from recbole_bifair.fairness.metrics import METRICS
from recbole_bifair.fairness.rankings import load_rankings
from recbole_bifair.quick_start import build_config, prepare_run, run_bifair
from tests.datagen import make_dataset, tiny_config

GROUP_METRICS = ["GroupNDCG", "GroupHit", "GroupExposure", "NDCGCV", "NDCGGap", "NDCGMinMean", "ExposureDisparity"]
ITEM_METRICS = ["GiniIndex", "ItemCoverage", "AveragePopularity", "TailPercentage"]
LITERATURE_METRICS = ["MGU", "DGU", "ARP", "APLT", "ACLT", "PopREO", "PopRSP", "TailNDCG", "TailHit", "HeadNDCG", "HeadHit"]


def train_and_test(root, model="SASRec", **overrides):
    """Train one epoch with the FairnessCollector and evaluate on test, as the runner does."""
    with contextlib.chdir(root):
        config = build_config(model, config_dict=tiny_config(root, **overrides))
        _, (train_data, valid_data, test_data), _, trainer = prepare_run(config)
        trainer.eval_collector = FairnessCollector(config)
        trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        test_result = trainer.evaluate(test_data, load_best_model=True)
    return config, train_data, test_data, trainer, test_result


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    make_dataset(root)
    config, train_data, test_data, trainer, test_result = train_and_test(
        root, metrics=["Recall", "NDCG", "Hit"] + GROUP_METRICS + ITEM_METRICS + LITERATURE_METRICS, topk=[5, 10],
        eval_batch_size=16,
        valid_metric="NDCGCV@10", save_rankings=True)
    drawn = []
    real_draw = plots.draw_group_figure

    def recording_draw(report, title=None):
        drawn.append(report.by_group)
        return real_draw(report, title)

    plots.draw_group_figure = recording_draw
    try:
        report = end_of_run_report(config, trainer, test_data, str(root / "results"), "run")
    finally:
        plots.draw_group_figure = real_draw
    return {"root": root, "config": config, "train_data": train_data, "test_data": test_data,
            "trainer": trainer, "test_result": test_result, "report": report, "drawn": drawn}


def test_metrics_are_registered_with_their_direction(tmp_path):
    for metric in METRICS:
        name = metric.__name__.lower()
        assert recbole_register.metrics_dict[name] is metric
        assert (name in recbole_register.smaller_metrics) == metric.smaller
    make_dataset(tmp_path)
    expected = {"NDCGCV@10": False, "NDCGGap@10": False, "ExposureDisparity@10": False,
                "ItemExposureDisparity@10": False, "NDCGMinMean@10": True, "GroupNDCG@10[pop5]": True}
    for valid_metric, bigger in expected.items():
        config = build_config("SASRec", config_dict=tiny_config(tmp_path, valid_metric=valid_metric,
                                                                 metrics=GROUP_METRICS + ["ItemExposureDisparity"]))
        assert config["valid_metric_bigger"] is bigger, valid_metric


def test_group_metrics_in_the_evaluator_match_the_report(sasrec_run):
    result, report = sasrec_run["test_result"], sasrec_run["report"]
    rows = {row["group"]: row for row in report["group_report"]}
    for group, row in rows.items():
        for k in (5, 10):
            if row["n_users"]:
                assert result[f"groupndcg@{k}[{group}]"] == round(row[f"ndcg@{k}"], 4)
                assert result[f"grouphit@{k}[{group}]"] == round(row[f"hit@{k}"], 4)
            assert result[f"groupexposure@{k}[{group}]"] == round(row[f"exposure@{k}"], 4)
    for k in (5, 10):
        unfair = report["group_unfairness"]
        assert result[f"ndcgcv@{k}"] == round(unfair[f"ndcg@{k}"]["cv"], 4)
        assert result[f"ndcggap@{k}"] == round(unfair[f"ndcg@{k}"]["gap"], 4)
        assert result[f"ndcgminmean@{k}"] == round(unfair[f"ndcg@{k}"]["min_mean"], 4)
        assert result[f"exposuredisparity@{k}"] == round(unfair[f"exposure@{k}"]["vs_interactions"], 4)
        # The report's overall row is RecBole's own NDCG / Recall / Hit of the same evaluation.
        for metric in ("ndcg", "recall", "hit"):
            assert result[f"{metric}@{k}"] == round(report["group_overall"][f"{metric}@{k}"], 4)
        assert sum(row[f"exposure@{k}"] for row in rows.values()) == pytest.approx(1.0)
    assert sum(row["n_users"] for row in rows.values()) == report["group_overall"]["n_users"] == 40


def test_literature_metrics_in_the_evaluator_match_the_report(sasrec_run):
    result, report = sasrec_run["test_result"], sasrec_run["report"]
    unfair = report["group_unfairness"]
    tail = {row["group"]: row for row in report["tail_report"]}
    train = sasrec_run["train_data"].dataset
    counts = np.bincount(train.inter_feat[train.iid_field].numpy(), minlength=train.item_num)
    rec = sasrec_run["trainer"].eval_collector.last_struct.get("rec.items").numpy()
    for k in (5, 10):
        assert result[f"mgu@{k}"] == round(unfair[f"exposure@{k}"]["mgu"], 4)
        assert result[f"dgu@{k}"] == round(unfair[f"exposure@{k}"]["dgu"], 4)
        for name in ("arp", "aplt", "aclt", "poprsp", "popreo"):
            assert result[f"{name}@{k}"] == round(unfair[f"popularity@{k}"][name], 4), name
        assert result[f"tailndcg@{k}"] == round(tail["tail"][f"ndcg@{k}"], 4)
        assert result[f"headhit@{k}"] == round(tail["head"][f"hit@{k}"], 4)
        # ARP against the training item counter directly (RecBole's AveragePopularity is the same mean).
        assert result[f"arp@{k}"] == pytest.approx(counts[rec[:, :k]].mean(), abs=5e-5)
        assert result[f"arp@{k}"] == result[f"averagepopularity@{k}"]
    assert report["long_tail"].startswith("long tail: the last item group, pop5")
    assert tail["tail"]["n_users"] + tail["head"]["n_users"] == 40


def test_rankings_files_recompute_the_report(sasrec_run):
    report, test_data = sasrec_run["report"], sasrec_run["test_data"]
    rankings = pd.read_csv(report["rankings_file"])
    groups = pd.read_csv(report["item_groups_file"])
    assert list(rankings.columns) == ["user", "target", "topk"]
    assert list(groups.columns) == ["item", "group", "train_count"]
    assert os.path.dirname(report["rankings_file"]) == str(sasrec_run["root"] / "results")

    dataset = test_data._dataset
    test_users = dataset.id2token(dataset.uid_field, dataset.inter_feat[dataset.uid_field].numpy())
    test_items = dataset.id2token(dataset.iid_field, dataset.inter_feat[dataset.iid_field].numpy())
    assert sorted(zip(rankings["user"], rankings["target"])) == sorted(zip(test_users, test_items))

    group_of = dict(zip(groups["item"], groups["group"]))
    gains = {}
    for row in rankings.itertuples():
        ranked = row.topk.split(" ")
        assert len(ranked) == 10 and len(set(ranked)) == 10
        gain = 1 / math.log2(ranked.index(row.target) + 2) if row.target in ranked else 0.0
        gains.setdefault(group_of[row.target], []).append(gain)
    for row in report["group_report"]:
        if row["n_users"]:
            assert row["ndcg@10"] == pytest.approx(np.mean(gains[row["group"]]), abs=1e-12)
        else:
            assert row["group"] not in gains and row["ndcg@10"] is None
    for row in report["group_report"]:
        mine = groups[groups["group"] == row["group"]]
        assert (row["n_items"], row["n_train"]) == (len(mine), mine["train_count"].sum())


def test_rankings_files_load_back_into_the_same_report(sasrec_run, tmp_path):
    report = sasrec_run["report"]
    groups, topk_items, positives = load_rankings(report["rankings_file"], report["item_groups_file"])
    assert groups.names == [f"pop{g}" for g in range(1, 6)]
    reloaded = GroupReport(groups, topk_items, positives, [5, 10]).to_json()
    assert reloaded["group_report"] == report["group_report"]  # the same integers in, the same floats out
    assert reloaded["group_unfairness"] == report["group_unfairness"]

    rankings = pd.read_csv(report["rankings_file"])
    rankings.loc[3, "topk"] = rankings.loc[3, "topk"].replace(rankings.loc[3, "topk"].split()[0], "nope")
    rankings.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad.csv row 5, column topk: item 'nope' is not in .*item_groups.csv"):
        load_rankings(tmp_path / "bad.csv", report["item_groups_file"])


def test_json_table_and_figure_come_from_one_dataframe(sasrec_run, caplog):
    report, drawn = sasrec_run["report"], sasrec_run["drawn"]
    assert len(drawn) == 1
    by_group = drawn[0]
    assert json.loads(json.dumps(report["group_report"])) == report["group_report"]
    for row, (_, drawn_row) in zip(report["group_report"], by_group.iterrows()):
        for key, value in row.items():
            assert (value is None and math.isnan(drawn_row[key])) or drawn_row[key] == value
    with open(report["group_figure"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    leftovers = [name for name in os.listdir(sasrec_run["root"] / "results") if name.startswith(".")]
    assert leftovers == []


def test_report_must_follow_the_test_evaluation(sasrec_run):
    trainer, config = sasrec_run["trainer"], sasrec_run["config"]
    collector = trainer.eval_collector
    trainer.eval_collector = FairnessCollector(config)
    try:
        with pytest.raises(RuntimeError, match="FairnessCollector that has evaluated test_data"):
            end_of_run_report(config, trainer, sasrec_run["test_data"], str(sasrec_run["root"]), "x")
    finally:
        trainer.eval_collector = collector


def test_recbole_item_metrics_match_their_definitions(sasrec_run):
    result, train = sasrec_run["test_result"], sasrec_run["train_data"].dataset
    rec = sasrec_run["trainer"].eval_collector.last_struct.get("rec.items").numpy()
    num_items = train.item_num  # RecBole divides by item_num, padding included
    counts = np.bincount(train.inter_feat[train.iid_field].numpy(), minlength=num_items)
    seen = sorted((c, i) for i, c in enumerate(counts) if c > 0)
    tail = {i for _, i in seen[:max(int(len(seen) * 0.1), 1)]}
    for k in (5, 10):
        top = rec[:, :k]
        assert result[f"itemcoverage@{k}"] == pytest.approx(len(np.unique(top)) / num_items, abs=5e-5)
        times = np.sort(np.bincount(top.ravel(), minlength=num_items))
        i = np.arange(1, num_items + 1)
        gini = np.sum((2 * i - num_items - 1) * times) / (num_items * times.sum())
        assert result[f"giniindex@{k}"] == pytest.approx(gini, abs=5e-5)
        assert result[f"averagepopularity@{k}"] == pytest.approx(counts[top].mean(), abs=5e-5)
        assert result[f"tailpercentage@{k}"] == pytest.approx(np.isin(top, list(tail)).mean(), abs=5e-5)
    assert result["giniindex@10"] > 0 and result["averagepopularity@10"] > 0


def test_recbole_item_metrics_run_through_the_runner(tmp_path, monkeypatch):
    make_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = run_bifair(model="SASRec", config_dict=tiny_config(tmp_path, metrics=["NDCG"] + ITEM_METRICS))
    for metric in ITEM_METRICS:
        assert result["test_result"][f"{metric.lower()}@10"] > 0


def test_sampled_evaluation(tmp_path):
    make_dataset(tmp_path)
    eval_args = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": {"valid": "uni10", "test": "uni10"}}
    config, _, test_data, trainer, result = train_and_test(tmp_path, eval_args=eval_args, metrics=["NDCG", "Hit", "GroupNDCG"])
    report = end_of_run_report(config, trainer, test_data, str(tmp_path), "sampled")
    assert result["ndcg@10"] == round(report["group_overall"]["ndcg@10"], 4)
    assert result["hit@10"] == round(report["group_overall"]["hit@10"], 4)
    users = trainer.eval_collector.last_struct.get("rec.users").numpy()
    dataset = test_data._dataset
    assert sorted(users) == sorted(dataset.inter_feat[dataset.uid_field].numpy())


def test_stock_general_model_with_several_targets_per_user(tmp_path):
    make_dataset(tmp_path)
    config, _, test_data, trainer, result = train_and_test(
        tmp_path, model="BPR", metrics=["NDCG", "Recall", "GroupRecall", "NDCGCV"], valid_metric="NDCG@10",
        save_rankings=True, epochs=2,
        eval_args={"split": {"RS": [0.6, 0.2, 0.2]}, "order": "RO", "group_by": "user", "mode": "full"})
    report = end_of_run_report(config, trainer, test_data, str(tmp_path), "bpr")
    rankings = pd.read_csv(report["rankings_file"])
    assert rankings["target"].str.contains(" ").any()  # users with several test items
    assert rankings["user"].is_unique
    assert result["ndcg@10"] == round(report["group_overall"]["ndcg@10"], 4)
    assert result["recall@10"] == round(report["group_overall"]["recall@10"], 4)
    assert result["ndcgcv@10"] == round(report["group_unfairness"]["ndcg@10"]["cv"], 4)


def test_value_based_evaluation_has_no_group_report(tmp_path):
    make_dataset(tmp_path)
    config, _, test_data, trainer, result = train_and_test(
        tmp_path, model="FM", metrics=["AUC"], valid_metric="AUC", threshold={"rating": 3},
        train_neg_sample_args=None,
        eval_args={"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None, "mode": "labeled"})
    assert 0 <= result["auc"] <= 1
    assert end_of_run_report(config, trainer, test_data, str(tmp_path), "fm") == {}
    assert not any(name.startswith("fm") for name in os.listdir(tmp_path))


def test_runner_writes_the_group_report(tmp_path, monkeypatch):
    make_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = run_bifair(model="SASRec", config_dict=tiny_config(tmp_path, metrics=["NDCG"] + GROUP_METRICS, save_rankings=True))
    with open(result["result_file"]) as f:
        written = json.load(f)
    assert [row["group"] for row in written["group_report"]] == [f"pop{g}" for g in range(1, 6)]
    assert written["test_result"]["ndcgcv@10"] == round(written["group_unfairness"]["ndcg@10"]["cv"], 4)
    for key in ("group_figure", "rankings_file", "item_groups_file"):
        assert os.path.isfile(written[key])
