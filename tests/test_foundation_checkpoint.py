"""Checkpoints written by a run reload under torch 2.13 without running code (data only)."""

import shutil

import pytest
import torch
from recbole.trainer import Trainer

from recbole_bifair.quick_start import build_config, load_data_and_model, prepare_run, run_bifair
from tests.datagen import make_dataset, tiny_config


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoint")


@pytest.fixture(autouse=True)
def in_run_folder(run_folder, monkeypatch):
    monkeypatch.chdir(run_folder)  # RecBole's trainers write ./log_tensorboard, runs ./saved ...


@pytest.fixture(scope="module")
def trained(run_folder):
    """One finished 2-epoch run shared by the tests: (config, result)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(run_folder)
        config = build_config(model="SASRec", config_dict=tiny_config(make_dataset(run_folder / "data"), epochs=2))
        return config, run_bifair(config=config)


def same_weights(model, state_dict):
    return all(torch.equal(value, state_dict[key]) for key, value in model.state_dict().items())


def test_evaluate_loads_the_best_model(trained):
    config, result = trained
    checkpoint = torch.load(result["checkpoint"], weights_only=False)
    _, (_, _, test_data), model, trainer = prepare_run(config)
    assert not same_weights(model, checkpoint["state_dict"])  # a fresh model, not the trained one

    test_result = trainer.evaluate(test_data, load_best_model=True, model_file=result["checkpoint"])
    assert same_weights(model, checkpoint["state_dict"])
    assert dict(test_result) == result["test_result"]


def test_resume_checkpoint_restores_training_state(trained):
    config, result = trained
    checkpoint = torch.load(result["checkpoint"], weights_only=False)
    _, _, model, trainer = prepare_run(config)
    trainer.resume_checkpoint(result["checkpoint"])
    assert trainer.start_epoch == checkpoint["epoch"] + 1
    assert trainer.best_valid_score == result["best_valid_score"]
    assert same_weights(model, checkpoint["state_dict"])
    assert trainer.optimizer.state_dict()["state"]  # Adam's moments came back, not a fresh optimiser


def test_resume_through_the_runner_trains_only_the_remaining_epochs(trained, run_folder):
    _, result = trained
    # Resuming saves into the resumed file (RecBole's way): work on a copy of the shared one.
    copy = shutil.copy(result["checkpoint"], run_folder / "resume-me.pth")
    epoch = torch.load(copy, weights_only=False)["epoch"]
    resumed = run_bifair(model="SASRec", config_dict=tiny_config(run_folder / "data", epochs=3),
                         cmd_args=[f"--resume_checkpoint={copy}"])
    assert resumed["epochs_trained"] == 3 - (epoch + 1)
    assert resumed["first_epoch"] == epoch + 1 and result["first_epoch"] == 0  # the run's count is their sum


def test_load_data_and_model(trained):
    config, result = trained
    checkpoint = torch.load(result["checkpoint"], weights_only=False)
    loaded_config, model, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    assert loaded_config["model"] == "SASRec" and loaded_config["hidden_size"] == config["hidden_size"]
    assert same_weights(model, checkpoint["state_dict"])
    trainer = prepare_run(loaded_config)[3]
    trainer.model = model
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == result["test_result"]


def test_the_checkpoint_holds_data_only(trained):
    # torch's code-free loader reads it whole, so even RecBole's own Trainer loads the best model
    config, result = trained
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    assert checkpoint["config"]["model"] == "SASRec" and checkpoint["config"]["recorded"] == result["config"]
    _, (_, _, test_data), model, _ = prepare_run(config)
    Trainer(config, model).evaluate(test_data, load_best_model=True, model_file=result["checkpoint"])
    assert same_weights(model, checkpoint["state_dict"])
