"""The fairness benchmark reuses a finished run only when its recorded config is the one the
run would have now (``benchmarks.lib.cache``: ``planned_config`` and ``finished``), resumes an
unfinished one, and keeps finished runs in its archive (``benchmarks.lib.archive``)."""

import glob
import json
import os

import pytest
import yaml

from benchmarks.lib import archive, cache, protocol, runs, stats
from recbole_bifair.quick_start import run_bifair
from tests.bifair_fixtures import bifair_config, bifair_setup


def test_a_finished_run_is_reused_only_for_the_same_config(tmp_path, monkeypatch):
    root, emb = bifair_setup(tmp_path, monkeypatch)
    folder = tmp_path / "run"
    method = tmp_path / "method.yaml"
    method.write_text(yaml.safe_dump({"model": "BiFairSASRec", "outer_mu": 0.5}))
    protocol_file = tmp_path / "protocol.yaml"
    protocol_file.write_text(json.dumps(bifair_config(root, emb, results_dir=str(folder), epochs=1)))
    files = [str(method), str(protocol_file)]

    planned = cache.planned_config(files)
    assert planned["outer_mu"] == 0.5 and planned["hypergrad"] == "finite_difference"
    assert cache.finished(str(folder), planned) is None  # nothing run yet

    result = run_bifair(config_file_list=files)
    found = cache.finished(str(folder), planned)
    assert found is not None and json.load(open(found))["run_id"] == result["run_id"]

    # A changed method file (or default) no longer matches the finished run.
    method.write_text(yaml.safe_dump({"model": "BiFairSASRec", "outer_mu": 0.0}))
    assert cache.finished(str(folder), cache.planned_config(files)) is None
    # An incomplete result file (no test_result) never counts.
    (folder / "zz-partial.json").write_text(json.dumps({"config": planned}))
    assert cache.finished(str(folder), planned) == found
    # A key added to the plugin after the run (absent from its record) keeps the run valid: new
    # keys default to the old behaviour. A recorded key that changed, or was removed, does not.
    assert cache.finished(str(folder), {**planned, "a_new_key": 1}) == found
    unrecorded = {k: v for k, v in json.load(open(found))["config"].items() if k != "rank_with_offsets"}
    json.dump({**json.load(open(found)), "config": unrecorded}, open(found, "w"))
    assert cache.finished(str(folder), planned) == found  # a plugin key at its default
    # ... but a plan that sets such a key to another value is no run made before the key existed
    assert cache.finished(str(folder), {**planned, "rank_with_offsets": True}) is None
    assert cache.finished(str(folder), {k: v for k, v in planned.items() if k != "outer_mu"}) is None
    # Where the run wrote does not matter: a renamed folder stays valid (LOCATION_KEYS).
    moved = {**planned, "results_dir": str(tmp_path / "elsewhere"), "checkpoint_dir": str(tmp_path / "elsewhere"),
             "llm_emb_dir": str(tmp_path / "elsewhere" / "embeddings")}
    assert cache.finished(str(folder), moved) == found
    assert cache.finished(str(folder), {**moved, "outer_mu": 0.0}) is None


def test_a_key_added_later_keeps_the_value_of_the_runs_made_before_it(monkeypatch):
    """A run that did not record ``id_count_half`` ran without it (0): it matches a plan with 0, and
    not one with another value, even once the key's default is that other value."""
    recorded = {"model": "LLMSASRec", "dataset": "ml-1m", "id_fusion": "sum", "seed": 2020}
    assert cache.same_config(recorded, {**recorded, "id_count_half": 0.0})
    assert not cache.same_config(recorded, {**recorded, "id_count_half": 100.0})
    changed = {**cache.plugin_defaults(), "id_count_half": 100.0}
    monkeypatch.setattr(cache, "plugin_defaults", lambda: changed)
    assert not cache.same_config(recorded, {**recorded, "id_count_half": 100.0})
    assert cache.same_config(recorded, {**recorded, "id_count_half": 0.0})


def test_result_names_are_the_ones_the_issues_read():
    """``benchmarks/results/fairness-<dataset>.csv`` for the converged three-seed benchmark; the
    ml-100k quick profiles keep their historical names."""
    assert protocol.output_name("ml-1m", "converge3") == "fairness-ml-1m"
    assert protocol.output_name("amazon-beauty-5core", "converge3") == "fairness-amazon-beauty-5core"
    assert protocol.output_name("ml-100k", "converge3") == "fairness-ml-100k"
    assert protocol.output_name("ml-100k", "quick3") == "fairness-quick3"
    assert protocol.output_name("ml-1m", "converge") == "fairness-ml-1m-converge"


