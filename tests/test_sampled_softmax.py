"""Sampled-softmax training (``train_softmax: sampled``, METHOD.md 3b): the row-restricted item
table, the sampled CE against hand computations, and that a sampled step never projects the
whole catalog."""

import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from recbole_bifair.errors import ConfigError
from recbole_bifair.model.llm_item_table import ProjectedItemTable
from recbole_bifair.trainer.row_adam import RowwiseAdam
from tests.bifair_fixtures import bifair_setup, build_bifair

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attn_dropout_prob=0.0, projector_dropout=0.0)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


_build = build_bifair


@pytest.mark.parametrize("id_fusion", ["none", "sum", "concat", "residual"])
def test_rows_of_the_table_are_the_rows_of_the_full_table(setup, id_fusion):
    _, _, net, _ = _build(setup, id_fusion=id_fusion, text_scale_init=0.3, **NO_DROPOUT)
    table = net.item_table
    full = table.compute()
    rows = torch.tensor([0, 2, 3, 7, 11])
    torch.testing.assert_close(table.compute_rows(rows), full[rows])
    with table.row_scope(rows) as scoped:
        ids = torch.tensor([[3, 0, 11], [7, 7, 2]])
        torch.testing.assert_close(table(ids), full[ids])
        torch.testing.assert_close(scoped.lookup(ids), full[ids])
        with pytest.raises(RuntimeError, match="row scope"):
            table.weight
        with pytest.raises(ValueError, match=r"\[5\]"):
            table(torch.tensor([5]))
    torch.testing.assert_close(table.weight, full)  # the scope is closed again


