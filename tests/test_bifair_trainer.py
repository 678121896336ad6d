"""The bi-level trainer: which parameters each level updates, determinism, resume, bad input."""

import glob
import os

import pytest
import torch

from recbole_bifair.compat import load_checkpoint
from recbole_bifair.errors import BiFairError, ConfigError
from recbole_bifair.quick_start import build_config, prepare_run, run_bifair
from tests.bifair_fixtures import bifair_config, bifair_setup


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def _train(setup, epochs=1, **overrides):
    root, emb = setup
    config = build_config(model="BiFairSASRec", config_dict=bifair_config(root, emb, epochs=epochs, **overrides))
    dataset, (train, valid, test), model, trainer = prepare_run(config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.fit(train, valid, saved=False)
    return model, trainer, before


def _changed(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


def test_with_the_outer_level_off_E_does_not_change(setup):
    model, trainer, before = _train(setup, outer_level=False)
    changed = _changed(model, before)
    assert "item_embedding.E" not in changed
    assert any(n.startswith("trm_encoder") for n in changed)
    assert trainer.outer_optimizer is None


def test_outer_updates_touch_only_the_outer_variables(setup):
    # learning_rate 0: the inner optimiser moves nothing, so every change is the outer level's:
    # E and the group score offsets (on by default).
    model, trainer, before = _train(setup, learning_rate=0.0, hypergrad_unroll="sgd", hypergrad_xi=0.01)
    assert _changed(model, before) == {"item_embedding.E", "group_offset"}
    model, trainer, before = _train(setup, learning_rate=0.0, hypergrad_unroll="sgd", hypergrad_xi=0.01,
                                    group_offsets="none")
    assert _changed(model, before) == {"item_embedding.E"}
    assert trainer.global_step > 0


def test_outer_interval_sets_how_often_E_moves(setup):
    model, trainer, before = _train(setup, learning_rate=0.0, hypergrad_unroll="sgd", hypergrad_xi=0.01, outer_interval=1000)
    assert _changed(model, before) == set()  # fewer steps than the interval: no outer step yet


@pytest.mark.parametrize("hypergrad", ["first_order", "finite_difference", "exact"])
def test_same_seed_same_results(setup, hypergrad):
    root, emb = setup
    runs = [run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, hypergrad=hypergrad, epochs=2))
            for _ in range(2)]
    assert runs[0]["test_result"] == runs[1]["test_result"]
    assert runs[0]["best_valid_result"] == runs[1]["best_valid_result"]
    states = [load_checkpoint(r["checkpoint"])["state_dict"] for r in runs]
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name


def test_resumed_run_ends_with_the_parameters_of_an_uninterrupted_one(setup):
    root, emb = setup
    # stopping_step large and a metric that never stops early: both runs train every epoch.
    common = dict(stopping_step=100, epochs=3)
    full = run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, **common))
    first = run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, **dict(common, epochs=1)))
    last = first["checkpoint"][: -len(".pth")] + "-last.pth"
    assert os.path.isfile(last)
    resumed = run_bifair(model="BiFairSASRec",
                         config_dict=bifair_config(root, emb, resume_checkpoint=last, **common))
    assert resumed["epochs_trained"] == 2  # epochs 1 and 2 only
    a = load_checkpoint(full["checkpoint"][: -len(".pth")] + "-last.pth")
    b = load_checkpoint(resumed["checkpoint"][: -len(".pth")] + "-last.pth")
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name
    assert a["bifair"]["global_step"] == b["bifair"]["global_step"]
    assert full["test_result"] == resumed["test_result"]


@pytest.mark.parametrize("key,value,needle", [
    ("balance", "fairest", "balance"),
    ("inner_balance", "max", "inner_balance"),
    ("hypergrad", "second_order", "hypergrad"),
    ("outer_interval", 0, "outer_interval"),
    ("meta_fraction", 0.0, "meta_fraction"),
    ("meta_fraction", 1.0, "meta_fraction"),
    ("meta_split", "random", "meta_split"),
])
def test_bad_settings_name_the_key(setup, key, value, needle):
    root, emb = setup
    with pytest.raises(ConfigError, match=needle):
        run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, **{key: value}))
    assert not glob.glob("results/*.json")


def test_nan_in_training_names_the_key_and_keeps_the_last_good_checkpoint(setup):
    root, emb = setup
    config = build_config(model="BiFairSASRec", config_dict=bifair_config(root, emb))
    dataset, (train, valid, test), model, trainer = prepare_run(config)
    trainer.fit(train, valid, saved=True)
    good = load_checkpoint(trainer.saved_model_file)["state_dict"]
    with torch.no_grad():
        model.item_embedding.projector[0].weight.fill_(float("nan"))
    with pytest.raises(BiFairError, match="learning_rate") as err:
        trainer._train_epoch(train, 1)
    assert trainer.saved_model_file in str(err.value)
    kept = load_checkpoint(trainer.saved_model_file)["state_dict"]
    assert all(torch.equal(kept[n], good[n]) for n in good)
    assert torch.isfinite(kept["item_embedding.projector.0.weight"]).all()


@pytest.mark.parametrize("with_logits", [True, False])
def test_shared_gram_equals_per_group_gradients_computed_one_by_one(with_logits):
    """The closed form (CE) and the autograd fallback (other losses) against K explicit backwards."""
    from recbole_bifair.model.llm import TargetLosses
    from recbole_bifair.trainer.group_loop import group_means, shared_gram

    torch.manual_seed(0)
    S = torch.randn(6, 4, requires_grad=True)
    V = torch.randn(5, 4, requires_grad=True)
    logits = S @ V.T
    losses = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3, 4, 0]), reduction="none")
    losses = losses * torch.tensor([1.0, 2.0, 0.5, 1.0, 1.5, 1.0])  # per-target weights, as IPS makes them
    group_ids = torch.tensor([0, 0, 2, 2, 2, 0])
    L_g, present, counts = group_means(losses, group_ids, 3)
    assert present.tolist() == [True, False, True] and counts.tolist() == [3, 0, 3]
    rows = []
    for g in range(3):
        if present[g]:
            grads = torch.autograd.grad(L_g[g], (S, V), retain_graph=True)
            rows.append(torch.cat([x.reshape(-1) for x in grads]))
        else:
            rows.append(torch.zeros(S.numel() + V.numel()))
    expected = torch.stack(rows) @ torch.stack(rows).T
    out = TargetLosses(losses, None, (S, V), logits if with_logits else None)
    torch.testing.assert_close(shared_gram(out, losses, group_ids, present, counts), expected)
