"""The report when the search yields no usable trial (trial results built as Ray returns them)."""

import json

import pandas as pd
import pytest
import yaml
from ray.air import Result

from recbole_bifair.tune.runner import SearchError, finish, plan_search
from tests.datagen import make_dataset, tiny_config


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path / "data")
    config = tiny_config("data")
    config.pop("dataset")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "space.hyper").write_text("learning_rate choice [0.01, 0.001]\n")
    return tmp_path


def plan(workspace, **kwargs):
    return plan_search("SASRec", "tiny", "space.hyper", config_files=["tiny.yaml"], output_dir="report", **kwargs)


def completed(workspace, name, lr, ndcg, recall):
    metrics = {"epoch": 1, "finished": True, "best_epoch": 1, "ndcg@10": ndcg, "recall@10": recall,
               "best/ndcg@10": ndcg, "best/recall@10": recall, "config": {"learning_rate": lr}}
    return Result(metrics=metrics, checkpoint=None, error=None, _local_path=str(workspace / name))


def failed_before_reporting(workspace, name, lr):
    # Tune's logger wrote params.json when the trial started; no result ever came back.
    (workspace / name).mkdir()
    (workspace / name / "params.json").write_text(json.dumps({"learning_rate": lr}))
    error = RuntimeError("Traceback (most recent call last):\n  File x\nValueError: bad hidden size")
    return Result(metrics={}, checkpoint=None, error=error, _local_path=str(workspace / name))


def test_no_trial_meeting_the_constraint_writes_the_table_and_no_best_yaml(workspace):
    search = plan(workspace, objective="ndcg@10", constraint="recall@10>=0.9")
    (workspace / "report").mkdir()
    (workspace / "report" / "best.yaml").write_text("stale: true\n")
    results = [completed(workspace, "a_00000", 0.01, 0.20, 0.40), completed(workspace, "a_00001", 0.001, 0.25, 0.30),
               failed_before_reporting(workspace, "a_00002", 0.001)]
    with pytest.raises(SearchError, match=r"no trial satisfies recall@10>=0.9 \(closest: recall@10=0.4\)"):
        finish(search, results)

    table = pd.read_csv(workspace / "report" / "trials.csv")
    assert list(table["status"]) == ["completed", "completed", "failed"]
    assert list(table["learning_rate"]) == [0.01, 0.001, 0.001]
    assert table.loc[2, "error"] == "ValueError: bad hidden size"
    assert not table["feasible"].any() and not table["chosen"].any()
    # the front over (ndcg@10, recall@10) among feasible trials: none
    assert not table["pareto"].any()
    assert "No trial chosen: no trial satisfies" in (workspace / "report" / "trials.md").read_text()
    assert (workspace / "report" / "pareto.png").is_file()
    assert not (workspace / "report" / "best.yaml").exists()


def test_all_trials_failing_is_an_error_naming_the_first_error(workspace):
    search = plan(workspace)
    with pytest.raises(SearchError, match="all 1 trials failed; first error: ValueError: bad hidden size"):
        finish(search, [failed_before_reporting(workspace, "b_00000", 0.01)])
    assert not (workspace / "report" / "pareto.png").exists()  # no second metric named
