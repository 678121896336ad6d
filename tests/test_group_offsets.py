"""Group score offsets at the outer level (``group_offsets: outer``, METHOD.md 4a): training-only
logit shifts per item group, learned by the second-order term of the hypergradient alone."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness.groups import build_item_groups
from recbole_bifair.quick_start import build_config, prepare_run
from tests.bifair_fixtures import bifair_config, bifair_setup, build_bifair

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attn_dropout_prob=0.0)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


_build = build_bifair


def test_offsets_shift_the_training_logits_of_each_group_and_not_the_ranking(setup):
    _, (train, _, test), net, trainer = _build(setup, group_offsets="outer", **NO_DROPOUT)
    net.eval()
    groups = build_item_groups(trainer.config, train._dataset)
    batch = train.collate_fn(np.arange(min(5, train.n_windows)))
    test_batch = next(iter(test))[0]
    with torch.no_grad():
        plain = net.target_losses(batch)
        ranking = net.full_sort_predict(test_batch)
        b = torch.tensor([0.7, -0.4, 1.3])[: len(net.group_offset)]
        net.group_offset.copy_(b)
        shifted = net.target_losses(batch)
        # by hand: every item's logit moves by its group's offset
        want = plain.logits + b[groups.group_of[: plain.logits.shape[1]]]
        torch.testing.assert_close(shifted.logits, want)
        torch.testing.assert_close(shifted.losses, F.cross_entropy(want, shifted.targets, reduction="none"))
        assert not torch.allclose(shifted.losses, plain.losses)
        torch.testing.assert_close(net.full_sort_predict(test_batch), ranking)  # ranking never sees them
    assert "group_offset" not in {n for n, p in net.named_parameters() if any(p is q for q in net.inner_parameters())}


def _trained_offsets(setup, hypergrad):
    _, (train, valid, _), net, trainer = _build(setup, group_offsets="outer", hypergrad=hypergrad, epochs=1,
                                               outer_balance="dro", dro_tau=0.1, **NO_DROPOUT)
    E_before = net.item_table.E.detach().clone()
    trainer.fit(train, valid, saved=False)
    return net.group_offset.detach().clone(), (net.item_table.E.detach() - E_before).abs().max().item(), trainer


def test_only_the_second_order_term_moves_the_offsets(setup):
    """The meta loss is taken without the offsets, so first-order BiFair leaves them at 0 while E
    moves; finite-difference BiFair moves them (METHOD.md 4a)."""
    first, first_E_moved, _ = _trained_offsets(setup, "first_order")
    assert torch.equal(first, torch.zeros_like(first)) and first_E_moved > 0
    second, _, trainer = _trained_offsets(setup, "finite_difference")
    assert second.abs().max() > 1e-4
    assert trainer.epoch_stats[-1]["group_offsets"] == pytest.approx(second.tolist())


@pytest.mark.parametrize("overrides, key", [
    (dict(outer_level=False), "group_offsets: outer needs the outer level"),
    (dict(fair_method="none"), "group_offsets is a key of fair_method: bifair"),
    (dict(loss_type="BPR", train_neg_sample_args={"distribution": "uniform", "sample_num": 1}, train_mode="prefix"),
     "loss_type: CE or group_offsets: none"),
    (dict(group_offsets="inner"), "group_offsets: 'inner' is not allowed; expected one of none, outer or ~"),
])
def test_bad_offset_settings_name_the_fix(setup, overrides, key):
    settings = dict(group_offsets="outer")
    settings.update(overrides)
    with pytest.raises(ConfigError, match=key):
        _build(setup, **settings)


@pytest.mark.parametrize("overrides, expected", [
    (dict(), "outer"),
    (dict(outer_level=False), "none"),
    (dict(outer_level=False), "none"),
    (dict(loss_type="BPR", train_neg_sample_args={"distribution": "uniform", "sample_num": 1}, train_mode="prefix"),
     "none"),
])
def test_unset_offsets_are_on_wherever_the_outer_level_can_learn_them(setup, overrides, expected):
    """``group_offsets: ~`` is resolved when the config is built (so result files record it): on
    for BiFair with its outer level and CE, off for the baseline, the inner-only ablation and BPR."""
    root, emb = setup
    config = build_config(model="BiFairSASRec", config_dict=bifair_config(root, emb, group_offsets=None, **overrides))
    assert config["group_offsets"] == expected
    _, _, net, _ = prepare_run(config)
    assert (net.group_offset is not None) == (expected == "outer")
    stock = build_config(model="SASRec", config_dict=bifair_config(root, emb, group_offsets=None))
    assert stock["group_offsets"] == "none"


def test_unset_outer_weighting_is_dro_with_the_offsets_and_balance_without(setup):
    root, emb = setup
    on = build_config(model="BiFairSASRec", config_dict=bifair_config(root, emb))
    assert on["group_offsets"] == "outer" and on["outer_balance"] == "dro"
    off = build_config(model="BiFairSASRec", config_dict=bifair_config(root, emb, group_offsets="none"))
    assert off["outer_balance"] is None  # the trainer then uses `balance`
    mine = build_config(model="BiFairSASRec", config_dict=bifair_config(root, emb, outer_balance="mgda"))
    assert mine["outer_balance"] == "mgda"
    baseline = build_config(model="BiFairSASRec", config_dict=bifair_config(root, emb, fair_method="none"))
    assert baseline["outer_balance"] is None and baseline["group_offsets"] is None  # not a key of its method


# --- offset_basis (score_offsets.py): how the learned offsets map to items ---------------------

def _popularity_groups(counts, n_groups):
    from recbole_bifair.fairness.groups import ItemGroups

    counts = np.asarray(counts)
    return ItemGroups.popularity(counts, n_groups, "items", np.array(["[PAD]"] + [str(i) for i in range(1, len(counts))]))


def test_group_basis_is_the_direct_group_lookup():
    """The default basis reproduces ``b[group_of[item]]`` (padding's -1 wraps to the last group, as
    the lookup did before the basis existed)."""
    from recbole_bifair.methods.score_offsets import offset_basis

    groups = _popularity_groups([0, 50, 40, 9, 8, 3, 1, 0], 3)
    B = offset_basis("group", groups, groups.train_count.numpy())
    b = torch.tensor([0.7, -0.4, 1.3])
    torch.testing.assert_close(B @ b, b[groups.group_of], rtol=0, atol=0)


def test_interpolate_basis_by_hand():
    """Items of 2 popularity groups of 2 items each, counts e^4, e^2 (head) and e^1, e^1 (tail):
    knots at log-count 3 (head) and 1 (tail). Hand-computed hat weights: an item at log-count 2 is
    halfway (0.5 / 0.5), above 3 or below 1 it takes the end knot's offset alone."""
    from recbole_bifair.methods.score_offsets import offset_basis

    e = np.e
    counts = np.array([0, e ** 4, e ** 2, e, e])
    groups = _popularity_groups(np.round(counts).astype(int), 2)  # group membership from the rounded counts
    B = offset_basis("interpolate", groups, counts)
    assert groups.group_of.tolist() == [-1, 0, 0, 1, 1]
    want = torch.tensor([[0.0, 0.0],       # padding
                         [1.0, 0.0],       # log 4 > head knot 3: clamped to the head offset
                         [0.5, 0.5],       # log 2: halfway between the knots 3 and 1
                         [0.0, 1.0],       # log 1 = tail knot
                         [0.0, 1.0]])
    torch.testing.assert_close(B, want)
    b = torch.tensor([0.6, -0.4])
    torch.testing.assert_close(B @ b, torch.tensor([0.0, 0.6, 0.1, -0.4, -0.4]))


