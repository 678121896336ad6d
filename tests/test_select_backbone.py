"""The selection rules of docs/METHOD.md (``benchmarks.lib.selection``) and their script for
finished fairness-benchmark runs (``benchmarks/select_backbone.py``)."""

import json
import os

import pytest

from benchmarks import select_backbone as script
from benchmarks.lib import selection


def _result(path, valid_ndcg, valid_cv, test_ndcg=0.5, test_cv=0.5):
    with open(path, "w") as f:
        json.dump({"best_valid_result": {"ndcg@10": valid_ndcg, "ndcgcv@10": valid_cv},
                   "test_result": {"ndcg@10": test_ndcg, "ndcgcv@10": test_cv, "groupndcg@10[pop5]": 0.01},
                   "epochs_trained": 7}, f)
    return str(path)


def test_the_rule_takes_the_fairest_within_two_percent_of_the_best(tmp_path, monkeypatch):
    # 98% of the best (0.100) is 0.098: 0.0985 is in with CV 0.5, 0.0975 is out despite CV 0.1;
    # the test columns (reversed on purpose) play no part
    runs = {"SASRec": _result(tmp_path / "s.json", 0.2, 0.9),
            "A": _result(tmp_path / "a.json", 0.100, 0.6, test_ndcg=0.01),
            "B": _result(tmp_path / "b.json", 0.0985, 0.5, test_ndcg=0.001, test_cv=2.0),
            "C": _result(tmp_path / "c.json", 0.0975, 0.1, test_ndcg=0.9, test_cv=0.0)}
    monkeypatch.setattr(selection, "finished_run", lambda name, *args: runs.get(name))
    script.main(["--dataset=toy", "--candidates=A,B,C", f"--out_dir={tmp_path}"])
    text = (tmp_path / "select-backbone-toy.md").read_text()
    assert "**Chosen: B**" in text and "SASRec (ID, reference)" in text  # SASRec is shown, never chosen
    rows = [{"name": n, "valid_ndcg@10": v, "valid_cv": c} for n, v, c in
            [("X", 0.05, 0.2), ("Y", 0.051, 0.9), ("Z", 0.0499, 0.4)]]
    assert selection.select_backbone(rows)["name"] == "X"  # the line is 0.04998: Z is just out, X beats Y on CV


def test_an_unfinished_candidate_stops_with_the_command_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(selection, "finished_run", lambda name, *args: None)
    with pytest.raises(SystemExit, match=r"not finished .*--profile=converge --dataset=toy --seeds=2020\): A \(seed 2020\)"):
        script.main(["--dataset=toy", "--candidates=A", f"--out_dir={tmp_path}"])
    assert not os.listdir(tmp_path)  # nothing written


def test_the_rule_reads_means_over_the_seeds(tmp_path, monkeypatch):
    # A wins seed 2020 alone (B under the 98% line there), but over the two seeds B's mean
    # validation NDCG@10 (0.0975) is within 98% of A's (0.0985) and B is fairer: B is chosen
    runs = {("A", 2020): _result(tmp_path / "a0.json", 0.100, 0.6), ("A", 2021): _result(tmp_path / "a1.json", 0.097, 0.6),
            ("B", 2020): _result(tmp_path / "b0.json", 0.095, 0.4), ("B", 2021): _result(tmp_path / "b1.json", 0.100, 0.4)}
    monkeypatch.setattr(selection, "finished_run", lambda name, dataset, data_path, seed, *args: runs.get((name, seed)))
    script.main(["--dataset=toy", "--candidates=A,B", "--seeds=2020", f"--out_dir={tmp_path}"])
    assert "**Chosen: A**" in (tmp_path / "select-backbone-toy.md").read_text()
    script.main(["--dataset=toy", "--candidates=A,B", "--seeds=2020,2021", f"--out_dir={tmp_path}"])
    text = (tmp_path / "select-backbone-toy.md").read_text()
    assert "**Chosen: B**" in text and "seeds 2020,2021 (means)" in text
    assert "SASRec" not in text  # its runs are not there: no reference row


