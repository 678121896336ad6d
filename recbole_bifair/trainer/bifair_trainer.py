"""``BiFairTrainer``: the bi-level loop of METHOD.md section 4 inside RecBole's ``Trainer``.

Per training batch:
1. inner forward: per-target losses, per-group means ``L_g``, group weights ``lambda`` from the
   inner balancer, ``L_in = sum_g lambda_g L_g`` and its gradient ``g`` w.r.t. theta (projector +
   backbone);
2. the inner optimiser applies ``g`` to theta: theta -> theta';
3. every ``outer_interval`` steps, the outer step: the hypergradient of
   ``L_out = sum_g w_g L_g(theta'(E), E; B_meta) + mu ||E - E0||^2`` w.r.t. the outer variables
   (``E``, and the group score offsets under ``group_offsets: outer``; mode ``hypergrad``),
   through the step of (2) (``hypergrad_unroll: optimizer``: the optimiser's own step,
   linearised, recbole_bifair/trainer/unroll.py; ``sgd``: ``theta - xi g``), applied by their own
   optimiser. Both levels read E as it was at the start of the step.

With ``bifair: False`` the model is the LLM-enhanced baseline and this trainer is RecBole's.
Several processes: recbole_bifair/trainer/distributed.py (the calls marked ``distributed.``).
"""

import contextlib
from collections import defaultdict
from dataclasses import dataclass

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.func import functional_call
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm

from recbole_bifair.compat import SAME_CONFIG, plain
from recbole_bifair.data.sequence import head_targets
from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness.groups import build_item_groups
from recbole_bifair.model.bifair import LossCall
from recbole_bifair.trainer.balancing import GroupBalancer, OnlineGroupDRO
from recbole_bifair.trainer import distributed
from recbole_bifair.trainer.base import PluginTrainerMixin, diverged
from recbole_bifair.trainer.hypergrad import get_hypergrad
from recbole_bifair.trainer.meta_split import Cycle, split_meta
from recbole_bifair.trainer.row_adam import RowwiseAdam
from recbole_bifair.trainer.unroll import UNROLLS, clip_scale, step_derivative

BALANCE_MODES = ("mgda", "dro", "uniform", "groupdro", "none")
E_NAME = "item_embedding.E"
OFFSET_NAME = "group_offset"  # the model's group score offsets (group_offsets: outer)
E_ROWS = "E_rows"  # outer_softmax sampled: the rows of E the outer step touches
OUTER_SOFTMAXES = ("auto", "full", "sampled")
SECOND_MOMENTS = ("row", "entry")  # outer_second_moment: RowwiseAdam or torch's SparseAdam


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
        if mode not in BALANCE_MODES:
            raise ConfigError(f"{key} '{mode}' is unknown; use one of {', '.join(BALANCE_MODES)}")
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


