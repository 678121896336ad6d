"""The recipe rule of docs/METHOD.md 3c (``benchmarks.lib.selection.choose_recipe``) and the planned
configs of its candidates (``benchmarks.lib.candidates``)."""

import pytest

from benchmarks import select_recipe as script
from benchmarks.lib import cache, candidates, runs
from benchmarks.lib.selection import choose_recipe


def _rows(**valid):
    return [{"name": name.replace("_", "-"), "valid_ndcg@10": v} for name, v in valid.items()]


def test_a_candidate_replaces_r0_only_beyond_the_margin():
    assert choose_recipe(_rows(R0=0.100, R1=0.103))["name"] == "R1"   # +3% > 2%
    assert choose_recipe(_rows(R0=0.100, R1=0.1019))["name"] == "R0"  # +1.9%: within the margin
    assert choose_recipe(_rows(R0=0.100, R1=0.090))["name"] == "R0"


def test_the_best_candidate_wins_not_the_first():
    assert choose_recipe(_rows(R0=0.10, R1=0.15, R1_model=0.12))["name"] == "R1"
    assert choose_recipe(_rows(R0=0.10, R1=0.12, R1_model=0.15))["name"] == "R1-model"


def planned_recipe(name, tmp_path, monkeypatch):
    """The config ``run_recipe`` plans for candidate ``name`` (nothing is trained)."""
    planned = {}

    def fake_run_cached(config_files, folder, threads, what, archive=None, base_only=False):
        planned.update(cache.planned_config(config_files))
        return "result.json", 0.0

    monkeypatch.setattr(runs, "run_cached", fake_run_cached)
    candidates.run_recipe(name, "ml-100k", str(tmp_path), 2020, str(tmp_path / "work"))
    return planned


def test_candidates_plan_the_rules_budget_on_top_of_the_protocol(tmp_path, monkeypatch):
    """R1's planned run is SASRec with the published keys, patience 10 and 200 epochs."""
    planned = planned_recipe("R1", tmp_path, monkeypatch)
    assert planned["model"] == "SASRec"
    assert planned["MAX_ITEM_LIST_LENGTH"] == 200 and planned["n_heads"] == 1
    assert planned["hidden_dropout_prob"] == 0.1 and planned["attn_dropout_prob"] == 0.1
    assert planned["epochs"] == 200 and planned["stopping_step"] == 10
    assert planned["valid_metric"] == "NDCG@10"
    assert planned["results_dir"] == str(tmp_path / "work" / "R1-seed2020")


def test_r0_plans_recboles_settings_under_the_plugins_defaults(tmp_path, monkeypatch):
    """The plugin's SASRec defaults are R1's now; R0's plan (the converge budget) still pins
    RecBole's window, heads and dropout, so it stays the run it archived."""
    planned = planned_recipe("R0", tmp_path, monkeypatch)
    assert planned["MAX_ITEM_LIST_LENGTH"] == 50 and planned["n_heads"] == 2
    assert planned["hidden_dropout_prob"] == 0.5 and planned["attn_dropout_prob"] == 0.5


def test_unknown_candidates_are_refused(capsys):
    with pytest.raises(SystemExit):
        script.main(["--candidates=R9"])
    assert "unknown candidates ['R9']" in capsys.readouterr().err


def test_a_selection_table_is_its_header_then_its_rows(tmp_path):
    import pandas as pd

    from benchmarks.lib.tables import write_selection_table

    rows = [{"name": "R0", "valid_ndcg@10": 0.11912}, {"name": "R1", "valid_ndcg@10": 0.14361}]
    write_selection_table(rows, str(tmp_path / "t"), "Rule: the best.")
    assert (tmp_path / "t.md").read_text().splitlines() == [
        "Rule: the best.", "", "| name   |   valid_ndcg@10 |", "|:-------|----------------:|",
        "| R0     |          0.1191 |", "| R1     |          0.1436 |"]
    assert pd.read_csv(tmp_path / "t.csv").to_dict("records") == rows


def test_r2_is_r1_with_the_published_layout():
    r1, r2 = candidates.RECIPES["R1"], candidates.RECIPES["R2"]
    assert {k: v for k, v in r2.items() if k in r1} == r1
    assert {k: v for k, v in r2.items() if k not in r1} == {
        "sasrec_norm": "pre", "item_emb_scale": 8.0, "hidden_act": "relu", "inner_size": 64}


def test_the_model_keys_check_allows_a_loss_of_one_percent_at_most():
    from benchmarks.lib.selection import model_keys_check

    assert model_keys_check(_rows(R0=0.0512, R1_model=0.0518)) == (True, pytest.approx(0.0518 / 0.0512 - 1))
    assert model_keys_check(_rows(R0=0.100, R1_model=0.0991))[0] is True    # -0.9%
    assert model_keys_check(_rows(R0=0.100, R1_model=0.0989))[0] is False   # -1.1%


def test_r4_is_r2s_layout_on_r3s_data_layout():
    r2, r3, r4 = (candidates.RECIPES[n] for n in ("R2", "R3", "R4"))
    assert r4 == {**r2, **r3}
