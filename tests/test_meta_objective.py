"""outer_objective (trainer/meta_objective.py, METHOD.md 4c): the soft miss at k against a brute
force and a hand-computed case, its vanishing gradient for hopeless targets, a run with it, and
the settings it refuses."""

import math

import pytest
import torch

from recbole_bifair.errors import ConfigError
from recbole_bifair.quick_start import build_config, prepare_run, run_bifair
from recbole_bifair.trainer.meta_objective import soft_miss
from tests.bifair_fixtures import bifair_config, bifair_setup


def _brute_force(logits, targets, k, temperature):
    out = []
    for row, y in zip(logits.tolist(), targets.tolist()):
        others = sorted((v for j, v in enumerate(row) if j not in (0, y)), reverse=True)
        kth = others[min(k, len(others)) - 1]
        out.append(1.0 / (1.0 + math.exp(-(kth - row[y]) / temperature)))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("k", [1, 3, 10, 50])
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_soft_miss_is_the_sigmoid_of_the_margin_to_the_kth_other_item(k, temperature):
    g = torch.Generator().manual_seed(k)
    logits = torch.randn(7, 20, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(1, 20, (7,), generator=g)
    got = soft_miss(logits, targets, k, temperature)
    assert torch.allclose(got, _brute_force(logits, targets, k, temperature), atol=1e-12)


def test_soft_miss_by_hand_ignores_padding():
    logits = torch.tensor([[100.0, 3.0, 2.0, 1.0, 0.0]] * 2)
    got = soft_miss(logits, torch.tensor([4, 1]), k=2, temperature=1.0)
    # target 4 (logit 0): 2nd largest of {3, 2, 1} is 2 -> sigmoid(2); target 1 (logit 3), k 2: of {2, 1, 0}
    # the 2nd is 1 -> sigmoid(-2). The padding column's 100 takes no place in the ranking.
    assert got.tolist() == pytest.approx([1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))])


def test_a_hopeless_target_gets_no_gradient_and_a_borderline_one_does():
    logits = torch.tensor([[0.0, 5.0, 4.0, 3.0, -20.0], [0.0, 5.0, 4.0, 3.0, 4.1]], requires_grad=True)
    soft_miss(logits, torch.tensor([4, 4]), k=2, temperature=1.0).sum().backward()
    assert abs(logits.grad[0, 4].item()) < 1e-9
    assert logits.grad[1, 4].item() == pytest.approx(-0.25, abs=0.01)  # sigmoid'(-0.1) ~ 0.25, pushes z_y up


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def test_a_run_with_soft_hit_learns_other_offsets_than_ce(setup):
    root, emb = setup
    offsets = {}
    for objective in ("ce", "soft_hit"):
        config = build_config(model="BiFairSASRec", config_dict=bifair_config(
            root, emb, epochs=2, meta_batch_size=32, outer_objective=objective, soft_hit_k=3))
        dataset, (train, valid, test), model, trainer = prepare_run(config)
        trainer.fit(train, valid, saved=False)
        offsets[objective] = model.group_offset.detach().clone()
        record = trainer.epoch_stats[-1]
        if objective == "soft_hit":  # group means of a miss probability, dro-weighted: in [0, 1]
            assert 0.0 <= record["outer_loss"] <= 1.0
    assert offsets["soft_hit"].abs().sum() > 0
    assert not torch.allclose(offsets["ce"], offsets["soft_hit"])


def test_soft_hit_trains_on_prefix_samples_too(setup):
    root, emb = setup  # the tiny runs above train sequence-level (the default): here one sample per prefix
    result = run_bifair(model="BiFairSASRec", config_dict=bifair_config(
        root, emb, meta_batch_size=32, outer_objective="soft_hit", train_mode="prefix"))
    assert 0.0 <= result["training_log"][-1]["outer_loss"] <= 1.0


@pytest.mark.parametrize("overrides,needle", [
    (dict(outer_objective="soft_hit", outer_balance="mgda"), "outer_balance"),
    (dict(outer_objective="soft_hit", outer_softmax="sampled"), "outer_softmax"),
    (dict(outer_objective="soft_hit", loss_type="BPR", train_neg_sample_args={"distribution": "uniform",
                                                                             "sample_num": 1}), "loss_type"),
    (dict(outer_objective="top10"), "outer_objective"),
    (dict(outer_objective="soft_hit", soft_hit_k=0), "soft_hit_k"),
    (dict(outer_objective="soft_hit", soft_hit_temperature=0.0), "soft_hit_temperature"),
])
def test_settings_soft_hit_cannot_use_name_the_key(setup, overrides, needle):
    root, emb = setup
    with pytest.raises(ConfigError, match=needle):
        run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, meta_batch_size=32, **overrides))
