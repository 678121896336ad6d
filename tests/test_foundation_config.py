"""BiFairConfig: precedence of every config layer, command-line parsing, config-file errors."""

import sys

import pytest
import yaml
from recbole.config import Config
from recbole.model.sequential_recommender import GRU4Rec, SASRec

import recbole_bifair.config as config_module
from recbole_bifair.config import BiFairConfig, load_yaml_file, parse_cmd_args, parse_value
from recbole_bifair.errors import ConfigError
from tests.datagen import tiny_config


class BiFairToy(SASRec):
    """A plugin wrapper around SASRec, as BiFair<Backbone> models are."""

    backbone_name = "SASRec"


LEVELS = ["plugin_overall", "plugin_model", "plugin_dataset", "file", "dict", "cmd"]


def chain(upto):
    """``layer_<i>: <level name>`` for every key that level ``upto`` (or a later one) also sets."""
    return {f"layer_{i}": LEVELS[upto] for i in range(upto, len(LEVELS))}


@pytest.fixture
def fake_properties(tmp_path, monkeypatch):
    """A plugin properties/ folder whose every layer sets the keys of the precedence chain."""
    root = tmp_path / "properties"
    (root / "model").mkdir(parents=True)
    (root / "dataset").mkdir()
    # epochs: RecBole's overall.yaml says 300; inner_size: the backbone's SASRec.yaml says 256.
    (root / "overall.yaml").write_text(yaml.safe_dump({**chain(0), "epochs": 7, "inner_size": 128}))
    # hidden_size: the backbone's SASRec.yaml says 64.
    (root / "model" / "BiFairToy.yaml").write_text(yaml.safe_dump({**chain(1), "hidden_size": 32, "toy_alpha": 0.5}))
    (root / "dataset" / "tiny.yaml").write_text(yaml.safe_dump(chain(2)))
    monkeypatch.setattr(config_module, "properties_dir", lambda: root)
    return root


def test_each_layer_overrides_the_ones_below(fake_properties, tmp_path):
    first = tmp_path / "first.yaml"
    second = tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump({**chain(3), "learning_rate": 0.5, "train_batch_size": 99}))
    second.write_text("train_batch_size: 77\n")  # a later config file wins over an earlier one
    config = BiFairConfig(
        model=BiFairToy, dataset="tiny", config_file_list=[str(first), str(second)],
        config_dict={**chain(4), "data_path": str(tmp_path)},
        cmd_args=[f"--{key}={value}" for key, value in chain(5).items()],
    )
    for i, level in enumerate(LEVELS):
        assert config[f"layer_{i}"] == level, f"layer_{i} should come from {level}"
    assert config["learning_rate"] == 0.5 and config["train_batch_size"] == 77
    # RecBole's own internal layers are below the plugin's and still present.
    assert config["epochs"] == 7  # plugin overall.yaml over RecBole's overall.yaml
    assert config["stopping_step"] == 10  # RecBole's overall.yaml, untouched
    assert config["eval_args"]["order"] == "TO"  # RecBole's quick-start yaml for sequential models
    # The backbone's RecBole yaml is an internal default too, below the plugin's yamls.
    assert config["n_layers"] == 2 and config["loss_type"] == "CE"
    assert config["inner_size"] == 128  # plugin overall.yaml over SASRec.yaml
    assert config["hidden_size"] == 32  # plugin model yaml over SASRec.yaml
    assert {"n_layers", "hidden_size", "inner_size", "toy_alpha"} <= set(config.model_config_keys)


def test_plugin_defaults_load_for_stock_models(tmp_path):
    config = BiFairConfig(model="SASRec", config_dict=tiny_config(tmp_path))
    plugin_defaults = load_yaml_file(config_module.properties_dir() / "overall.yaml")
    assert plugin_defaults  # the shipped properties/overall.yaml is not empty
    for key, value in plugin_defaults.items():
        if key == "train_mode":  # ~ is resolved when the config is built
            assert value is None and config[key] == "sequence"
            continue
        if key == "seq_window_stride":  # ~: the window length, resolved for sequence training
            assert value is None and config[key] == config["MAX_ITEM_LIST_LENGTH"]
            continue
        if key == "group_offsets":  # ~: resolved, off for every model but BiFair with its outer level
            assert value is None and config[key] == "none"
            continue
        assert config[key] == value, key
    assert config.model_class is SASRec
    assert config["hidden_size"] == 8  # config dict over SASRec.yaml's 64


