"""Autograd anomaly detection stays off (RecBole's sine.py switches it on at import).

Anomaly mode is process-wide, so each check runs in a fresh interpreter.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def anomaly_enabled_after(code):
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport torch\nprint(torch.is_anomaly_enabled())"],
        cwd=REPO, check=True, capture_output=True, text=True,
    )
    return result.stdout.strip().splitlines()[-1] == "True"


def test_recbole_alone_switches_it_on():
    # The control: without this, the checks below could not fail.
    assert anomaly_enabled_after("import recbole.model.sequential_recommender")


@pytest.mark.parametrize("code", [
    # RecBole's models imported first, as a user script might
    "import recbole.model.sequential_recommender.sine\nimport recbole_bifair\nrecbole_bifair.setup()",
    # RecBole's models, quick start and SINE's class imported after the plugin's set-up
    "import recbole_bifair\nrecbole_bifair.setup()\nimport recbole.quick_start\n"
    "from recbole_bifair.utils import get_model\nget_model('SINE')",
    # a config is all a script builds before RecBole's objects: it sets the plugin up
    "import recbole.model.sequential_recommender.sine\nfrom recbole_bifair.config import BiFairConfig\n"
    "BiFairConfig(model='SASRec', dataset='ml-100k', config_dict={'state': 'WARNING'})",
])
def test_setting_the_plugin_up_turns_it_off(code):
    assert not anomaly_enabled_after(code)


def test_off_during_a_run(tiny_data):
    import torch

    from recbole_bifair.quick_start import run_bifair
    from tests.datagen import tiny_config

    seen = []  # checked after each epoch's validation, i.e. inside training
    run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, epochs=2),
               callback_fn=lambda epoch_idx, valid_score: seen.append(torch.is_anomaly_enabled()))
    assert seen == [False, False]
