"""The recipe rule of docs/METHOD.md 3c (``benchmarks/select_recipe.choose``) and the planned
configs of its candidates."""

import importlib.util
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, BENCH)
    spec = importlib.util.spec_from_file_location("select_recipe", os.path.join(BENCH, "select_recipe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(**valid):
    return [{"name": name.replace("_", "-"), "valid_ndcg@10": v} for name, v in valid.items()]


def test_a_candidate_replaces_r0_only_beyond_the_margin(script):
    assert script.choose(_rows(R0=0.100, R1=0.103))["name"] == "R1"   # +3% > 2%
    assert script.choose(_rows(R0=0.100, R1=0.1019))["name"] == "R0"  # +1.9%: within the margin
    assert script.choose(_rows(R0=0.100, R1=0.090))["name"] == "R0"


def test_the_best_candidate_wins_not_the_first(script):
    assert script.choose(_rows(R0=0.10, R1=0.15, R1_model=0.12))["name"] == "R1"
    assert script.choose(_rows(R0=0.10, R1=0.12, R1_model=0.15))["name"] == "R1-model"


def test_candidates_plan_the_rules_budget_on_top_of_the_protocol(script, tmp_path, monkeypatch):
    """R1's planned run is SASRec with the published keys, patience 10 and 200 epochs."""
    fairness = script.fairness
    planned = {}

    def fake_run_cached(config_files, folder, threads, what, archive=None, base_only=False):
        planned.update(fairness.planned_config(config_files))
        return "result.json", 0.0

    monkeypatch.setattr(fairness, "run_cached", fake_run_cached)
    monkeypatch.setattr(script, "REPO", str(tmp_path))
    script.run("R1", "ml-100k", str(tmp_path), 2020)
    assert planned["model"] == "SASRec"
    assert planned["MAX_ITEM_LIST_LENGTH"] == 200 and planned["n_heads"] == 1
    assert planned["hidden_dropout_prob"] == 0.1 and planned["attn_dropout_prob"] == 0.1
    assert planned["epochs"] == 200 and planned["stopping_step"] == 10
    assert planned["valid_metric"] == "NDCG@10"


def test_unknown_candidates_are_refused(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--candidates=R9"])
    assert "unknown candidates ['R9']" in capsys.readouterr().err