def test_the_bifair_rule_reads_the_floor_then_the_target_against_llm_sasrec(tmp_path, monkeypatch):
    # LLM-SASRec validation 0.100 / CV 0.60: the floor is 0.097, the CV target 0.45
    reference = {"name": "LLM-SASRec (reference)", "valid_ndcg@10": 0.100, "valid_cv": 0.60}
    rows = [{"name": "A", "valid_ndcg@10": 0.0975, "valid_cv": 0.50},
            {"name": "B", "valid_ndcg@10": 0.0970, "valid_cv": 0.40},   # on the floor (>=), fairer: chosen
            {"name": "C", "valid_ndcg@10": 0.0969, "valid_cv": 0.10}]   # just under the floor
    assert selection.select_bifair(rows, reference)[0]["name"] == "B"
    # nobody at the floor: the most accurate with CV <= 0.45 (C at 0.44 beats D; E is too unfair)
    rows = [{"name": "C", "valid_ndcg@10": 0.090, "valid_cv": 0.44},
            {"name": "D", "valid_ndcg@10": 0.080, "valid_cv": 0.20},
            {"name": "E", "valid_ndcg@10": 0.095, "valid_cv": 0.46}]
    chosen, why = selection.select_bifair(rows, reference)
    assert chosen["name"] == "C" and "no candidate reaches" in why
    assert selection.select_bifair([rows[2]], reference)[0] is None  # neither floor nor target: no choice

    # the script: LLM-SASRec's runs are the reference (required), written to select-bifair-<dataset>.md
    runs = {"LLM-SASRec": _result(tmp_path / "l.json", 0.100, 0.60),
            "BiFair": _result(tmp_path / "b.json", 0.0980, 0.50),
            "BiFair[dro_tau=3.0]": _result(tmp_path / "b3.json", 0.0990, 0.55)}
    monkeypatch.setattr(selection, "finished_run", lambda name, *args: runs.get(name))
    chosen = script.main(["--rule=bifair", "--dataset=toy", "--candidates=BiFair,BiFair[dro_tau=3.0]",
                          f"--out_dir={tmp_path}"])
    assert chosen["name"] == "BiFair"
    text = (tmp_path / "select-bifair-toy.md").read_text()
    assert "**Chosen: BiFair**" in text and "LLM-SASRec (reference)" in text and "--rule=bifair" in text
    del runs["LLM-SASRec"]
    with pytest.raises(SystemExit, match=r"LLM-SASRec \(seed 2020\)"):
        script.main(["--rule=bifair", "--dataset=toy", "--candidates=BiFair", f"--out_dir={tmp_path}"])


def test_the_posthoc_front_screen_passes_only_candidates_no_front_point_dominates(tmp_path, monkeypatch):
    front = [{"name": "LLM-SASRec", "valid_ndcg@10": 0.050, "valid_cv": 0.80},
             {"name": "PostHoc[posthoc_beta=0.5]", "valid_ndcg@10": 0.048, "valid_cv": 0.64},
             {"name": "PostHoc[posthoc_beta=1.0]", "valid_ndcg@10": 0.040, "valid_cv": 0.40}]
    rows = [{"name": "A", "valid_ndcg@10": 0.049, "valid_cv": 0.60},    # between the points: beyond
            {"name": "B", "valid_ndcg@10": 0.047, "valid_cv": 0.65},    # beta 0.5 is better in both
            {"name": "C", "valid_ndcg@10": 0.040, "valid_cv": 0.40},    # ties beta 1.0 in both: dominated
            {"name": "D", "valid_ndcg@10": 0.030, "valid_cv": 0.90}]    # every point beats it
    got = selection.beyond_front(rows, front)
    assert got == {"A": [], "B": ["PostHoc[posthoc_beta=0.5]"], "C": ["PostHoc[posthoc_beta=1.0]"],
                   "D": ["LLM-SASRec", "PostHoc[posthoc_beta=0.5]", "PostHoc[posthoc_beta=1.0]"]}

    # the script: the front's runs (LLM-SASRec and each PostHoc point) are required and shown
    runs = {"LLM-SASRec": _result(tmp_path / "l.json", 0.050, 0.80),
            "PostHoc[posthoc_beta=0.5]": _result(tmp_path / "p5.json", 0.048, 0.64),
            "PostHoc[posthoc_beta=1.0]": _result(tmp_path / "p1.json", 0.040, 0.40),
            "A": _result(tmp_path / "a.json", 0.049, 0.60), "B": _result(tmp_path / "b.json", 0.047, 0.65)}
    monkeypatch.setattr(selection, "finished_run", lambda name, *args: runs.get(name))
    chosen = script.main(["--rule=posthoc-front", "--dataset=toy", "--candidates=A,B", "--front_betas=0.5,1.0",
                          f"--out_dir={tmp_path}"])
    assert chosen["name"] == "A"
    text = (tmp_path / "select-posthoc-front-toy.md").read_text()
    assert "**Passed: A**" in text and "PostHoc[posthoc_beta=1.0] (front)" in text
    assert "B: dominated by PostHoc[posthoc_beta=0.5] (front)" in text and "--front_betas=0.5,1.0" in text
    # for the record, the interpolated curve: A at 0.049 lies halfway between (0.050, 0.80) and (0.048, 0.64),
    # where the curve is at 0.72 (A: -0.12); B at 0.047 is 7/8 of the way from (0.040, 0.40) to (0.048, 0.64),
    # 0.61 (B: +0.04)
    line_a = next(line for line in text.splitlines() if line.startswith("| A "))
    line_b = next(line for line in text.splitlines() if line.startswith("| B "))
    assert line_a.rstrip(" |").endswith("-0.1200") and line_b.rstrip(" |").endswith("0.0400")
    with pytest.raises(SystemExit, match=r"PostHoc\[posthoc_beta=2.0\] \(seed 2020\)"):
        script.main(["--rule=posthoc-front", "--dataset=toy", "--candidates=A", "--front_betas=0.5,2.0",
                     f"--out_dir={tmp_path / 'x'}"])


