"""The RecBole workarounds of recbole_bifair.compat not covered elsewhere (items 3 and 4).

Each test also shows that stock RecBole fails the same way, so that it can fail.
"""

import numpy as np
import pytest
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.evaluator.collector import Collector

from recbole_bifair.compat import SafeCollector
from recbole_bifair.config import BiFairConfig
from tests.datagen import tiny_config


def test_safe_collector_keeps_item_counts_that_recbole_crashes_on(tiny_data):
    config = BiFairConfig(model="SASRec", config_dict=tiny_config(
        tiny_data, metrics=["ItemCoverage", "AveragePopularity"], valid_metric="ItemCoverage@10"))
    train_data = data_preparation(config, create_dataset(config))[0]

    stock = Collector(config)
    stock.data_collect(train_data)
    with pytest.raises(AttributeError, match="has no attribute 'cpu'"):
        stock.get_data_struct()

    safe = SafeCollector(config)
    safe.data_collect(train_data)
    struct = safe.get_data_struct()
    assert struct.get("data.num_items") == train_data.dataset.item_num
    assert struct.get("data.count_items") == train_data.dataset.item_counter


def test_config_survives_numpy_2_without_the_removed_aliases(tmp_path, monkeypatch):
    for removed in ["float_", "complex_", "unicode_"]:  # gone in numpy 2
        monkeypatch.delattr(np, removed, raising=False)
    with pytest.raises(AttributeError, match="float_"):
        Config.compatibility_settings(None)
    config = BiFairConfig(model="SASRec", config_dict=tiny_config(tmp_path))
    assert config["model"] == "SASRec"
    assert np.float is np.float64 and np.unicode is np.str_
