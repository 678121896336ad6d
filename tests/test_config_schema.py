"""The typed config schema: every key checked when the config is built, before any data is read.

Bad values go through the runner's real entry point (``run_cli(main, ...)``); the check fails
while the config is built, so a case costs a few milliseconds. The dataset named does not exist
and the working directory is a temporary folder: a value that wrongly passed would end in a
different error, never in a run.
"""

import glob
import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from recbole.config import Config
from recbole.evaluator import metric_types

from recbole_bifair import setup
from recbole_bifair.cli import run_cli
from recbole_bifair.compat import RECBOLE_PROPERTIES
from recbole_bifair.config import BiFairConfig, load_yaml_file, properties_dir
from recbole_bifair.errors import ConfigError
from recbole_bifair.fileio import to_json_value, write_json_atomic
from recbole_bifair.run import main
from recbole_bifair.schema import (
    PER_MODEL, PLUGIN_SECTIONS, PROPERTY_FILES, RECBOLE, SCHEMA, Range, check_config, markdown, plugin_keys,
    method_of_key, properties_text, property_file,
)
from tests.datagen import tiny_config

REPO = Path(__file__).resolve().parent.parent
RUN = ["--model=BiFairSASRec", "--dataset=no-such-dataset"]


# ----- the schema agrees with the property files, RecBole and the code -------------------------
@pytest.mark.parametrize("file", list(PROPERTY_FILES))
def test_each_property_file_is_the_schemas(file):
    """The files under properties/ are generated from the schema (``python -m recbole_bifair.schema
    --properties properties``): each holds its sections' keys, defaults, types and docs."""
    assert (properties_dir() / file).read_text(encoding="utf-8") == properties_text(file)
    defaults = load_yaml_file(properties_dir() / file)
    assert list(defaults) == [k.name for k in plugin_keys(file)]
    for key in plugin_keys(file):
        assert key.default == defaults[key.name] and type(key.default) is type(defaults[key.name])
        key.check(defaults[key.name])
        assert property_file(key.name) == file


def test_every_plugin_key_is_in_exactly_one_property_file():
    names = [k.name for file in PROPERTY_FILES for k in plugin_keys(file)]
    assert sorted(names) == sorted(k.name for k in plugin_keys()) and len(names) == len(set(names))
    on_disk = {f.relative_to(properties_dir()).as_posix() for f in properties_dir().glob("*/*.yaml")
               if f.parent.name in ("model", "method")} | {"overall.yaml"}
    models = {f"model/BiFair{b}.yaml" for b in ("SASRec", "GRU4Rec", "BERT4Rec")} | {"model/SASRec.yaml"}
    assert on_disk == set(PROPERTY_FILES) | models


def test_the_plugins_sasrec_defaults_are_recboles_sasrec_keys():
    """properties/model/SASRec.yaml changes values of RecBole's SASRec.yaml and adds no key."""
    ours = load_yaml_file(properties_dir() / "model" / "SASRec.yaml")
    recbole = load_yaml_file(RECBOLE_PROPERTIES / "model" / "SASRec.yaml")
    assert ours and set(ours) <= set(recbole) and all(ours[k] != recbole[k] for k in ours)


def test_recbole_defaults_match_recbole():
    recbole = {**load_yaml_file(RECBOLE_PROPERTIES / "overall.yaml"),
               **load_yaml_file(RECBOLE_PROPERTIES / "dataset" / "sample.yaml")}
    model_yamls = [load_yaml_file(RECBOLE_PROPERTIES / "model" / f"{m}.yaml") for m in ("SASRec", "BERT4Rec")]
    for key in (k for k in SCHEMA.values() if k.section == RECBOLE):
        if key.default is PER_MODEL:
            for values in model_yamls:
                key.check(values[key.name])
        else:
            assert key.default == recbole[key.name], key.name
            key.check(key.default)


