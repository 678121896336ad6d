"""The fairness benchmark's statistics and tables (``benchmarks.lib.stats``, ``benchmarks.lib.tables``):
the paired bootstrap column ``cv_paired_hi``, the Pareto check, the gap to the post-hoc curve, and
the .md and .csv written from them, on fake runs with saved test rankings."""

import json
import math
import os
import shutil

import pandas as pd
import pytest

from benchmarks.lib import plots, stats, tables
from benchmarks.lib.methods import folder_name
from recbole_bifair.fairness.bootstrap import paired_difference
from tests.benchmark_fixtures import fake_run, point_run, with_true_figures


def test_cv_paired_hi_is_the_highest_upper_end_over_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "N_BOOT", 60)
    seeds = [2020, 2021]
    quality = {"LLM-SASRec": 0.3, "BiFair": 0.6, "BiFair[outer_mu=0.5]": 0.5, "IPS": 0.4}
    files = {m: [fake_run(str(tmp_path / f"{folder_name(m)}-{s}"), s * 10 + i, q)
                 for s in seeds] for i, (m, q) in enumerate(quality.items())}
    paired = stats.paired_by_method(files, seeds)
    assert set(paired) == {"BiFair", "BiFair[outer_mu=0.5]"}
    table = stats.add_cv_paired_hi(tables.summarise(files), paired)
    for method in ("BiFair", "BiFair[outer_mu=0.5]"):
        by_hand = max(paired_difference(stats.test_rankings(ours), stats.test_rankings(base), 10, 60, seed=seed)
                      ["cv"]["high"] for seed, ours, base in zip(seeds, files[method], files["LLM-SASRec"]))
        got = table.set_index("method").loc[method, "cv_paired_hi"]
        assert math.isfinite(got) and got == pytest.approx(by_hand, abs=1e-12)
    assert table.set_index("method")[["cv_paired_hi"]].loc[["LLM-SASRec", "IPS"]].isna().all().all()
    # the .md lines read the same numbers
    lines = tables.paired_lines(paired["BiFair"], "BiFair")
    assert len(lines) == 2 and f"{paired['BiFair'][1][1]['cv']['high']:+.3f}]" in lines[1]
    # without LLM-SASRec: no paired numbers, the column is NaN
    alone = {m: f for m, f in files.items() if m != "LLM-SASRec"}
    assert stats.paired_by_method(alone, seeds) == {}
    # --compare A:B: any two rows, A minus B (here one BiFair setting against another)
    versus = stats.paired_differences(files, seeds, "BiFair[outer_mu=0.5]", "BiFair")
    versus_lines = tables.paired_lines(versus, "BiFair[outer_mu=0.5]")
    by_hand = paired_difference(stats.test_rankings(files["BiFair[outer_mu=0.5]"][0]),
                                stats.test_rankings(files["BiFair"][0]), 10, 60, seed=seeds[0])
    assert f"NDCG@10 {by_hand['ndcg']['estimate']:+.4f} [{by_hand['ndcg']['low']:+.4f}" in versus_lines[0]
    assert tables.comparisons(files, seeds, paired, [("BiFair[outer_mu=0.5]", "BiFair")]) == [
        ("BiFair", "LLM-SASRec", lines), ("BiFair[outer_mu=0.5]", "BiFair", versus_lines)]
    stem = str(tmp_path / "out" / "fairness-tiny")
    tables.write_tables(table, stem, "header", [("BiFair", "LLM-SASRec", lines),
                                                ("BiFair[outer_mu=0.5]", "BiFair", versus_lines)])
    md = open(stem + ".md").read()
    assert md.startswith("header\n\n| method ")
    assert "BiFair minus LLM-SASRec on the same test users (paired bootstrap, 60 resamples):" in md and lines[1] in md
    assert "BiFair[outer_mu=0.5] minus BiFair on the same test users" in md and versus_lines[0] in md
    # the CSV carries the columns the issues read
    csv = pd.read_csv(stem + ".csv")
    required = ["method", "ndcg@10", "recall@10", "cv", "min_mean", *[f"ndcg_pop{g}" for g in range(1, 6)],
                "seeds", "cv_paired_hi"]
    assert set(required) <= set(csv.columns)
    assert list(csv["method"]) == list(quality)
    assert csv.set_index("method").loc["BiFair", "cv_paired_hi"] == pytest.approx(
        table.set_index("method").loc["BiFair", "cv_paired_hi"], abs=1e-5)
    assert "cv_paired_hi" in md


