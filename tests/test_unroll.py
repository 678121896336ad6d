"""The derivative of the inner optimiser's step (recbole_bifair/trainer/unroll.py), against an
independent simulation of Adam written from its paper's update rule."""

import math

import numpy as np
import pytest
import torch

from recbole_bifair.errors import ConfigError
from recbole_bifair.trainer.unroll import clip_scale, step_derivative


def _grads(steps, shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=10.0 ** rng.uniform(-4, -1), size=shape) for _ in range(steps)]


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_adam_step_derivative_matches_a_simulation(cls):
    lr, (b1, b2), eps = 3e-3, (0.9, 0.999), 1e-8
    p = torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64))
    opt = cls([p], lr=lr, betas=(b1, b2), eps=eps)
    grads = _grads(5, (4, 3))
    v = np.zeros((4, 3))
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        v = b2 * v + (1 - b2) * g**2
    t = len(grads)
    want = lr * (1 - b1) / (1 - b1**t) / (np.sqrt(v / (1 - b2**t)) + eps)
    got = step_derivative(opt, {"p": p})["p"]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    # for the small gradients among these (1e-4) the step responds far more than an SGD step at the same lr
    assert (got > 10 * lr).any()


def test_sgd_step_derivative_is_the_learning_rate_and_clipping_scales_it():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=0.05)
    p.grad = torch.ones(3)
    opt.step()
    torch.testing.assert_close(step_derivative(opt, {"p": p}, clip_scale=0.5)["p"], torch.full((3,), 0.025))


def test_clip_scale_is_clip_grad_norms_factor():
    g = torch.tensor([3.0, 4.0])  # norm 5
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_([p], max_norm=2.0)
    assert clip_scale(total, 2.0) == pytest.approx((p.grad / g)[0].item(), rel=1e-6)
    assert clip_scale(total, 10.0) == 1.0 and clip_scale(None, None) == 1.0


def test_a_parameter_without_optimizer_state_did_not_move():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p], lr=0.1)
    assert torch.equal(step_derivative(opt, {"p": p})["p"], torch.zeros(2))


def test_optimisers_without_a_modelled_step_are_a_config_error():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ConfigError, match="hypergrad_unroll: sgd"):
        step_derivative(torch.optim.RMSprop([p], lr=0.1), {"p": p})
    with pytest.raises(ConfigError, match="amsgrad"):
        opt = torch.optim.Adam([p], lr=0.1, amsgrad=True)
        p.grad = torch.ones(2)
        opt.step()
        step_derivative(opt, {"p": p})
    assert math.isfinite(clip_scale(0.0, 1.0))
