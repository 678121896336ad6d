"""BiFair model wrappers: P(E) replaces the item table, losses match the backbone's, eval caching."""

import pytest
import torch

from recbole_bifair.model.llm_item_table import ProjectedItemTable
from recbole_bifair.quick_start import build_config, prepare_run, run_bifair
from tests.bifair_fixtures import EMB_DIM, bifair_config, bifair_setup

BACKBONES = ["BiFairSASRec", "BiFairGRU4Rec", "BiFairBERT4Rec"]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def _build(setup, model, **overrides):
    root, emb = setup
    config = build_config(model=model, config_dict=bifair_config(root, emb, **overrides))
    return config, *prepare_run(config)


@pytest.mark.parametrize("model", BACKBONES)
def test_every_backbone_trains_and_evaluates_one_epoch(setup, model):
    root, emb = setup
    result = run_bifair(model=model, config_dict=bifair_config(root, emb))
    assert result["epochs_trained"] == 1
    assert set(result["test_result"]) >= {"ndcg@10", "recall@10", "hit@10"}
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0


@pytest.mark.parametrize("model", BACKBONES)
def test_item_table_is_projected_llm_table_with_zero_padding(setup, model):
    config, dataset, (train, _, _), net, _ = _build(setup, model)
    table = net.item_embedding
    assert isinstance(table, ProjectedItemTable)
    assert table.E.shape == (net.n_items, EMB_DIM)
    net.eval()
    with torch.no_grad():
        V = table.weight
        assert torch.all(V[0] == 0)
        # the default fusion (every dataset, METHOD.md 3d): the text view plus the trainable ID
        # view, each item's ID vector weighted n / (n + 100) by its training interactions n
        assert config["id_fusion"] == "sum" and config["id_count_half"] == 100.0
        split = train.dataset
        n = torch.bincount(split.inter_feat[split.iid_field], minlength=dataset.item_num)[1: net.n_items].double()
        expected = table.projector(table.E[1:]).double() + (n / (n + 100.0)).unsqueeze(1) * \
            table.id_embedding.weight[1:].double()
        torch.testing.assert_close(V[1 : net.n_items].double(), expected, rtol=1e-5, atol=1e-6)
        ids = torch.tensor([[1, 2, 0]])
        torch.testing.assert_close(table(ids), V[ids])


@pytest.mark.parametrize("model", BACKBONES)
def test_target_losses_average_to_the_backbones_loss(setup, model):
    """Our per-target losses are the backbone's own CE, split per target (no dropout: eval mode)."""
    config, dataset, (train, _, _), net, _ = _build(setup, model)
    net.eval()
    batch = next(iter(train))
    with torch.no_grad():
        torch.manual_seed(0)  # BERT4Rec's masking happens in the loader; the model is deterministic in eval
        out = net.target_losses(batch)
        expected = net.calculate_loss(batch)
    torch.testing.assert_close(out.losses.mean(), expected, rtol=1e-5, atol=1e-6)
    assert out.losses.shape == out.targets.shape


def test_full_sort_predict_computes_the_table_once_per_evaluation_pass(setup, monkeypatch):
    config, dataset, (train, valid, test), net, trainer = _build(setup, "BiFairSASRec", eval_batch_size=8)
    assert len(test) > 1  # several evaluation batches
    calls = []
    original = ProjectedItemTable.compute
    monkeypatch.setattr(ProjectedItemTable, "compute", lambda self, E=None: calls.append(1) or original(self, E))
    trainer.evaluate(test, load_best_model=False)
    assert len(calls) == 1
    trainer.evaluate(valid, load_best_model=False)
    assert len(calls) == 1  # parameters unchanged: still cached
    with torch.no_grad():
        net.item_embedding.E.add_(0.01)  # any parameter change invalidates the cache
    trainer.evaluate(valid, load_best_model=False)
    assert len(calls) == 2


def test_llm_baseline_keeps_E_frozen_and_out_of_the_parameters(setup):
    config, dataset, data, net, trainer = _build(setup, "BiFairSASRec", fair_method="none")
    names = [n for n, _ in net.named_parameters()]
    assert "item_embedding.E" not in names
    assert "item_embedding.E" in dict(net.named_buffers())