def test_dominated_by_lists_the_baselines_better_in_both_and_beyond_noise_in_one(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "N_BOOT", 60)
    seeds = [2020, 2021]
    quality = {"LLM-SASRec": 0.3, "BiFair": 0.4, "PostHoc": 1.0, "VarReg": 0.05}
    files = {m: [with_true_figures(fake_run(str(tmp_path / f"{m}-{s}"), s * 10 + i, q)) for s in seeds]
             for i, (m, q) in enumerate(quality.items())}
    # IPS ranks exactly as BiFair: a tie in both figures, never beyond the noise
    files["IPS"] = []
    for s, bifair_file in zip(seeds, files["BiFair"]):
        folder = tmp_path / f"IPS-{s}"
        shutil.copytree(os.path.dirname(bifair_file), folder)
        files["IPS"].append(str(folder / "run.json"))
    table = stats.add_dominance(tables.summarise(files), files, seeds)
    rows = table.set_index("method")
    # by hand, from the definition: means over seeds, then the per-seed paired intervals
    expect_point, expect = [], []
    for base in ("LLM-SASRec", "PostHoc", "VarReg", "IPS"):
        if rows.loc[base, "ndcg@10"] >= rows.loc["BiFair", "ndcg@10"] and rows.loc[base, "cv"] <= rows.loc["BiFair", "cv"]:
            expect_point.append(base)
            diffs = [paired_difference(stats.test_rankings(b), stats.test_rankings(o), 10, 60, seed=seed)
                     for seed, b, o in zip(seeds, files[base], files["BiFair"])]
            if all(d["ndcg"]["low"] > 0 for d in diffs) or all(d["cv"]["high"] < 0 for d in diffs):
                expect.append(base)
    order = list(table["method"])
    assert rows.loc["BiFair", "dominated_by_point"] == "; ".join(sorted(expect_point, key=order.index))
    assert rows.loc["BiFair", "dominated_by"] == "; ".join(sorted(expect, key=order.index))
    assert "IPS" in rows.loc["BiFair", "dominated_by_point"] and "IPS" not in rows.loc["BiFair", "dominated_by"]
    assert "PostHoc" in rows.loc["BiFair", "dominated_by"]  # hits every target: far more accurate
    assert "VarReg" not in rows.loc["BiFair", "dominated_by_point"]
    assert (rows.drop("BiFair")[["dominated_by", "dominated_by_point"]] == "").all().all()
    md = tables.markdown(table, "header")
    assert "- BiFair: dominated by " + rows.loc["BiFair", "dominated_by"] in md
    # the figures: one bar group and one point per row, written beside the table
    stem = str(tmp_path / "fairness-tiny")
    plots.write_figures(table, stem, "tiny", "quick3")
    assert os.path.getsize(stem + "-groups.png") > 0 and os.path.getsize(stem + "-pareto.png") > 0
    assert plots.labels(table) == list(table["method"])  # every row has both seeds: plain names


def test_a_resumed_run_counts_its_epochs_from_the_start(tmp_path):
    # a run resumed at epoch 15 that trained 12 more in its last process trained 27 in all; a result
    # file written before first_epoch was recorded counts what its process trained (3 here)
    resumed = fake_run(str(tmp_path / "resumed"), 1, 0.5)
    with open(resumed) as f:
        record = json.load(f)
    record.update(first_epoch=15, epochs_trained=12)
    with open(resumed, "w") as f:
        json.dump(record, f)
    old = fake_run(str(tmp_path / "old"), 2, 0.5)
    table = tables.summarise({"LLM-SASRec": [resumed, old], "SASRec": [resumed]}).set_index("method")
    assert table.loc["SASRec", "epochs"] == 27 and table.loc["LLM-SASRec", "epochs"] == (27 + 3) / 2
    assert table.loc["LLM-SASRec", "seeds"] == 2 and "cv_std" in table and math.isnan(table.loc["SASRec", "cv_std"])


def test_curve_cv_interpolates_the_lower_envelope():
    # (NDCG@10, CV); (0.07, 0.25) is beaten by (0.09, 0.20): not on the envelope
    points = [(0.10, 0.30), (0.09, 0.20), (0.07, 0.25), (0.05, 0.10), (0.09, 0.20)]
    curve = stats.curve_cv
    assert curve(points, 0.095) == pytest.approx(0.25)          # halfway between 0.09 and 0.10
    assert curve(points, 0.07) == pytest.approx(0.15)           # halfway between 0.05 and 0.09, not 0.25
    assert curve(points, 0.10) == pytest.approx(0.30)
    assert curve(points, 0.04) == pytest.approx(0.10)           # the least accurate point is as accurate, fairer
    assert curve(points, 0.11) is None                          # nothing on the curve is as accurate
    assert curve([(0.1, 0.3)], 0.05) == pytest.approx(0.3)