def test_choices_are_the_ones_the_code_accepts():
    from recbole_bifair.data.sequence import TRAIN_MODES
    from recbole_bifair.embedding.options import DTYPES, MISSING_MODES, POOLINGS
    from recbole_bifair.fairness.groups import KINDS, LONG_TAIL_RULES, MULTI_VALUE, SPLITS
    from recbole_bifair.methods.bifair import GROUP_OFFSETS
    from recbole_bifair.model.llm import ID_INITS, SCORES, SOFTMAXES
    from recbole_bifair.model.llm_item_table import ACTIVATIONS, DROPOUT_PLACES, ERASURES, ID_FUSIONS, TRANSFORMS
    from recbole_bifair.methods.score_offsets import OFFSET_BASES
    from recbole_bifair.model.sasrec_layout import NORMS
    from recbole_bifair.trainer.group_loop import LEVEL_BALANCES as BALANCE_MODES
    from recbole_bifair.trainer.outer_level import OUTER_SOFTMAXES, SECOND_MOMENTS
    from recbole_bifair.trainer.hypergrad import HYPERGRADS
    from recbole_bifair.trainer.unroll import UNROLLS

    code = {
        "train_mode": TRAIN_MODES, "projector_activation": ACTIVATIONS, "llm_emb_transform": TRANSFORMS,
        "llm_emb_erase": ERASURES,
        "projector_dropout_on": DROPOUT_PLACES, "id_fusion": ID_FUSIONS, "id_init": ID_INITS,
        "train_softmax": SOFTMAXES, "score": SCORES, "balance": BALANCE_MODES, "inner_balance": BALANCE_MODES,
        "outer_balance": BALANCE_MODES, "hypergrad": HYPERGRADS, "hypergrad_unroll": UNROLLS,
        "outer_softmax": OUTER_SOFTMAXES, "outer_second_moment": SECOND_MOMENTS, "group_offsets": GROUP_OFFSETS,
        "offset_basis": OFFSET_BASES, "item_groups": KINDS, "group_split": SPLITS, "group_multi_value": MULTI_VALUE,
        "long_tail": LONG_TAIL_RULES, "llm_emb_pooling": POOLINGS, "llm_emb_dtype": DTYPES,
        "llm_emb_missing": MISSING_MODES, "sasrec_norm": NORMS,
    }
    for key, accepted in code.items():
        assert set(SCHEMA[key].choices) == set(accepted), key
    assert SCHEMA["meta_split"].choices == ("holdout", "next_batch")
    from recbole_bifair.data.sequence import SEQ_WINDOWS

    assert SCHEMA["seq_windows"].choices == SEQ_WINDOWS


def test_learners_are_recbole_optimisers():
    """Each learner choice builds the optimiser of its name (RecBole falls back to Adam silently)."""
    from recbole.trainer import Trainer

    model = torch.nn.Linear(2, 2)
    for learner in SCHEMA["learner"].choices:
        trainer = Trainer.__new__(Trainer)
        trainer.model, trainer.learner, trainer.learning_rate, trainer.weight_decay = model, learner, 0.1, 0.0
        trainer.logger, trainer.config = logging.getLogger(__name__), {"reg_weight": None}
        optimiser = trainer._build_optimizer()
        assert type(optimiser).__name__.lower() == learner.replace("_", ""), learner


def test_docs_config_md_is_generated_from_the_schema():
    assert (REPO / "docs" / "config.md").read_text(encoding="utf-8") == markdown()
    text = markdown()
    for section in PLUGIN_SECTIONS + (RECBOLE,):
        assert f"\n## {section}\n" in text
    for key in SCHEMA:
        assert f"| `{key}` |" in text
    # a doc with a | (norms) does not split its row
    assert "eps = r / \\|\\|v\\|\\|" in text


# ----- wrong values, generated from the schema, through the runner's entry point ------------------
def _outside(key):
    """A value just outside ``key``'s range, of the key's own numeric type."""
    text = key.range.text
    bound = re.match(r"^(>=|>|<=|<) (-?[\d.]+)$", text)
    if bound:
        op, limit = bound.group(1), float(bound.group(2))
        value = {">=": limit - 1, ">": limit, "<=": limit + 1, "<": limit}[op]
    else:
        left, low, high, right = re.match(r"^([\[(])(-?[\d.]+), (-?[\d.]+)([\])])$", text).groups()
        value = float(low) - 1 if left == "[" else float(low)
    return str(int(value)) if "int" in key.kind else str(value)


def _wrong_type(key):
    kinds = key.kind.split("|")
    if kinds == ["bool"]:
        return "maybe"
    if "str" in kinds or "list[str]" in kinds:
        return "{a: 1}"
    if "int" in kinds:
        return "2.5"
    return "abc"


def _bad_cases():
    cases = []
    for key in SCHEMA.values():
        cases.append((key.name, _wrong_type(key)))
        if key.range:
            cases.append((key.name, _outside(key)))
        if key.choices:
            cases.append((key.name, "no_such_choice"))
        if not key.allows_none:
            cases.append((key.name, "~"))
    return cases


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("key, text", _bad_cases())
def test_each_bad_value_exits_2_naming_its_key(user_folder, capsys, key, text):
    owner = method_of_key(key)  # a method's key is set with its method
    assert run_cli(main, RUN + [f"--{key}={text}"] + ([f"--fair_method={owner}"] if owner else [])) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {key}: ") and f"; expected {SCHEMA[key].expected()}" in line, line
    assert list(user_folder.iterdir()) == []  # no log, no result, nothing read