def test_result_files_record_the_plugin_defaults(tmp_path):
    """A run's recorded config names BiFair's loop settings even when the user set none of them,
    so a result file says which defaults produced it."""
    from recbole_bifair.schema import recorded_config

    config = BiFairConfig(model="BiFairSASRec", config_dict=tiny_config(tmp_path))
    recorded = recorded_config(config)
    from recbole_bifair.schema import property_file

    for key in ("outer_learning_rate", "outer_mu", "hypergrad", "balance", "n_item_groups"):
        # each key's default lives in one property file (overall, model/llm or method/bifair)
        plugin_defaults = load_yaml_file(config_module.properties_dir() / property_file(key))
        assert key in plugin_defaults and recorded[key] == config[key], key
    assert recorded["hidden_size"] == 8


def test_gru4rec_falls_back_to_recbole_with_its_yaml(tmp_path):
    config = BiFairConfig(model="GRU4Rec", config_dict=tiny_config(tmp_path))
    assert config.model_class is GRU4Rec
    assert config["embedding_size"] == 64 and config["num_layers"] == 1  # RecBole's GRU4Rec.yaml
    assert {"embedding_size", "num_layers", "dropout_prob"} <= set(config.model_config_keys)


def test_ce_models_drop_the_sampler_unless_the_user_sets_one(tmp_path):
    ce = BiFairConfig(model="SASRec", config_dict=tiny_config(tmp_path))
    assert ce["train_neg_sample_args"]["distribution"] == "none"  # how RecBole stores "no sampler"
    # Plain RecBole rejects the same config: the sampler of its overall.yaml clashes with CE.
    with pytest.raises(ValueError, match="should be None when the loss_type is CE"):
        Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tmp_path))
    bpr = BiFairConfig(model="SASRec", config_dict=tiny_config(tmp_path), cmd_args=["--loss_type=BPR"])
    assert bpr["train_neg_sample_args"]["distribution"] == "uniform"


