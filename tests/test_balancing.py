"""Group balancing: MGDA weights against a brute-force grid search, DRO by hand, the balancer."""

import math

import pytest
import torch

from recbole_bifair.trainer.balancing import (
    GroupBalancer,
    dro_weights,
    group_gram,
    min_norm_weights,
    uniform_weights,
)


def objective(gram, w, tau):
    """w^T G_n w - tau H(w) on the mean-diagonal-normalised Gram, as min_norm_weights defines it."""
    g = gram / torch.diagonal(gram).mean()
    return ((w @ g) * w).sum(-1) + tau * torch.xlogy(w, w).sum(-1)


def grid_argmin(gram, tau, points):
    values = objective(gram, points, tau)
    best = int(values.argmin())
    return points[best], float(values[best])


def simplex_grid_2(lo=0.0, hi=1.0, n=100_001):
    a = torch.linspace(lo, hi, n, dtype=torch.float64).clamp(0, 1)
    return torch.stack([a, 1 - a], dim=1)


def simplex_grid_3(center=None, half_width=None, n=301):
    """Points of the 2-simplex: the whole of it, or a square window around ``center``."""
    if center is None:
        axis = torch.linspace(0, 1, n, dtype=torch.float64)
        a, b = torch.meshgrid(axis, axis, indexing="ij")
    else:
        offsets = torch.linspace(-half_width, half_width, n, dtype=torch.float64)
        a, b = torch.meshgrid(center[0] + offsets, center[1] + offsets, indexing="ij")
    c = 1 - a - b
    inside = (a >= 0) & (b >= 0) & (c >= -1e-12)
    return torch.stack([a[inside], b[inside], c[inside].clamp_min(0)], dim=1)


def brute_force(gram, tau):
    """Grid search over the simplex, refined around the coarse optimum (the objective is convex)."""
    k = gram.shape[0]
    if k == 2:
        coarse, _ = grid_argmin(gram, tau, simplex_grid_2(n=2001))
        return grid_argmin(gram, tau, simplex_grid_2(coarse[0] - 2e-3, coarse[0] + 2e-3))
    coarse, _ = grid_argmin(gram, tau, simplex_grid_3())
    return grid_argmin(gram, tau, simplex_grid_3(center=coarse, half_width=3 / 300))


def random_gram(k, d, seed):
    generator = torch.Generator().manual_seed(seed)
    grads = torch.randn(k, d, generator=generator, dtype=torch.float64)
    scales = 0.2 + 3 * torch.rand(k, 1, generator=generator, dtype=torch.float64)
    return group_gram(grads * scales)


def entropy(w):
    return float(-torch.xlogy(w, w).sum())