# The probes of the hardening issue: each used to crash late, train on, or write invalid JSON.
PROBES = {
    "--epochs=abc": "epochs: 'abc' is not an integer; expected an integer >= 1",
    "--learning_rate=abc": "learning_rate: 'abc' is not a number; expected a number >= 0",
    "--outer_learning_rate=abc": "outer_learning_rate: 'abc' is not a number; expected a number >= 0",
    "--hidden_size=abc": "hidden_size: 'abc' is not an integer; expected an integer >= 1",
    "--outer_level=maybe": "outer_level: 'maybe' is not a boolean; expected true or false",
    "--epochs=0": "epochs: 0 is out of range; expected an integer >= 1",
    "--epochs=-3": "epochs: -3 is out of range; expected an integer >= 1",
    "--metrics=[NDCG,MGU]": ("valid_metric: 'MRR@10' is not computed: metrics ['NDCG', 'MGU'] has no MRR; add MRR "
                             "to metrics or set valid_metric to one of them (e.g. valid_metric: NDCG@10)"),
    "--topk=[5,20]": ("valid_metric: 'MRR@10' asks for k = 10, which topk [5, 20] lacks; add 10 to topk or write "
                      "valid_metric: MRR@5"),
    "--hvp_batch_size=0": "hvp_batch_size: 0 is out of range; expected an integer >= 1 or ~",
    "--balance=MGDA": "balance: 'MGDA' is not allowed; expected one of mgda, dro, uniform, groupdro, none",
    "--group_offsets=inner": "group_offsets: 'inner' is not allowed; expected one of none, outer or ~",
    "--topk=[10,0]": "topk: 0 in [10, 0] is out of range; expected an integer >= 1 or a non-empty list of integers >= 1",
    "--learning_rate=.nan": "learning_rate: nan is not a finite number; expected a number >= 0",
    "--dro_tau=0": "dro_tau: 0 is out of range; expected a positive number",
    "--balance_ema=1": "balance_ema: 1 is out of range; expected a number in [0, 1)",
}


@pytest.mark.parametrize("arg", PROBES)
def test_probes(user_folder, capsys, arg):
    assert run_cli(main, RUN + [arg]) == 2
    assert _one_error_line(capsys) == f"error: {PROBES[arg]}"


def test_a_bad_properties_default_fails_too(tmp_path, monkeypatch):
    import recbole_bifair.config as config_module

    root = tmp_path / "properties"
    root.mkdir()
    defaults = load_yaml_file(properties_dir() / "overall.yaml")
    (root / "overall.yaml").write_text(yaml.safe_dump({**defaults, "meta_fraction": 1.5}))
    monkeypatch.setattr(config_module, "properties_dir", lambda: root)
    with pytest.raises(ConfigError, match=r"^meta_fraction: 1\.5 is out of range; expected a number in \(0, 1\)$"):
        BiFairConfig(model="SASRec", config_dict=tiny_config(tmp_path))


def test_config_files_and_dicts_are_checked(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("n_item_groups: 1\n")
    with pytest.raises(ConfigError, match=r"^n_item_groups: 1 is out of range; expected an integer >= 2$"):
        BiFairConfig(model="SASRec", config_file_list=[str(file)], config_dict=tiny_config(tmp_path))
    with pytest.raises(ConfigError, match=r"^score: 'Dot' is not allowed; expected one of dot, cosine$"):
        BiFairConfig(model="SASRec", config_dict=tiny_config(tmp_path, score="Dot"))


@pytest.mark.parametrize("key, value", [
    ("learning_rate", 1), ("learning_rate", np.float32(0.5)), ("epochs", np.int64(3)), ("learner", "AdamW"),
    ("state", "warning"), ("projector_activation", "GELU"), ("topk", 5), ("metrics", "ndcg"),
    ("llm_emb_fields", "movie_title, class"), ("clip_grad_norm", {"max_norm": 5}), ("hypergrad_xi", None),
    ("outer_clip_grad_norm", None), ("posthoc_beta", -0.5), ("outer_learning_rate", 0),
])
def test_values_that_pass(key, value):
    SCHEMA[key].check(value)


@pytest.mark.parametrize("key, value, message", [
    ("epochs", 2.0, "epochs: 2.0 is not an integer"),
    ("epochs", True, "epochs: True is not an integer"),
    ("learning_rate", "1e-3", "learning_rate: '1e-3' is not a number"),
    ("outer_level", 1, "outer_level: 1 is not a boolean"),
    ("metrics", [], "metrics: [] is empty"),
    ("metrics", ["NDCG", 3], "metrics: 3 in ['NDCG', 3] is not a string"),
    ("llm_emb_fields", 5, "llm_emb_fields: 5 is not a list or a string"),
    ("clip_grad_norm", 5, "clip_grad_norm: 5 is not a dict; expected a dict or ~"),
    ("projector_output_std", float("inf"), "projector_output_std: inf is not a finite number"),
])
def test_values_that_fail(key, value, message):
    with pytest.raises(ConfigError) as err:
        SCHEMA[key].check(value)
    assert str(err.value).startswith(message)


# ----- metrics against each other -----------------------------------------------------------------
def _metrics(**values):
    setup()  # the plugin's metrics in RecBole's registry
    check_config({"metrics": ["Recall", "MRR", "NDCG"], "valid_metric": "MRR@10", "topk": [10], **values},
                 metric_types)


def test_metric_keys_that_pass():
    _metrics()
    _metrics(metrics=["NDCG", "GroupNDCG"], valid_metric="GroupNDCG@10[pop5]")
    _metrics(metrics="ndcg", valid_metric="NDCG@20", topk=[10, 20])
    _metrics(metrics=["AUC", "LogLoss"], valid_metric="auc")
    _metrics(topk=10)


@pytest.mark.parametrize("values, message", [
    ({"metrics": ["NDCG", "Foo"]}, r"^metrics: 'Foo' is not a metric; expected names among aclt, .*tailpercentage"),
    ({"metrics": ["NDCG", "AUC"]}, r"^metrics: \['NDCG', 'AUC'\] mixes ranking metrics with value metrics \(AUC\)"),
    ({"valid_metric": "NDCG"}, r"^valid_metric: 'NDCG' needs a cut-off k among topk \[10\]; write e.g. "
                               r"valid_metric: NDCG@10$"),
    ({"metrics": ["AUC"], "valid_metric": "AUC@10"}, r"^valid_metric: 'AUC@10': AUC is a value metric"),
    ({"valid_metric": "NDCG @10"}, r"^valid_metric: 'NDCG @10' is not NAME@k"),
    ({"valid_metric": "Hit@10"}, r"^valid_metric: 'Hit@10' is not computed: .* add Hit to metrics"),
])
def test_metric_keys_that_fail(values, message):
    with pytest.raises(ConfigError, match=message):
        _metrics(**values)


# ----- shipped configs pass -------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(glob.glob(str(properties_dir() / "methods" / "*.yaml"))),
                         ids=lambda p: Path(p).stem)
