"""What a run shows and where it writes: a quiet console, a full log file, unique paths per run,
the ``threads`` key, and a ``--help`` that answers before torch or RecBole load."""

import logging
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from recbole_bifair.errors import ConfigError
from recbole_bifair.logging_setup import CONSOLE, WIDTH, epoch_line, init_logger
from tests.bifair_fixtures import bifair_config, bifair_setup
from tests.datagen import tiny_config

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIME = re.compile(r"^\d\d:\d\d:\d\d ")


@pytest.fixture
def fresh_root_logger():
    """Leave no handler of a test's run (its files are in tmp_path) on the root logger."""
    yield
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def console_lines(text):
    return [ANSI.sub("", line) for line in text.splitlines() if line.strip()]


def run_and_read(run_config, model, capsys):
    """A run with its console captured: (result, console lines without the time, log file text)."""
    from recbole_bifair.quick_start import run_bifair

    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the plugin's filters, installed by the run, must still hold
        result = run_bifair(model=model, config_dict=run_config)
    lines = console_lines(capsys.readouterr().err)
    assert all(TIME.match(line) for line in lines), lines
    log_file = Path("log") / model / f"{result['run_id']}.log"
    return result, lines, log_file.read_text(), [w for w in caught if issubclass(w.category, FutureWarning)]


@pytest.mark.parametrize("model", ["SASRec", "BiFairSASRec"])
def test_a_run_console_is_quiet_and_its_log_file_complete(tmp_path, monkeypatch, capsys, fresh_root_logger,
                                                          torch_threads, model):
    root, emb = bifair_setup(tmp_path, monkeypatch)
    make = bifair_config if model.startswith("BiFair") else (lambda r, e, **kw: tiny_config(r, **kw))
    result, lines, log_text, future_warnings = run_and_read(
        make(root, emb, state="INFO", threads=1, epochs=2), model, capsys)
    run_id = result["run_id"]
    device = "cuda" if torch.cuda.is_available() else "cpu"

    bare = [TIME.sub("", line) for line in lines]
    assert bare[0] == f"recbole-bifair: {model} on tiny, 1 thread, {device}; log: log/{model}/{run_id}.log"
    epochs = [line for line in lines if " epoch " in line]
    assert [TIME.sub("", line).split("  ")[0] for line in epochs] == ["epoch 0/2", "epoch 1/2"]
    assert all(len(line) <= WIDTH for line in epochs), epochs
    last = TIME.sub("", epochs[-1])
    assert re.search(r"^epoch 1/2  \d+\.\d s  loss \d+\.\d{4}  valid ndcg@10 \d\.\d{4}", last), last
    assert any(f"valid ndcg@10 {result['best_valid_score']:.4f} best" in line for line in epochs)
    if model.startswith("BiFair"):
        assert re.search(r"group loss \d\.\d{3}-\d\.\d{3}  E drift \d\.\d{3}%$", last), last
    assert bare[-2] == "test: " + "  ".join(f"{k} {v:.4f}" for k, v in result["test_result"].items())
    assert bare[-1] == f"result file: {result['result_file']}"
    assert len(lines) == 1 + len(epochs) + 2  # nothing else: no config dump, no tables, no warnings
    assert future_warnings == [], [str(w.message)[:80] for w in future_warnings]

    # the log file holds what the console leaves out
    for detail in ["Hyper Parameters", "learning_rate = ", "epoch 1 training [", "valid result", "test result",
                   "per-group evaluation", bare[0]]:
        assert detail in log_text, detail
    if model.startswith("BiFair"):
        assert "epoch 1 bifair [inner loss" in log_text
    if device == "cpu":  # what the run uses, not RecBole's defaults gpu_id '0', use_gpu True
        assert re.search(r"^use_gpu = False$", log_text, re.M) and re.search(r"^gpu_id = $", log_text, re.M)


def test_debug_state_shows_everything_on_the_console(tmp_path, monkeypatch, capsys, fresh_root_logger):
    monkeypatch.chdir(tmp_path)
    for state, shown in [("INFO", ["plugin line", "a warning"]), ("DEBUG", ["detail", "plugin line", "a warning"])]:
        init_logger({"state": state}, "log/x.log")
        logger = logging.getLogger()
        logger.info("detail")
        logger.info("plugin line", extra=CONSOLE)
        logger.warning("a warning")
        assert [TIME.sub("", line) for line in console_lines(capsys.readouterr().err)] == [
            "WARNING: a warning" if s == "a warning" else s for s in shown]
    assert Path("log/x.log").read_text().count("detail") == 2


