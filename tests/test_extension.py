"""The extension path of docs/extending.md: a fairness method of your own in one file
(``docs/examples/popularity_penalty.py``), imported through ``method_modules``, trains through the
runner's command line, and is a row of ``benchmarks/fairness.py`` given as a method file by path."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from benchmarks import fairness
from benchmarks.lib import methods, protocol
from recbole_bifair.errors import ConfigError
from recbole_bifair.methods.catalog import import_method_modules
from recbole_bifair.methods.registry import lookup
from recbole_bifair.quick_start import load_data_and_model
from recbole_bifair.run import main as run_main
from tests.bifair_fixtures import bifair_config, bifair_setup

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "popularity_penalty.py"
NAME = "popularity_penalty"


def example_class():
    import_method_modules([str(EXAMPLE)])
    return lookup(NAME)


def test_the_example_is_one_short_file_that_registers_its_name():
    assert len(EXAMPLE.read_text(encoding="utf-8").splitlines()) < 50
    cls = example_class()
    assert cls.name == NAME and cls.group_loop and cls.__module__.startswith("bifair_user_method_")


def test_extending_md_shows_the_examples_code_as_it_is():
    text = (EXAMPLE.parent.parent / "extending.md").read_text(encoding="utf-8")
    block = text.split("# docs/examples/popularity_penalty.py\n", 1)[1].split("```", 1)[0]
    assert "register_method" in block and block in EXAMPLE.read_text(encoding="utf-8")
    assert f"--method_modules=docs/examples/popularity_penalty.py --fair_method={NAME}" in text


def test_its_loss_term_is_the_weighted_excess_of_the_tail_groups_loss():
    method = example_class()({"popularity_penalty_weight": 2.0})
    L_g = torch.tensor([0.5, 9.0, 1.25])  # head (pop1), middle, tail (pop3)
    everyone = torch.tensor([True, True, True])
    assert method.loss_term(L_g, everyone).item() == pytest.approx(2.0 * 0.75)
    assert method.loss_term(torch.tensor([2.0, 0.0, 1.0]), everyone).item() == 0.0  # tail below head: nothing
    assert method.loss_term(L_g, torch.tensor([True, True, False])) is None  # no tail target in the batch
    assert example_class()({"popularity_penalty_weight": None}).weight == 1.0  # unset: the default
    with pytest.raises(ConfigError, match="popularity_penalty_weight must be a finite number for fair_method: "
                                          "popularity_penalty"):
        example_class()({"popularity_penalty_weight": "a lot"})


def _cli_run(tmp_path, name, config, *flags):
    """The runner's command line on the tiny dataset (``config`` in a file), its result JSON."""
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(json.dumps({**config, "results_dir": str(tmp_path / name)}))
    run_main(["--model=LLMSASRec", f"--config_files={config_file}", *flags])
    (result,) = (tmp_path / name).glob("*.json")
    return json.loads(result.read_text())


