"""full_softmax_ce (model/full_softmax.py) against autograd's F.cross_entropy of the same logits:
losses, first derivatives (every input), second derivatives through create_graph=True, and a
second backward through a retained graph."""

import pytest
import torch
import torch.nn.functional as F

from recbole_bifair.model.full_softmax import full_softmax_ce


def _inputs(n=7, v=11, d=5, bias=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)
    W = torch.randn(v, d, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(v, generator=g, dtype=dtype, requires_grad=True) if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    return S, W, b, y


def _reference(S, W, b, y):
    logits = S @ W.T if b is None else S @ W.T + b
    return F.cross_entropy(logits, y, reduction="none")


@pytest.mark.parametrize("bias", [False, True])
def test_losses_and_gradients_equal_autograds(bias):
    S, W, b, y = _inputs(bias=bias)
    weights = torch.rand(len(y), dtype=S.dtype, generator=torch.Generator().manual_seed(1))
    inputs = [t for t in (S, W, b) if t is not None]
    ours, ref = full_softmax_ce(S, W, y, b), _reference(S, W, b, y)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    for g1, g2 in zip(torch.autograd.grad((ours * weights).sum(), inputs),
                      torch.autograd.grad((ref * weights).sum(), inputs)):
        torch.testing.assert_close(g1, g2, rtol=0, atol=1e-12)


def test_gradcheck_and_gradgradcheck():
    S, W, b, y = _inputs(n=4, v=6, d=3)
    fn = lambda S, W, b: full_softmax_ce(S, W, y, b)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (S, W, b))
    assert torch.autograd.gradgradcheck(fn, (S, W, b))


def test_hypergradient_through_create_graph_equals_autograds():
    """d/dW of <grad_S L, u> (a Hessian-vector product, as a hypergradient takes) is the same."""
    S, W, b, y = _inputs()
    u = torch.randn_like(S)
    out = []
    for loss_fn in (full_softmax_ce, lambda S, W, y, b: _reference(S, W, b, y)):
        (gS,) = torch.autograd.grad(loss_fn(S, W, y, b).sum(), S, create_graph=True)
        out.append(torch.autograd.grad((gS * u).sum(), W))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=0, atol=1e-12)


def test_second_backward_through_a_retained_graph_is_right():
    S, W, b, y = _inputs()
    loss = full_softmax_ce(S, W, y, b).sum()
    first = torch.autograd.grad(loss, (S, W), retain_graph=True)
    second = torch.autograd.grad(loss, (S, W))
    for a, c in zip(first, second):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-12)


def test_float32_at_ml1m_scale_matches_to_rounding():
    S, W, _, y = _inputs(n=300, v=3417, d=64, bias=False, dtype=torch.float32)
    torch.testing.assert_close(full_softmax_ce(S, W, y), _reference(S, W, None, y), rtol=1e-5, atol=1e-5)


def test_shapes_that_do_not_fit_name_the_function():
    S, W, _, y = _inputs(bias=False)
    with pytest.raises(ValueError, match="full_softmax_ce"):
        full_softmax_ce(S, W[:, :3], y)