def test_a_candidate_run_carries_its_extra_keys(tmp_path, monkeypatch):
    root, emb = bifair_setup(tmp_path, monkeypatch)
    monkeypatch.setitem(protocol.DATASETS, "tiny", bifair_config(root, emb, epochs=1))
    path, _ = runs.run_one("LLM-SASRec", 2020, "quick", str(tmp_path / "work"), 1, "tiny", str(root),
                           extra={"projector_hidden_size": 24, "epochs": 1}, label="wide")
    recorded = json.load(open(path))["config"]
    assert "wide-seed2020" in path and recorded["projector_hidden_size"] == 24 and recorded["fair_method"] == "none"


def test_an_unfinished_run_continues_from_its_last_checkpoint(tmp_path, monkeypatch):
    root, emb = bifair_setup(tmp_path, monkeypatch)
    folder = tmp_path / "run"
    folder.mkdir()  # run_one makes it
    method = tmp_path / "method.yaml"
    method.write_text(yaml.safe_dump({"model": "BiFairSASRec"}))
    protocol_file = tmp_path / "protocol.yaml"
    protocol_file.write_text(json.dumps(bifair_config(root, emb, results_dir=str(folder), epochs=2,
                                                 checkpoint_dir=str(folder / "saved"), stopping_step=100)))
    files = [str(method), str(protocol_file)]
    first, _ = runs.run_cached(files, str(folder), 1, "first")
    original = json.load(open(first))
    first_log = open(folder / "run.log").read()
    last = glob.glob(str(folder / "saved" / "*-last.pth"))
    assert len(last) == 1
    # the session ended after the last epoch's checkpoint, before the result was written
    os.remove(first)
    expected = cache.planned_config(files)
    assert cache.finished(str(folder), expected) is None
    assert cache.resumable(str(folder), expected) == last[0]
    # a checkpoint of another config is not a resume point
    assert cache.resumable(str(folder), {**expected, "outer_mu": 0.0}) is None
    path, seconds = runs.run_cached(files, str(folder), 1, "resumed")
    result = json.load(open(path))
    assert seconds > 0 and result["epochs_trained"] == 0  # nothing left to train: both epochs came from it
    assert result["config"]["resume_checkpoint"] == last[0]
    assert result["test_result"] == original["test_result"]  # the best model of the first run, evaluated
    assert result["best_valid_result"] == original["best_valid_result"]
    assert cache.finished(str(folder), expected) == path  # a resumed run counts as finished
    log = open(folder / "run.log").read()
    assert log.startswith(first_log) and len(log) > len(first_log)  # appended to, not overwritten


def test_a_finished_run_is_archived_and_reused_from_the_archive(tmp_path, monkeypatch):
    """The work folder is scratch that a new checkout lacks: the archive (committed) keeps each
    finished run's JSON and rankings, and a run found there is not repeated."""
    import shutil

    import numpy as np

    root, emb = bifair_setup(tmp_path, monkeypatch)
    folder = tmp_path / "work" / "fairness-tiny-converge" / "LLM-SASRec-seed2020"
    folder.mkdir(parents=True)
    kept = archive.archive_folder(str(folder), str(tmp_path / "runs"))
    assert kept == str(tmp_path / "runs" / "fairness-tiny-converge" / "LLM-SASRec-seed2020")
    method = tmp_path / "method.yaml"
    method.write_text(yaml.safe_dump({"model": "LLMSASRec"}))
    protocol_file = tmp_path / "protocol.yaml"
    protocol_file.write_text(json.dumps(bifair_config(root, emb, results_dir=str(folder), epochs=1, save_rankings=True)))
    files = [str(method), str(protocol_file)]

    path, seconds = runs.run_cached(files, str(folder), 1, "first", archive=kept)
    assert seconds > 0 and os.path.dirname(path) == kept
    stem = path[: -len(".json")]
    assert os.path.exists(stem + ".rankings.csv.gz") and os.path.exists(stem + ".item_groups.csv.gz")
    original = os.path.join(str(folder), os.path.basename(path))
    assert json.load(open(path)) == json.load(open(original))
    ours, theirs = stats.test_rankings(path), stats.test_rankings(original)
    assert np.array_equal(ours[1], theirs[1]) and np.array_equal(ours[2], theirs[2])
    assert np.array_equal(ours[3], theirs[3]) and ours[0].item_tokens.tolist() == theirs[0].item_tokens.tolist()

    # a new checkout: the work folder is gone, the archive is there; nothing is rerun
    shutil.rmtree(folder)
    folder.mkdir()
    again, seconds = runs.run_cached(files, str(folder), 1, "again", archive=kept)
    assert (again, seconds) == (path, 0.0)
    # another config is not taken from the archive
    assert cache.finished(str(folder), {**cache.planned_config(files), "outer_mu": 9.0}, kept) is None
    # an archive copy cut short before its JSON (written last) is no finished run
    os.remove(path)
    assert cache.finished(str(folder), cache.planned_config(files), kept) is None


