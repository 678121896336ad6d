"""From the embedding file to the model's matrix: RecBole item ids, preload parity, cache, failures."""

import os
import shutil

import numpy as np
import pytest
import torch
from recbole.data import create_dataset

from tests.datagen import tiny_config
from tests.embedding_fixtures import force_offline, make_tiny_decoder

from recbole_bifair.config import BiFairConfig
from recbole_bifair.embedding import default_embedding_path, ensure_item_embeddings, load_item_embeddings
from recbole_bifair.embedding import generate as generate_module
from recbole_bifair.embedding.encoder import TextEncoder
from recbole_bifair.embedding.feature_file import read_feature_file, read_metadata, write_feature_file
from recbole_bifair.errors import ConfigError, DataError

INTER_COLS = ["user_id", "item_id", "rating", "timestamp"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    force_offline(monkeypatch)


@pytest.fixture(scope="module")
def tiny_gpt(tmp_path_factory):
    return make_tiny_decoder(tmp_path_factory.mktemp("enc") / "tiny-gpt")


def _config(data_root, **overrides):
    return BiFairConfig(model="SASRec", dataset="tiny", config_dict=tiny_config(data_root, **overrides))


def _token_vector(token, dim=5):
    k = int(token[1:])
    return np.array([k, k + 0.5, -k, k / 7.0, 1.0][:dim], dtype=np.float32)


def _synthetic_file(path, tokens):
    return write_feature_file(str(path), tokens, np.stack([_token_vector(t) for t in tokens]), {})


def test_rows_follow_recbole_internal_item_ids_for_every_item(tiny_data, tmp_path):
    config = _config(tiny_data)
    dataset = create_dataset(config)
    tokens = [f"i{i}" for i in np.random.default_rng(3).permutation(30)] + ["i999"]  # shuffled, plus an unknown item
    path = _synthetic_file(tmp_path / "syn.llmemb", tokens)
    E = load_item_embeddings(config, dataset, path)
    assert isinstance(E, torch.Tensor) and E.dtype == torch.float32
    assert E.shape == (dataset.item_num, 5)
    assert torch.count_nonzero(E[0]) == 0
    for item_id in range(1, dataset.item_num):
        token = dataset.id2token(dataset.iid_field, item_id)
        assert np.array_equal(E[item_id].numpy(), _token_vector(token)), token


def test_identical_to_recbole_preload_weight(tiny_data, tiny_gpt):
    item_cols = {"inter": INTER_COLS, "item": ["item_id"]}
    config = _config(tiny_data, load_col=item_cols, llm_encoder=tiny_gpt)
    ours_dataset = create_dataset(config)
    ours = load_item_embeddings(config, ours_dataset)
    # RecBole's own route: the same file as an additional feature of the dataset
    shutil.copy(ensure_item_embeddings(config), os.path.join(tiny_data, "tiny", "tiny.llmemb"))
    preload_config = _config(
        tiny_data, load_col={**item_cols, "llmemb": ["iid", "item_emb"]}, additional_feat_suffix=["llmemb"],
        alias_of_item_id=["iid"], preload_weight={"iid": "item_emb"},
    )
    recbole_dataset = create_dataset(preload_config)
    recbole_rows = torch.from_numpy(recbole_dataset.get_preload_weight("iid")).float()
    assert list(recbole_dataset.field2id_token["item_id"]) == list(ours_dataset.field2id_token["item_id"])
    assert ours.shape == recbole_rows.shape == (31, 16)
    assert torch.equal(ours, recbole_rows)


def test_items_without_a_vector(tiny_data, tmp_path):
    config = _config(tiny_data)
    dataset = create_dataset(config)
    known = [dataset.id2token(dataset.iid_field, i) for i in range(1, dataset.item_num)]
    dropped = known[:4]
    path = _synthetic_file(tmp_path / "part.llmemb", known[4:])
    with pytest.raises(DataError) as err:
        load_item_embeddings(config, dataset, path)
    message = str(err.value)
    assert f"4 of {dataset.item_num - 1} items" in message and "part.llmemb" in message
    assert all(t in message for t in dropped) and "llm_emb_missing" in message

    dropped_ids = [dataset.token2id(dataset.iid_field, t) for t in dropped]
    zero = load_item_embeddings(_config(tiny_data, llm_emb_missing="zero"), dataset, path)
    assert torch.count_nonzero(zero[dropped_ids]) == 0
    mean = load_item_embeddings(_config(tiny_data, llm_emb_missing="mean"), dataset, path)
    expected_mean = np.stack([_token_vector(t) for t in known[4:]]).mean(axis=0)
    for i in dropped_ids:
        np.testing.assert_allclose(mean[i].numpy(), expected_mean, rtol=1e-6)
    kept = [dataset.token2id(dataset.iid_field, t) for t in known[4:]]
    assert torch.equal(zero[kept], mean[kept])


def test_file_for_another_dataset(tiny_data, tmp_path):
    config = _config(tiny_data)
    path = write_feature_file(str(tmp_path / "other.llmemb"), ["1", "2"], np.ones((2, 3)), {})
    with pytest.raises(DataError, match="another dataset"):
        load_item_embeddings(config, create_dataset(config), path)


def test_cached_rerun_does_not_encode_again(tiny_data, tiny_gpt, monkeypatch):
    config = _config(tiny_data, llm_encoder=tiny_gpt)
    path = ensure_item_embeddings(config)
    assert path == default_embedding_path(config) == os.path.join(".", "dataset_embeddings", "tiny", "tiny.tiny-gpt.llmemb")
    metadata = read_metadata(path)
    assert metadata["pooling"] == "last" and metadata["item_count"] == 30 and metadata["dimension"] == 16
    mtime = os.stat(path).st_mtime_ns

    def encoder_must_not_load(*args, **kwargs):
        raise AssertionError("the encoder was loaded for a cached file")

    monkeypatch.setattr(generate_module, "TextEncoder", encoder_must_not_load)
    assert ensure_item_embeddings(_config(tiny_data, llm_encoder=tiny_gpt, llm_emb_batch_size=3)) == path
    assert os.stat(path).st_mtime_ns == mtime
    monkeypatch.setattr(generate_module, "TextEncoder", TextEncoder)

    # different texts -> a new encoding, in place of the old one
    changed = ensure_item_embeddings(_config(tiny_data, llm_encoder=tiny_gpt, llm_emb_fields=["movie_title"]))
    assert changed == path and read_metadata(path)["fields"] == ["movie_title"]
    assert read_metadata(path)["cache_key"] != metadata["cache_key"]


def test_explicit_existing_file_is_used_as_is(tiny_data, tmp_path, monkeypatch):
    path = _synthetic_file(tmp_path / "mine.llmemb", [f"i{i}" for i in range(30)])
    monkeypatch.setattr(generate_module, "TextEncoder", None)  # any encoding attempt would fail
    config = _config(tiny_data, llm_emb_file=path)
    assert ensure_item_embeddings(config) == path
    assert load_item_embeddings(config, create_dataset(config)).shape[1] == 5
    (tmp_path / "bad.llmemb").write_text("item_id:token\tembedding:float\ni0\t1\n")
    with pytest.raises(DataError, match="line 1: header"):
        ensure_item_embeddings(_config(tiny_data, llm_emb_file=str(tmp_path / "bad.llmemb")))


def test_explicit_missing_file_stops_the_run_and_names_the_path(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(generate_module, "TextEncoder", None)  # any encoding attempt would fail
    target = str(tmp_path / "missing.llmemb")
    with pytest.raises(ConfigError) as failure:
        ensure_item_embeddings(_config(tiny_data, llm_emb_file=target))
    message = str(failure.value)
    assert f"llm_emb_file '{target}' does not exist" in message
    assert f"python -m recbole_bifair.embed --dataset=tiny --data_path={tiny_data} --output={target}" in message
    assert "llm_emb_generate: true" in message and "leave llm_emb_file unset" in message
    assert not os.path.exists(target) and not os.path.exists(target + ".json")
    assert not os.path.exists("dataset_embeddings")  # nor anything at the default location


def test_explicit_missing_file_stops_an_llm_model_before_the_data_is_read(tiny_data, tmp_path):
    target = str(tmp_path / "missing.llmemb")
    with pytest.raises(ConfigError, match="llm_emb_file '.*missing.llmemb' does not exist"):
        BiFairConfig(model="BiFairSASRec", dataset="tiny", config_dict=tiny_config(tiny_data, llm_emb_file=target))
    # an ID model does not read the file: nothing to check
    assert BiFairConfig(model="SASRec", dataset="tiny", config_dict=tiny_config(tiny_data, llm_emb_file=target))
    assert BiFairConfig(model="BiFairSASRec", dataset="tiny", config_dict=tiny_config(
        tiny_data, llm_emb_file=target, llm_emb_generate=True))


def test_explicit_missing_file_is_generated_there_with_llm_emb_generate(tiny_data, tmp_path, tiny_gpt):
    target = str(tmp_path / "out" / "e.llmemb")
    config = _config(tiny_data, llm_encoder=tiny_gpt, llm_emb_file=target, llm_emb_normalize=True,
                     llm_emb_generate=True)
    assert ensure_item_embeddings(config) == target
    table = read_feature_file(target)
    assert table.tokens == [f"i{i}" for i in range(30)]
    np.testing.assert_allclose(np.linalg.norm(table.matrix, axis=1), 1.0, rtol=1e-5)


def test_failing_encode_leaves_no_file(tiny_data, tiny_gpt, monkeypatch):
    config = _config(tiny_data, llm_encoder=tiny_gpt)
    target = default_embedding_path(config)

    def crash(self, texts, *args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(TextEncoder, "encode", crash)
    with pytest.raises(RuntimeError, match="out of memory"):
        ensure_item_embeddings(config)
    assert not os.path.exists(target) and not os.path.exists(target + ".json")


def test_unloadable_encoder_leaves_no_file(tiny_data):
    config = _config(tiny_data, llm_encoder="no-such-org/no-such-model")
    with pytest.raises(ConfigError, match="--encoder=DIR"):
        ensure_item_embeddings(config)
    folder = os.path.dirname(default_embedding_path(config))
    assert not os.path.isdir(folder) or os.listdir(folder) == []


def test_default_location_is_outside_the_recbole_wheel():
    config = BiFairConfig(model="SASRec", dataset="ml-100k", config_dict={"state": "WARNING"})
    assert default_embedding_path(config) == os.path.join(
        ".", "dataset_embeddings", "ml-100k", "ml-100k.all-MiniLM-L6-v2.llmemb")


@pytest.mark.parametrize("key, value", [
    ("llm_emb_pooling", "max"), ("llm_emb_missing", "skip"), ("llm_emb_batch_size", 0),
    ("llm_emb_normalize", "yes"), ("llm_emb_fields", []), ("llm_emb_dtype", "int8"),
    ("llm_emb_generate", "yes"), ("llm_emb_threads", 0),
])
def test_bad_config_values(tiny_data, key, value):
    with pytest.raises(ConfigError, match=f"^{key}: "):  # when the config is built
        _config(tiny_data, **{key: value})


def test_overall_yaml_defaults_match_the_code():
    from recbole_bifair.config import load_yaml_file, properties_dir
    from recbole_bifair.embedding.options import DEFAULTS

    listed = {k: v for k, v in load_yaml_file(properties_dir() / "overall.yaml").items() if k in DEFAULTS}
    assert listed == {k: DEFAULTS[k] for k in listed}
