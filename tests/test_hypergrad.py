"""Hypergradient modes on a tiny LLM-enhanced recommender, checked against each other, against
torch.func, and against central differences of L_out(theta'(E), E)."""

import pytest
import torch
import torch.nn.functional as F

from recbole_bifair.trainer.hypergrad import (
    HYPERGRADS,
    HypergradResult,
    get_hypergrad,
    hypergrad_exact,
    hypergrad_finite_difference,
    hypergrad_first_order,
)

XI = 0.5
MU = 0.1
N_ITEMS, D_LLM, HIDDEN = 6, 4, 3


def make_problem(seed=0, dropout=0.0):
    """theta = projector + a sequence mixer (+ a parameter no loss uses), E = 6 x 4 item table.

    Scores are <mean of the projected history, projected item> over all items, and both levels
    use the cross-entropy of the target; the outer loss adds mu * ||E - E0||^2. ``dropout``
    drops entries of the sequence representation, a fresh mask at every evaluation.
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    theta = {
        "projector.weight": randn(HIDDEN, D_LLM, scale=0.8),
        "projector.bias": randn(HIDDEN, scale=0.3),
        "mixer": randn(HIDDEN, HIDDEN, scale=0.8),
        "unused": randn(2),
    }
    E0 = randn(N_ITEMS, D_LLM)
    E = E0 + randn(N_ITEMS, D_LLM, scale=0.3)

    def batch(size):
        history = torch.randint(1, N_ITEMS, (size, 3), generator=g)
        target = torch.randint(1, N_ITEMS, (size,), generator=g)
        return history, target

    train, meta = batch(8), batch(5)

    def ce(theta, E, data):
        history, target = data
        items = torch.tanh(E @ theta["projector.weight"].T + theta["projector.bias"])
        sequence = F.dropout(items[history].mean(dim=1) @ theta["mixer"], dropout)
        return F.cross_entropy(sequence @ items.T, target)

    def inner(theta, E):
        return ce(theta, E, train)

    def outer(theta, E):
        return ce(theta, E, meta) + MU * ((E - E0) ** 2).sum()

    return inner, outer, theta, E


def unrolled(inner, theta, E):
    """theta'(E) written with torch.func, independently of the module under test."""
    step = torch.func.grad(inner)(theta, E)
    return {name: theta[name] - XI * step[name] for name in theta}


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("seed", range(3))
def test_finite_difference_matches_exact(seed):
    inner, outer, theta, E = make_problem(seed)
    exact = hypergrad_exact(inner, outer, theta, E, XI).grad_E
    first = hypergrad_first_order(inner, outer, theta, E, XI).grad_E
    fd = hypergrad_finite_difference(inner, outer, theta, E, XI).grad_E
    # The second-order term must matter, or the comparison says nothing about it.
    assert rel(first, exact) > 1e-2
    assert rel(fd, exact) < 1e-3
    assert rel(fd - first, exact - first) < 1e-3


def test_finite_difference_replays_dropout_masks():
    inner, outer, theta, E = make_problem(11, dropout=0.3)
    torch.manual_seed(0)
    exact = hypergrad_exact(inner, outer, theta, E, XI).grad_E
    after_exact = torch.rand(3)
    torch.manual_seed(0)
    # A small r keeps the O(r^2) error far below what a different mask would cost (~30x).
    fd = hypergrad_finite_difference(inner, outer, theta, E, XI, r=1e-3).grad_E
    after_fd = torch.rand(3)
    assert rel(fd, exact) < 1e-4
    # Replaying the masks leaves the global random stream where one evaluation would.
    assert torch.equal(after_fd, after_exact)