def test_cv_minus_posthoc_curve_by_hand_per_seed(tmp_path):
    figures_by_seed = {  # LLM-SASRec, PostHoc[posthoc_beta=0.5], BiFair, BiFair-x (more accurate than the curve)
        2020: [(0.10, 0.40), (0.08, 0.20), (0.09, 0.25), (0.12, 0.30)],
        2021: [(0.10, 0.40), (0.08, 0.20), (0.085, 0.26), (0.12, 0.30)],
    }
    names = ["LLM-SASRec", "PostHoc[posthoc_beta=0.5]", "BiFair", "BiFair-x", "IPS"]
    files = {m: [point_run(str(tmp_path / f"{i}-{s}"), *(figures_by_seed[s] + [(0.05, 0.1)])[i])
                 for s in (2020, 2021)] for i, m in enumerate(names)}
    table = pd.DataFrame({"method": names})
    got = stats.add_posthoc_curve_gap(table, files, [2020, 2021]).set_index("method")
    # seed 2020: curve at 0.09 is 0.30, gap -0.05; seed 2021: curve at 0.085 is 0.25, gap +0.01
    assert got.loc["BiFair", "cv_minus_posthoc_curve"] == pytest.approx((-0.05 + 0.01) / 2)
    assert math.isnan(got.loc["BiFair-x", "cv_minus_posthoc_curve"])
    assert got.loc[["LLM-SASRec", "IPS"], "cv_minus_posthoc_curve"].isna().all()  # IPS is not on the curve
    assert got.loc["BiFair", "cv_minus_posthoc_curve_per_seed"] == "2020:-0.050 2021:+0.010"
    assert got.loc["BiFair-x", "cv_minus_posthoc_curve_per_seed"] == "2020:above 2021:above"
    assert got.loc["IPS", "cv_minus_posthoc_curve_per_seed"] == ""
    # a seed whose curve has one point (no PostHoc run of it) gives no gap, and says so
    lone = {m: (paths if m != "PostHoc[posthoc_beta=0.5]" else paths[:1]) for m, paths in files.items()}
    got = stats.add_posthoc_curve_gap(table, lone, [2020, 2021]).set_index("method")
    assert got.loc["BiFair", "cv_minus_posthoc_curve_per_seed"] == "2020:-0.050 2021:no curve"
    assert math.isnan(got.loc["BiFair", "cv_minus_posthoc_curve"])
    # rows with their own seeds: BiFair has 2021 only, so only that seed's curve counts
    seeds = {m: [2020, 2021] for m in names}
    seeds["BiFair"] = [2021]
    files["BiFair"] = files["BiFair"][1:]
    got = stats.add_posthoc_curve_gap(table, files, seeds).set_index("method")
    assert got.loc["BiFair", "cv_minus_posthoc_curve"] == pytest.approx(0.01)


def test_rows_with_their_own_seeds_pair_only_on_those(tmp_path):
    files = {"LLM-SASRec": [point_run(str(tmp_path / f"l{s}"), 0.1, 0.4) for s in (2020, 2021, 2022)],
             "BiFair": [point_run(str(tmp_path / "b2021"), 0.09, 0.3)], "IPS": [point_run(str(tmp_path / "i"), 0.1, 0.4)]}
    seeds = {"LLM-SASRec": [2020, 2021, 2022], "BiFair": [2021], "IPS": [2022]}
    assert stats.seeds_of(files, seeds, "BiFair") == {2021: files["BiFair"][0]}
    assert stats.covers(files, seeds, "BiFair", "LLM-SASRec") and not stats.covers(files, seeds, "BiFair", "IPS")
    assert not stats.covers(files, seeds, "BiFair", "SASRec")  # no such row
    with pytest.raises(ValueError, match="IPS lacks a finished run for some seed of BiFair"):
        stats.paired_differences(files, seeds, "BiFair", "IPS")
    assert stats.test_point(files["BiFair"][0]) == (0.09, 0.3)
    assert [m for m in ("LLM-SASRec", "PostHoc", "PostHoc[posthoc_beta=2.0]", "PostHocX", "BiFair")
            if stats.is_posthoc_curve(m)] == ["LLM-SASRec", "PostHoc", "PostHoc[posthoc_beta=2.0]"]
