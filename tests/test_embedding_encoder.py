"""The transformers encoder: sentence-transformers parity, pooling, decoder LLMs, load errors."""

import json
import os

import numpy as np
import pytest
import torch

from tests.embedding_fixtures import force_offline, make_tiny_decoder

from recbole_bifair.embedding.encoder import (
    BUNDLED_NAME, TextEncoder, bundled_encoder_path, pool, resolve_encoder,
)
from recbole_bifair.errors import ConfigError

TEXTS = [
    "movie title: Toy Story; release year: 1995; class: Animation Children's Comedy",
    "GoldenEye",
    "movie title: Shanghai Triad (Yao a yao yao dao waipo qiao); release year: 1995; class: Drama",
    "",
    "Four Rooms 1995 Thriller",
    "a much longer description of an item that goes on for a while, with punctuation, numbers 1 2 3 and Ünïcödé",
    "x",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    force_offline(monkeypatch)


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder(resolve_encoder(None), device="cpu")


@pytest.fixture(scope="module")
def sentence_transformer():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(bundled_encoder_path(), device="cpu")


def test_default_encoder_is_the_bundled_minilm():
    for name in (None, "default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        spec = resolve_encoder(name)
        assert spec.name == BUNDLED_NAME and spec.local
        assert os.path.isfile(os.path.join(spec.source, "model.safetensors"))


def test_normalized_vectors_equal_sentence_transformers(minilm, sentence_transformer):
    ours = minilm.encode(TEXTS, batch_size=3, normalize=True, progress=False)
    theirs = sentence_transformer.encode(TEXTS, convert_to_numpy=True)
    assert minilm.pooling == "mean"
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_unnormalized_vectors_equal_sentence_transformers_without_its_normalize_module(minilm, sentence_transformer):
    from sentence_transformers import SentenceTransformer

    transformer_and_pooling = SentenceTransformer(modules=[sentence_transformer[0], sentence_transformer[1]], device="cpu")
    ours = minilm.encode(TEXTS, batch_size=2, normalize=False, progress=False)
    theirs = transformer_and_pooling.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0)


@pytest.mark.parametrize("threads", [1, 2, None])
def test_vectors_equal_plain_transformers_mean_pooling_at_any_thread_count(threads):
    from transformers import AutoModel, AutoTokenizer

    path = bundled_encoder_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():  # each text alone, in input order: no padding, no sorting, no thread control
        expected = np.stack([model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0].numpy().mean(0)
                             for t in TEXTS])
    before = torch.get_num_threads()
    encoder = TextEncoder(resolve_encoder(None), device="cpu", threads=threads)
    np.testing.assert_allclose(encoder.encode(TEXTS, batch_size=3, progress=False), expected, atol=1e-5, rtol=0)
    assert torch.get_num_threads() == before  # the encoder's thread choice does not leak into the run
    assert sum(encoder.threads_used.values()) == 3  # batches
    if threads:
        assert set(encoder.threads_used) == {threads}


def test_batch_size_and_length_sorting_do_not_change_the_vectors(minilm):
    one_by_one = np.concatenate([minilm.encode([t], batch_size=1, progress=False) for t in TEXTS])
    batched = minilm.encode(TEXTS, batch_size=4, progress=False)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5, rtol=0)


def test_cls_pooling_takes_the_first_token(minilm):
    from transformers import AutoModel, AutoTokenizer

    cls = TextEncoder(resolve_encoder(None), pooling="cls", device="cpu")
    path = bundled_encoder_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        expected = np.stack([model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0, 0].numpy() for t in TEXTS[:3]])
    np.testing.assert_allclose(cls.encode(TEXTS[:3], batch_size=3, progress=False), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_pool_finds_real_tokens_on_either_padding_side(side):
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 4)
    lengths = [5, 3, 1]
    rows = [[1] * n + [0] * (5 - n) if side == "right" else [0] * (5 - n) + [1] * n for n in lengths]
    mask = torch.tensor(rows)
    for b, n in enumerate(lengths):
        real = hidden[b, :n] if side == "right" else hidden[b, 5 - n:]
        torch.testing.assert_close(pool(hidden, mask, "mean")[b], real.mean(0))
        torch.testing.assert_close(pool(hidden, mask, "cls")[b], real[0])
        torch.testing.assert_close(pool(hidden, mask, "last")[b], real[-1])


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    return make_tiny_decoder(tmp_path_factory.mktemp("gpt") / "tiny-gpt", padding_side="left")


def test_decoder_llm_uses_the_last_real_token(tiny_decoder):
    from transformers import AutoModel, AutoTokenizer

    encoder = TextEncoder(resolve_encoder(tiny_decoder), device="cpu")
    assert encoder.pooling == "last"  # auto: the checkpoint is a GPT2LMHeadModel
    texts = ["movie title star night river", "ghost", "love dark city last blue iron 1 2 3", "comedy drama"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_decoder)
    model = AutoModel.from_pretrained(tiny_decoder).eval()
    with torch.no_grad():  # each text alone: no padding at all
        expected = np.stack([model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0, -1].numpy() for t in texts])
    got = encoder.encode(texts, batch_size=4, progress=False)
    assert got.shape == (4, 16)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_mean_pooling_can_be_forced_on_a_decoder(tiny_decoder):
    encoder = TextEncoder(resolve_encoder(tiny_decoder), pooling="mean", device="cpu")
    last = TextEncoder(resolve_encoder(tiny_decoder), device="cpu")
    texts = ["movie title star", "ghost love"]
    assert encoder.pooling == "mean"
    assert not np.allclose(encoder.encode(texts, progress=False), last.encode(texts, progress=False))


def test_hub_name_that_is_not_available_offline_says_how_to_fix():
    spec = resolve_encoder("no-such-org/no-such-model")
    assert not spec.local
    with pytest.raises(ConfigError) as err:
        TextEncoder(spec, device="cpu")
    message = str(err.value)
    assert "no-such-org/no-such-model" in message and "--encoder=DIR" in message and "huggingface-cli download" in message


def test_missing_local_folder_and_folder_without_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        resolve_encoder(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="must hold a transformers checkpoint"):
        TextEncoder(resolve_encoder(str(tmp_path / "empty")), device="cpu")


def test_checkpoint_with_its_own_code_is_not_run_unless_trusted(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    auto_map = {"AutoConfig": "configuration_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "tiny-custom", "auto_map": auto_map}))
    (folder / "configuration_tiny.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ConfigError, match="llm_emb_trust_remote_code: true"):
        TextEncoder(resolve_encoder(str(folder)), device="cpu")


def test_gpu_device_without_gpu_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="llm_emb_device"):
        TextEncoder(resolve_encoder(None), device="cuda")


def test_local_fingerprint_changes_when_weights_change(tmp_path):
    folder = make_tiny_decoder(tmp_path / "m", seed=0)
    before = resolve_encoder(folder).fingerprint()
    assert resolve_encoder(folder).fingerprint() == before
    weights = os.path.join(folder, "model.safetensors")
    stat = os.stat(weights)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert resolve_encoder(folder).fingerprint() != before
