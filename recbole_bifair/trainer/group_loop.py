"""The per-group training step's parts: group mean losses, the group weights of one level
(``Balancer``) and MGDA's Gram matrix of the group gradients in closed form (METHOD.md section 5).

Used by ``fair_trainer.FairTrainer`` for every method with ``group_loop`` (IPS, GroupDRO,
VarReg, BiFair) and by BiFair's outer level (``outer_level.py``).
"""

from dataclasses import dataclass

import torch

from recbole_bifair.errors import ConfigError
from recbole_bifair.trainer import distributed
from recbole_bifair.trainer.balancing import ADAPTIVE_BALANCES
from recbole_bifair.trainer.balancing import GroupBalancer, OnlineGroupDRO

#: group weightings of a level: the adaptive ones (balancing.py), online GroupDRO's, or none
#: (each group's sample share: the plain mean loss)
LEVEL_BALANCES = ADAPTIVE_BALANCES + ("groupdro", "none")


def group_means(losses, group_ids, n_groups):
    """Per-group mean loss ``[K]`` and which groups occur in the batch."""
    counts = torch.bincount(group_ids, minlength=n_groups)
    sums = losses.new_zeros(n_groups).index_add(0, group_ids, losses)
    return sums / counts.clamp(min=1), counts > 0, counts


def shared_gram(out, losses, group_ids, present, counts, parts=None):
    """Gram matrix of the per-group gradients w.r.t. the scoring layer's inputs (MGDA).

    The shared quantity is (S, V) = ``out.shared``, the scoring layer's inputs with logits = S V^T
    (+ bias): the target representations and the scored item table (L2-normalised, S divided by
    the temperature, under ``score: cosine``); V is the scoring layer's own node, so gradients
    w.r.t. it do not run back through the input sequence. Under CE, with R = dl/dlogits (one row
    per target, from one backward through the loss only) and W[i, g] = [i in g] / n_g, the
    gradients are closed-form:

        dL_g/dV = (W[:, g] * R)^T S,      <dL_a/dS, dL_b/dS> = [a = b] sum_i W[i, a]^2 ||R_i V||^2,

    which costs one matmul of the size of the logits' backward (split by group) instead of K backward passes.
    ``losses`` are the per-target losses the level uses (IPS-weighted or not). Other losses
    (BPR) fall back to one autograd pass per group. Absent groups get zero rows.

    These products are the logits' backward itself, per group: with ``parts`` (a dict) the
    closed-form path leaves this rank's ``M`` (``[K, n_items * d]``, rows dL_g/dV) and ``RV``
    (``R @ V``, ``[N, d]``) in it, from which ``fused_inner_grads`` forms the weighted inner
    gradient without a second pass through the logits.
    """
    K = counts.shape[0]
    S, V = out.shared
    if out.logits is None:
        # several processes: the mean of the ranks' Grams, an approximation of the global one
        return distributed.mean_over_ranks_([_gram_by_autograd(out, losses, group_ids, present, counts)])[0]
    (R,) = torch.autograd.grad(losses.sum(), out.logits, retain_graph=True)
    R, S, Vi = R.detach(), S.detach(), V.detach()[: R.shape[1]]
    W = torch.zeros(len(group_ids), K, dtype=R.dtype, device=R.device)
    W[torch.arange(len(group_ids), device=R.device), group_ids] = 1.0 / counts.clamp(min=1)[group_ids].to(R.dtype)
    # dL_g/dV from group g's rows only: N * n_items * d multiply-adds in all, not K times that
    # (masking the full R per group cost 0.25 s of a 0.42 s BiFair step on ml-1m)
    inv = 1.0 / counts.clamp(min=1).to(R.dtype)
    M = torch.stack([(R[idx].T @ S[idx]).flatten() * inv[g]
                     for g, idx in enumerate(_rows_by_group(group_ids, K))])  # [K, n_items * d]
    RV = R @ Vi
    s_part = (W ** 2).T @ (RV ** 2).sum(1)
    if parts is not None:
        parts.update(M=M.clone() if distributed.active() else M, RV=RV)
    # several processes: both are sums over rows scaled by the global counts, so the ranks' parts
    # add up to the global batch's exactly (distributed.global_group_losses)
    distributed.sum_over_ranks_([M, s_part])
    return M @ M.T + torch.diag(s_part)


