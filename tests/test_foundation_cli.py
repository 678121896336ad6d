"""``run_recbole_bifair.py`` as a user runs it: a real process in a fresh folder.

The processes of this file start together (one fixture) and the tests read their outcomes:
each one pays the torch + RecBole import once, and they overlap.
"""

import glob
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from recbole_bifair.cli import run_cli
from recbole_bifair.quick_start import load_data_and_model
from recbole_bifair.run import main
from tests.datagen import make_dataset, tiny_config

REPO = Path(__file__).resolve().parent.parent
RUNNER = str(REPO / "run_recbole_bifair.py")
TINY = ["--model=SASRec", "--dataset=tiny", "--config_files=tiny.yaml"]

# name: (arguments, the one error line expected at the end of stderr)
BAD_INPUT = {
    "unknown_model": (["--model=NoSuchModel", "--dataset=tiny", "--config_files=tiny.yaml"],
                      r"unknown model 'NoSuchModel'\. Available models: .*GRU4Rec.*SASRec"),
    "unknown_dataset": (["--model=SASRec", "--dataset=no-such-set", "--config_files=tiny.yaml"],
                        r"dataset 'no-such-set' not found: .*Put its atomic files \(no-such-set\.inter.*data/no-such-set"),
    "missing_config_file": (["--model=SASRec", "--dataset=tiny", "--config_files=tiny.yaml missing.yaml"],
                            r"config file 'missing\.yaml' not found"),
    "malformed_config_file": (["--model=SASRec", "--dataset=tiny", "--config_files=tiny.yaml broken.yaml"],
                              r"config file 'broken\.yaml' line 2, column \d+: malformed YAML"),
    "key_without_value": (TINY + ["--epochs"], r"'--epochs' does not parse: write it as --key=value"),
    "no_key": (TINY + ["--=3"], r"'--=3': '' is not a config key name"),
    "model_flag_without_value": (["--model", "--dataset=tiny"], r"'--model' needs a value"),
}
# The same path without a process of its own each (exit status and stderr from run_cli).
IN_PROCESS_BAD_INPUT = {
    "empty_value": (TINY + ["--epochs="], r"'--epochs=' has no value"),
    "value_not_yaml": (TINY + ["--topk=[10,"], r"'--topk=\[10,': value '\[10,' does not parse as YAML"),
    "positional_argument": (TINY + ["SASRec"], r"'SASRec' does not parse: write it as --key=value"),
    "no_model": (["--dataset=tiny", "--config_files=tiny.yaml"], r"no model given: pass --model=NAME"),
    "empty_dataset": (["--model=SASRec", "--dataset="], r"'--dataset=' needs a value"),
}
DEBUG = ["--model=NoSuchModel", "--dataset=tiny", "--config_files=tiny.yaml", "--debug"]
RUN = TINY + ["--epochs=2", "--learning_rate=1e-2", "--topk=[5,10]", "--state=INFO"]


def prepare(folder):
    """A user's folder: data under ./data, a config file, and a broken one."""
    folder.mkdir()
    make_dataset(folder / "data")
    config = tiny_config("./data")
    config.pop("dataset")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(config))
    (folder / "broken.yaml").write_text("epochs: 2\nlearning_rate: 0.01: 0.02\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every process of this file at once; {name: (CompletedProcess-like, folder)}."""
    root = tmp_path_factory.mktemp("cli")
    jobs = {**{name: args for name, (args, _) in BAD_INPUT.items()}, "debug": DEBUG, "run": RUN,
            "help": ["--help"]}
    procs = {}
    for name, args in jobs.items():
        prepare(root / name)
        procs[name] = subprocess.Popen(
            [sys.executable, RUNNER, *args], cwd=root / name, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    outcomes = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        outcomes[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), root / name)
    return outcomes


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_gives_one_clear_error(runs, name):
    proc, folder = runs[name]
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), proc.stderr
    assert re.search(BAD_INPUT[name][1], lines[-1]), lines[-1]
    assert "Traceback" not in proc.stderr
    assert not (folder / "results").exists() and not (folder / "saved").exists()


