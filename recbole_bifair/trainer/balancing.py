r"""Adaptive inter-group balancing (METHOD.md section 5).

Every training step yields one loss ``L_g`` per item group. A balancer turns them into weights
``w`` on the probability simplex, used as ``lambda`` in the inner loss and as ``w`` in the outer
loss (``sum_g w_g L_g``). The config key ``balance`` picks the rule:

- ``mgda``: ``w = argmin_{w in simplex} ||sum_g w_g grad L_g||^2 - tau * H(w)``, the
  minimum-norm point of the convex hull of the group gradients with an entropy bonus;
- ``dro``: ``w = softmax(L / tau)``, entropy-regularised worst-group weighting;
- ``uniform``: equal weights (ablation).

Everything here is pure tensor math; the trainer supplies the losses and the Gram matrix.
"""

import torch
from torch import Tensor

ADAPTIVE_BALANCES = ("mgda", "dro", "uniform")

# tau = 0 is solved as the end of a continuation path at this entropy weight. The bias it
# leaves (at most about 1e-9 * log(1e9) / curvature, e.g. 2e-8 on a weight that should be 0
# next to a zero gradient) is far below any useful precision, and it breaks ties between
# equally short combinations (identical gradients) towards the most spread-out one.
_TAU_FLOOR = 1e-9
# Each continuation stage divides tau by 10, so the previous optimum is a close warm start.
_TAU_DECAY = 0.1
# Newton stops once the predicted decrease of the objective (half the squared Newton
# decrement) falls below this; the normalised objective is of order 1.
_NEWTON_TOL = 1e-14
_ARMIJO = 0.25
# 2^-40 of a Newton step is below float64 resolution of any weight that matters.
_MAX_HALVINGS = 40
_TINY = torch.finfo(torch.float64).tiny


def uniform_weights(k: int, dtype: torch.dtype | None = None) -> Tensor:
    """Equal weights ``1 / k`` over ``k`` groups."""
    return torch.full((k,), 1.0 / k, dtype=dtype)


def dro_weights(losses: Tensor, tau: float) -> Tensor:
    r"""Entropy-regularised worst-group weights ``w = softmax(L / tau)``.

    This is the maximiser of ``sum_g w_g L_g + tau * H(w)`` over the simplex: ``tau -> 0`` puts
    all weight on the worst group (GroupDRO), ``tau -> inf`` gives uniform weights.
    """
    if tau <= 0:
        raise ValueError(f"dro weights need a temperature tau > 0, got {tau}")
    return torch.softmax(losses.detach() / tau, dim=0)


def group_gram(per_group_grads: Tensor) -> Tensor:
    """Gram matrix ``G[g, h] = <grad_g, grad_h>`` of K per-group gradients, shaped ``(K, ...)``."""
    flat = per_group_grads.reshape(per_group_grads.shape[0], -1)
    return flat @ flat.T