@pytest.mark.parametrize("mode", ["prefix", "sequence"])
@pytest.mark.parametrize("shifts", [{}, {"fair_method": "logit_adjust", "logit_adjust_tau": 0.7}])
def test_sampled_ce_is_the_hand_computation(setup, mode, shifts):
    _, (train, _, _), net, _ = _build(setup, train_mode=mode, train_softmax="sampled", **shifts, **NO_DROPOUT)
    net.eval()
    batch = train.collate_fn(np.arange(min(5, train.n_windows))) if mode == "sequence" else train._dataset[np.arange(20)]
    negatives = torch.tensor([4, 9, 9, 1, 17, 22])  # repeats allowed; some are targets (accidental hits)
    with torch.no_grad():
        out = net.target_losses(batch, negatives=negatives)
        full = net.target_losses(batch, softmax="full", keep_logits=True)  # the same S, full logits z (+ shifts)
    z = full.logits.double().numpy()
    y = out.targets.numpy()
    assert np.array_equal(y, full.targets.numpy())
    M, n_real = len(negatives), net.n_items - 1
    expected = []
    for i, target in enumerate(y):
        terms = [z[i, target]] + [z[i, s] - math.log(M / n_real) for s in negatives.tolist() if s != target]
        top = max(terms)
        expected.append(top + math.log(sum(math.exp(t - top) for t in terms)) - z[i, target])
    np.testing.assert_allclose(out.losses.double().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert out.logits is None  # no full logits: MGDA takes its autograd path


def test_every_item_once_as_negatives_gives_the_full_ce_over_the_real_items(setup):
    _, (train, _, _), net, _ = _build(setup, train_softmax="sampled", **NO_DROPOUT)
    net.eval()
    batch = train.collate_fn(np.arange(min(4, train.n_windows)))
    with torch.no_grad():
        out = net.target_losses(batch, negatives=torch.arange(1, net.n_items))  # M = n_real: no correction
        full = net.target_losses(batch, softmax="full", keep_logits=True)
    # the full CE without the padding column (which a sampler never draws)
    want = torch.logsumexp(full.logits[:, 1:], dim=1) - full.logits[torch.arange(len(full.targets)), full.targets]
    torch.testing.assert_close(out.losses, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bifair", [False, True])
def test_a_sampled_training_run_never_projects_the_whole_catalog(setup, monkeypatch, bifair):
    """Training (and, for BiFair with outer_softmax sampled, the outer step) projects only the rows
    its batches touch; the full table is computed for evaluation only."""
    _, (train, valid, _), net, trainer = _build(setup, train_softmax="sampled", train_negatives=5, epochs=1,
                                                **({"outer_softmax": "sampled", "outer_negatives": 5} if bifair
                                                   else {"fair_method": "none"}))
    calls = []
    original = ProjectedItemTable.compute

    def spy(self, E=None):
        calls.append(self.training and torch.is_grad_enabled())
        return original(self, E)

    monkeypatch.setattr(ProjectedItemTable, "compute", spy)
    trainer.fit(train, valid, saved=False)
    assert not any(calls)  # every full projection happened in evaluation
    assert trainer.train_loss_dict and all(math.isfinite(v) for v in trainer.train_loss_dict.values())


@pytest.mark.parametrize("model, overrides", [
    ("BiFairBERT4Rec", {}),
    ("BiFairSASRec", dict(loss_type="BPR", train_neg_sample_args={"distribution": "uniform", "sample_num": 1},
                          train_mode="prefix")),
])
def test_sampled_training_where_there_is_no_full_ce_is_a_config_error(setup, model, overrides):
    with pytest.raises(ConfigError, match="train_softmax: full"):
        _build(setup, model=model, train_softmax="sampled", **overrides)


def test_bad_sampled_keys_name_the_key(setup):
    with pytest.raises(ConfigError, match="train_softmax: 'some' is not allowed"):
        _build(setup, train_softmax="some")
    with pytest.raises(ConfigError, match="train_negatives"):
        _build(setup, train_softmax="sampled", train_negatives=0)


# ----- the sampled outer step (outer_softmax: sampled, METHOD.md 4b) ------------------------------
@pytest.mark.parametrize("moment,optimizer", [("row", RowwiseAdam), ("entry", torch.optim.SparseAdam)])
def test_the_sampled_outer_step_moves_only_the_rows_it_touched(setup, monkeypatch, moment, optimizer):
    _, (train, valid, _), net, trainer = _build(setup, outer_softmax="sampled", outer_negatives=3, epochs=1,
                                                group_offsets="outer", meta_batch_size=4, hvp_batch_size=4,
                                                outer_second_moment=moment, **NO_DROPOUT)
    assert trainer.outer_softmax == "sampled"
    assert type(trainer.outer_optimizer) is optimizer
    touched = []
    original = net.batch_rows

    def spy(interaction, negatives):
        rows = original(interaction, negatives)
        touched.append(rows)
        return rows

    monkeypatch.setattr(net, "batch_rows", spy)
    E_before = net.item_table.E.detach().clone()
    trainer._setup(train)
    batch = next(iter(trainer._inner_data))
    trainer.global_step = 1
    stats = defaultdict(float, group_loss=torch.zeros(3), group_steps=torch.zeros(3), inner_w=torch.zeros(3),
                        outer_w=torch.zeros(3))
    trainer._group_step(batch, stats, 0)
    rows = torch.unique(torch.cat(touched))
    moved = (net.item_table.E.detach() - E_before).abs().sum(1) > 0
    assert moved.any()
    outside = torch.ones(net.n_items, dtype=torch.bool)
    outside[rows] = False
    assert not moved[outside].any()  # rows no batch touched keep their values...
    state = trainer.outer_optimizer.state[net.item_table.E]
    assert torch.equal(state["exp_avg"][outside], torch.zeros_like(state["exp_avg"][outside]))  # ...and moments
    assert net.group_offset.detach().abs().sum() > 0  # the offsets got their (sparse) update too


def test_outer_softmax_auto_follows_the_catalog_size(setup):
    _, _, net, trainer = _build(setup, outer_softmax="auto", outer_sampled_min_items=10_000)
    assert trainer.outer_softmax == "full"
    assert not isinstance(trainer.outer_optimizer, (torch.optim.SparseAdam, RowwiseAdam))
    _, _, net, trainer = _build(setup, outer_softmax="auto", outer_sampled_min_items=5)
    assert trainer.outer_softmax == "sampled"
    with pytest.raises(ConfigError, match="outer_learner: adam"):
        _build(setup, outer_softmax="sampled", outer_learner="sgd")
    with pytest.raises(ConfigError, match="outer_negatives"):
        _build(setup, outer_softmax="sampled", outer_negatives=0)
    with pytest.raises(ConfigError, match="outer_second_moment: 'column' is not allowed"):
        _build(setup, outer_softmax="sampled", outer_second_moment="column")
    with pytest.raises(ConfigError, match="outer_softmax: 'half' is not allowed"):
        _build(setup, outer_softmax="half")