def test_sys_argv_is_never_read(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest", "--epochs=99", "--model=GRU4Rec"])
    config = BiFairConfig(model="SASRec", config_dict=tiny_config(tmp_path), cmd_args=["--seed=5"])
    assert config["epochs"] == 1 and config["seed"] == 5 and config["model"] == "SASRec"


def test_model_and_dataset_can_come_from_a_config_file(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("model: GRU4Rec\ndataset: tiny\n")
    config = BiFairConfig(config_file_list=[str(file)], config_dict={"data_path": str(tmp_path)})
    assert config["model"] == "GRU4Rec" and config["dataset"] == "tiny"


@pytest.mark.parametrize("model, dataset, message", [
    (None, "tiny", "no model given"),
    ("SASRec", None, "no dataset given"),
    ("recbole.SASRec", "tiny", "is not a class name. Available models: .*SASRec"),
    ("SASRec", "../elsewhere", "is not a folder name"),
    ("SASRec", "", "is not a folder name"),
])
def test_missing_or_malformed_model_and_dataset(tmp_path, model, dataset, message):
    with pytest.raises(ConfigError, match=message):
        BiFairConfig(model=model, dataset=dataset, config_dict={"data_path": str(tmp_path)})


# Values where RecBole's eval-based parser and ours must agree.
SHARED_VALUES = ["1e-3", "-2.5E+2", "0.001", "2020", "[10, 20]", "['Recall', 'NDCG']",
                 "{'RS': [0.8, 0.1, 0.1]}", "{'inter': ['user_id', 'item_id']}", "True", "False",
                 "None", "cpu", "NDCG@10", "[0,inf)", "(0,10]", "[5,inf)"]


@pytest.mark.parametrize("text", SHARED_VALUES)
def test_parse_value_agrees_with_recbole(text):
    recbole = Config._convert_config_dict(None, {"key": text})["key"]
    assert parse_value(text) == recbole
    assert type(parse_value(text)) is type(recbole)


@pytest.mark.parametrize("text, expected", [
    ("~", None), ("none", None), ("true", True), ("[]", []), ("{}", {}), ("'007'", "007"),
    ("{RS: [0.8, 0.1, 0.1]}", {"RS": [0.8, 0.1, 0.1]}),
])
def test_parse_value_reads_yaml(text, expected):
    assert parse_value(text) == expected


@pytest.mark.parametrize("text", ["[1, 2", "{'a': 1", "@x"])
def test_parse_value_rejects_broken_yaml(text):
    with pytest.raises(ValueError):
        parse_value(text)


def test_parse_cmd_args():
    parsed = parse_cmd_args(["--learning_rate=1e-3", "--topk=[10,20]", "--eval_args={'order': 'RO'}",
                             "--valid_metric=NDCG@10", "--seed=1", "--seed=1"])
    assert parsed == {"learning_rate": 0.001, "topk": [10, 20], "eval_args": {"order": "RO"},
                      "valid_metric": "NDCG@10", "seed": 1}


@pytest.mark.parametrize("arg, message", [
    ("--epochs", "does not parse: write it as --key=value"),
    ("epochs=3", "does not parse"),
    ("SASRec", "does not parse"),
    ("--=3", "'' is not a config key name"),
    ("--bad key=3", "is not a config key name"),
    ("--epochs=", "has no value"),
    ("--topk=[10, 20", "value '\\[10, 20' does not parse as YAML"),
])
def test_parse_cmd_args_rejects(arg, message):
    with pytest.raises(ConfigError, match=message):
        parse_cmd_args([arg])


def test_parse_cmd_args_rejects_conflicting_duplicates():
    with pytest.raises(ConfigError, match="'seed' given twice"):
        parse_cmd_args(["--seed=1", "--seed=2"])


def test_config_file_errors_name_the_file_and_line(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=f"config file '{missing}' not found"):
        load_yaml_file(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: 5\nlearning_rate: 0.01: 2\nseed: 1\n")
    with pytest.raises(ConfigError, match=f"config file '{broken}' line 2, column \\d+: malformed YAML"):
        load_yaml_file(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- epochs\n- seed\n")
    with pytest.raises(ConfigError, match="expected `key: value` lines, got a list"):
        load_yaml_file(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set\n")
    assert load_yaml_file(empty) == {}


def test_config_files_use_recbole_float_rules(tmp_path):
    file = tmp_path / "lr.yaml"
    file.write_text("learning_rate: 1e-3\nweight_decay: 5E-4\n")
    config = BiFairConfig(model="SASRec", config_file_list=[str(file)], config_dict=tiny_config(tmp_path))
    assert config["learning_rate"] == 0.001 and config["weight_decay"] == 0.0005


@pytest.mark.parametrize("model", ["SASRec", "LLMSASRec", "BiFairSASRec"])
def test_the_plugins_sasrec_defaults_hold_for_sasrec_and_its_llm_models(tmp_path, model):
    """properties/model/SASRec.yaml (the recipe of METHOD.md 3c) over RecBole's SASRec.yaml, for the
    stock model and the LLM models on its backbone; recorded as model keys; a user's value wins."""
    given = {k: v for k, v in tiny_config(tmp_path).items() if k != "n_heads"}
    config = BiFairConfig(model=model, config_dict=given)
    assert (config["n_heads"], config["hidden_dropout_prob"], config["attn_dropout_prob"]) == (1, 0.1, 0.1)
    assert {"n_heads", "hidden_dropout_prob", "attn_dropout_prob"} <= set(config.model_config_keys)
    assert BiFairConfig(model=model, config_dict={**given, "hidden_dropout_prob": 0.3})["hidden_dropout_prob"] == 0.3


def test_ml1m_gets_the_recipes_window_and_other_data_recboles(tmp_path):
    given = {k: v for k, v in tiny_config(tmp_path).items() if k not in ("dataset", "MAX_ITEM_LIST_LENGTH")}
    assert BiFairConfig(model="SASRec", dataset="ml-1m", config_dict=given)["MAX_ITEM_LIST_LENGTH"] == 200
    assert BiFairConfig(model="SASRec", dataset="ml-100k", config_dict=given)["MAX_ITEM_LIST_LENGTH"] == 50
    mine = BiFairConfig(model="SASRec", dataset="ml-1m", config_dict={**given, "MAX_ITEM_LIST_LENGTH": 30})
    assert mine["MAX_ITEM_LIST_LENGTH"] == 30