def min_norm_weights(gram: Tensor, tau: float = 0.0, iters: int = 50) -> Tensor:
    r"""Entropy-regularised minimum-norm point of the convex hull of K gradients.

    With ``G`` the K x K Gram matrix of the per-group gradients, returns

        w* = argmin_{w in simplex}  w^T G_n w - tau * H(w),   H(w) = -sum_k w_k log w_k,
        G_n = G / mean(diag(G)).

    ``tau`` applies to the *normalised* Gram ``G_n``: the weights do not change when all
    gradients are scaled by a constant (their size drifts by orders of magnitude during
    training), and ``tau`` is measured in units of the mean squared gradient norm. ``tau = 0``
    is plain MGDA; as ``tau`` grows the weights spread out and tend to uniform. When every
    gradient is zero all weights are equally good and uniform weights are returned.

    Solver: the objective is convex, and for ``tau > 0`` the entropy acts as a barrier that
    keeps the minimiser inside the simplex, where the objective is smooth. Damped Newton steps
    on the simplex (the KKT system of the constraint ``sum w = 1``, Armijo backtracking)
    therefore converge quadratically, where first-order methods (mirror descent, Frank-Wolfe)
    need hundreds of steps for three-digit accuracy on ill-conditioned Grams. Small ``tau`` is
    reached by continuation from ``tau = 1`` (optimum near uniform) down by factors of 10, each
    stage warm-started from the last; ``tau = 0`` ends at ``tau = 1e-9``, where the groups MGDA
    drops get weights of order ``exp(-1e9 * gap)``, i.e. zero. ``iters`` caps the total number
    of Newton steps over all stages. With the default 50, K <= 5 converges to machine
    precision; larger K with nearly parallel gradients may stop early, with an objective
    within about 1e-6 of the optimum.

    The returned weights are detached, with ``gram``'s dtype and device. The solve runs in
    float64 on the CPU, as K x K systems are too small to be worth a device round trip per step.
    """
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square K x K matrix, got shape {tuple(gram.shape)}")
    if tau < 0:
        raise ValueError(f"the entropy weight tau must be >= 0, got {tau}")
    k = gram.shape[0]
    g = gram.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(g).all():
        raise FloatingPointError("the per-group gradients (their Gram matrix) are not finite")
    g = (g + g.T) / 2
    scale = torch.diagonal(g).mean()
    w = uniform_weights(k, torch.float64)
    if k > 1 and scale > 0:
        w = _continuation(g / scale, tau, w, iters)
    return w.to(dtype=gram.dtype, device=gram.device)


def _continuation(gram: Tensor, tau: float, w: Tensor, iters: int) -> Tensor:
    """Follow the optimum from ``tau = 1`` (near uniform) down to the target ``tau``."""
    target = max(tau, _TAU_FLOOR)
    stage = max(target, 1.0)
    while iters > 0:
        w, used = _newton(gram, stage, w, iters)
        iters -= used
        if stage == target:
            break
        stage = max(stage * _TAU_DECAY, target)
    return w


def _objective(gram: Tensor, tau: float, w: Tensor) -> Tensor:
    return w @ gram @ w + tau * torch.xlogy(w, w).sum()


def _newton(gram: Tensor, tau: float, w: Tensor, max_steps: int) -> tuple[Tensor, int]:
    """Damped Newton on the simplex for ``tau > 0`` from a strictly positive ``w``.

    Returns the new ``w`` and the number of Newton systems solved.
    """
    k = w.numel()
    kkt = torch.zeros(k + 1, k + 1, dtype=w.dtype)
    kkt[:k, k] = 1.0
    kkt[k, :k] = 1.0
    rhs = torch.zeros(k + 1, dtype=w.dtype)
    for step in range(max_steps):
        grad = 2 * gram @ w + tau * (torch.log(w) + 1)
        kkt[:k, :k] = 2 * gram + torch.diag(tau / w)
        rhs[:k] = -grad
        direction = torch.linalg.solve(kkt, rhs)[:k]
        decrement = -(grad @ direction).item()
        w_next = None
        if decrement / 2 > _NEWTON_TOL:
            w_next = _line_search(gram, tau, w, direction, decrement)
        if w_next is None:
            return w, step + 1
        w = w_next
    return w, max_steps


def _line_search(
    gram: Tensor, tau: float, w: Tensor, direction: Tensor, decrement: float
) -> Tensor | None:
    """The better of two backtracking searches along the Newton direction ``d``.

    The straight path ``w + t d`` is the exact Newton step, best when the problem is
    ill-conditioned (nearly parallel gradients), but it is cut short when one weight should
    shrink by orders of magnitude. The multiplicative path ``w * exp(t d / w)`` agrees with it
    to first order, never leaves the simplex, and brings a weight that the entropy pins near
    ``exp(-gap / tau)`` there in one step. Returns None when neither path decreases the
    objective measurably in float64, i.e. ``w`` is optimal to machine precision.
    """
    f0 = _objective(gram, tau, w).item()
    best = None
    for path in (_straight, _multiplicative):
        found = _backtrack(gram, tau, path, w, direction, f0, decrement)
        if found is not None and (best is None or found[1] < best[1]):
            best = found
    return None if best is None else best[0]