def test_a_resumed_runs_row_counts_its_epochs_from_the_start(tmp_path):
    path = _result(tmp_path / "r.json", 0.1, 0.5)
    record = json.load(open(path))
    json.dump({**record, "first_epoch": 20, "epochs_trained": 9}, open(path, "w"))
    assert selection.row("X", path)["epochs"] == 29
    assert selection.row("Y", _result(tmp_path / "old.json", 0.1, 0.5))["epochs"] == 7  # written before first_epoch


def test_the_no_harm_rule_needs_every_dataset_and_takes_the_lowest_mean_cv_ratio(tmp_path, monkeypatch):
    # LLM-SASRec 0.100 / CV 1.0 on both datasets: admissible = CV <= 0.9 and NDCG@10 >= 0.095 on each.
    # A: admissible, mean CV ratio 0.825. B: the fairest, but 0.094 on d2 (0.94x): out. C: admissible, 0.745.
    # D: fine on d1, CV 0.95 on d2: out.
    figures = {"LLM-SASRec": [(0.100, 1.0), (0.100, 1.0)], "A": [(0.096, 0.85), (0.097, 0.80)],
               "B": [(0.100, 0.5), (0.094, 0.5)], "C": [(0.0955, 0.89), (0.099, 0.60)],
               "D": [(0.100, 0.3), (0.100, 0.95)]}
    runs = {(n, d): _result(tmp_path / f"{n}-{d}.json", *figures[n][i])
            for n in figures for i, d in enumerate(("d1", "d2"))}
    monkeypatch.setattr(selection, "finished_run", lambda name, dataset, *args, **kw: runs.get((name, dataset)))
    chosen = script.main(["--rule=no-harm", "--dataset=d1,d2", "--profile=recipe", "--candidates=A,B,C,D",
                          f"--out_dir={tmp_path}"])
    assert chosen["name"] == "C" and chosen["mean cv ratio"] == pytest.approx((0.89 + 0.60) / 2)
    text = (tmp_path / "select-no-harm-d1+d2.md").read_text()
    assert "**Chosen: C**" in text and "--profile=recipe" in text
    # without C and A nothing is admissible: the defaults stay
    assert script.main(["--rule=no-harm", "--dataset=d1,d2", "--profile=recipe", "--candidates=B,D",
                        f"--out_dir={tmp_path}"]) is None
    # a dataset whose reference has not finished stops the rule
    del runs[("LLM-SASRec", "d2")]
    with pytest.raises(SystemExit, match=r"--profile=recipe --dataset=d2 .*LLM-SASRec \(seed 2020\)"):
        script.main(["--rule=no-harm", "--dataset=d1,d2", "--profile=recipe", "--candidates=A",
                     f"--out_dir={tmp_path}"])


