"""Causal backbones without the padding of short histories (``trim_padding``, model/padding.py):
the same full-ranking scores and metrics, and the same training outputs and gradients, as
RecBole's padded batches."""

import pytest
import torch

import recbole_bifair.model.padding as padding
from recbole_bifair.data.sequence import TARGETS
from recbole_bifair.model.all_positions import scored_positions, sequence_loss
from recbole_bifair.model.padding import trimmed_all_positions, trimmed_full_sort, trims_padding
from recbole_bifair.quick_start import build_config, prepare_run
from tests.bifair_fixtures import bifair_config, bifair_setup
from tests.datagen import tiny_config

MAX_LEN = 20  # longer than most tiny histories, so that trimming cuts something
CAUSAL = ["SASRec", "GRU4Rec", "BiFairSASRec", "BiFairGRU4Rec"]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def _prepare(setup, model, **overrides):
    root, emb = setup
    extra = dict(MAX_ITEM_LIST_LENGTH=MAX_LEN, epochs=2, **overrides)
    config_dict = bifair_config(root, emb, **extra) if model.startswith("BiFair") else tiny_config(root, **extra)
    return prepare_run(build_config(model=model, config_dict=config_dict))


def _cut_somewhere(lengths, chunk, width):
    """The checks mean something only if some chunk of the length-sorted rows is really cut."""
    return min(int(w.max()) for w in lengths.sort().values.split(chunk)) < width


# ----- evaluation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name", CAUSAL)
def test_trimmed_scores_equal_the_padded_batch(setup, model_name):
    _, (train, valid, _), model, trainer = _prepare(setup, model_name)
    trainer.fit(train, valid, saved=False)  # trained weights, not only the initialisation
    model.eval()
    interaction = next(iter(valid))[0]
    lengths = interaction[model.ITEM_SEQ_LEN]
    assert _cut_somewhere(lengths, 4, interaction[model.ITEM_SEQ].shape[1])
    with torch.no_grad():
        padded = model.full_sort_predict(interaction).view(len(lengths), -1)
        trimmed = trimmed_full_sort(model, interaction, chunk=4)
    assert trimmed.shape == padded.shape
    torch.testing.assert_close(trimmed, padded, rtol=1e-5, atol=1e-5)
    assert torch.equal(trimmed.topk(5).indices, padded.topk(5).indices)


def test_evaluation_metrics_are_the_same_with_and_without_trimming(setup):
    _, (train, valid, test), model, trainer = _prepare(
        setup, "BiFairSASRec", metrics=["Recall", "NDCG", "GroupNDCG", "NDCGCV"], eval_batch_size=7)
    trainer.fit(train, valid, saved=False)
    assert trainer.trim_padding
    trimmed = trainer.evaluate(test, load_best_model=False)
    trainer.trim_padding = False
    padded = trainer.evaluate(test, load_best_model=False)
    assert trimmed.keys() == padded.keys()
    for key in padded:
        assert trimmed[key] == pytest.approx(padded[key], abs=1e-12), key


# ----- training windows ---------------------------------------------------------------------------
def test_trimmed_all_positions_on_a_hand_made_batch():
    # each output position is (row id, position, running sum of the inputs): a causal function
    def all_positions(seq):
        rows = seq[:, :1].float().expand_as(seq)
        pos = torch.arange(seq.shape[1]).float().expand_as(seq)
        return torch.stack([rows, pos, seq.float().cumsum(1)], dim=-1)

    seq = torch.tensor([[7, 1, 2, 0, 0, 0], [8, 0, 0, 0, 0, 0], [9, 3, 4, 5, 6, 1], [5, 5, 0, 0, 0, 0]])
    keep = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0]]).bool()
    expected = all_positions(seq)[keep]
    out = trimmed_all_positions(all_positions, seq, keep, chunk=2)
    assert torch.equal(out, expected)
    assert out[:, 0].tolist() == [7, 7, 7, 8, 9, 9, 9, 9, 5]  # batch order, time order within a row
    with pytest.raises(ValueError, match="padding"):
        trimmed_all_positions(all_positions, seq, keep | (torch.arange(6) == 5), chunk=2)


@pytest.mark.parametrize("model_name", CAUSAL)
def test_trimmed_training_outputs_and_gradients_equal_the_padded_batch(setup, model_name, monkeypatch):
    no_dropout = dict(hidden_dropout_prob=0.0, attn_dropout_prob=0.0, dropout_prob=0.0)
    _, (train, _, _), model, _ = _prepare(setup, model_name, train_batch_size=48, **no_dropout)
    model.train()
    interaction = next(iter(train))
    seq = interaction[model.ITEM_SEQ]
    assert TARGETS in interaction and _cut_somewhere((seq > 0).sum(1), 4, seq.shape[1])
    padded_S, padded_t = scored_positions(model, interaction, trim=False)
    monkeypatch.setattr(padding, "TRAIN_CHUNK", 4)  # several chunks in this small batch
    trimmed_S, trimmed_t = scored_positions(model, interaction, trim=True)
    assert torch.equal(trimmed_t, padded_t)
    torch.testing.assert_close(trimmed_S, padded_S, rtol=1e-5, atol=1e-5)
    grads = []
    for trim in (False, True):
        model.zero_grad()
        if hasattr(model, "target_losses"):
            model.trim_padding = trim
        sequence_loss(model, interaction, trim).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_only_causal_backbones_are_trimmed_and_the_key_turns_it_off(setup):
    _, _, model, trainer = _prepare(setup, "BiFairBERT4Rec")
    assert not trims_padding(model) and not trainer.trim_padding and not model.trim_padding
    _, _, model, trainer = _prepare(setup, "SASRec", trim_padding=False)
    assert trims_padding(model) and not trainer.trim_padding
    _, _, model, trainer = _prepare(setup, "BiFairSASRec", trim_padding=False)
    assert not trainer.trim_padding and not model.trim_padding
    _, _, model, _ = _prepare(setup, "BiFairSASRec")
    assert model.trim_padding  # on by default