@pytest.mark.parametrize("tau", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_min_norm_weights_match_grid_search(k, tau, seed):
    gram = random_gram(k, d=[k, 2 * k, 7, 50, 3, 20][seed], seed=seed)
    expected, best = brute_force(gram, tau)
    w = min_norm_weights(gram, tau)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (w >= 0).all()
    assert torch.allclose(w, expected, atol=1e-3), (w, expected)
    assert objective(gram, w, tau).item() <= best + 1e-9


@pytest.mark.parametrize("tau", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("k", [2, 3])
def test_identical_gradients_are_all_optimal_and_ties_go_uniform(k, tau):
    grad = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    gram = group_gram(grad.repeat(k, 1))
    _, best = brute_force(gram, tau)
    w = min_norm_weights(gram, tau)
    assert objective(gram, w, tau).item() == pytest.approx(best, abs=1e-9)
    assert torch.allclose(w, uniform_weights(k).double(), atol=1e-6)


@pytest.mark.parametrize("tau", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("k", [2, 3])
def test_one_zero_gradient(k, tau):
    grads = torch.tensor([[0.0, 0.0], [1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)[:k]
    gram = group_gram(grads)
    expected, _ = brute_force(gram, tau)
    w = min_norm_weights(gram, tau)
    assert torch.allclose(w, expected, atol=1e-3)
    if tau == 0.0:
        # The zero gradient alone is the minimum-norm point.
        assert torch.allclose(w, torch.eye(k, dtype=torch.float64)[0], atol=1e-6)


@pytest.mark.parametrize("tau", [0.0, 0.1, 1.0])
def test_orthogonal_gradients(tau):
    norms = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    gram = torch.diag(norms**2)
    expected, _ = brute_force(gram, tau)
    w = min_norm_weights(gram, tau)
    assert torch.allclose(w, expected, atol=1e-3)
    if tau == 0.0:
        # Lagrange conditions of min sum w_k^2 n_k^2: w_k proportional to 1 / n_k^2.
        assert torch.allclose(w, norms**-2 / (norms**-2).sum(), atol=1e-9)


def test_single_group_gets_all_weight():
    assert min_norm_weights(torch.tensor([[3.0]])).tolist() == [1.0]
    assert min_norm_weights(torch.tensor([[0.0]]), tau=1.0).tolist() == [1.0]


def test_all_zero_gradients_give_uniform_weights():
    assert torch.allclose(min_norm_weights(torch.zeros(4, 4)), uniform_weights(4))


@pytest.mark.parametrize("scale", [1e-12, 1e-6, 1e6, 1e12])
@pytest.mark.parametrize("tau", [0.0, 0.1])
def test_weights_do_not_depend_on_the_gradient_scale(scale, tau):
    gram = random_gram(4, 10, seed=7)
    scaled = min_norm_weights(gram * scale, tau)
    assert torch.allclose(scaled, min_norm_weights(gram, tau), atol=1e-9)


def test_entropy_spreads_the_weights_as_tau_grows():
    for seed in range(5):
        gram = random_gram(4, 3, seed=seed)
        spread = [entropy(min_norm_weights(gram, tau)) for tau in [0.0, 0.01, 0.1, 1.0, 10.0]]
        assert all(a <= b + 1e-12 for a, b in zip(spread, spread[1:])), spread
        assert torch.allclose(min_norm_weights(gram, 1e4), uniform_weights(4).double(), atol=1e-3)


def test_min_norm_weights_keep_dtype_and_do_not_track_gradients():
    grads = torch.randn(3, 5, requires_grad=True)
    w = min_norm_weights(group_gram(grads), tau=0.1)
    assert w.dtype == torch.float32
    assert not w.requires_grad


def test_min_norm_weights_reject_bad_input():
    with pytest.raises(ValueError, match="square"):
        min_norm_weights(torch.ones(2, 3))
    with pytest.raises(ValueError, match="tau"):
        min_norm_weights(torch.eye(2), tau=-1.0)
    with pytest.raises(FloatingPointError, match="not finite"):
        min_norm_weights(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]))


def test_group_gram_flattens_each_group():
    grads = torch.randn(3, 2, 4)
    flat = grads.reshape(3, 8)
    assert torch.allclose(group_gram(grads), flat @ flat.T)


def test_dro_weights_by_hand():
    w = dro_weights(torch.tensor([1.0, 2.0, 3.0]), tau=0.5)
    expected = [math.exp(2.0), math.exp(4.0), math.exp(6.0)]
    assert w.tolist() == pytest.approx([e / sum(expected) for e in expected])
    with pytest.raises(ValueError, match="tau"):
        dro_weights(torch.tensor([1.0]), tau=0.0)


def test_uniform_weights():
    assert uniform_weights(4).tolist() == [0.25] * 4


def test_absent_groups_get_zero_weight():
    present = torch.tensor([True, False, True, True])
    losses = torch.tensor([1.0, float("nan"), 3.0, 4.0])

    dro = GroupBalancer("dro", 4, tau=1.0).weights(losses, present)
    expected = torch.tensor([math.exp(1.0), 0.0, math.exp(3.0), math.exp(4.0)])
    assert torch.allclose(dro, expected / expected.sum())

    uniform = GroupBalancer("uniform", 4, tau=1.0).weights(None, present)
    assert uniform.tolist() == pytest.approx([1 / 3, 0, 1 / 3, 1 / 3])

    gram = random_gram(4, 6, seed=3)
    gram[1, :] = float("nan")
    gram[:, 1] = float("nan")
    mgda = GroupBalancer("mgda", 4, tau=0.1).weights(None, present, gram)
    assert mgda[1] == 0
    kept = torch.tensor([0, 2, 3])
    assert torch.allclose(mgda[kept], min_norm_weights(gram[kept][:, kept], 0.1))


def test_ema_smooths_over_steps():
    balancer = GroupBalancer("dro", 3, tau=1.0, ema=0.75)
    all_present = torch.tensor([True, True, True])
    first_losses, second_losses = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([2.0, 1.0, 0.0])

    first = balancer.weights(first_losses, all_present)
    assert torch.allclose(first, dro_weights(first_losses, 1.0))  # nothing to smooth with yet
    second = balancer.weights(second_losses, all_present)
    assert torch.allclose(second, 0.75 * first + 0.25 * dro_weights(second_losses, 1.0))

    # An absent group is dropped and the smoothed weights renormalised over the present ones.
    present = torch.tensor([True, False, True])
    third = balancer.weights(first_losses, present)
    raw = torch.zeros(3)
    raw[present] = dro_weights(first_losses[present], 1.0)
    expected = (0.75 * second + 0.25 * raw) * present
    assert torch.allclose(third, expected / expected.sum())
    assert torch.equal(balancer.last.float(), third)


def test_no_smoothing_when_ema_is_zero():
    balancer = GroupBalancer("dro", 2, tau=0.5)
    present = torch.tensor([True, True])
    balancer.weights(torch.tensor([0.0, 5.0]), present)
    w = balancer.weights(torch.tensor([1.0, 0.0]), present)
    assert torch.allclose(w, dro_weights(torch.tensor([1.0, 0.0]), 0.5))


def test_uniform_weights_are_never_smoothed():
    balancer = GroupBalancer("uniform", 3, tau=1.0, ema=0.9)
    balancer.weights(None, torch.tensor([True, False, False]))
    w = balancer.weights(None, torch.tensor([True, True, True]))
    assert w.tolist() == pytest.approx([1 / 3] * 3)


def test_state_dict_roundtrip_resumes_smoothing():
    losses = [torch.tensor([0.3, 1.0, 2.0]), torch.tensor([1.0, 0.1, 0.5])]
    present = torch.tensor([True, True, True])
    original = GroupBalancer("dro", 3, tau=0.5, ema=0.5)
    original.weights(losses[0], present)
    resumed = GroupBalancer("dro", 3, tau=0.5, ema=0.5)
    assert resumed.last is None
    resumed.load_state_dict(original.state_dict())
    assert torch.equal(resumed.last, original.last)
    assert torch.equal(resumed.weights(losses[1], present), original.weights(losses[1], present))


def test_state_dict_of_another_configuration_is_refused():
    mgda = GroupBalancer("mgda", 3, tau=0.0)
    with pytest.raises(ValueError, match="balance"):
        mgda.load_state_dict(GroupBalancer("dro", 3, tau=1.0).state_dict())
    with pytest.raises(ValueError, match="groups"):
        mgda.load_state_dict({"mode": "mgda", "last": torch.ones(4) / 4})


def test_unknown_mode_names_the_config_key():
    with pytest.raises(ValueError) as error:
        GroupBalancer("pareto", 3, tau=1.0)
    message = str(error.value)
    assert "'balance'" in message
    assert all(mode in message for mode in ("mgda", "dro", "uniform"))


def test_needs_gram_only_for_mgda():
    assert GroupBalancer("mgda", 2, tau=0.0).needs_gram
    assert not GroupBalancer("dro", 2, tau=1.0).needs_gram
    assert not GroupBalancer("uniform", 2, tau=1.0).needs_gram


def test_missing_inputs_are_reported():
    present = torch.tensor([True, True])
    with pytest.raises(ValueError, match="Gram"):
        GroupBalancer("mgda", 2, tau=0.0).weights(torch.zeros(2), present)
    with pytest.raises(ValueError, match="losses"):
        GroupBalancer("dro", 2, tau=1.0).weights(None, present)
    with pytest.raises(ValueError, match="no item group"):
        GroupBalancer("uniform", 2, tau=1.0).weights(None, torch.tensor([False, False]))
    with pytest.raises(FloatingPointError, match="not finite"):
        GroupBalancer("dro", 2, tau=1.0).weights(torch.tensor([1.0, float("inf")]), present)


def test_balancer_weights_are_detached():
    losses = torch.tensor([0.5, 1.5], requires_grad=True)
    w = GroupBalancer("dro", 2, tau=1.0).weights(losses * 2, torch.tensor([True, True]))
    assert not w.requires_grad
    grads = torch.randn(2, 4, requires_grad=True)
    w = GroupBalancer("mgda", 2, tau=0.0).weights(None, torch.tensor([True, True]), grads @ grads.T)
    assert not w.requires_grad
