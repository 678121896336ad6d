"""properties/dataset/*.yaml, and the columns a run loads whatever load_col says.

The headline command, ``run_recbole_bifair.py --model=BiFairSASRec --dataset=ml-1m``, runs here on
a generated dataset laid out like ../shared/datasets/ml-1m, with the plugin's defaults: before
properties/dataset/ml-1m.yaml and recbole_bifair.data.columns, RecBole's default load_col left the
timestamps out and the run stopped while preparing the data.
"""

import os
import sys

import numpy as np
import pytest
from recbole.config import Config
from recbole.data import create_dataset, data_preparation

from recbole_bifair.config import BiFairConfig, load_yaml_file, properties_dir
from recbole_bifair.embedding.feature_file import read_feature_file, read_metadata
from recbole_bifair.errors import ConfigError, DataError
from recbole_bifair.quick_start import run_bifair
from tests.datagen import make_dataset, make_ml1m_like
from tests.embedding_fixtures import force_offline

#: what shrinks the headline run to seconds; everything else is the plugin's default
TINY = {"epochs": 1, "hidden_size": 8, "inner_size": 16, "n_layers": 1, "n_heads": 1,
        "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 64, "eval_batch_size": 256, "meta_batch_size": 32,
        "show_progress": False, "state": "WARNING"}


@pytest.fixture
def ml1m_like(tmp_path, monkeypatch):
    force_offline(monkeypatch)
    monkeypatch.chdir(tmp_path)
    return make_ml1m_like(tmp_path / "data")


def test_stock_recbole_config_leaves_the_timestamps_out(ml1m_like, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run"])  # RecBole's Config reads sys.argv itself
    config = Config(model="SASRec", dataset="ml-1m", config_dict={
        "data_path": str(ml1m_like), "state": "WARNING", "train_neg_sample_args": None})
    assert config["load_col"] == {"inter": ["user_id", "item_id"]}
    with pytest.raises(ValueError, match=r"\[timestamp\] is not exist in interaction"):
        data_preparation(config, create_dataset(config))


def test_headline_command_code_path_on_an_ml1m_shaped_dataset(ml1m_like, tmp_path):
    result = run_bifair(model="BiFairSASRec", dataset="ml-1m",
                        config_dict={"data_path": str(ml1m_like), "results_dir": str(tmp_path / "results"), **TINY})
    assert result["epochs_trained"] == 1 and 0 <= result["test_result"]["ndcg@10"] <= 1

    emb_file = os.path.join("dataset_embeddings", "ml-1m", "ml-1m.all-MiniLM-L6-v2.llmemb")
    metadata = read_metadata(emb_file)
    assert metadata["template"] == "{movie_title}[ ({release_year})][; {genre}]"
    assert metadata["fields"] == ["movie_title", "release_year", "genre"]
    assert read_feature_file(emb_file).tokens == [str(i) for i in range(1, 31)]


def test_time_column_is_added_for_a_sequential_model_on_any_dataset(tiny_data):
    config = BiFairConfig(model="SASRec", dataset="tiny", config_dict={"data_path": str(tiny_data), "state": "WARNING"})
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
    dataset = create_dataset(config)
    written = np.loadtxt(os.path.join(tiny_data, "tiny", "tiny.inter"), skiprows=1, usecols=3)
    np.testing.assert_array_equal(np.asarray(dataset.inter_feat["timestamp"]), written)
    train_data = data_preparation(config, dataset)[0]  # RecBole orders each history by time here
    assert len(train_data.dataset) > 0


def test_time_column_is_added_for_a_time_ordered_split_of_a_general_model(tiny_data):
    config = BiFairConfig(model="BPR", dataset="tiny", config_dict={
        "data_path": str(tiny_data), "state": "WARNING",
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"}})
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
    untimed = BiFairConfig(model="BPR", dataset="tiny", config_dict={"data_path": str(tiny_data), "state": "WARNING"})
    assert untimed["load_col"] == {"inter": ["user_id", "item_id"]}  # random order: nothing to add


def test_missing_time_column_names_the_file_the_field_and_the_key(tmp_path):
    root = make_dataset(tmp_path / "data")
    path = os.path.join(root, "tiny", "tiny.inter")
    lines = [line.rsplit("\t", 1)[0] for line in open(path).read().splitlines()]
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(DataError) as failure:
        BiFairConfig(model="BiFairSASRec", dataset="tiny", config_dict={"data_path": str(root), "state": "WARNING"})
    message = str(failure.value)
    assert path in message and "no column 'timestamp'" in message and "TIME_FIELD" in message
    assert "BiFairSASRec" in message


def test_unset_time_field_and_unloaded_time_column_are_config_errors(tiny_data):
    with pytest.raises(ConfigError, match="TIME_FIELD, which is unset"):
        BiFairConfig(model="SASRec", dataset="tiny", config_dict={"data_path": str(tiny_data), "TIME_FIELD": None})
    with pytest.raises(ConfigError, match="remove it from unload_col"):
        BiFairConfig(model="SASRec", dataset="tiny", config_dict={
            "data_path": str(tiny_data), "load_col": None, "unload_col": {"inter": ["timestamp"]}})


def test_a_dataset_still_to_be_downloaded_gets_the_time_column(tmp_path):
    config = BiFairConfig(model="SASRec", dataset="amazon-beauty", config_dict={"data_path": str(tmp_path), "state": "WARNING"})
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
    assert config["user_inter_num_interval"] == config["item_inter_num_interval"] == "[5,inf)"
    assert config["llm_emb_template"] == "{title}"


@pytest.mark.parametrize("name", ["ml-1m", "amazon-beauty", "amazon-beauty-5core"])
def test_dataset_properties_files_are_consistent(name):
    values = load_yaml_file(properties_dir() / "dataset" / f"{name}.yaml")
    assert "timestamp" in values["load_col"]["inter"]
    template_fields = {f.split("}")[0] for f in values["llm_emb_template"].split("{")[1:]}
    assert template_fields <= set(values["llm_emb_fields"])


def test_narrowed_fields_under_a_dataset_template_is_an_error_with_the_fix(ml1m_like):
    from recbole_bifair.embedding import ensure_item_embeddings

    config = BiFairConfig(model="SASRec", dataset="ml-1m", config_dict={
        "data_path": str(ml1m_like), "state": "WARNING", "llm_emb_fields": ["movie_title"]})
    with pytest.raises(ConfigError, match=r"uses 'release_year', 'genre'.*llm_emb_template: ~"):
        ensure_item_embeddings(config)
    config = BiFairConfig(model="SASRec", dataset="ml-1m", config_dict={
        "data_path": str(ml1m_like), "state": "WARNING", "llm_emb_fields": ["movie_title"], "llm_emb_template": None})
    assert read_metadata(ensure_item_embeddings(config))["fields"] == ["movie_title"]
