"""``mgda_interval``: the MGDA Gram matrix (and the weights) every k steps of a level, the last
weights reused in between (METHOD.md 5; the cost measurement in benchmarks/results/cost-synthetic.md)."""

import pytest
import torch

from recbole_bifair.errors import ConfigError
from recbole_bifair.methods.ips import IPS
from recbole_bifair.methods.registry import register_method
from recbole_bifair.methods.varreg import VarReg
from recbole_bifair.trainer import fair_trainer, group_loop
from tests.bifair_fixtures import bifair_setup, build_bifair

MGDA_KEYS = ("balance_tau", "balance_ema", "mgda_interval")


@register_method
class IPSWithMGDA(IPS):
    """IPS's target weights under MGDA's group weights: the fused gradient of weighted losses."""

    name = "ips_mgda"
    keys = IPS.keys + MGDA_KEYS
    inner_balance = "mgda"


@register_method
class VarRegWithMGDA(VarReg):
    """VarReg's loss term under MGDA's group weights: the fused gradient must stay off."""

    name = "varreg_mgda"
    keys = VarReg.keys + MGDA_KEYS
    inner_balance = "mgda"


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def _record(monkeypatch, trainer):
    """Observe (not replace) the inner balancer's weights and every Gram computation."""
    grams, calls = [], []
    real_gram = group_loop.shared_gram

    def gram(*args, **kwargs):
        grams.append(len(calls))
        return real_gram(*args, **kwargs)

    monkeypatch.setattr(group_loop, "shared_gram", gram)
    balancer = trainer.inner_balancer
    real_weights = balancer.weights

    def weights(grouped, out=None, parts=None):
        w = real_weights(grouped, out, parts)
        calls.append((grouped.present.detach().cpu().clone(), w.detach().cpu().clone()))
        return w

    balancer.weights = weights
    return grams, calls


@pytest.mark.parametrize("k", [1, 3])
def test_gram_every_k_steps_and_the_last_weights_in_between(setup, monkeypatch, k):
    _, (train, valid, _), net, trainer = build_bifair(setup, mgda_interval=k, epochs=1, outer_level=False,
                                                      balance="mgda", train_batch_size=8)
    trainer._setup(train)
    grams, calls = _record(monkeypatch, trainer)
    trainer._train_epoch(train, 0)
    n = len(calls)
    assert n >= 4
    # a Gram on calls 0, k, 2k, ... and on any call whose present groups had no weight yet
    for i, (present, w) in enumerate(calls):
        if i % k == 0:
            assert i in grams
        elif i not in grams:
            # reuse: the previous call's weights restricted to this batch's groups, renormalised
            j = max(g for g in grams if g < i)
            ref = calls[j][1]  # a Gram step returns its weights over all K groups (0 if absent)
            want = torch.where(present, ref, torch.zeros_like(ref))
            torch.testing.assert_close(w, (want / want.sum()).to(w.dtype))
            assert torch.allclose(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    if k == 1:
        assert grams == list(range(n))
    else:
        assert len(grams) < n and set(range(0, n, k)) <= set(grams)
    assert trainer.inner_balancer.calls == n


def test_the_call_count_survives_a_checkpoint(setup):
    _, (train, valid, _), net, trainer = build_bifair(setup, mgda_interval=3, outer_level=False, balance="mgda")
    trainer._setup(train)
    trainer._train_epoch(train, 0)
    state = trainer.inner_balancer.state_dict()
    assert state["calls"] == trainer.inner_balancer.calls > 0
    fresh = group_loop.Balancer("mgda", 3, trainer.config, "balance")
    fresh.load_state_dict(state)
    assert fresh.calls == state["calls"]
    torch.testing.assert_close(fresh.impl.last, trainer.inner_balancer.impl.last)
    # checkpoints written before the key existed have no count: every call had a Gram
    legacy = {k: v for k, v in state.items() if k != "calls"}
    fresh.load_state_dict(legacy)
    assert fresh.calls == 0


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "four"])
def test_a_bad_interval_names_the_key(setup, bad):
    with pytest.raises(ConfigError, match="mgda_interval"):
        _, (train, *_), _, trainer = build_bifair(setup, mgda_interval=bad)
        trainer._setup(train)


# ----- the Gram's products as the inner backward (fused_inner_grads) -----------------------------
@pytest.mark.parametrize("extra", [{}, {"score": "cosine"}, {"fair_method": "ips_mgda"}, {"group_offsets": "outer"}])
def test_fused_inner_gradient_equals_autograd(setup, extra):
    """The inner gradient formed from the Gram's parts equals autograd's gradient of
    sum_g lambda_g L_g through the logits, for every parameter of theta."""
    _, (train, *_), net, trainer = build_bifair(setup, hidden_dropout_prob=0.0, attn_dropout_prob=0.0, **extra)
    trainer._setup(train)
    theta = [p for p in net.inner_parameters()]
    if extra.get("group_offsets"):
        with torch.no_grad():
            net.group_offset.copy_(torch.tensor([0.5, -0.3, 0.2]))
    batch = next(iter(trainer._inner_data))
    out = net.target_losses(batch)
    grouped = trainer._group_losses(out)
    parts = {}
    lam = trainer.inner_balancer.weights(grouped, out, parts)
    assert set(parts) == {"M", "RV"}
    lam = lam.detach() * torch.tensor([1.7, 0.4, 1.1])[: len(lam)]  # any weights, not only the simplex's
    want = torch.autograd.grad(trainer._inner_objective(grouped.means, grouped.present, lam), theta,
                               retain_graph=True, allow_unused=True)
    got = group_loop.fused_inner_grads(out, parts, lam, grouped.group_ids, grouped.counts, theta)
    checked = 0
    scale = max(w.abs().max().item() for w in want if w is not None)
    for p, w, g in zip(theta, want, got):
        if w is None:
            assert g is None or torch.count_nonzero(g) == 0
            continue
        # float32 sums in another order: entries near cancellation (and parameters whose gradient
        # is 0 up to rounding) are compared on the gradient's overall scale
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * scale)
        checked += 1
    assert checked >= 5


def test_the_fused_path_is_off_with_a_variance_term(setup, monkeypatch):
    _, (train, *_), net, trainer = build_bifair(setup, fair_method="varreg_mgda", group_variance_weight=0.5)
    trainer._setup(train)
    used = []
    real = fair_trainer.fused_inner_grads
    monkeypatch.setattr(fair_trainer, "fused_inner_grads", lambda *a: used.append(1) or real(*a))
    trainer._train_epoch(train, 0)
    assert not used
