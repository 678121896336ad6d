"""The fairness benchmark reuses a finished run only when its recorded config is the one the
run would have now (benchmarks/fairness.py: ``planned_config`` and ``finished``)."""

import importlib.util
import json
import os

import pytest
import yaml

from recbole_bifair.quick_start import run_bifair
from tests.bifair_fixtures import bifair_config, bifair_setup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def fairness_script():
    spec = importlib.util.spec_from_file_location("fairness_bench", os.path.join(REPO, "benchmarks", "fairness.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_finished_run_is_reused_only_for_the_same_config(fairness_script, tmp_path, monkeypatch):
    root, emb = bifair_setup(tmp_path, monkeypatch)
    folder = tmp_path / "run"
    method = tmp_path / "method.yaml"
    method.write_text(yaml.safe_dump({"model": "BiFairSASRec", "outer_mu": 0.5}))
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(json.dumps(bifair_config(root, emb, results_dir=str(folder), epochs=1)))
    files = [str(method), str(protocol)]

    planned = fairness_script.planned_config(files)
    assert planned["outer_mu"] == 0.5 and planned["hypergrad"] == "finite_difference"
    assert fairness_script.finished(str(folder), planned) is None  # nothing run yet

    result = run_bifair(config_file_list=files)
    found = fairness_script.finished(str(folder), planned)
    assert found is not None and json.load(open(found))["run_id"] == result["run_id"]

    # A changed method file (or default) no longer matches the finished run.
    method.write_text(yaml.safe_dump({"model": "BiFairSASRec", "outer_mu": 0.0}))
    assert fairness_script.finished(str(folder), fairness_script.planned_config(files)) is None
    # An incomplete result file (no test_result) never counts.
    (folder / "zz-partial.json").write_text(json.dumps({"config": planned}))
    assert fairness_script.finished(str(folder), planned) == found
