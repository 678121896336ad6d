"""Fixtures shared by every test file. Keep this generic; put a topic's fixtures in its own file."""

import os

import pytest

# No network here (and none wanted in tests): transformers and huggingface_hub must use the
# files that packages ship instead of trying a hub first.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tiny models run faster on one thread, and two OpenMP threads stall when the cores are shared
# (RECBOLE.md item 10); subprocesses of the tests (CLI, Ray workers) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import recbole_bifair  # noqa: E402
from tests.datagen import make_dataset  # noqa: E402

# A run sets the plugin up (BiFairConfig, the entry points); tests also build RecBole's metrics,
# collectors and datasets directly, which need its workarounds (numpy aliases, patched loaders).
recbole_bifair.setup()


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """A generated atomic dataset ``tiny`` under ``tmp_path / "data"``; returns that data root.

    The working directory is ``tmp_path`` for the test, so RecBole's ./log, ./saved and
    ./log_tensorboard and our ./results land there. Use ``tests.datagen.tiny_config(tiny_data)``.
    """
    monkeypatch.chdir(tmp_path)
    return make_dataset(tmp_path / "data")
