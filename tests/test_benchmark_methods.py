"""Methods as the benchmarks name them (``benchmarks.lib.methods``): method files, sweep points and
their folders, and the rows of ``cost.py`` and ``distributed_speed.py``, which are methods or sweep
points on them."""

import os

import pytest

from benchmarks.lib import cost, distributed, methods
from benchmarks.lib.paths import METHODS_DIR
from benchmarks.lib.runs import run_dir
from recbole_bifair.quick_start import RANKING_ONLY_KEYS


def test_sweep_points_parse():
    parse = methods.parse_method
    assert parse("VarReg[group_variance_weight=0.5]") == ("VarReg", {"group_variance_weight": 0.5})
    assert parse("PostHoc[posthoc_beta=1]") == ("PostHoc", {"posthoc_beta": 1})
    assert parse("GroupDRO[groupdro_eta=1e-3]") == ("GroupDRO", {"groupdro_eta": 0.001})
    assert parse("BiFair[balance=dro]") == ("BiFair", {"balance": "dro"})
    assert parse("LLM-SASRec") == ("LLM-SASRec", {})
    assert {"PostHoc", "LogitAdjust"} <= set(methods.METHODS)
    for point in methods.sweep_points():
        method, extra = parse(point)
        key, values = methods.SWEEPS[method]
        assert list(extra) == [key] and extra[key] in values and isinstance(extra[key], float)
    assert len(methods.sweep_points()) == 3 + 4 + 3 + 4 + 4


def test_several_keys_stack_in_their_order():
    assert methods.parse_method("BiFair-first-order[outer_softmax=sampled][mgda_interval=4]") == (
        "BiFair-first-order", {"outer_softmax": "sampled", "mgda_interval": 4})
    assert list(methods.parse_method("BiFair[b=1][a=2]")[1]) == ["b", "a"]
    assert methods.folder_name("BiFair[b=1][a=2]") == "BiFair__b-1__a-2"
    # a derived method's ranking keys belong to its evaluation, the others to its base's training
    label = "BiFair-PostHoc[dro_tau=3.0][posthoc_beta=1.0]"
    assert methods.without_keys(label, RANKING_ONLY_KEYS) == "BiFair-PostHoc[dro_tau=3.0]"
    assert methods.without_keys("PostHoc[posthoc_beta=1.0]", RANKING_ONLY_KEYS) == "PostHoc"


@pytest.mark.parametrize("bad,why", [
    ("VarReg[group_variance_weight]", "<Method>\\[<key>=<value>\\]"),
    ("VarReg[=0.5]", "<Method>\\[<key>=<value>\\]"),
    ("VarReg(group_variance_weight=0.5)", "<Method>\\[<key>=<value>\\]"),
    ("VarReg[a=1]b", "<Method>\\[<key>=<value>\\]"),
    ("VarReg[a=1][a=2]", "key 'a' is given twice"),
    ("Nope[posthoc_beta=1.0]", "unknown method 'Nope'"),
    ("Nope", "unknown method 'Nope'"),
])
def test_bad_sweep_points_are_clear_errors(bad, why):
    with pytest.raises(ValueError, match=why):
        methods.parse_method(bad)


def test_sweep_folders_are_safe_and_method_folders_unchanged(tmp_path):
    name = "VarReg[group_variance_weight=0.5]"
    folder = run_dir(str(tmp_path), name, 2020)
    assert os.path.basename(folder) == "VarReg__group_variance_weight-0.5-seed2020"
    for point in methods.sweep_points() + ["X[k=a/b c]"]:
        base = methods.folder_name(point)
        assert all(c.isalnum() or c in "._-" for c in base), base
    for method in methods.METHODS:
        assert os.path.basename(run_dir(str(tmp_path), method, 1)) == f"{method}-seed1"