def fused_inner_grads(out, parts, lam, group_ids, counts, params):
    """Gradient of ``sum_g lam_g L_g`` w.r.t. ``params`` from the Gram's parts (``shared_gram``).

    The logits are ``S V^T`` plus shifts that do not depend on ``params`` (group offsets, logit
    adjustment), so the gradient reaches ``params`` only through ``(S, V) = out.shared``:

        dS_i = lam_g(i) / n_g(i) * (R V)_i,      dV = sum_g lam_g M_g,

    which is what backpropagating the weighted loss through the logits computes, from the
    products the Gram already paid for. MGDA then costs the Gram's bookkeeping, not a second
    logits-sized backward (equal to autograd's gradient: tests/test_mgda_interval.py).
    This rank's rows only: the caller sums the ranks' gradients, as for autograd's.
    """
    S, V = out.shared
    M, RV = parts["M"], parts["RV"]
    scale = (lam.to(RV.dtype) / counts.clamp(min=1).to(RV.dtype))[group_ids]
    dS = RV * scale.unsqueeze(1)
    dV_scored = (lam.to(M.dtype) @ M).view(-1, V.shape[1])
    dV = torch.zeros_like(V)
    dV[: dV_scored.shape[0]] = dV_scored
    return torch.autograd.grad([S, V], params, grad_outputs=[dS, dV], allow_unused=True)


def _rows_by_group(group_ids, n_groups):
    order = torch.argsort(group_ids, stable=True)
    return torch.split(order, torch.bincount(group_ids, minlength=n_groups).tolist())


def _gram_by_autograd(out, losses, group_ids, present, counts):
    L_g, _, _ = group_means(losses, group_ids, counts.shape[0])
    rows = []
    for g in range(counts.shape[0]):
        if present[g]:
            grads = torch.autograd.grad(L_g[g], out.shared, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(d if d is not None else torch.zeros_like(t)).reshape(-1)
                                   for d, t in zip(grads, out.shared)]))
        else:
            rows.append(None)
    width = next(r for r in rows if r is not None).numel()
    G = torch.stack([r if r is not None else L_g.new_zeros(width) for r in rows]).detach()
    return G @ G.T


@dataclass
class GroupedLosses:
    means: torch.Tensor  # [K] L_g
    present: torch.Tensor  # [K] whether group g has targets in the batch
    counts: torch.Tensor  # [K] its number of targets
    group_ids: torch.Tensor  # [N] group of each target
    losses: torch.Tensor  # [N] the per-target losses the means are taken of


class Balancer:
    """Group weights of one level: ``mgda``/``dro``/``uniform`` (``GroupBalancer``), the GroupDRO
    baseline's online weights (``groupdro``), or ``none``: weights = sample shares, so that
    ``sum_g w_g L_g`` is the plain mean loss."""

    def __init__(self, mode, n_groups, config, key):
        if mode not in LEVEL_BALANCES:
            raise ConfigError(f"{key} '{mode}' is unknown; use one of {', '.join(LEVEL_BALANCES)}")
        self.mode = mode
        interval = config["mgda_interval"] if config["mgda_interval"] is not None else 1
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"mgda_interval must be an integer >= 1, got {interval!r}")
        self.gram_interval = interval
        self.calls = 0  # weights() calls so far: the Gram is computed on calls 0, k, 2k, ...
        try:
            if mode == "none":
                self.impl = None
            elif mode == "groupdro":
                self.impl = OnlineGroupDRO(n_groups, eta=config["groupdro_eta"])
            else:
                tau = config["dro_tau"] if mode == "dro" else config["balance_tau"]
                self.impl = GroupBalancer(mode, n_groups, tau=tau, ema=config["balance_ema"] or 0.0)
        except ValueError as err:
            raise ConfigError(f"{key} '{mode}': {err} (keys balance_tau, dro_tau, balance_ema, groupdro_eta)") from None

    @property
    def needs_gram(self):
        return self.impl is not None and self.impl.needs_gram

    def weights(self, grouped, out=None, parts=None):
        """Weights for ``grouped`` (a ``GroupedLosses``) of the targets in ``out``. ``parts``: a
        dict that the closed-form Gram, when computed, fills with its products (``shared_gram``)."""
        group_losses, present, counts = grouped.means, grouped.present, grouped.counts
        if self.impl is None:
            return (counts / counts.sum()).to(group_losses.dtype)
        last = self.impl.last if self.needs_gram and self.calls % self.gram_interval != 0 else None
        self.calls += 1
        if last is not None and bool((last[present.cpu()] > 0).all()):
            # mgda_interval k > 1: between Gram steps the last weights are reused, restricted to
            # the groups in this batch (METHOD.md 5; the Gram is ~all of first-order BiFair's
            # extra cost). A group that has no weight yet (absent at the last Gram
            # step) gets a fresh Gram instead. ``present`` is the global batch's, so every rank
            # takes the same branch.
            w = torch.where(present.cpu(), last, torch.zeros_like(last))
            return (w / w.sum()).to(dtype=group_losses.dtype, device=present.device)
        gram = shared_gram(out, grouped.losses, grouped.group_ids, present, counts, parts) if self.needs_gram else None
        return self.impl.weights(group_losses.detach(), present, gram).to(group_losses.dtype)

    def state_dict(self):
        state = dict(self.impl.state_dict()) if self.impl is not None else {}
        return {**state, "calls": self.calls}

    def load_state_dict(self, state):
        state = dict(state)
        self.calls = state.pop("calls", 0)  # checkpoints before mgda_interval: every call had a Gram
        if self.impl is not None:
            self.impl.load_state_dict(state)