@pytest.mark.parametrize("name", IN_PROCESS_BAD_INPUT)
def test_bad_input_in_process(name, tmp_path, monkeypatch, capsys):
    prepare(tmp_path / name)
    monkeypatch.chdir(tmp_path / name)
    args, expected = IN_PROCESS_BAD_INPUT[name]
    assert run_cli(main, args) == 2
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1 and re.search(expected, stderr), stderr
    assert sorted(os.listdir(".")) == ["broken.yaml", "data", "tiny.yaml"]  # no log, no result


def test_config_errors_come_before_any_output(runs):
    # Errors found while reading the command line and config files: that line and nothing else.
    for name in ["missing_config_file", "malformed_config_file", "key_without_value", "no_key",
                 "model_flag_without_value", "unknown_model"]:
        proc, folder = runs[name]
        assert len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)
        assert not (folder / "log").exists(), name


def test_debug_shows_the_traceback(runs):
    proc, _ = runs["debug"]
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown model 'NoSuchModel'")


def test_help(runs):
    proc, _ = runs["help"]
    assert proc.returncode == 0
    for word in ["--model=MODEL", "--dataset=DATASET", "--config_files", "--KEY=VALUE", "--debug",
                 "results_dir", "ml-100k", "example:"]:
        assert word in proc.stdout


@pytest.fixture(scope="module")
def run_result(runs):
    proc, folder = runs["run"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = glob.glob(str(folder / "results" / "*.json"))
    assert len(files) == 1
    with open(files[0], encoding="utf-8") as f:
        return json.load(f), folder


def test_run_writes_one_result_file(run_result):
    result, folder = run_result
    assert result["model"] == "SASRec" and result["dataset"] == "tiny"
    # config file, then command line on top
    assert result["config"]["epochs"] == 2 and result["config"]["learning_rate"] == 0.01
    assert result["config"]["hidden_size"] == 8 and result["config"]["topk"] == [5, 10]
    expected_metrics = {f"{m}@{k}" for m in ("recall", "ndcg", "hit") for k in (5, 10)}
    for split in ("best_valid_result", "test_result"):
        assert set(result[split]) == expected_metrics
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in result[split].values())
    assert result["best_valid_score"] == result["best_valid_result"]["ndcg@10"]
    assert result["epochs_trained"] == 2 and len(result["epoch_seconds"]) == 2
    assert result["seconds_per_epoch"] == pytest.approx(sum(result["epoch_seconds"]) / 2)
    assert result["total_seconds"] > sum(result["epoch_seconds"])
    assert os.path.isfile(result["checkpoint"])
    assert Path(result["checkpoint"]).is_relative_to(folder / "saved")
    assert not glob.glob(str(folder / "results" / ".*"))  # no temporary file left


def test_run_logs_like_recbole(run_result):
    _, folder = run_result
    assert glob.glob(str(folder / "log_tensorboard" / "*" / "**" / "events.out.tfevents.*"), recursive=True)
    logs = glob.glob(str(folder / "log" / "SASRec" / "*.log"))
    assert len(logs) == 1
    text = Path(logs[0]).read_text()
    assert "epoch 1 training" in text and "test result" in text


def test_test_result_matches_a_hand_computed_ranking(run_result, monkeypatch):
    # NDCG@10 and Hit@10 recomputed from the checkpoint's scores, without RecBole's evaluator.
    result, folder = run_result
    monkeypatch.chdir(folder)  # the run's data_path is relative to it
    _, model, dataset, _, _, test_data = load_data_and_model(result["checkpoint"])
    model.eval()
    ndcg, hit = [], []
    with torch.no_grad():
        for interaction, history_index, positive_u, positive_i in test_data:
            scores = model.full_sort_predict(interaction).view(-1, dataset.item_num)
            scores[:, 0] = -math.inf  # the padding item
            if history_index is not None:
                scores[history_index] = -math.inf
            target = scores[positive_u, positive_i]
            rank = (scores > target.unsqueeze(1)).sum(dim=1)  # 0 = ranked first
            for r in rank.tolist():
                hit.append(1.0 if r < 10 else 0.0)
                ndcg.append(1 / math.log2(r + 2) if r < 10 else 0.0)
    assert len(ndcg) == 40  # one test interaction per user
    assert result["test_result"]["ndcg@10"] == pytest.approx(sum(ndcg) / len(ndcg), abs=5e-5)
    assert result["test_result"]["hit@10"] == pytest.approx(sum(hit) / len(hit), abs=5e-5)
