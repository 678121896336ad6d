"""A stock RecBole model run through the plugin (SASRec, GRU4Rec) keeps its last validated
epoch's checkpoint, and a run resumed from it ends exactly as the uninterrupted run: same best
checkpoint, same early stopping, same results, same final weights."""

import json
import os
import re

import pytest
import torch
import yaml

from recbole_bifair.compat import load_checkpoint
from recbole_bifair.errors import ConfigError
from recbole_bifair.quick_start import run_bifair
from tests.datagen import tiny_config

#: On the tiny data both models pass their best epoch early and stop at stopping_step 1 before
#: ``epochs``: the interrupted run stops with a non-zero early-stopping counter. SASRec's dropout
#: is RecBole's 0.5 (the plugin's 0.1 lets it improve through all six epochs here).
SETTINGS = dict(epochs=6, stopping_step=1, learning_rate=0.01, hidden_dropout_prob=0.5, attn_dropout_prob=0.5)


class Interrupted(Exception):
    """The session ended (raised from ``fit``'s callback, after the epoch's checkpoints)."""


def interrupt_after_first_worse_epoch():
    """A ``fit`` callback that ends the run after the first epoch whose score is below the best."""
    scores = []

    def callback(epoch_idx, valid_score):
        scores.append(valid_score)
        if valid_score < max(scores):
            raise Interrupted(epoch_idx)

    return callback


def last_of(result_or_checkpoint):
    path = result_or_checkpoint["checkpoint"] if isinstance(result_or_checkpoint, dict) else result_or_checkpoint
    return path[: -len(".pth")] + "-last.pth"


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def assert_same_training_state(a, b):
    """Two checkpoints of the same epoch of the same run hold the same training state."""
    for key in ("epoch", "cur_step", "best_valid_score", "best_valid_result", "train_loss_dict"):
        assert a[key] == b[key], key
    assert_same_tensors(a["state_dict"], b["state_dict"])
    assert_same_tensors(a["rng"]["loaders"], b["rng"]["loaders"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["rng"]["python"] == b["rng"]["python"]
    assert torch.equal(a["optimizer"]["state"][0]["exp_avg"], b["optimizer"]["state"][0]["exp_avg"])


@pytest.fixture
def interrupted(tiny_data, request):
    """(model, the uninterrupted run's result, the interrupted run's last checkpoint and its
    epoch); the interrupted run has the same config, epochs included."""
    model = request.param
    full = run_bifair(model=model, config_dict=tiny_config(tiny_data, **SETTINGS))
    with pytest.raises(Interrupted) as stop:
        run_bifair(model=model, config_dict=tiny_config(tiny_data, **SETTINGS),
                   callback_fn=interrupt_after_first_worse_epoch())
    [epoch] = stop.value.args
    [last] = [path for path in os.listdir("saved") if path.endswith("-last.pth") and path != os.path.basename(
        last_of(full))]
    return model, full, os.path.join("saved", last), epoch


@pytest.mark.parametrize("interrupted", ["SASRec", "GRU4Rec"], indirect=True)
def test_a_resumed_stock_run_ends_as_the_uninterrupted_one(interrupted, tiny_data):
    model, full, last, epoch = interrupted
    written = load_checkpoint(last)
    assert written["epoch"] == epoch and written["cur_step"] == 1  # one epoch past the best
    best = written["best_model_file"]
    assert load_checkpoint(best)["epoch"] < epoch
    assert full["epochs_trained"] < SETTINGS["epochs"]  # the uninterrupted run stopped early

    resumed = run_bifair(model=model, config_dict=tiny_config(tiny_data, resume_checkpoint=last, **SETTINGS))
    assert resumed["first_epoch"] == epoch + 1
    assert resumed["first_epoch"] + resumed["epochs_trained"] == full["epochs_trained"]
    assert resumed["best_valid_score"] == full["best_valid_score"]
    assert resumed["best_valid_result"] == full["best_valid_result"]
    assert resumed["test_result"] == full["test_result"]
    # the best checkpoint is still the interrupted run's file, holding the uninterrupted run's weights
    assert resumed["checkpoint"] == os.path.abspath(best)
    assert_same_tensors(load_checkpoint(best)["state_dict"], load_checkpoint(full["checkpoint"])["state_dict"])
    # the resumed run went on writing its last epoch into the file it resumed from
    assert_same_training_state(load_checkpoint(last), load_checkpoint(last_of(full)))


@pytest.mark.parametrize("interrupted", ["SASRec"], indirect=True)
def test_without_its_random_state_a_resume_ends_elsewhere(interrupted, tiny_data):
    """The random state is what makes the resume exact: dropout and the shuffle drawn afresh
    train other weights."""
    model, full, last, epoch = interrupted
    checkpoint = load_checkpoint(last)
    del checkpoint["rng"]
    torch.save(checkpoint, last)
    resumed = run_bifair(model=model, config_dict=tiny_config(tiny_data, resume_checkpoint=last, epochs=epoch + 2,
                                                              stopping_step=100, learning_rate=0.01))
    assert resumed["epochs_trained"] == 1
    uninterrupted = load_checkpoint(last_of(full))  # epoch + 1: the uninterrupted run's next epoch
    assert uninterrupted["epoch"] == epoch + 1
    assert not torch.equal(load_checkpoint(last)["state_dict"]["item_embedding.weight"],
                           uninterrupted["state_dict"]["item_embedding.weight"])


def test_a_run_resumed_after_it_stopped_early_trains_nothing_and_keeps_its_best(tiny_data):
    """The session ended after the stopping epoch's checkpoint, before the result was written."""
    full = run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, **SETTINGS))
    final = load_checkpoint(last_of(full))
    assert final["cur_step"] > SETTINGS["stopping_step"]  # early stopping ended it
    best = load_checkpoint(full["checkpoint"])
    assert best["epoch"] < final["epoch"]
    resumed = run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, resume_checkpoint=last_of(full),
                                                                 **SETTINGS))
    assert resumed["epochs_trained"] == 0 and resumed["first_epoch"] == full["epochs_trained"]
    assert resumed["test_result"] == full["test_result"]  # the best epoch's weights, not the last's
    assert resumed["best_valid_result"] == full["best_valid_result"]
    assert_same_tensors(load_checkpoint(full["checkpoint"])["state_dict"], best["state_dict"])