def _straight(w: Tensor, direction: Tensor, t: float) -> Tensor | None:
    step = w + t * direction
    return step if bool((step > 0).all()) else None


def _multiplicative(w: Tensor, direction: Tensor, t: float) -> Tensor:
    # exp(-gap / tau) underflows for small tau; the smallest normal float stands in for 0 so
    # that log w stays finite.
    step = (w * torch.exp(t * direction / w)).clamp_min(_TINY)
    return step / step.sum()


def _backtrack(
    gram: Tensor, tau: float, path, w: Tensor, direction: Tensor, f0: float, decrement: float
) -> tuple[Tensor, float] | None:
    """Armijo backtracking along ``path``: the first halved step that decreases the objective
    by at least a quarter of the decrease its slope predicts, with that objective value."""
    t = 1.0
    for _ in range(_MAX_HALVINGS):
        candidate = path(w, direction, t)
        if candidate is not None:
            f = _objective(gram, tau, candidate).item()
            # A non-finite objective (overflowing exp) fails the test and halves the step.
            if f <= f0 - _ARMIJO * t * decrement:
                return candidate, f
        t /= 2
    return None


class GroupBalancer:
    r"""Group weights for one level of the bi-level objective, smoothed over steps.

    ``mode`` is the config value ``balance`` (``mgda``, ``dro`` or ``uniform``); ``tau`` is the
    entropy weight of ``mgda`` and the temperature of ``dro``. Groups absent from the batch get
    weight 0 and the others are renormalised. ``mgda`` and ``dro`` weights are smoothed,

        w_t = ema * w_{t-1} + (1 - ema) * w_new,   then renormalised over the present groups,

    where ``w_{t-1}`` are the weights returned at the previous step (none at the first step,
    which returns ``w_new``); ``ema = 0`` disables smoothing. ``uniform`` is never smoothed:
    as an ablation it must weigh the present groups equally at every step.
    """

    def __init__(self, mode: str, num_groups: int, tau: float, ema: float = 0.0):
        if mode not in ADAPTIVE_BALANCES:
            raise ValueError(
                f"unknown balance mode {mode!r}: the config key 'balance' must be one of "
                f"{', '.join(ADAPTIVE_BALANCES)}"
            )
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"the EMA factor must be in [0, 1), got {ema}")
        if mode == "dro" and tau <= 0:
            raise ValueError(f"balance 'dro' needs a temperature tau > 0, got {tau}")
        if mode == "mgda" and tau < 0:
            raise ValueError(f"balance 'mgda' needs an entropy weight tau >= 0, got {tau}")
        self.mode = mode
        self.num_groups = num_groups
        self.tau = tau
        self.ema = ema
        self._last = None

    @property
    def needs_gram(self) -> bool:
        """Whether :meth:`weights` needs the Gram matrix of the per-group gradients."""
        return self.mode == "mgda"

    @property
    def last(self) -> Tensor | None:
        """The weights returned by the latest call (float64, CPU, for logging), or None."""
        return None if self._last is None else self._last.clone()

    def weights(self, losses: Tensor | None, present: Tensor, gram: Tensor | None = None) -> Tensor:
        """Detached weights over all K groups, zero for absent groups, summing to 1.

        ``losses`` (K) are needed by ``dro`` and ``gram`` (K x K) by ``mgda``; entries of absent
        groups are ignored (they may be NaN). The weights have the floating dtype of the input
        the mode reads and live on ``present``'s device.
        """
        device = present.device
        present = present.detach().to(device="cpu", dtype=torch.bool)
        if present.shape != (self.num_groups,):
            raise ValueError(
                f"present must have shape ({self.num_groups},), got {tuple(present.shape)}"
            )
        if not present.any():
            raise ValueError("no item group is present in the batch")
        source = self._source(losses, gram)
        w = torch.zeros(self.num_groups, dtype=torch.float64)
        w[present] = self._raw(source, present)
        if self.mode != "uniform" and self._last is not None:
            w = self.ema * self._last + (1 - self.ema) * w
            w = torch.where(present, w, torch.zeros_like(w))
            w = w / w.sum()
        self._last = w
        dtype = source.dtype if source is not None else torch.get_default_dtype()
        return w.to(dtype=dtype, device=device)

    def _source(self, losses: Tensor | None, gram: Tensor | None) -> Tensor | None:
        if self.mode == "mgda":
            if gram is None:
                raise ValueError("balance 'mgda' needs the Gram matrix of the per-group gradients")
            return gram
        if self.mode == "dro":
            if losses is None:
                raise ValueError("balance 'dro' needs the per-group losses")
            return losses
        return None

    def _raw(self, source: Tensor | None, present: Tensor) -> Tensor:
        """Weights of the present groups only, before smoothing."""
        if self.mode == "uniform":
            return uniform_weights(int(present.sum()), torch.float64)
        source = source.detach().to(device="cpu", dtype=torch.float64)
        if self.mode == "dro":
            if not torch.isfinite(source[present]).all():
                raise FloatingPointError("the loss of an item group in the batch is not finite")
            return dro_weights(source[present], self.tau)
        return min_norm_weights(source[present][:, present], self.tau)

    def state_dict(self) -> dict:
        """The smoothing state, for checkpoints."""
        return {"mode": self.mode, "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        last = state["last"]
        if state["mode"] != self.mode:
            raise ValueError(
                f"checkpoint has balance {state['mode']!r}, the config has {self.mode!r}"
            )
        if last is not None and last.shape != (self.num_groups,):
            raise ValueError(
                f"checkpoint has {last.numel()} group weights, "
                f"the config has {self.num_groups} groups"
            )
        self._last = None if last is None else last.detach().to(device="cpu", dtype=torch.float64)


class OnlineGroupDRO:
    r"""GroupDRO's online weights (Sagawa et al., ICLR 2020, Algorithm 1), the baseline.

    ``q_g <- q_g * exp(eta * L_g)``, renormalised, kept across steps: unlike ``dro`` (a softmax
    of the current losses), the weights integrate the whole history of group losses. Absent
    groups keep their weight in the state and get 0 in the returned (renormalised) weights.
    """

    needs_gram = False

    def __init__(self, num_groups: int, eta: float):
        if eta <= 0:
            raise ValueError(f"GroupDRO needs a step size eta > 0, got {eta}")
        self.eta = eta
        self.q = torch.full((num_groups,), 1.0 / num_groups, dtype=torch.float64)

    @property
    def last(self) -> Tensor:
        return self.q.clone()

    def weights(self, losses: Tensor, present: Tensor, gram: Tensor | None = None) -> Tensor:
        device, dtype = present.device, losses.dtype
        present = present.detach().cpu().bool()
        step = torch.where(present, losses.detach().cpu().double(), torch.zeros_like(self.q))
        if not torch.isfinite(step).all():
            raise FloatingPointError("a present group's loss is not finite")
        log_q = torch.log(self.q) + self.eta * step
        self.q = torch.softmax(log_q, dim=0)
        w = torch.where(present, self.q, torch.zeros_like(self.q))
        return (w / w.sum()).to(device=device, dtype=dtype)

    def state_dict(self) -> dict:
        return {"mode": "groupdro", "q": self.q.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("mode") != "groupdro" or state["q"].shape != self.q.shape:
            raise ValueError("the checkpoint's GroupDRO state does not match this run's groups")
        self.q = state["q"].clone()
