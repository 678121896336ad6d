"""``run_hyper`` rejects bad input before Ray starts, with one line naming the file, line or flag."""

import pytest
import ray
import yaml

from recbole_bifair.cli import run_cli
from recbole_bifair.errors import ConfigError
from recbole_bifair.tune.cli import main, parse_args
from tests.datagen import make_dataset, tiny_config


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path / "data")
    config = tiny_config("data")
    config.pop("dataset")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def run_hyper(workspace, space, *extra):
    (workspace / "space.hyper").write_text(space)
    argv = ["--model=SASRec", "--dataset=tiny", "--params_file=space.hyper", "--config_files=tiny.yaml",
            "--storage_path=ray_results", "--output_dir=report", *extra]
    return run_cli(main, argv)


def assert_rejected_before_ray(workspace, capsys, code, *words):
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    for word in words:
        assert word in err
    assert not ray.is_initialized()
    assert not (workspace / "ray_results").exists() and not (workspace / "report").exists()


@pytest.mark.parametrize("space, words", [
    ("learning_rate choice [0.01]\nhidden_size gaussian 8,16\n", ["'space.hyper' line 2", "unknown type 'gaussian'"]),
    ("learning_rate loguniform -2,-8\n", ["'space.hyper' line 1", "is empty"]),
    ("n_heads choice [1, 2\n", ["'space.hyper' line 1", "Python list literal"]),
    ("metrics choice [['NDCG']]\n", ["'space.hyper' line 1", "'metrics' cannot be searched"]),
])
def test_bad_params_file_is_rejected_naming_the_line(workspace, capsys, space, words):
    assert_rejected_before_ray(workspace, capsys, run_hyper(workspace, space), *words)


@pytest.mark.parametrize("extra, words", [
    (["--objective=mrr@10"], ["metric 'mrr@10'", "recall@10, ndcg@10, hit@10"]),
    (["--constraint=giniindex@10<=0.3"], ["metric 'giniindex@10'"]),
    (["--constraint=recall@10~0.3"], ["--constraint='recall@10~0.3' does not parse"]),
    (["--learning_rate=0.1"], ["'learning_rate' is both searched", "line 1"]),
    (["--num_samples=4"], ["--num_samples does not apply to --algo=exhaustive"]),
    (["--num_samples=four"], ["--num_samples=four: expected an integer"]),
    (["--algo=random", "--num_samples=0"], ["--num_samples=0: must be positive"]),
    (["--scheduler=hyperband"], ["--scheduler=hyperband: use one of asha, fifo"]),
    (["--grace_period=5"], ["--grace_period=5 exceeds the 1 training epochs"]),
    (["--resume"], ["--resume: no search named 'SASRec-tiny'"]),
    (["--eval_step=0"], ["eval_step=0: a search compares trials on validation"]),
    (["--config_files=missing.yaml"], ["config file 'missing.yaml' not found"]),
])
def test_bad_flags_are_rejected_before_ray_starts(workspace, capsys, extra, words):
    code = run_hyper(workspace, "learning_rate choice [0.01, 0.001]\n", *extra)
    assert_rejected_before_ray(workspace, capsys, code, *words)


def test_flags_parse_into_plan_and_run_arguments():
    plan, run = parse_args([
        "--model=SASRec", "--dataset=ml-100k", "--params_file=p.hyper", "--config_files=a.yaml b.yaml",
        "--num_samples=8", "--cpus_per_trial=2", "--address=auto", "--resume", "--epochs=3", "--debug",
    ])
    assert plan["config_files"] == ["a.yaml", "b.yaml"] and plan["num_samples"] == 8
    assert plan["cpus_per_trial"] == 2.0 and plan["overrides"] == ["--epochs=3"]
    assert run == {"address": "auto", "resume": True}
    with pytest.raises(ConfigError, match="--params_file is required"):
        parse_args(["--model=SASRec", "--dataset=ml-100k"])
    with pytest.raises(ConfigError, match="--resume takes no value"):
        parse_args(["--model=SASRec", "--dataset=ml-100k", "--params_file=p", "--resume=yes"])