def test_prior_basis_is_centred_log_popularity():
    from recbole_bifair.methods.score_offsets import offset_basis

    counts = np.array([0, 100, 10, 1, 0])  # the unseen item counts as 1
    groups = _popularity_groups(counts, 2)
    B = offset_basis("prior", groups, counts)
    x = np.log([100, 10, 1, 1])
    torch.testing.assert_close(B[:, 0], torch.tensor([0.0, *(x - x.mean())], dtype=torch.float32))


@pytest.mark.parametrize("basis", ["interpolate", "prior"])
def test_offsets_of_each_basis_shift_the_training_logits_only(setup, basis):
    from recbole_bifair.methods.score_offsets import offset_basis

    _, (train, _, test), net, trainer = _build(setup, group_offsets="outer", offset_basis=basis, **NO_DROPOUT)
    net.eval()
    groups = build_item_groups(trainer.config, train._dataset)
    B = offset_basis(basis, groups, groups.train_count.numpy())
    assert net.group_offset.shape == (B.shape[1],)
    batch = train.collate_fn(np.arange(min(5, train.n_windows)))
    test_batch = next(iter(test))[0]
    with torch.no_grad():
        plain = net.target_losses(batch)
        ranking = net.full_sort_predict(test_batch)
        b = torch.tensor([0.7, -0.4, 1.3])[: B.shape[1]]
        net.group_offset.copy_(b)
        shifted = net.target_losses(batch)
        torch.testing.assert_close(shifted.logits, plain.logits + (B @ b)[: plain.logits.shape[1]])
        torch.testing.assert_close(net.full_sort_predict(test_batch), ranking)