def test_it_trains_through_the_command_line_and_its_loss_term_changes_the_training(tmp_path, monkeypatch):
    root, emb = bifair_setup(tmp_path, monkeypatch)
    config = bifair_config(root, emb, fair_method="none", epochs=2, seed=7)
    own = [f"--method_modules={EXAMPLE}", f"--fair_method={NAME}"]
    penalised = _cli_run(tmp_path, "penalised", config, *own, "--popularity_penalty_weight=5.0")
    assert penalised["config"]["fair_method"] == NAME and penalised["config"]["method_modules"] == str(EXAMPLE)
    assert penalised["config"]["popularity_penalty_weight"] == 5.0
    for split in ("best_valid_result", "test_result"):
        assert penalised[split] and all(math.isfinite(v) for v in penalised[split].values())
    # the same run without the term (weight 0), and the plain baseline: the term is in the loss
    # the trainer logged and changes what is learned
    off = _cli_run(tmp_path, "off", config, *own, "--popularity_penalty_weight=0.0")
    plain = _cli_run(tmp_path, "plain", config)
    assert plain["config"]["fair_method"] == "none" and "training_log" not in plain  # RecBole's own loop
    losses = [[epoch["inner_loss"] for epoch in run["training_log"]] for run in (penalised, off)]
    assert len(losses[0]) == 2 and losses[0] != losses[1]
    trained = [torch.load(run["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
               for run in (penalised, off)]
    assert any(not torch.equal(trained[0][k], trained[1][k]) for k in trained[0])
    # the checkpoint brings its method back (method_modules is in its config)
    _, model, *_ = load_data_and_model(penalised["checkpoint"])
    assert model.method.name == NAME and model.method.weight == 5.0


def test_an_unknown_method_without_its_module_is_a_config_error_naming_the_fix(tmp_path, monkeypatch):
    root, emb = bifair_setup(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="fair_method 'not_registered' is unknown.*register_method"):
        _cli_run(tmp_path, "unknown", bifair_config(root, emb, fair_method="none"), "--fair_method=not_registered")


def test_the_benchmark_runs_a_method_file_given_by_path_as_a_row_named_by_its_stem(tmp_path, monkeypatch):
    root, emb = bifair_setup(tmp_path, monkeypatch)
    # the tiny data's settings; the protocol's metrics, the method files' fair_method
    tiny = {k: v for k, v in bifair_config(root, emb, fair_method="none").items()
            if k not in ("metrics", "valid_metric", "epochs", "fair_method")}
    monkeypatch.setitem(protocol.DATASETS, "tiny", tiny)
    monkeypatch.setitem(protocol.BUDGETS, "quick", {"epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "hidden_size": 8,
                                                    "inner_size": 16, "train_batch_size": 64})
    monkeypatch.setattr(methods, "METHOD_FILES", {})
    method = tmp_path / "mine" / "PopPenalty.yaml"
    method.parent.mkdir()
    method.write_text(yaml.safe_dump({"model": "LLMSASRec", "fair_method": NAME, "method_modules": str(EXAMPLE),
                                      "popularity_penalty_weight": 1.0}))
    out = tmp_path / "out"
    fairness.main(["--profile=quick", "--dataset=tiny", f"--data_path={root}", f"--methods=LLM-SASRec,{method}",
                   f"--workdir={tmp_path / 'work'}", f"--out_dir={out}", "--archive=", "--jobs=1"])
    (csv,) = out.glob("*.csv")
    table = pd.read_csv(csv).set_index("method")
    assert list(table.index) == ["LLM-SASRec", "PopPenalty"]
    assert all(math.isfinite(v) for v in table.loc["PopPenalty", ["ndcg@10", "cv"]])
    (run,) = (tmp_path / "work").glob("*/PopPenalty-seed2020/*.json")
    recorded = json.loads(run.read_text())["config"]
    assert recorded["fair_method"] == NAME and recorded["popularity_penalty_weight"] == 1.0
    assert methods.method_file("PopPenalty") == str(method)


def test_a_method_file_by_path_parses_to_its_stem_and_a_clash_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(methods, "METHOD_FILES", {})
    mine = tmp_path / "MyMethod.yaml"
    mine.write_text("model: LLMSASRec\n")
    assert methods.parse_method(f"{mine}[popularity_penalty_weight=0.5]") == (
        "MyMethod", {"popularity_penalty_weight": 0.5})
    assert methods.row_name(f" {mine}[a=1] ") == "MyMethod[a=1]" and methods.row_name("IPS[a=1]") == "IPS[a=1]"
    assert methods.parse_method("MyMethod") == ("MyMethod", {})  # by its name, once given by path
    assert methods.parse_method(methods.method_file("IPS")) == ("IPS", {})  # a shipped file: its method
    other = tmp_path / "other"
    other.mkdir()
    (other / "MyMethod.yaml").write_text("model: LLMSASRec\n")
    (other / "IPS.yaml").write_text("model: LLMSASRec\n")
    for entry, why in [(other / "MyMethod.yaml", "another method file is named 'MyMethod'"),
                       (other / "IPS.yaml", "'IPS' is the name of a method of properties/methods/"),
                       (other / "Gone.yaml", "no method file")]:
        with pytest.raises(ValueError, match=why):
            methods.parse_method(str(entry))