def test_finite_difference_error_shrinks_with_r():
    inner, outer, theta, E = make_problem(1)
    exact = hypergrad_exact(inner, outer, theta, E, XI).grad_E
    errors = [
        rel(hypergrad_finite_difference(inner, outer, theta, E, XI, r=r).grad_E, exact)
        for r in (0.1, 0.01, 0.001)
    ]
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("seed", range(3))
def test_first_order_is_the_partial_derivative_at_the_unrolled_step(seed):
    inner, outer, theta, E = make_problem(seed)
    expected = torch.func.grad(outer, argnums=1)(unrolled(inner, theta, E), E)
    grad_E = hypergrad_first_order(inner, outer, theta, E, XI).grad_E
    assert torch.allclose(grad_E, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_exact_matches_central_differences(seed):
    inner, outer, theta, E = make_problem(seed)

    def total(E):
        return outer(unrolled(inner, theta, E), E).item()

    grad_E = hypergrad_exact(inner, outer, theta, E, XI).grad_E
    first = hypergrad_first_order(inner, outer, theta, E, XI).grad_E
    h = 1e-5
    for row, col in [(0, 0), (1, 2), (3, 1), (5, 3), (2, 0)]:
        bump = torch.zeros_like(E)
        bump[row, col] = h
        numeric = (total(E + bump) - total(E - bump)) / (2 * h)
        assert grad_E[row, col].item() == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    # The check must be able to tell the modes apart: first_order, which drops the
    # second-order term, fails it.
    assert not torch.allclose(first, grad_E, rtol=1e-3)


def test_exact_matches_torch_func_through_the_unrolled_step():
    inner, outer, theta, E = make_problem(4)
    expected = torch.func.grad(lambda E: outer(unrolled(inner, theta, E), E))(E)
    grad_E = hypergrad_exact(inner, outer, theta, E, XI).grad_E
    assert torch.allclose(grad_E, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", sorted(HYPERGRADS))
def test_result_reports_the_outer_loss_and_inner_gradient_norm(mode):
    inner, outer, theta, E = make_problem(5)
    result = get_hypergrad(mode)(inner, outer, theta, E, XI, r=0.01)
    assert isinstance(result, HypergradResult)
    assert result.grad_E.shape == E.shape and result.grad_E.dtype == E.dtype
    assert not result.grad_E.requires_grad
    assert result.outer_loss == pytest.approx(outer(unrolled(inner, theta, E), E).item(), rel=1e-12)
    inner_grad = torch.func.grad(inner)(theta, E)
    norm = torch.sqrt(sum((g**2).sum() for g in inner_grad.values())).item()
    assert result.inner_grad_norm == pytest.approx(norm, rel=1e-12)


@pytest.mark.parametrize("mode", sorted(HYPERGRADS))
def test_caller_tensors_are_left_alone(mode):
    inner, outer, theta, E = make_problem(6)
    theta = {name: torch.nn.Parameter(value) for name, value in theta.items()}
    E = torch.nn.Parameter(E)
    before = {name: value.detach().clone() for name, value in theta.items()}, E.detach().clone()
    get_hypergrad(mode)(inner, outer, theta, E, XI)
    for name, value in theta.items():
        assert torch.equal(value, before[0][name]) and value.grad is None and value.requires_grad
    assert torch.equal(E, before[1]) and E.grad is None and E.requires_grad


def test_outer_loss_without_theta_leaves_only_the_direct_term():
    # v = grad_theta' L_out = 0: finite differences must not divide by ||v|| = 0.
    inner, _, theta, E = make_problem(7)
    E0 = torch.zeros_like(E)

    def outer(theta, E):
        return MU * ((E - E0) ** 2).sum()

    for mode in HYPERGRADS.values():
        assert torch.allclose(mode(inner, outer, theta, E, XI).grad_E, 2 * MU * E)


def test_outer_loss_without_E_leaves_only_the_second_order_term():
    inner, outer_with_E, theta, E = make_problem(8)
    E_fixed = E.clone()

    def outer(theta, E):
        return outer_with_E(theta, E_fixed)

    first = hypergrad_first_order(inner, outer, theta, E, XI).grad_E
    assert torch.equal(first, torch.zeros_like(E))
    exact = hypergrad_exact(inner, outer, theta, E, XI).grad_E
    assert exact.norm() > 0
    assert rel(hypergrad_finite_difference(inner, outer, theta, E, XI).grad_E, exact) < 1e-3


@pytest.mark.parametrize("mode", sorted(HYPERGRADS))
def test_non_finite_hypergradient_raises(mode):
    inner, outer, theta, E = make_problem(9)

    def diverged(theta, E):
        return outer(theta, E) * float("nan")

    with pytest.raises(FloatingPointError, match="not finite"):
        get_hypergrad(mode)(inner, diverged, theta, E, XI)


def _record(calls, fn):
    def recorded(theta, E):
        calls.append((any(value.requires_grad for value in theta.values()), E.requires_grad))
        return fn(theta, E)

    return recorded


@pytest.mark.parametrize(
    "mode, inner_calls, outer_calls, grad_inputs",
    [
        # (theta needs grad, E needs grad) per loss evaluation; number of inputs per backward.
        ("first_order", [(True, False)], [(False, True)], [4, 1]),
        (
            "finite_difference",
            [(True, False), (False, True), (False, True)],
            [(True, True)],
            [4, 5, 1, 1],
        ),
        ("exact", [(True, True)], [(True, True)], [4, 1]),
    ],
)
def test_cost_in_loss_evaluations_and_backward_passes(
    monkeypatch, mode, inner_calls, outer_calls, grad_inputs
):
    inner, outer, theta, E = make_problem(10)
    seen_inner, seen_outer, seen_grads = [], [], []
    autograd_grad = torch.autograd.grad

    def counting_grad(outputs, inputs, *args, **kwargs):
        seen_grads.append(len(inputs))
        return autograd_grad(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    get_hypergrad(mode)(_record(seen_inner, inner), _record(seen_outer, outer), theta, E, XI)
    assert seen_inner == inner_calls
    assert seen_outer == outer_calls
    assert seen_grads == grad_inputs


def test_unknown_mode_names_the_config_key():
    with pytest.raises(ValueError) as error:
        get_hypergrad("second_order")
    message = str(error.value)
    assert "'hypergrad'" in message
    assert all(mode in message for mode in ("first_order", "finite_difference", "exact"))


def test_modes_by_name():
    assert get_hypergrad("first_order") is hypergrad_first_order
    assert get_hypergrad("finite_difference") is hypergrad_finite_difference
    assert get_hypergrad("exact") is hypergrad_exact


@pytest.mark.parametrize("mode", ["first_order", "finite_difference"])
def test_given_inner_gradient_replaces_the_inner_backward(mode):
    """The trainer hands over the gradient of its own inner step; the result must not change."""
    inner, outer, theta, E = make_problem(5)
    grads = torch.func.grad(inner)(theta, E)  # computed independently of the module
    fn = HYPERGRADS[mode]
    own = fn(inner, outer, theta, E, XI).grad_E
    given = fn(inner, outer, theta, E, XI, inner_grads=grads).grad_E
    torch.testing.assert_close(given, own, rtol=1e-10, atol=1e-12)
    # and it is really used: a different inner gradient gives a different unrolled step
    other = fn(inner, outer, theta, E, XI, inner_grads={k: 2 * v for k, v in grads.items()}).grad_E
    assert rel(other, own) > 1e-6


# ----- per-entry step derivatives, a given theta', several outer tensors ------------------------

GROUP_OF = torch.tensor([0, 0, 1, 1, 2, 2])


def make_offset_problem(seed=7):
    """``make_problem`` plus K = 3 group score offsets ``b`` that only the inner (training) loss
    adds to the logits, as ``group_offsets: outer`` does: the outer loss reaches ``b`` only through
    the unrolled step."""
    inner, outer, theta, E = make_problem(seed)
    g = torch.Generator().manual_seed(seed + 100)
    b = 0.3 * torch.randn(3, generator=g, dtype=torch.float64)
    history = torch.randint(1, N_ITEMS, (8, 3), generator=g)
    target = torch.randint(1, N_ITEMS, (8,), generator=g)

    def inner_b(th, phi):
        items = torch.tanh(phi["E"] @ th["projector.weight"].T + th["projector.bias"])
        sequence = items[history].mean(dim=1) @ th["mixer"]
        return F.cross_entropy(sequence @ items.T + phi["b"][GROUP_OF], target)

    def outer_b(th, phi):
        return outer(th, phi["E"])

    return inner_b, outer_b, theta, {"E": E, "b": b}


def adam_like_xi(theta, seed=3):
    """A per-entry positive step derivative for each theta tensor (as Adam's preconditioner)."""
    g = torch.Generator().manual_seed(seed)
    return {n: 0.2 + torch.rand(t.shape, generator=g, dtype=torch.float64) for n, t in theta.items()}


def unrolled_value(inner, theta, phi, xi):
    step = torch.func.grad(inner)(theta, phi)
    return {n: theta[n] - xi[n] * step[n] for n in theta}


def test_exact_with_per_entry_steps_and_several_outer_tensors_matches_torch_func():
    inner, outer, theta, phi = make_offset_problem()
    xi = adam_like_xi(theta)
    want = torch.func.grad(lambda p: outer(unrolled_value(inner, theta, p, xi), p))(phi)
    got = hypergrad_exact(inner, outer, theta, phi, xi).grad_E
    assert set(got) == {"E", "b"}
    for name in phi:
        torch.testing.assert_close(got[name], want[name], rtol=1e-9, atol=1e-12)
    assert want["b"].abs().max() > 1e-4  # the offsets do get a hypergradient


def test_finite_difference_with_per_entry_steps_matches_exact():
    inner, outer, theta, phi = make_offset_problem()
    xi = adam_like_xi(theta)
    exact = hypergrad_exact(inner, outer, theta, phi, xi).grad_E
    fd = hypergrad_finite_difference(inner, outer, theta, phi, xi, r=1e-4).grad_E
    for name in phi:
        assert rel(fd[name], exact[name]) < 1e-5


def test_first_order_gives_offsets_that_only_the_inner_loss_reads_no_gradient():
    """Why first-order and second-order BiFair must differ once the group offsets are on: the
    offsets' whole hypergradient is the second-order term."""
    inner, outer, theta, phi = make_offset_problem()
    first = hypergrad_first_order(inner, outer, theta, phi, adam_like_xi(theta)).grad_E
    assert torch.equal(first["b"], torch.zeros_like(phi["b"]))


@pytest.mark.parametrize("mode", ["first_order", "finite_difference", "exact"])
def test_a_given_theta_step_is_where_the_outer_loss_is_taken(mode):
    """The trainer hands over the parameters the optimiser produced; the outer loss is evaluated
    there and the second-order term (through xi) is unchanged."""
    inner, outer, theta, phi = make_offset_problem(9)
    xi = adam_like_xi(theta)
    g = torch.Generator().manual_seed(11)
    taken = {n: t + 0.05 * torch.randn(t.shape, generator=g, dtype=torch.float64) for n, t in theta.items()}
    result = HYPERGRADS[mode](inner, outer, theta, phi, xi, theta_step=taken, r=1e-4)
    assert result.outer_loss == pytest.approx(outer(taken, phi).item(), rel=1e-12)
    # the partial derivative at the given theta' plus the second-order term of the linearised step
    d_E = torch.func.grad(outer, argnums=1)(taken, phi)
    if mode == "first_order":
        want = d_E
    else:
        v = torch.func.grad(outer)(taken, phi)
        u = {n: xi[n] * v[n] for n in theta}
        mixed = torch.func.grad(
            lambda p: sum((torch.func.grad(inner)(theta, p)[n] * u[n]).sum() for n in theta))(phi)
        want = {n: d_E[n] - mixed[n] for n in phi}
    for name in phi:
        tolerance = 1e-5 if mode == "finite_difference" else 1e-9
        torch.testing.assert_close(result.grad_E[name], want[name], rtol=tolerance, atol=1e-12)