def test_a_last_checkpoint_finds_its_best_one_in_a_moved_folder(tiny_data, tmp_path):
    full = run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, epochs=1))
    moved = tmp_path / "moved"
    os.rename("saved", moved)
    last = str(moved / os.path.basename(last_of(full)))
    resumed = run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, epochs=1, resume_checkpoint=last))
    assert resumed["checkpoint"] == str(moved / os.path.basename(full["checkpoint"]))
    assert resumed["test_result"] == full["test_result"]
    os.remove(resumed["checkpoint"])
    missing = (f"^resume_checkpoint '{re.escape(last)}': its run's best checkpoint .* is missing \\(not beside it "
               f"either\\): keep the run's two .pth files together")
    with pytest.raises(ConfigError, match=missing):
        run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, epochs=1, resume_checkpoint=last))


def test_the_fairness_benchmark_resumes_a_stock_run(tiny_data, tmp_path):
    from benchmarks.lib import cache
    folder = tmp_path / "run"
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(yaml.safe_dump(tiny_config(tiny_data, model="SASRec", results_dir=str(folder),
                                                   checkpoint_dir=str(folder / "saved"), **SETTINGS)))
    files = [str(protocol)]
    with pytest.raises(Interrupted):
        run_bifair(config_file_list=files, callback_fn=interrupt_after_first_worse_epoch())
    planned = cache.planned_config(files)
    assert cache.finished(str(folder), planned) is None
    [last] = [str(folder / "saved" / name) for name in os.listdir(folder / "saved") if name.endswith("-last.pth")]
    assert cache.resumable(str(folder), planned) == last
    assert cache.resumable(str(folder), {**planned, "learning_rate": 0.02}) is None
    resumed = run_bifair(config_file_list=files, cmd_args=[f"--resume_checkpoint={last}"])
    assert cache.finished(str(folder), planned) == resumed["result_file"]
    assert json.load(open(resumed["result_file"]))["first_epoch"] > 0
