"""Full ranking without the padding of short histories (``eval_trim_padding``,
trainer/eval_padding.py): the same scores and metrics as RecBole's padded batch."""

import pytest
import torch

from recbole_bifair.quick_start import build_config, prepare_run
from recbole_bifair.trainer.eval_padding import trimmed_full_sort, trims_padding
from tests.bifair_fixtures import bifair_config, bifair_setup
from tests.datagen import tiny_config

MAX_LEN = 20  # longer than most tiny histories, so that trimming cuts something


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def _prepare(setup, model, **overrides):
    root, emb = setup
    extra = dict(MAX_ITEM_LIST_LENGTH=MAX_LEN, epochs=2, **overrides)
    config_dict = bifair_config(root, emb, **extra) if model.startswith("BiFair") else tiny_config(root, **extra)
    return prepare_run(build_config(model=model, config_dict=config_dict))


@pytest.mark.parametrize("model_name", ["SASRec", "GRU4Rec", "BiFairSASRec", "BiFairGRU4Rec"])
def test_trimmed_scores_equal_the_padded_batch(setup, model_name):
    _, (train, valid, _), model, trainer = _prepare(setup, model_name)
    trainer.fit(train, valid, saved=False)  # trained weights, not only the initialisation
    model.eval()
    interaction = next(iter(valid))[0]
    lengths = interaction[model.ITEM_SEQ_LEN]
    chunk = 4
    widths = lengths.sort().values.split(chunk)
    # the check means something only if some chunk is really cut
    assert min(int(w.max()) for w in widths) < interaction[model.ITEM_SEQ].shape[1]
    with torch.no_grad():
        padded = model.full_sort_predict(interaction).view(len(lengths), -1)
        trimmed = trimmed_full_sort(model, interaction, chunk=chunk)
    assert trimmed.shape == padded.shape
    torch.testing.assert_close(trimmed, padded, rtol=1e-5, atol=1e-5)
    assert torch.equal(trimmed.topk(5).indices, padded.topk(5).indices)


def test_evaluation_metrics_are_the_same_with_and_without_trimming(setup):
    _, (train, valid, test), model, trainer = _prepare(
        setup, "BiFairSASRec", metrics=["Recall", "NDCG", "GroupNDCG", "NDCGCV"], eval_batch_size=7)
    trainer.fit(train, valid, saved=False)
    assert trainer.trim_eval_padding
    trimmed = trainer.evaluate(test, load_best_model=False)
    trainer.trim_eval_padding = False
    padded = trainer.evaluate(test, load_best_model=False)
    assert trimmed.keys() == padded.keys()
    for key in padded:
        assert trimmed[key] == pytest.approx(padded[key], abs=1e-12), key


def test_only_causal_backbones_are_trimmed_and_the_key_turns_it_off(setup):
    _, _, model, trainer = _prepare(setup, "BiFairBERT4Rec")
    assert not trims_padding(model) and not trainer.trim_eval_padding
    _, _, model, trainer = _prepare(setup, "SASRec", eval_trim_padding=False)
    assert trims_padding(model) and not trainer.trim_eval_padding