def test_a_stock_models_run_ignores_keys_only_the_plugins_models_read():
    """A dataset default of the LLM table (ml-1m's ``id_fusion: sum``) keeps SASRec's runs."""
    keys = cache.stock_only_keys()
    assert {"id_fusion", "outer_mu", "posthoc_beta", "llm_emb_template"} <= keys
    assert not {"n_item_groups", "save_rankings", "train_mode", "results_dir"} & keys  # read by every model
    recorded = {"model": "SASRec", "id_fusion": "none", "n_item_groups": 5, "hidden_size": 64}
    assert cache.same_config(recorded, {**recorded, "id_fusion": "sum"})
    assert not cache.same_config(recorded, {**recorded, "n_item_groups": 10})
    llm = {**recorded, "model": "BiFairSASRec"}
    assert not cache.same_config(llm, {**llm, "id_fusion": "sum"})


def test_a_run_is_found_by_its_config_under_another_name(tmp_path, monkeypatch):
    """A sweep point that repeats a method's setting, or a candidate that became the default, is
    the same run: found in a sibling folder (work or archive), archived again under its own name,
    never found for another config."""
    import shutil

    import numpy as np

    root, emb = bifair_setup(tmp_path, monkeypatch)
    work = tmp_path / "work" / "fairness-tiny-converge"
    first = work / "LLM-SASRec__id_fusion-sum-seed2020"
    first.mkdir(parents=True)
    runs_root = str(tmp_path / "runs")
    method = tmp_path / "method.yaml"
    method.write_text(yaml.safe_dump({"model": "LLMSASRec", "id_fusion": "sum"}))
    protocol_file = tmp_path / "protocol.yaml"
    protocol_file.write_text(json.dumps(bifair_config(root, emb, results_dir=str(first), epochs=1, save_rankings=True)))
    files = [str(method), str(protocol_file)]
    path, seconds = runs.run_cached(files, str(first), 1, "first",
                                    archive=archive.archive_folder(str(first), runs_root))
    assert seconds > 0

    # the same config under another name: nothing is trained, the run is archived under that name
    second = work / "LLM-SASRec-seed2020"
    second.mkdir()
    archive2 = archive.archive_folder(str(second), runs_root)
    again, seconds = runs.run_cached(files, str(second), 1, "second", archive=archive2)
    assert seconds == 0.0 and os.path.dirname(again) == archive2
    assert json.load(open(again)) == json.load(open(path))
    ours, theirs = stats.test_rankings(again), stats.test_rankings(path)
    assert np.array_equal(ours[1], theirs[1]) and np.array_equal(ours[3], theirs[3])

    # a new checkout with only the first name archived: found in the archive's sibling, gz copied as is
    shutil.rmtree(work)
    shutil.rmtree(archive2)
    second.mkdir(parents=True)
    third, seconds = runs.run_cached(files, str(second), 1, "third", archive=archive2)
    assert seconds == 0.0 and os.path.dirname(third) == archive2
    with open(third[: -len(".json")] + ".rankings.csv.gz", "rb") as a, \
            open(path[: -len(".json")] + ".rankings.csv.gz", "rb") as b:
        assert a.read() == b.read()
    # another config is found nowhere
    other = {**cache.planned_config(files), "id_fusion": "concat"}
    assert cache.finished(str(second), other, archive2) is None


def test_a_run_protocol_file_is_never_seen_half_written(tmp_path, monkeypatch):
    """A derived method's thread rewrites its base run's protocol.yaml while the base's own thread
    may read it: the file is replaced whole or not at all (a failed write leaves the old one)."""
    monkeypatch.setitem(protocol.DATASETS, "tiny", {"epochs": 1})
    folder = runs.run_dir(str(tmp_path / "work"), "SASRec", 2020)
    os.makedirs(folder)
    old = os.path.join(folder, "protocol.yaml")
    with open(old, "w") as f:
        f.write('{"dataset": "tiny"}')

    def failing_dump(value, f):
        f.write('{"data')  # half of it, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.json, "dump", failing_dump)
    with pytest.raises(KeyboardInterrupt):
        runs.run_one("SASRec", 2020, "quick", str(tmp_path / "work"), 1, "tiny", "x")
    assert open(old).read() == '{"dataset": "tiny"}'
    assert os.listdir(folder) == ["protocol.yaml"]  # no temporary file left
