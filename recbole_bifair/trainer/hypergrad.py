r"""Hypergradient of the outer loss w.r.t. the item representations E (METHOD.md section 4).

The inner level is unrolled by one step,

    theta'(E) = theta - xi * grad_theta L_in(theta, E),

and the outer loss ``L_out(theta'(E), E)`` is differentiated through it:

    dL_out/dE = d_E L_out(theta', E) - H_{E,theta} L_in(theta, E) (xi v),
    v = grad_theta' L_out(theta', E),   H_{E,theta} u = grad_E <grad_theta L_in(theta, E), u>.

``xi`` is a number (an SGD step) or, per theta tensor, a tensor of the step's derivative with
respect to the gradient, entry by entry: the step the inner optimiser takes, linearised (Adam:
``lr (1 - beta1) / ((1 - beta1^t) (sqrt(v_hat) + eps))``, its second moment held fixed; built by
the trainer). ``theta_step``, when given, is the value of theta' (the parameters the optimiser
actually produced); otherwise ``theta - xi * grad``. The outer variables ``E`` are one tensor or a
dict of tensors (the item table and, with ``group_offsets: outer``, the group score offsets);
``grad_E`` has the same structure.

The config key ``hypergrad`` picks how the mixed second-order term is computed. All modes share
one signature, ``mode(inner_loss_fn, outer_loss_fn, theta, E, xi, **options)``, in the
``torch.func`` style: ``inner_loss_fn(theta, E)`` and ``outer_loss_fn(theta, E)`` are pure
functions of a dict of parameter tensors and the E table, returning scalar losses (the trainer
builds them with ``torch.func.functional_call``). No mode modifies the caller's tensors or
their ``.grad``.

Costs, in backward passes (each one a full backward of the named loss):

- ``first_order``: 1 of L_in (w.r.t. theta) + 1 of L_out (w.r.t. E);
- ``finite_difference``: 1 of L_in (theta) + 1 of L_out (theta' and E together)
  + 2 of L_in (E only);
- ``exact``: 1 of L_in (theta, with graph) + 1 of L_out back through that graph, i.e. a
  double backward; for tests and small models.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

LossFn = Callable[[dict[str, Tensor], Tensor], Tensor]


@dataclass
class HypergradResult:
    """The hypergradient and what the trainer logs about the step that produced it."""

    grad_E: Tensor | dict[str, Tensor]
    """dL_out/dE, shaped like E (a dict of tensors when E is one)."""
    outer_loss: float
    """L_out(theta', E) at the unrolled parameters."""
    inner_grad_norm: float | None = None
    """||grad_theta L_in(theta, E)|| over all theta tensors."""


def hypergrad_first_order(
    inner_loss_fn: LossFn,
    outer_loss_fn: LossFn,
    theta: dict[str, Tensor],
    E: Tensor,
    xi: float,
    inner_grads: dict[str, Tensor] | None = None,
    **options,
) -> HypergradResult:
    r"""``dL_out/dE ~ d_E L_out(theta', E)``, with ``theta'`` treated as a constant.

    Drops the second-order term ``-xi * H_{E,theta} L_in v``: the cheapest mode, and exact in
    the limit ``xi -> 0``. Cost: 1 backward of L_in w.r.t. theta, 1 backward of L_out w.r.t. E.
    ``inner_grads``: ``grad_theta L_in`` when the caller has it already (saves that backward).
    ``options``: ``theta_step`` (the value of theta'); others are accepted and ignored so that
    all modes share one call.
    """
    outer_vars = _Outer(E)
    theta_step, inner_norm = _unrolled_step(inner_loss_fn, theta, E, xi, inner_grads, options.get("theta_step"))
    E_leaf = outer_vars.leaves()
    outer = outer_loss_fn(theta_step, outer_vars.pack(E_leaf))
    grad_E = _grad(outer, E_leaf)
    return _result("first_order", outer_vars.pack(grad_E), outer, inner_norm)


def hypergrad_finite_difference(
    inner_loss_fn: LossFn,
    outer_loss_fn: LossFn,
    theta: dict[str, Tensor],
    E: Tensor,
    xi: float,
    r: float = 0.01,
    inner_grads: dict[str, Tensor] | None = None,
    theta_step: dict[str, Tensor] | None = None,
) -> HypergradResult:
    r"""Second-order term by a central difference of ``grad_E L_in`` along ``u = xi v``:

        H_{E,theta} L_in(theta, E) u ~ [grad_E L_in(theta + eps u, E)
                                        - grad_E L_in(theta - eps u, E)] / (2 eps),
        eps = r / ||u||,

    so the perturbation of theta has norm ``r`` whatever the scale of ``u`` (the norm runs
    over all theta tensors). If ``u = 0`` the second term is 0. The error is O(r^2).

    Both shifted evaluations replay the random state of the unrolled step, so dropout draws the
    same masks in all three evaluations of L_in: otherwise the difference would measure two
    different masks, divided by ``2 eps``. The global random stream is left as if L_in had been
    evaluated once.

    Cost: 1 backward of L_in w.r.t. theta (the unrolled step), 1 backward of L_out w.r.t.
    theta' and E together (``v`` and ``d_E L_out`` from one pass), and 2 backwards of L_in
    w.r.t. E only; no second-order graph is ever built.
    """
    outer_vars = _Outer(E)
    rng = _rng_state(outer_vars.device)
    theta_step, inner_norm = _unrolled_step(inner_loss_fn, theta, E, xi, inner_grads, theta_step)
    theta_leaf = {name: _leaf(value) for name, value in theta_step.items()}
    E_leaf = outer_vars.leaves()
    outer = outer_loss_fn(theta_leaf, outer_vars.pack(E_leaf))
    grads = _grad(outer, [*theta_leaf.values(), *E_leaf])
    v, d_E = grads[: len(theta_leaf)], grads[len(theta_leaf):]
    u = [_scaled(xi, name, d) for name, d in zip(theta, v)]
    u_norm = _norm(u)
    if u_norm == 0.0:
        return _result("finite_difference", outer_vars.pack(d_E), outer, inner_norm)
    eps = r / u_norm
    with _replayed(rng, outer_vars.device):
        grad_plus = _inner_grad_E(inner_loss_fn, theta, u, eps, outer_vars)
    with _replayed(rng, outer_vars.device):
        grad_minus = _inner_grad_E(inner_loss_fn, theta, u, -eps, outer_vars)
    total = [d - (p - m) / (2 * eps) for d, p, m in zip(d_E, grad_plus, grad_minus)]
    return _result("finite_difference", outer_vars.pack(total), outer, inner_norm)


def hypergrad_exact(
    inner_loss_fn: LossFn,
    outer_loss_fn: LossFn,
    theta: dict[str, Tensor],
    E: Tensor,
    xi: float,
    **options,
) -> HypergradResult:
    r"""``dL_out(theta'(E), E)/dE`` by differentiating through the unrolled step.

    The inner gradient is taken with ``create_graph=True`` so that theta' depends on E, and the
    outer backward runs through it: exact up to floating point, at the price of a double
    backward and the memory of the inner graph. Meant for tests and small models.
    ``options``: ``theta_step`` (the value of theta'); others are accepted and ignored so that
    all modes share one call.
    """
    outer_vars = _Outer(E)
    theta_leaf = {name: _leaf(value) for name, value in theta.items()}
    E_leaf = outer_vars.leaves()
    inner = inner_loss_fn(theta_leaf, outer_vars.pack(E_leaf))
    grads = _grad(inner, list(theta_leaf.values()), create_graph=True)
    unrolled = {name: value - _scaled(xi, name, g) for (name, value), g in zip(theta_leaf.items(), grads)}
    given = options.get("theta_step")
    if given is not None:  # the given value, with the unrolled step's derivative
        unrolled = {name: given[name].detach() + (step - step.detach()) for name, step in unrolled.items()}
    outer = outer_loss_fn(unrolled, outer_vars.pack(E_leaf))
    grad_E = _grad(outer, E_leaf)
    return _result("exact", outer_vars.pack(grad_E), outer, _norm(grads))


HYPERGRADS = {
    "first_order": hypergrad_first_order,
    "finite_difference": hypergrad_finite_difference,
    "exact": hypergrad_exact,
}


def get_hypergrad(name: str) -> Callable[..., HypergradResult]:
    """The hypergradient mode named by the config key ``hypergrad``."""
    try:
        return HYPERGRADS[name]
    except KeyError:
        raise ValueError(
            f"unknown hypergradient mode {name!r}: the config key 'hypergrad' must be one of "
            f"{', '.join(HYPERGRADS)}"
        ) from None


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The CPU random state and, for a CUDA device, that device's."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextmanager
def _replayed(state: tuple[Tensor, Tensor | None], device: torch.device):
    """Run the block from the random ``state``, then restore the random state found on entry."""
    cpu, cuda = state
    with torch.random.fork_rng(devices=[device] if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        yield


def _leaf(tensor: Tensor) -> Tensor:
    # A fresh leaf that shares storage: gradients land on it, never on the caller's tensor.
    return tensor.detach().requires_grad_(True)


def _grad(loss: Tensor, inputs: list[Tensor], create_graph: bool = False) -> list[Tensor]:
    """``torch.autograd.grad`` with a zero gradient for inputs the loss does not use."""
    if not loss.requires_grad:
        # A loss that uses none of the inputs has no graph at all, which autograd refuses.
        return [torch.zeros_like(x) for x in inputs]
    grads = torch.autograd.grad(loss, inputs, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def _norm(tensors: list[Tensor]) -> float:
    return torch.sqrt(sum((t.detach().double() ** 2).sum() for t in tensors)).item()


class _Outer:
    """The outer variables as a list of tensors, and back to the caller's structure (one
    tensor, or a dict of them)."""

    def __init__(self, E):
        self.names = list(E) if isinstance(E, dict) else None
        self.values = [E[n] for n in self.names] if self.names is not None else [E]
        self.device = self.values[0].device

    def leaves(self) -> list[Tensor]:
        return [_leaf(value) for value in self.values]

    def pack(self, tensors):
        return dict(zip(self.names, tensors)) if self.names is not None else tensors[0]


def _scaled(xi, name: str, tensor: Tensor) -> Tensor:
    """``xi * tensor``: xi a number, or a dict of per-entry step derivatives by theta name."""
    return xi[name] * tensor if isinstance(xi, dict) else xi * tensor


def _unrolled_step(
    inner_loss_fn: LossFn, theta: dict[str, Tensor], E, xi,
    inner_grads: dict[str, Tensor] | None = None, theta_step: dict[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], float]:
    """``theta' = theta - xi * grad_theta L_in(theta, E)`` (or ``theta_step`` when given),
    detached, and ``||grad_theta L_in||``.

    E enters as a constant, so this backward stops at theta. A caller that has just computed
    ``grad_theta L_in`` for its own inner step passes it as ``inner_grads`` and saves the pass.
    """
    if inner_grads is None:
        outer_vars = _Outer(E)
        theta_leaf = {name: _leaf(value) for name, value in theta.items()}
        inner = inner_loss_fn(theta_leaf, outer_vars.pack([v.detach() for v in outer_vars.values]))
        grads = _grad(inner, list(theta_leaf.values()))
    else:
        grads = [inner_grads[name].detach() for name in theta]
    if theta_step is not None:
        return {name: theta_step[name].detach() for name in theta}, _norm(grads)
    stepped = {
        name: (value.detach() - _scaled(xi, name, g)).detach() for (name, value), g in zip(theta.items(), grads)
    }
    return stepped, _norm(grads)


def _inner_grad_E(
    inner_loss_fn: LossFn, theta: dict[str, Tensor], u: list[Tensor], eps: float, outer_vars: _Outer
) -> list[Tensor]:
    """``grad_E L_in(theta + eps u, E)``; theta enters as a constant, so the backward skips it."""
    shifted = {name: value.detach() + eps * d for (name, value), d in zip(theta.items(), u)}
    E_leaf = outer_vars.leaves()
    return _grad(inner_loss_fn(shifted, outer_vars.pack(E_leaf)), E_leaf)


def _result(mode: str, grad_E, outer: Tensor, inner_norm: float) -> HypergradResult:
    grad_E = {n: g.detach() for n, g in grad_E.items()} if isinstance(grad_E, dict) else grad_E.detach()
    outer_loss = outer.item()
    if not all(torch.isfinite(g).all() for g in (grad_E.values() if isinstance(grad_E, dict) else [grad_E])):
        raise FloatingPointError(
            f"the {mode} hypergradient w.r.t. E is not finite (outer loss {outer_loss:.4g}, "
            f"inner gradient norm {inner_norm:.4g}); the inner or outer step diverged"
        )
    return HypergradResult(grad_E=grad_E, outer_loss=outer_loss, inner_grad_norm=inner_norm)