class BiFairTrainer(PluginTrainerMixin, Trainer):
    def __init__(self, config, model):
        self.bifair = bool(config["bifair"])
        super().__init__(config, model)
        self.outer_on = self.bifair and bool(config["outer_level"])
        interval = config["outer_interval"]
        if not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"outer_interval must be an integer >= 1, got {interval!r}")
        self.outer_interval = interval
        self.hypergrad_name = config["hypergrad"]
        try:
            self.hypergrad = get_hypergrad(self.hypergrad_name)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.xi = config["hypergrad_xi"] if config["hypergrad_xi"] is not None else self.learning_rate
        self.unroll = config["hypergrad_unroll"] or "optimizer"
        if self.unroll not in UNROLLS:
            raise ConfigError(f"hypergrad_unroll '{self.unroll}' is unknown; use one of {', '.join(UNROLLS)}")
        if self.unroll == "optimizer" and config["hypergrad_xi"] is not None:
            raise ConfigError("hypergrad_xi is the step size of hypergrad_unroll: sgd; with hypergrad_unroll: "
                              "optimizer the step is the optimiser's. Set hypergrad_unroll: sgd or hypergrad_xi: ~")
        offsets = getattr(model, "group_offset", None)  # exist only with the outer level (config.resolve_group_offsets)
        self.mu = config["outer_mu"] or 0.0
        self.outer_clip = config["outer_clip_grad_norm"]
        self.hvp_batch_size = config["hvp_batch_size"]
        self.outer_softmax = self._outer_softmax(config, model) if self.outer_on else None
        self.outer_optimizer = None
        if self.outer_on:
            groups = [{"params": [self.model.item_table.E]}]
            if offsets is not None:
                groups.append({"params": [offsets], "lr": config["group_offset_learning_rate"]})
            if self.outer_softmax == "sampled":
                # lazy Adam: moments and steps of the rows a step touches only
                if (config["outer_learner"] or "adam").lower() != "adam":
                    raise ConfigError(f"outer_softmax: sampled updates E with a sparse (row-wise) Adam; "
                                      f"outer_learner is {config['outer_learner']}: set outer_learner: adam")
                moment = config["outer_second_moment"] or "row"
                if moment not in SECOND_MOMENTS:
                    raise ConfigError(f"outer_second_moment '{moment}' is unknown; use one of "
                                      f"{', '.join(SECOND_MOMENTS)}")
                sparse_adam = RowwiseAdam if moment == "row" else torch.optim.SparseAdam
                self.outer_optimizer = sparse_adam(groups, lr=config["outer_learning_rate"])
            else:
                self.outer_optimizer = self._build_optimizer(params=groups, learner=config["outer_learner"],
                                                             learning_rate=config["outer_learning_rate"],
                                                             weight_decay=0.0)
        self.global_step = 0
        self.epoch_stats = []  # one record per epoch: losses, group weights, ||E - E0||
        self.item_groups = None
        self.inner_balancer = self.outer_balancer = None
        self._inner_data = self._meta = None
        self._resumed_state = None
        if self.bifair and distributed.active():
            # the bi-level loop syncs its gradients itself (autograd.grad never reaches DDP's hooks)
            self.distributed_model = None
            distributed.broadcast_module(self.model)

    @staticmethod
    def _outer_softmax(config, model):
        """``outer_softmax`` resolved: ``auto`` is ``sampled`` for catalogs above
        ``outer_sampled_min_items`` items, else ``full`` (METHOD.md 4b)."""
        mode = config["outer_softmax"] or "auto"
        if mode not in OUTER_SOFTMAXES:
            raise ConfigError(f"outer_softmax '{mode}' is unknown; use one of {', '.join(OUTER_SOFTMAXES)}")
        threshold = config["outer_sampled_min_items"]
        if mode == "auto":
            if not isinstance(threshold, int) or isinstance(threshold, bool):
                raise ConfigError(f"outer_sampled_min_items must be an integer, got {threshold!r}")
            mode = "sampled" if model.n_items - 1 > threshold else "full"
        if mode == "sampled":
            if model.loss_type != "CE" or model.extra_item_rows:
                raise ConfigError(f"outer_softmax: sampled needs a CE-trained SASRec/GRU4Rec backbone; "
                                  f"{type(model).__name__} with loss_type {model.loss_type}: set outer_softmax: full")
            n = config["outer_negatives"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"outer_negatives must be an integer >= 1, got {n!r}")
        return mode

    # ----- set-up -------------------------------------------------------------------------
    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs and hasattr(self.model, "inner_parameters"):
            kwargs["params"] = self.model.inner_parameters()  # E has its own optimiser
        return super()._build_optimizer(**kwargs)

    def _setup(self, train_data):
        """Groups, balancers and the meta split, once, from the full training split."""
        if self.item_groups is not None:
            return
        self.item_groups = build_item_groups(self.config, train_data._dataset)
        self.group_of = self.item_groups.group_of.to(self.device)
        K = self.item_groups.n_groups
        cfg = self.config
        self.inner_balancer = Balancer(cfg["inner_balance"] or cfg["balance"], K, cfg,
                                       "inner_balance" if cfg["inner_balance"] else "balance")
        self.outer_balancer = Balancer(cfg["outer_balance"] or cfg["balance"], K, cfg,
                                       "outer_balance" if cfg["outer_balance"] else "balance")
        self.sample_weight = self._sample_weights(cfg)
        self.variance_weight = cfg["group_variance_weight"] or 0.0
        if self.outer_on:
            self._inner_data, meta_data = split_meta(cfg, train_data)
            self._meta = Cycle(meta_data)
        else:
            self._inner_data = train_data
        if self._resumed_state is not None:
            self._restore_loop_state(self._resumed_state)
            self._resumed_state = None

    def _before_training(self, train_data):
        if self.bifair:
            self._setup(train_data)

    def _shuffled_loaders(self):
        loaders = super()._shuffled_loaders()
        if self._inner_data is not None:
            loaders["inner"] = self._inner_data
        if self._meta is not None:
            loaders["meta"] = self._meta.loader
        return loaders

    # ----- training -----------------------------------------------------------------------
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if not self.bifair:
            return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        self._setup(train_data)
        data = self._inner_data
        if self._meta is not None:
            self._meta.restart(epoch_idx)  # each epoch starts a fresh pass: resuming at an epoch boundary is exact
        distributed.set_sampler_epoch(data, epoch_idx)
        self.model.train()
        stats = defaultdict(float)
        K = self.item_groups.n_groups
        stats["group_loss"] = torch.zeros(K)
        stats["group_steps"] = torch.zeros(K)
        stats["inner_w"] = torch.zeros(K)
        stats["outer_w"] = torch.zeros(K)
        batches = tqdm(data, total=len(data), ncols=100, desc=set_color(f"Train {epoch_idx:>5}", "pink")) \
            if show_progress else data
        for interaction in batches:
            self.global_step += 1
            self._bilevel_step(interaction.to(self.device), stats, epoch_idx)
        self._log_epoch(epoch_idx, stats)
        return stats["inner_loss"]

    def _sample_weights(self, cfg):
        """IPS baseline: per-item weights ``train_count ** -ips_alpha`` (else None)."""
        mode = cfg["sample_weighting"] or "none"
        if mode == "none":
            return None
        if mode != "ips":
            raise ConfigError(f"sample_weighting '{mode}' is unknown; use none or ips")
        counts = self.item_groups.train_count.double()
        weights = torch.where(counts > 0, counts.clamp(min=1) ** -(cfg["ips_alpha"] or 1.0), 0.0)
        return weights.float().to(self.device)

    def _group_losses(self, out, inner=True):
        """Per-group mean losses; the inner level's losses carry the IPS weights, if any."""
        losses = out.losses
        if inner and self.sample_weight is not None:
            w = self.sample_weight[out.targets]
            losses = losses * (w / w.mean())
        group_ids = self.group_of[out.targets]
        means, present, counts = group_means(losses, group_ids, self.item_groups.n_groups)
        return GroupedLosses(means, present, counts, group_ids, losses)

    def _inner_objective(self, L_g, present, lam):
        """``sum_g lambda_g L_g`` (+ ``group_variance_weight`` * the variance of the present
        groups' losses: the VarReg baseline)."""
        loss = (lam * L_g).sum()
        if self.variance_weight:
            loss = loss + self.variance_weight * L_g[present].var(unbiased=False)
        return loss

    def _outer_variables(self):
        """The outer level's tensors by parameter name: E, and the group offsets if the model has them."""
        found = {E_NAME: self.model.item_table.E}
        if getattr(self.model, "group_offset", None) is not None:
            found[OFFSET_NAME] = self.model.group_offset
        return found

    def _bilevel_step(self, interaction, stats, epoch_idx):
        model = self.model
        outer_names = {E_NAME, OFFSET_NAME}
        theta_names = [n for n, _ in model.named_parameters() if n not in outer_names]
        theta_params = [p for n, p in model.named_parameters() if n not in outer_names]

        out = model.target_losses(interaction)
        if not torch.isfinite(out.losses).all():
            raise self._nonfinite(epoch_idx)
        grouped = distributed.global_group_losses(self._group_losses(out))
        L_g, present = grouped.means, grouped.present
        # the Gram's products double as the logits' backward when the inner loss is the weighted
        # group mean alone (no variance term): fused_inner_grads
        parts = {} if out.logits is not None and not self.variance_weight else None
        lam = self.inner_balancer.weights(grouped, out, parts)
        inner_loss = self._inner_objective(L_g, present, lam)
        if parts:
            grads = fused_inner_grads(out, parts, lam.detach(), grouped.group_ids, grouped.counts, theta_params)
        else:
            grads = torch.autograd.grad(inner_loss, theta_params, allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, theta_params)]
        distributed.sum_over_ranks_(grads)  # the ranks' shares of the global batch's gradient

        stats["inner_loss"] += inner_loss.item()
        stats["group_loss"] += L_g.detach().cpu() * present.cpu()
        stats["group_steps"] += present.cpu().float()
        stats["inner_w"] += lam.detach().cpu()
        stats["steps"] += 1

        outer_now = self.outer_on and self.global_step % self.outer_interval == 0
        theta_before = {n: p.detach().clone() for n, p in zip(theta_names, theta_params)} if outer_now else None

        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(theta_params, grads):
            p.grad = g.clone() if outer_now and self.clip_grad_norm else g  # clipping is in place
        total_norm = clip_grad_norm_(theta_params, **self.clip_grad_norm) if self.clip_grad_norm else None
        self.optimizer.step()

        if outer_now:
            if self.unroll == "optimizer":
                max_norm = self.clip_grad_norm.get("max_norm") if self.clip_grad_norm else None
                xi = step_derivative(self.optimizer, dict(zip(theta_names, theta_params)),
                                     clip_scale(total_norm, max_norm))
                theta_step = {n: p.detach() for n, p in zip(theta_names, theta_params)}
            else:
                xi, theta_step = self.xi, None
            self._outer_step(interaction, lam, theta_before, dict(zip(theta_names, grads)), xi, theta_step,
                             stats, epoch_idx)

    def _outer_step(self, interaction, lam, theta, inner_grads, xi, theta_step, stats, epoch_idx):
        model, call = self.model, LossCall(self.model)
        outer_vars = self._outer_variables()
        E, E0 = model.item_table.E, model.item_table.E0
        meta = self._next_meta_batch().to(self.device)
        hvp_batch = interaction if not self.hvp_batch_size else head_targets(interaction, self.hvp_batch_size)
        theta = {n: p.detach() for n, p in theta.items()}
        lam = lam.detach()
        outer_w = {}
        sampled = {}
        start = {n: t.detach() for n, t in outer_vars.items()}
        if self.outer_softmax == "sampled":
            # METHOD.md 4b: the meta and Hessian-vector passes see the rows the two batches touch
            # and shared uniform negatives; the outer variable is those rows of E, not E.
            negatives = model.sample_negatives(self.config["outer_negatives"], self.device)
            rows = torch.unique(torch.cat([model.batch_rows(meta, negatives), model.batch_rows(hvp_batch, negatives)]))
            sampled = {"softmax": "sampled", "negatives": negatives, "rows": rows}
            start[E_ROWS] = start.pop(E_NAME)[rows]
            anchor = E0[rows]
        else:
            anchor = E0

        def params(th, phi):
            return {**{f"model.{n}": t for n, t in th.items()},
                    **{f"model.{n}": t for n, t in phi.items() if n != E_ROWS}}

        def loss_kwargs(phi):
            return dict(sampled, E_rows=phi[E_ROWS]) if sampled else {}

        # Every evaluation below sees the same dropout masks: the finite-difference pair
        # theta +/- eps v must differ only in theta. The global generator is left as it was.
        seed = int(torch.randint(0, 2**62, (1,)).item())

        def losses_at(th, phi, batch):
            with torch.random.fork_rng(devices=self._rng_devices()):
                torch.manual_seed(seed)
                return functional_call(call, params(th, phi), (batch,), loss_kwargs(phi))

        def inner_loss_fn(th, e):
            grouped = self._group_losses(losses_at(th, e, hvp_batch))
            return self._inner_objective(grouped.means, grouped.present, lam)

        def outer_loss_fn(th, phi):
            # the meta loss is the one ranking sees: without the training-only group offsets
            seen = {**phi, OFFSET_NAME: torch.zeros_like(phi[OFFSET_NAME])} if OFFSET_NAME in phi else phi
            out = losses_at(th, seen, meta)
            grouped = self._group_losses(out, inner=False)
            if "w" not in outer_w:  # weights fixed at their first evaluation (they carry no gradient)
                outer_w["w"] = self.outer_balancer.weights(distributed.global_group_losses(grouped), out)
            table = phi[E_ROWS] if sampled else phi[E_NAME]
            return (outer_w["w"] * grouped.means).sum() + self.mu * ((table - anchor) ** 2).sum()

        kwargs = {}
        if self.hypergrad_name != "exact":  # exact differentiates through its own inner gradient
            kwargs["inner_grads"] = inner_grads  # the inner step's gradient: no second inner backward
        if self.hypergrad_name == "finite_difference":
            kwargs["r"] = self.config["hypergrad_r"]
        if theta_step is not None:
            kwargs["theta_step"] = theta_step
        try:
            result = self.hypergrad(inner_loss_fn, outer_loss_fn, theta, start, xi, **kwargs)
        except FloatingPointError as err:
            raise self._nonfinite(epoch_idx, interaction) from err
        self.outer_optimizer.zero_grad(set_to_none=True)
        if sampled:
            # ranks touch different rows: their row gradients are merged row by row
            rows, row_grads = distributed.mean_rows_over_ranks(sampled["rows"], result.grad_E.pop(E_ROWS))
            distributed.mean_dict_over_ranks_(result.grad_E)
            self._set_sparse_grads(dict(result.grad_E, **{E_ROWS: row_grads}), rows, outer_vars)
        else:
            distributed.mean_dict_over_ranks_(result.grad_E)
            for name, tensor in outer_vars.items():
                tensor.grad = result.grad_E[name].to(tensor.dtype)
            if self.outer_clip:
                clip_grad_norm_([E], self.outer_clip)
        self.outer_optimizer.step()
        stats["outer_loss"] += result.outer_loss
        stats["outer_steps"] += 1
        stats["outer_w"] += outer_w["w"].detach().cpu()

    def _set_sparse_grads(self, grads, rows, outer_vars):
        """Row-sparse gradients for the sparse Adam (RowwiseAdam or SparseAdam): E's on ``rows`` (clipped to ``outer_clip_grad_norm``
        by the same rule as clip_grad_norm_), the offsets' on all K entries."""
        E = outer_vars[E_NAME]
        g = grads[E_ROWS].to(E.dtype)
        if self.outer_clip:
            g = g * min(1.0, self.outer_clip / (g.norm().item() + 1e-6))
        E.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), g, E.shape, is_coalesced=True, check_invariants=False)
        if OFFSET_NAME in outer_vars:
            b = outer_vars[OFFSET_NAME]
            index = torch.arange(b.numel(), device=b.device).unsqueeze(0)
            b.grad = torch.sparse_coo_tensor(index, grads[OFFSET_NAME].to(b.dtype), b.shape, is_coalesced=True,
                                             check_invariants=False)

    def _rng_devices(self):
        return [self.device] if self.device.type == "cuda" else []

    def _next_meta_batch(self):
        return self._meta.next()

    def _nonfinite(self, epoch_idx, batch=None):
        """The error for a NaN/Inf in the step, naming the level that diverged. ``batch``: the
        hypergradient failed, and the training loss on ``batch`` at the parameters the inner step
        reached tells whether that step diverged (a huge learning_rate leaves theta finite but
        the losses not) or the hypergradient itself; None: the training loss was not finite."""
        if not all(torch.isfinite(t).all() for t in self._outer_variables().values()):
            level = "outer"
        elif batch is None:
            level = "inner"
        else:
            with torch.no_grad():
                level = "hypergradient" if torch.isfinite(self.model.target_losses(batch).losses).all() else "inner"
        return diverged(level, epoch_idx, self.global_step, self._checkpoint_files())

    # ----- logging ------------------------------------------------------------------------
    @torch.no_grad()
    def _drift(self, rows_per_chunk=8192):
        """``||E - E0||`` and its ratio to ``||E0||``, by chunks of rows (no temporary as large as
        E: a 200k x 4096 table is 3.3 GB)."""
        E, E0 = self.model.item_table.E, self.model.item_table.E0
        diff = base = 0.0
        for start in range(0, E.shape[0], rows_per_chunk):
            a, b = E[start:start + rows_per_chunk].reshape(-1), E0[start:start + rows_per_chunk].reshape(-1)
            d = a - b
            diff += torch.dot(d, d).item()
            base += torch.dot(b, b).item()
        return diff ** 0.5, diff ** 0.5 / max(base ** 0.5, 1e-12)

    def _log_epoch(self, epoch_idx, stats):
        steps = max(stats["steps"], 1)
        group_loss = (stats["group_loss"] / stats["group_steps"].clamp(min=1)).tolist()
        inner_w = (stats["inner_w"] / steps).tolist()
        drift, drift_rel = self._drift()
        offsets = getattr(self.model, "group_offset", None)
        offsets = offsets.detach().cpu().tolist() if offsets is not None else None
        parts = [f"inner loss: {stats['inner_loss'] / steps:.4f}"]
        if stats["outer_steps"]:
            outer_steps = stats["outer_steps"]
            outer_w = (stats["outer_w"] / outer_steps).tolist()
            parts.append(f"outer loss: {stats['outer_loss'] / outer_steps:.4f}")
        parts += [
            "group loss: [" + ", ".join(f"{v:.3f}" for v in group_loss) + "]",
            "inner weights: [" + ", ".join(f"{v:.3f}" for v in inner_w) + "]",
        ]
        if stats["outer_steps"]:
            parts.append("outer weights: [" + ", ".join(f"{v:.3f}" for v in outer_w) + "]")
        parts.append(f"||E-E0||: {drift:.4f} ({100 * drift_rel:.3f}% of ||E0||)")
        if offsets is not None:
            parts.append("group offsets: [" + ", ".join(f"{v:+.3f}" for v in offsets) + "]")
        self.logger.info(set_color(f"epoch {epoch_idx} bifair", "green") + " [" + ", ".join(parts) + "]")
        tb = self.tensorboard
        tb.add_scalar("BiFair/inner_loss", stats["inner_loss"] / steps, epoch_idx)
        tb.add_scalar("BiFair/E_drift", drift, epoch_idx)
        tb.add_scalar("BiFair/E_drift_relative", drift_rel, epoch_idx)
        if stats["outer_steps"]:
            tb.add_scalar("BiFair/outer_loss", stats["outer_loss"] / stats["outer_steps"], epoch_idx)
        for g in range(len(group_loss)):
            tb.add_scalar(f"BiFair/group_loss/{g}", group_loss[g], epoch_idx)
            tb.add_scalar(f"BiFair/inner_weight/{g}", inner_w[g], epoch_idx)
            if stats["outer_steps"]:
                tb.add_scalar(f"BiFair/outer_weight/{g}", outer_w[g], epoch_idx)
        record = {"epoch": epoch_idx, "inner_loss": stats["inner_loss"] / steps, "group_loss": group_loss,
                  "inner_weights": inner_w, "E_drift": drift, "E_drift_relative": drift_rel}
        if offsets is not None:
            record["group_offsets"] = offsets
        if stats["outer_steps"]:
            record.update(outer_loss=stats["outer_loss"] / stats["outer_steps"], outer_weights=outer_w)
        self.epoch_stats.append(record)

    # ----- checkpoints --------------------------------------------------------------------
    def _checkpoint_state(self, epoch):
        # the loaders and random generators are the mixin's (_shuffled_loaders)
        return {**super()._checkpoint_state(epoch), "bifair": self._loop_state() if self.bifair else None}

    def _loop_state(self):
        return {
            "global_step": self.global_step,
            "epoch_stats": plain(self.epoch_stats),
            "outer_optimizer": self.outer_optimizer.state_dict() if self.outer_optimizer else None,
            "inner_balancer": self.inner_balancer.state_dict() if self.inner_balancer else None,
            "outer_balancer": self.outer_balancer.state_dict() if self.outer_balancer else None,
        }

    def _load_extra_checkpoint_state(self, checkpoint):
        super()._load_extra_checkpoint_state(checkpoint)
        state = checkpoint.get("bifair")
        if state:
            self.global_step = state["global_step"]
            self.epoch_stats = list(state.get("epoch_stats", []))
            if self.outer_optimizer and state["outer_optimizer"]:
                with self._resume_mismatch():
                    self.outer_optimizer.load_state_dict(state["outer_optimizer"])
            self._resumed_state = state  # the balancers exist only after _setup

    @contextlib.contextmanager
    def _resume_mismatch(self):
        """The balancers' and optimisers' ValueError on a checkpoint of another config, as a ConfigError."""
        try:
            yield
        except ValueError as err:
            raise ConfigError(f"resume_checkpoint '{self._resumed_file}': {err}; {SAME_CONFIG}") from None

    def _restore_loop_state(self, state):
        with self._resume_mismatch():
            if state["inner_balancer"] is not None:
                self.inner_balancer.load_state_dict(state["inner_balancer"])
            if state["outer_balancer"] is not None:
                self.outer_balancer.load_state_dict(state["outer_balancer"])
