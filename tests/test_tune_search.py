"""Searches on a tiny generated dataset in a local Ray instance on CPU (shared by these tests)."""

import os
import signal

import pandas as pd
import pytest
import ray
import torch
import yaml
from ray import tune

from recbole_bifair.errors import ConfigError
from recbole_bifair.quick_start import run_bifair
from recbole_bifair.tune.runner import SearchInterrupted, plan_search, run_search
from tests.datagen import make_dataset, tiny_config


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def make_workspace(root):
    """Tiny dataset and its config file under ``root`` (the working folder of the search)."""
    make_dataset(root / "data")
    config = tiny_config("data")  # relative on purpose: trials run in their own folders
    config.pop("dataset")
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return make_workspace(tmp_path)


def search(workspace, space, **kwargs):
    params_file = workspace / "space.hyper"
    params_file.write_text(space)
    return plan_search("SASRec", "tiny", str(params_file), config_files=[str(workspace / "tiny.yaml")],
                       storage_path="ray_results", output_dir="report", **kwargs)


@pytest.fixture(scope="module")
def heads_search(local_ray, tmp_path_factory):
    """One search, three trials: hidden_size 8 with 1, 2 or 3 attention heads. 8 is not a
    multiple of 3: SASRec's attention layer raises in that trial, on every attempt."""
    root = tmp_path_factory.mktemp("heads")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        make_workspace(root)
        # GiniIndex (smaller is better) reads the training data's item counts: the test evaluation
        # must collect them as Trainer.fit does.
        plan = search(root, "n_heads choice [1, 2, 3]\n", objective="ndcg@10", constraint="giniindex@10<=1.0",
                      max_failures=1, overrides=["--metrics=['Recall','NDCG','Hit','GiniIndex']"])
        result = run_search(plan, verbose=0)
        yield root, result


def test_trials_complete_and_the_best_yaml_reruns(heads_search, monkeypatch):
    workspace, result = heads_search
    monkeypatch.chdir(workspace)
    table = pd.read_csv(workspace / "report" / "trials.csv")
    assert sorted(table["n_heads"]) == [1, 2, 3]
    done = table[table["status"] == "completed"]
    assert sorted(done["n_heads"]) == [1, 2]
    assert list(done["epochs"]) == [1, 1]
    assert done["feasible"].all()
    best = done.loc[done["ndcg@10"].idxmax()]
    assert table["chosen"].sum() == 1 and table.loc[table["chosen"], "trial"].item() == best["trial"]
    assert result.chosen == best["trial"]
    assert {"trials.md", "best.yaml", "summary.json", "pareto.png"} <= set(os.listdir(workspace / "report"))
    assert "## Test (chosen trial only" in (workspace / "report" / "trials.md").read_text()

    # The chosen configuration, rerun from scratch with the same seed, is the same model: its
    # validation result is the table's and its test result the one the search reported.
    best_yaml = workspace / "report" / "best.yaml"
    assert yaml.safe_load(best_yaml.read_text())["n_heads"] == best["n_heads"]
    torch.set_num_threads(1)  # as in the trial
    rerun = run_bifair(config_file_list=[str(best_yaml)], saved=True)
    assert rerun["model"] == "SASRec" and rerun["dataset"] == "tiny"
    for metric in ("ndcg@10", "recall@10", "hit@10", "giniindex@10"):
        assert rerun["best_valid_result"][metric] == pytest.approx(best[metric], abs=1e-4)
        assert rerun["test_result"][metric] == pytest.approx(result.test_result[metric], abs=1e-4)


def test_a_failing_trial_is_reported_as_failed_while_the_others_complete(heads_search):
    workspace, result = heads_search
    table = result.table.set_index("n_heads")
    assert table.loc[3, "status"] == "failed"
    assert "is not a multiple of the number of attention heads" in table.loc[3, "error"]
    assert pd.isna(table.loc[3, "ndcg@10"]) and not table.loc[3, "chosen"]
    assert list(table.loc[[1, 2], "status"]) == ["completed", "completed"]
    # Ray retried it once (max_failures=1) before giving up: two failures in its error log.
    failed_dir = workspace / "ray_results" / "SASRec-tiny" / table.loc[3, "trial"]
    assert (failed_dir / "error.txt").read_text().count("not a multiple") == 2


class InterruptOnce(tune.Callback):
    """Stop the search like Ctrl+C would, once the first trial has saved its first checkpoint
    (only in the first run: the marker file survives the resume)."""

    def __init__(self, marker):
        self.marker = marker

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's own interrupt handler (like SIGINT)


def test_an_interrupted_search_resumes_from_the_checkpoint(local_ray, workspace):
    plan = search(workspace, "learning_rate choice [0.01, 0.001]\n", max_concurrent=1, scheduler="fifo",
                  overrides=["--epochs=3"])
    with pytest.raises(SearchInterrupted, match="rerun the same command with --resume"):
        run_search(plan, callbacks=[InterruptOnce(str(workspace / "interrupted"))], verbose=0)
    assert not (workspace / "report").exists()

    result = run_search(plan, resume=True, verbose=0)
    assert len(result.table) == 2 and set(result.table["status"]) == {"completed"}
    experiment = workspace / "ray_results" / "SASRec-tiny"
    restored = 0
    for trial in result.table["trial"]:
        progress = pd.read_csv(experiment / trial / "progress.csv")
        # one report per epoch, each epoch once: the interrupted trial went on from its
        # checkpoint instead of starting again at epoch 1
        assert list(progress["epoch"]) == [1, 2, 3]
        restored += int(((progress["iterations_since_restore"] == 1) & (progress["epoch"] > 1)).any())
        # each report carries the full validation result of its own epoch
        assert (progress["ndcg@10"] == progress["valid_score"]).all()
        # the kept epoch is the best one so far
        assert (progress["best/ndcg@10"] == progress["ndcg@10"].cummax()).all()
    assert restored == 1

    with pytest.raises(ConfigError, match="already exists.*--resume"):
        run_search(plan, verbose=0)
    changed = search(workspace, "learning_rate choice [0.01, 0.001]\n", max_concurrent=1, scheduler="fifo",
                     overrides=["--epochs=4"])
    with pytest.raises(ConfigError, match="started with other fixed"):
        run_search(changed, resume=True, verbose=0)


@pytest.mark.parametrize("resources, words", [
    ({"gpus_per_trial": 1}, "--gpus_per_trial=1: no Ray node has that many GPUs (the largest has 0)"),
    ({"cpus_per_trial": 3}, "--cpus_per_trial=3: no Ray node has that many CPUs (the largest has 2)"),
])
def test_resources_no_node_offers_are_refused_before_any_trial(local_ray, workspace, resources, words):
    plan = search(workspace, "learning_rate choice [0.01]\n", **resources)
    with pytest.raises(ConfigError) as err:
        run_search(plan, verbose=0)
    assert words in str(err.value)
    assert not (workspace / "ray_results").exists()
