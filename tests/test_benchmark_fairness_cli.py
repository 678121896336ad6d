"""``python -m benchmarks.fairness``: which runs it asks for, and the table it makes of them
(``benchmarks.lib.runs.run_one`` replaced by finished fake runs: nothing trains here)."""

import json

import pandas as pd
import pytest

from benchmarks import fairness
from benchmarks.lib import runs, stats
from benchmarks.lib.methods import folder_name
from benchmarks.lib.paths import ARCHIVE
from recbole_bifair.fairness.bootstrap import paired_difference
from tests.benchmark_fixtures import fake_run, with_true_figures


def test_a_sweep_point_runs_with_its_key_under_its_name(monkeypatch):
    calls = []

    def fake_run_one(method, seed, *args, extra=None, label=None, archive_root=None, finished_only=False):
        calls.append((method, seed, extra, label))
        assert archive_root == ARCHIVE  # finished runs are kept (committed) by default
        raise RuntimeError("stop here")

    monkeypatch.setattr(runs, "run_one", fake_run_one)
    with pytest.raises(RuntimeError, match="stop here"):
        fairness.main(["--methods", "PostHoc[posthoc_beta=1.0]", "--jobs", "1"])
    assert calls[0] == ("PostHoc", 2020, {"posthoc_beta": 1.0}, "PostHoc[posthoc_beta=1.0]")


@pytest.mark.parametrize("argv,why", [
    (["--methods", "LLM-SASRec,VarReg[group_variance_weight]"], "neither a method name nor a sweep point"),
    (["--methods", "LLM-SASRec,Nope"], "unknown method 'Nope'"),
    (["--methods=LLM-SASRec,BiFair", "--compare=BiFair:IPS"], "--compare BiFair:IPS: give A:B with both rows"),
])
def test_a_bad_entry_stops_before_any_run(argv, why, monkeypatch, capsys):
    monkeypatch.setattr(runs, "run_one", lambda *args, **kwargs: pytest.fail("a run was started"))
    with pytest.raises(SystemExit) as stopped:
        fairness.main(argv)
    assert stopped.value.code == 2 and why in capsys.readouterr().err


def test_finished_only_makes_the_table_of_what_finished(tmp_path, monkeypatch):
    """--finished_only starts nothing; a row keeps its own seeds, and its paired figures, Pareto
    check and headline compare it with the other rows on those seeds only."""
    monkeypatch.setattr(stats, "N_BOOT", 40)
    quality = {"LLM-SASRec": 0.3, "PostHoc[posthoc_beta=0.5]": 0.35, "BiFair": 0.5}
    made = {(m, s): with_true_figures(fake_run(str(tmp_path / f"{folder_name(m)}-{s}"), s * 10 + i, q))
            for i, (m, q) in enumerate(quality.items()) for s in (2020, 2021, 2022)}
    for path in made.values():  # the header reads the recorded config
        record = json.load(open(path))
        json.dump({**record, "config": {"train_mode": "sequence"}}, open(path, "w"))
    calls = []

    def fake_run_one(method, seed, *args, extra=None, label=None, finished_only=False, **kwargs):
        calls.append(finished_only)
        name = label or method
        if name == "BiFair" and seed != 2021 or name == "IPS":
            raise runs.NotFinished(f"{name} seed {seed}")
        return made[(name, seed)], 0.0

    monkeypatch.setattr(runs, "run_one", fake_run_one)
    out = tmp_path / "out"
    fairness.main(["--profile=quick3", "--methods=LLM-SASRec,PostHoc[posthoc_beta=0.5],BiFair,IPS",
                   "--finished_only", "--jobs=1", f"--out_dir={out}"])
    assert calls and all(calls)
    csv = pd.read_csv(out / "fairness-quick3.csv").set_index("method")
    assert list(csv.index) == ["LLM-SASRec", "PostHoc[posthoc_beta=0.5]", "BiFair"]  # IPS: nothing finished
    assert csv.loc["BiFair", "seeds"] == 1 and csv.loc["LLM-SASRec", "seeds"] == 3
    by_hand = paired_difference(stats.test_rankings(made[("BiFair", 2021)]),
                                stats.test_rankings(made[("LLM-SASRec", 2021)]), 10, 40, seed=2021)
    assert csv.loc["BiFair", "cv_paired_hi"] == pytest.approx(by_hand["cv"]["high"], abs=1e-5)
    md = open(out / "fairness-quick3.md").read()
    assert "Finished runs only" in md and md.split("\n")[2].split("|")[2].strip() == "seeds"  # a column here
    assert md.startswith("ml-100k, quick3 profile, seeds [2020, 2021, 2022]; `python benchmarks/fairness.py "
                         "--profile=quick3 --dataset=ml-100k` (1 runs at a time, 1 torch thread each); ")
    # headline: BiFair against LLM-SASRec's seed 2021 only
    ours, base = stats.test_point(made[("BiFair", 2021)]), stats.test_point(made[("LLM-SASRec", 2021)])
    assert f"**BiFair vs LLM-SASRec** (its seeds only): CV of group NDCG@10 {(ours[1] - base[1]) / base[1] * 100:+.1f}%" in md
    assert (out / "fairness-quick3-groups.png").is_file() and (out / "fairness-quick3-pareto.png").is_file()
    # without --finished_only an unfinished run is an error, not a smaller table
    with pytest.raises(runs.NotFinished):
        fairness.main(["--profile=quick3", "--methods=LLM-SASRec,BiFair", "--jobs=1", f"--out_dir={out}"])