def test_the_epoch_line_drops_the_extras_that_do_not_fit():
    line = epoch_line(123, 300, 4567.8, 123456.7891, "averagepopularity@10", 12.3456, True,
                      ["group loss 10.123-12.345", "E drift 12.345%", "x" * 60])
    assert len("00:00:00 " + line) <= WIDTH
    assert line == ("epoch 123/300  4567.8 s  loss 123456.7891  valid averagepopularity@10 12.3456 best  "
                    "group loss 10.123-12.345")


def test_two_runs_in_the_same_second_get_their_own_log_and_tensorboard(tmp_path, monkeypatch, fresh_root_logger):
    import recbole.utils.logger as recbole_logger
    from recbole.utils import get_tensorboard, init_logger as recbole_init_logger

    import recbole_bifair.quick_start as quick_start

    monkeypatch.chdir(tmp_path)
    for module in (quick_start, recbole_logger):  # both runs start in the same second
        monkeypatch.setattr(module, "get_local_time", lambda: "Dec-07-2026_10-00-00")
    config = quick_start.build_config("SASRec", "tiny", config_dict=tiny_config(tmp_path / "data"))

    def paths(init):
        init()
        root = logging.getLogger()
        log_file = next(h.baseFilename for h in root.handlers if hasattr(h, "baseFilename"))
        writer = get_tensorboard(root)  # what RecBole's Trainer calls
        writer.close()
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        return log_file, writer.log_dir

    def recbole_run():
        root = logging.getLogger()
        for handler in root.handlers[:]:  # RecBole's logging.basicConfig adds nothing to a root that has handlers
            root.removeHandler(handler)
        recbole_init_logger(config)

    assert paths(recbole_run) == paths(recbole_run)  # the control: RecBole's names collide

    ids = []
    first, second = (paths(lambda: ids.append(quick_start.init_run_logger(config))) for _ in range(2))
    assert ids[0] != ids[1]
    assert first != second and first[0] != second[0] and first[1] != second[1]
    for run_id, (log_file, tensorboard) in zip(ids, (first, second)):
        assert Path(log_file) == (tmp_path / "log" / "SASRec" / f"{run_id}.log")
        assert Path(tensorboard) == Path("log_tensorboard") / run_id


def test_a_dot_in_the_dataset_name_stays_out_of_the_run_id(tmp_path):
    from recbole_bifair.quick_start import new_run_id

    run_id = new_run_id({"model": "SASRec", "dataset": "my.data"})
    assert run_id.startswith("SASRec-my_data-") and "." not in run_id


def test_threads_are_applied(torch_threads):
    from recbole_bifair.quick_start import set_threads

    assert set_threads({"threads": 2}) == 2 and torch.get_num_threads() == 2
    assert set_threads({"threads": 1}) == 1 and torch.get_num_threads() == 1
    # ~: the idle cores, never more than torch had
    assert set_threads({"threads": None}) == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    assert set_threads({"threads": None}) in (1, 2)
    for bad in [0, -1, 1.5, "2", True]:
        with pytest.raises(ConfigError, match=r"threads must be an integer >= 1 or ~"):
            set_threads({"threads": bad})


def test_help_is_fast_and_importing_the_package_is_light():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "run_recbole_bifair.py"), "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - started
    assert proc.returncode == 0 and proc.stdout.startswith("Train and evaluate one model"), proc.stderr
    assert "usage: run_recbole_bifair" in proc.stdout and "threads (torch CPU" in proc.stdout
    assert seconds < 2, seconds

    light = ("import sys, recbole_bifair, recbole_bifair.run\n"
             "assert 'torch' not in sys.modules and 'recbole' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", light], cwd=REPO, check=True, timeout=60)


def test_setup_registers_the_metrics_and_patches_recbole():
    code = ("import recbole_bifair\n"
            "import recbole.evaluator.register as register\n"
            "assert 'ndcgcv' not in register.metrics_dict\n"
            "recbole_bifair.setup()\n"
            "recbole_bifair.setup()\n"
            "assert 'ndcgcv' in register.metrics_dict\n"
            "import torch\n"
            "assert not torch.is_anomaly_enabled()\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