def test_the_second_order_term_learns_the_prior_slope(setup):
    _, (train, valid, _), net, trainer = _build(setup, group_offsets="outer", offset_basis="prior",
                                                hypergrad="finite_difference", epochs=1, outer_balance="dro",
                                                dro_tau=0.1, **NO_DROPOUT)
    trainer.fit(train, valid, saved=False)
    assert net.group_offset.shape == (1,) and net.group_offset.abs().item() > 1e-4


def test_unknown_offset_basis_names_the_fix(setup):
    with pytest.raises(ConfigError, match="offset_basis: 'items' is not allowed; expected one of group, interpolate, prior"):
        _build(setup, group_offsets="outer", offset_basis="items")


def test_interpolate_needs_popularity_groups():
    from recbole_bifair.fairness.groups import ItemGroups
    from recbole_bifair.methods.score_offsets import offset_basis

    values = np.array([[None], ["a"], ["b"], ["a"]], dtype=object)
    groups = ItemGroups.attribute(values, [0, 5, 3, 1], "first", "genre", np.array(["[PAD]", "1", "2", "3"]))
    with pytest.raises(ConfigError, match="needs item_groups: popularity .* use offset_basis: group or prior"):
        offset_basis("interpolate", groups, groups.train_count.numpy())
    assert offset_basis("prior", groups, groups.train_count.numpy()).shape == (4, 1)


@pytest.mark.parametrize("basis", ["group", "interpolate"])
def test_rank_with_offsets_ranks_by_the_training_logits(setup, basis):
    """``rank_with_offsets`` (the BiFair-train-logits diagnostic): the ranking scores of a test
    batch are the full training logits of the same sequences (``adjust_logits`` of the backbone's
    scores: what the CE was taken over), the padding column aside; predict agrees; nothing else
    changes."""
    _, (train, _, test), net, _ = _build(setup, group_offsets="outer", offset_basis=basis, **NO_DROPOUT)
    _, _, ranked, _ = _build(setup, group_offsets="outer", offset_basis=basis, rank_with_offsets=True, **NO_DROPOUT)
    net.eval()
    ranked.eval()
    test_batch = next(iter(test))[0]
    with torch.no_grad():
        b = torch.tensor([0.7, -0.4, 1.3, 0.2, -1.1])[: len(net.group_offset)]
        net.group_offset.copy_(b)
        ranked.load_state_dict(net.state_dict())
        plain = net.full_sort_predict(test_batch)
        want = net.adjust_logits(plain)
        got = ranked.full_sort_predict(test_batch)
        torch.testing.assert_close(got[:, 1:], want[:, 1:])
        torch.testing.assert_close(got[:, 0], plain[:, 0])
        assert not torch.allclose(got[:, 1:], plain[:, 1:])
        rows = torch.arange(len(got))
        items = test_batch[net.ITEM_ID]
        torch.testing.assert_close(ranked.predict(test_batch), got[rows, items])
        batch = train.collate_fn(np.arange(min(5, train.n_windows)))
        torch.testing.assert_close(ranked.target_losses(batch).losses, net.target_losses(batch).losses)


@pytest.mark.parametrize("overrides, message", [
    (dict(group_offsets="none"), "rank_with_offsets: True .* has none .* set group_offsets: outer"),
    (dict(fair_method="none"), "rank_with_offsets is a key of fair_method: bifair, and this run's fair_method is none"),
])
def test_rank_with_offsets_without_offsets_names_the_fix(setup, overrides, message):
    with pytest.raises(ConfigError, match=message):
        _build(setup, rank_with_offsets=True, **overrides)
