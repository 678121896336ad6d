r"""The inner step the hypergradient unrolls (METHOD.md section 4, ``hypergrad_unroll``).

The outer level differentiates ``L_out(theta'(E), E)`` through one inner step. With
``hypergrad_unroll: sgd`` that step is ``theta' = theta - xi g`` (``xi = hypergrad_xi``, default the
learning rate), the textbook unroll. The inner optimiser is Adam, though, whose step per entry is
``lr m_hat / (sqrt(v_hat) + eps)``: for the gradients of a recommender (entries of 1e-4 to 1e-2)
that is orders of magnitude larger than ``lr g``, so the SGD unroll makes the second-order term
negligible (0.17% of the hypergradient on ml-100k) and ``first_order`` and
``finite_difference`` train the same model.

``hypergrad_unroll: optimizer`` unrolls the step the optimiser actually took: theta' is the
parameters after ``optimizer.step()``, and its derivative with respect to the gradient is the
optimiser's, entry by entry, with its running statistics held fixed:

- Adam / AdamW: ``d theta'/d g = lr (1 - beta1) / (1 - beta1^t) / (sqrt(v_t / (1 - beta2^t)) + eps)``
  (``m_t = beta1 m_{t-1} + (1 - beta1) g``; the second moment ``v_t`` is treated as a constant,
  the usual preconditioner approximation; AdamW's decoupled decay does not depend on g);
- SGD (RecBole's, without momentum): ``lr``.

Gradient clipping scales g by ``c = min(1, max_norm / ||g||)`` before the step; ``c`` multiplies
the derivative (also held fixed). Other optimisers have no derivative here: ConfigError.
"""

import torch
from torch import Tensor

from recbole_bifair.errors import ConfigError

UNROLLS = ("optimizer", "sgd")


def step_derivative(optimizer: torch.optim.Optimizer, params: dict[str, Tensor], clip_scale: float = 1.0):
    """Per theta name, the derivative of the step the optimiser has just taken with respect to
    the gradient it was given (a tensor shaped like the parameter); call after ``step()``."""
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    out = {}
    for name, p in params.items():
        group = group_of.get(id(p))
        if group is None:
            raise ValueError(f"parameter {name} is not in the inner optimiser")
        out[name] = _derivative(optimizer, p, group) * clip_scale
    return out


def _derivative(optimizer, p, group):
    lr = group["lr"]
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        if group.get("amsgrad"):
            raise ConfigError("hypergrad_unroll: optimizer does not model amsgrad; use hypergrad_unroll: sgd")
        state = optimizer.state.get(p)
        if not state:  # no gradient reached it yet: the step did not move it
            return torch.zeros_like(p)
        beta1, beta2 = group["betas"]
        t = float(state["step"])
        v_hat = state["exp_avg_sq"] / (1 - beta2**t)
        return lr * (1 - beta1) / (1 - beta1**t) / (v_hat.sqrt() + group["eps"])
    if type(optimizer) is torch.optim.SGD and not group.get("momentum"):
        return torch.full_like(p, lr)
    raise ConfigError(
        f"hypergrad_unroll: optimizer knows the step of Adam, AdamW and plain SGD, not of "
        f"{type(optimizer).__name__} (key learner); use hypergrad_unroll: sgd"
    )


def clip_scale(total_norm: float | Tensor | None, max_norm: float | None) -> float:
    """The factor ``clip_grad_norm_`` multiplied the gradient by (1 when it did not clip)."""
    if not max_norm or total_norm is None:
        return 1.0
    total = float(total_norm)
    return min(1.0, max_norm / (total + 1e-6))  # clip_grad_norm_'s own formula