def test_every_method_has_its_file_and_a_point_puts_its_keys_on_top():
    assert sorted(methods.METHODS) == sorted(name[: -len(".yaml")] for name in os.listdir(METHODS_DIR))
    assert methods.method_file("IPS") == os.path.join(METHODS_DIR, "IPS.yaml")
    assert methods.method_keys("IPS") == {"model": "LLMSASRec", "fair_method": "ips", "ips_alpha": 1.0}
    assert methods.method_keys("IPS[ips_alpha=0.25]")["ips_alpha"] == 0.25
    assert methods.method_keys("BiFair-large-batches") == {"model": "BiFairSASRec", "meta_batch_size": 2048,
                                                           "hvp_batch_size": None}


#: The variants ``cost.py`` and ``distributed_speed.py`` defined inline before they read the method
#: files: each row must still measure exactly this config.
INLINE = {
    "SASRec (ID)": {"model": "SASRec"},
    "LLM-SASRec": {"model": "LLMSASRec"},
    "BiFair finite_difference (default)": {"model": "BiFairSASRec"},
    "BiFair first_order": {"model": "BiFairSASRec", "hypergrad": "first_order"},
    "BiFair finite_difference, outer_interval 1, full-size meta/HVP batches":
        {"model": "BiFairSASRec", "meta_batch_size": 2048, "hvp_batch_size": None},
    "BiFair finite_difference (outer full)": {"model": "BiFairSASRec", "outer_softmax": "full"},
    "BiFair first_order (outer full)": {"model": "BiFairSASRec", "hypergrad": "first_order", "outer_softmax": "full"},
    "BiFair finite_difference (outer sampled)": {"model": "BiFairSASRec", "outer_softmax": "sampled"},
    "BiFair first_order (outer sampled)": {"model": "BiFairSASRec", "hypergrad": "first_order",
                                          "outer_softmax": "sampled"},
    "BiFair first_order (outer sampled; mgda_interval 4)": {"model": "BiFairSASRec", "hypergrad": "first_order",
                                                           "outer_softmax": "sampled", "mgda_interval": 4},
    "BiFair finite_difference (outer sampled; outer_second_moment entry)":
        {"model": "BiFairSASRec", "outer_softmax": "sampled", "outer_second_moment": "entry"},
    "LLM-SASRec (sampled inner)": {"model": "LLMSASRec", "train_softmax": "sampled"},
    "BiFair finite_difference (outer sampled + sampled inner)": {"model": "BiFairSASRec", "outer_softmax": "sampled",
                                                                "train_softmax": "sampled"},
    "BiFair first_order (outer sampled + sampled inner)": {"model": "BiFairSASRec", "hypergrad": "first_order",
                                                         "outer_softmax": "sampled", "train_softmax": "sampled"},
    "SASRec": {"model": "SASRec"},
    "BiFairSASRec": {"model": "BiFairSASRec"},
}


@pytest.mark.parametrize("rows", [cost.ML100K_VARIANTS, cost.SYNTHETIC_VARIANTS, cost.SEQTRAIN_MODELS,
                                  distributed.MODELS])
def test_the_cost_rows_are_method_files_and_measure_what_they_did(rows):
    assert {name: methods.method_keys(spec) for name, spec in rows.items()} == {name: INLINE[name] for name in rows}


def test_a_synthetic_row_is_compared_with_llm_sasrec_trained_the_same_way():
    bases = {name: cost.synthetic_baseline(spec) for name, spec in cost.SYNTHETIC_VARIANTS.items()}
    assert bases == {name: "LLM-SASRec (sampled inner)" if "sampled inner" in name else "LLM-SASRec"
                     for name in cost.SYNTHETIC_VARIANTS}


def test_rows_are_chosen_by_their_names_or_as_methods():
    rows = {"fast": "BiFair-first-order", "plain": "BiFair"}
    assert methods.select_rows(rows) == rows
    assert methods.select_rows(rows, ["plain", "BiFair[hypergrad_unroll=sgd]", "fast"]) == {
        "plain": "BiFair", "BiFair[hypergrad_unroll=sgd]": "BiFair[hypergrad_unroll=sgd]", "fast": "BiFair-first-order"}
    with pytest.raises(ValueError, match="unknown method 'slow'"):
        methods.select_rows(rows, ["slow"])