def test_refinement_matters_only_when_every_seed_moves_the_same_way_past_the_bound():
    def rows(*pairs):
        return [{"valid_ndcg@10": n, "valid_cv": c} for n, c in pairs]

    frozen = rows((0.100, 1.0), (0.100, 1.0))
    # +2% and +3% NDCG@10 in both seeds: matters, by NDCG@10 alone (CV unchanged)
    effect = selection.refinement_effect(rows((0.102, 1.0), (0.103, 1.0)), frozen)
    assert effect["matters"] and effect["by"] == ["ndcg change"]
    assert effect["ndcg change"] == pytest.approx([0.02, 0.03])
    # CV -6% and -5.5%: matters by CV; NDCG@10 +3% then -3% is no direction
    effect = selection.refinement_effect(rows((0.103, 0.94), (0.097, 0.945)), frozen)
    assert effect["by"] == ["cv change"]
    # CV -6% in one seed and +3% in the other, NDCG@10 within 1%: no measurable effect
    effect = selection.refinement_effect(rows((0.101, 0.94), (0.099, 1.03)), frozen)
    assert not effect["matters"] and effect["by"] == []
    # one seed past the bound and one short of it (-6%, -4%): not in every seed
    assert not selection.refinement_effect(rows((0.1, 0.94), (0.1, 0.96)), frozen)["matters"]
    with pytest.raises(ValueError, match="one refined and one frozen row per seed"):
        selection.refinement_effect(rows((0.1, 1.0)), frozen)


def test_the_e_refinement_report_reads_drift_and_probe_from_each_run(tmp_path, monkeypatch):
    from benchmarks import e_refinement

    def result(name, ndcg, cv, drift, probe_cv):
        path = _result(tmp_path / f"{name}.json", ndcg, cv)
        with open(path) as f:
            r = json.load(f)
        r["training_log"] = [{"E_drift_relative": 0.0}, {"E_drift_relative": drift}]
        r["prior_probe"] = {"E0": {"ndcg@10": 0.01, "ndcgcv@10": 0.5}, "E": {"ndcg@10": 0.011, "ndcgcv@10": probe_cv}}
        with open(path, "w") as f:
            json.dump(r, f)
        return path

    runs = {("F", 2020): result("f0", 0.100, 1.0, 0.0, 0.5), ("F", 2021): result("f1", 0.100, 1.0, 0.0, 0.5),
            ("R", 2020): result("r0", 0.100, 0.90, 0.0025, 0.45), ("R", 2021): result("r1", 0.101, 0.92, 0.003, 0.44)}
    monkeypatch.setattr(selection, "finished_run",
                        lambda name, dataset, data_path, seed, *args, **kw: runs.get((name, seed)))
    effects = e_refinement.main(["--dataset=d1", "--frozen=F", "--candidates=R", f"--out_dir={tmp_path}"])
    assert effects[0]["matters"] == "yes (cv change)"  # CV -10% and -8%
    assert effects[0]["CV change, seed 2021"] == pytest.approx(-0.08)
    text = (tmp_path / "e-refinement-d1.md").read_text()
    lines = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith("| d1")]
    assert [line[1:3] for line in lines[1:]] == [["F", "2020"], ["F", "2021"], ["R", "2020"], ["R", "2021"]]
    # the last epoch's drift in percent, and the probe of the refined table
    assert "0.2500" in text and "0.3000" in text and "0.4400" in text


def test_the_erase_rule_has_its_own_bounds(tmp_path, monkeypatch):
    # LLM-SASRec 0.100 / CV 1.0 on both: pass = CV <= 1.0 and NDCG@10 >= 0.098 on each.
    # E: 0.0985 and CV exactly 1.0 on d1, fairer and better on d2: passes (inadmissible under no-harm's 0.9).
    # F: CV 1.01 on d2: out. G: 0.0975 on d1: out.
    figures = {"LLM-SASRec": [(0.100, 1.0), (0.100, 1.0)], "E": [(0.0985, 1.0), (0.102, 0.95)],
               "F": [(0.105, 0.5), (0.105, 1.01)], "G": [(0.0975, 0.5), (0.105, 0.5)]}
    runs = {(n, d): _result(tmp_path / f"{n}-{d}.json", *figures[n][i])
            for n in figures for i, d in enumerate(("d1", "d2"))}
    monkeypatch.setattr(selection, "finished_run", lambda name, dataset, *args, **kw: runs.get((name, dataset)))
    chosen = script.main(["--rule=erase", "--dataset=d1,d2", "--profile=recipe", "--candidates=E,F,G",
                          f"--out_dir={tmp_path}"])
    assert chosen["name"] == "E"
    assert "**Chosen: E**" in (tmp_path / "select-erase-d1+d2.md").read_text()
    # under no-harm's bounds (CV <= 0.9x, NDCG@10 >= 0.95x) E is out and G, 0.975x on d1, is in
    assert script.main(["--rule=no-harm", "--dataset=d1,d2", "--profile=recipe", "--candidates=E,F,G",
                        f"--out_dir={tmp_path}"])["name"] == "G"
