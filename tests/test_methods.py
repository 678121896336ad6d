"""The fairness methods as classes (recbole_bifair/methods/): the registry, which keys each run
reads and records, and the translation of configs written before ``fair_method`` existed."""

import glob
import json
import os

import pytest
import yaml

from recbole_bifair.errors import ConfigError
from recbole_bifair.methods.base import FairMethod
from recbole_bifair.methods.catalog import BUILT_IN, available_methods, build_method
from recbole_bifair.methods.registry import lookup, register_method
from recbole_bifair.quick_start import build_config
from recbole_bifair.schema import method_of_key, property_file, upgrade_legacy
from tests.bifair_fixtures import bifair_config, bifair_setup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHIVE = os.path.join(REPO, "benchmarks", "results", "runs", "fairness-amazon-beauty-5core-converge")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def test_every_built_in_method_is_registered_with_its_file_and_keys():
    from recbole_bifair.config import properties_dir

    assert set(BUILT_IN) <= set(available_methods())
    for name in BUILT_IN:
        cls = lookup(name)
        assert issubclass(cls, FairMethod) and cls.name == name
        file = properties_dir() / "method" / f"{name}.yaml"
        keys = list(yaml.safe_load(file.read_text())) if file.is_file() else []
        assert all(method_of_key(k) == name for k in keys)
        assert set(cls.keys) <= set(keys)  # what a method declares has its default in its file


def test_a_method_name_must_be_an_identifier_and_unique():
    class Nameless(FairMethod):
        pass

    with pytest.raises(ValueError, match="name must be"):
        register_method(Nameless)

    class Impostor(FairMethod):
        name = "ips"

    with pytest.raises(ValueError, match="fair_method 'ips' is taken by recbole_bifair.methods.ips.IPS"):
        register_method(Impostor)


@pytest.mark.parametrize("model, method, own", [
    ("SASRec", None, set()),
    ("LLMSASRec", "none", set()),
    ("LLMSASRec", "ips", {"ips_alpha"}),
    ("BiFairSASRec", "bifair", {"balance", "outer_level", "group_offsets", "meta_batch_size"}),
])
def test_a_run_records_only_the_keys_of_the_files_it_reads(setup, model, method, own):
    root, emb = setup
    extra = {"fair_method": method} if method and model != "BiFairSASRec" else {}
    config = build_config(model=model, config_dict=bifair_config(root, emb, **extra))
    keys = set(config.plugin_config_keys)
    files = {property_file(k) for k in keys}
    allowed = {"overall.yaml"} | ({"model/llm.yaml", f"method/{method}.yaml"} if method else set())
    assert files <= allowed and own <= keys
    assert (config["fair_method"] == method) if method else "fair_method" not in keys
    if method is None:  # a stock model reads no LLM or method key
        assert "projector_layers" not in keys and config["projector_layers"] is None


def test_the_method_object_is_the_runs(setup):
    root, emb = setup
    config = build_config(model="LLMSASRec", config_dict=bifair_config(root, emb, fair_method="varreg",
                                                                       group_variance_weight=0.5))
    method = build_method(config)
    assert type(method) is lookup("varreg") and method.weight == 0.5 and method.group_loop
    with pytest.raises(ConfigError, match="fair_method 'nope' is unknown"):
        build_config(model="LLMSASRec", config_dict=bifair_config(root, emb, fair_method="nope"))


# ----- configs written before fair_method -------------------------------------------------------
#: The method files as they were before fair_method (model: BiFairSASRec plus flags), and today's.
LEGACY = {
    "LLM-SASRec": ({"bifair": False}, "LLMSASRec", "none"),
    "IPS": ({"outer_level": False, "inner_balance": "none", "sample_weighting": "ips", "ips_alpha": 1.0},
            "LLMSASRec", "ips"),
    "GroupDRO": ({"outer_level": False, "inner_balance": "groupdro", "groupdro_eta": 0.01}, "LLMSASRec", "groupdro"),
    "VarReg": ({"outer_level": False, "inner_balance": "none", "group_variance_weight": 1.0}, "LLMSASRec", "varreg"),
    "LogitAdjust": ({"bifair": False, "logit_adjust_tau": 1.0}, "LLMSASRec", "logit_adjust"),
    "PostHoc": ({"bifair": False, "posthoc_beta": 0.5}, "LLMSASRec", "none"),
    "BiFair": ({}, "BiFairSASRec", "bifair"),
    "BiFair-inner-only": ({"outer_level": False}, "BiFairSASRec", "bifair"),
}
#: every plugin key an old run recorded (the defaults then), flags of the old method on top
OLD_DEFAULTS = {"bifair": True, "outer_level": True, "balance": "mgda", "inner_balance": None, "sample_weighting": "none",
                "ips_alpha": 1.0, "groupdro_eta": 0.01, "group_variance_weight": 0.0, "logit_adjust_tau": 0.0,
                "posthoc_beta": 0.0, "dro_tau": 1.0, "projector_layers": 2, "n_item_groups": 5}


@pytest.mark.parametrize("name", list(LEGACY))
def test_legacy_configs_become_todays_method_with_its_keys_only(name):
    flags, model, method = LEGACY[name]
    old = {**OLD_DEFAULTS, "model": "BiFairSASRec", **flags}
    new = upgrade_legacy(old)
    assert new["model"] == model and new["fair_method"] == method
    assert "bifair" not in new and "sample_weighting" not in new
    assert all(method_of_key(k) in (None, method) for k in new)
    for key, value in flags.items():  # the method's own settings survive
        if method_of_key(key) in (None, method) and key not in ("bifair", "sample_weighting"):
            assert new[key] == value
    assert upgrade_legacy(new) == new  # today's configs pass through unchanged


def test_the_archived_beauty_runs_translate_to_their_methods():
    """The committed result files (recorded before fair_method) of the Beauty benchmark."""
    expected = {"LLM-SASRec": ("LLMSASRec", "none"), "BiFair": ("BiFairSASRec", "bifair"),
                "BiFair-learned-la": ("BiFairSASRec", "bifair"),
                "LogitAdjust__logit_adjust_tau-0.5": ("LLMSASRec", "logit_adjust"),
                "PostHoc__posthoc_beta-1.0": ("LLMSASRec", "none"), "SASRec": ("SASRec", None)}
    for folder, (model, method) in expected.items():
        files = glob.glob(os.path.join(ARCHIVE, f"{folder}-seed2020", "*.json"))
        recorded = json.load(open(next(f for f in files if not f.endswith(".rankings.json"))))["config"]
        new = upgrade_legacy(recorded)
        assert new.get("model", model) == model and new.get("fair_method") == method, folder