def test_each_method_builds_on_ml100k(method, user_folder):
    config = BiFairConfig(dataset="ml-100k", config_file_list=[method, str(REPO / "configs" / "demo.yaml")],
                          config_dict={"state": "WARNING", "show_progress": False})
    assert config["dataset"] == "ml-100k"


def test_every_shipped_yaml_passes_the_schema():
    files = glob.glob(str(properties_dir() / "**" / "*.yaml"), recursive=True) + glob.glob(str(REPO / "configs" / "*.yaml"))
    assert len(files) > 25
    for file in files:
        for key, value in load_yaml_file(file).items():
            if key in SCHEMA:
                SCHEMA[key].check(value)


# ----- config dict strings are never evaluated --------------------------------------------------------
PAYLOAD = "__import__('pathlib').Path('evaluated').touch()"


def test_recbole_would_evaluate_a_config_dict_string(user_folder):
    # what the override prevents: RecBole's own conversion runs the string
    Config._convert_config_dict(None, {"note": PAYLOAD})
    assert (user_folder / "evaluated").exists()


def test_config_dict_strings_are_taken_as_given(user_folder):
    given = tiny_config(user_folder, note=PAYLOAD, llm_emb_template="[1, 2]", results_dir="1e-3")
    config = BiFairConfig(model="SASRec", config_dict=given)
    assert not (user_folder / "evaluated").exists()
    assert config["note"] == PAYLOAD and config["llm_emb_template"] == "[1, 2]" and config["results_dir"] == "1e-3"
    assert given["note"] == PAYLOAD  # the caller's dict is not modified


# ----- result JSONs hold no NaN or Infinity ---------------------------------------------------------------
def _strict_load(path):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_constant=refuse)


def test_non_finite_floats_are_written_as_null(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {
        "best_valid_score": -math.inf, "nan": math.nan, "kept": 0.25, "flag": True, "count": 3,
        "nested": [{"x": math.inf}, (1.5, math.nan)], "numpy": np.float32("nan"), "numpy_ok": np.float64(0.5),
        "array": np.array([1.0, np.nan]), "tensor": torch.tensor([[math.inf, 2.0]]), "scalar": torch.tensor(3),
        "other": {1, 2},
    })
    assert _strict_load(path) == {
        "best_valid_score": None, "nan": None, "kept": 0.25, "flag": True, "count": 3,
        "nested": [{"x": None}, [1.5, None]], "numpy": None, "numpy_ok": 0.5,
        "array": [1.0, None], "tensor": [[None, 2.0]], "scalar": 3, "other": "{1, 2}",
    }


def test_to_json_value_keeps_finite_values_as_they_are():
    value = {"a": [1, 2.5, "x", None, False], "b": {"c": -0.0}}
    assert to_json_value(value) == value
    assert json.dumps(to_json_value(value)) == json.dumps(value)
