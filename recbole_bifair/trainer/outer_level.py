"""BiFair's outer level (METHOD.md section 4): the outer variables refined by a hypergradient.

Every ``outer_interval`` inner steps, ``OuterLevel.step`` takes the hypergradient of

    L_out = sum_g w_g L_g(theta'(E), E; B_meta) + mu ||E - E0||^2

w.r.t. the outer variables (``E``, and the group score offsets under ``group_offsets: outer``;
mode ``hypergrad``), through the inner step the trainer just took (``hypergrad_unroll:
optimizer``: the optimiser's own step, linearised, ``unroll.py``; ``sgd``: ``theta - xi g``), and
applies it with the outer optimiser. Both levels read E as it was at the start of the step.
The trainer (``fair_trainer.FairTrainer``) owns the groups, the balancers and the meta batches;
this class owns the outer optimiser and the hypergradient's settings.
"""

import torch
from torch.func import functional_call
from torch.nn.utils import clip_grad_norm_

from recbole_bifair.data.sequence import head_targets
from recbole_bifair.errors import ConfigError
from recbole_bifair.model.llm import LossCall
from recbole_bifair.trainer import distributed
from recbole_bifair.trainer.hypergrad import get_hypergrad
from recbole_bifair.trainer.meta_objective import MetaObjective
from recbole_bifair.trainer.row_adam import RowwiseAdam
from recbole_bifair.trainer.unroll import UNROLLS

E_NAME = "item_embedding.E"
OFFSET_NAME = "group_offset"  # the model's group score offsets (group_offsets: outer)
E_ROWS = "E_rows"  # outer_softmax sampled: the rows of E the outer step touches
OUTER_SOFTMAXES = ("auto", "full", "sampled")
SECOND_MOMENTS = ("row", "entry")  # outer_second_moment: RowwiseAdam or torch's SparseAdam


def outer_variables(model):
    """The outer level's tensors by parameter name: E, and the group offsets if the model has them."""
    found = {E_NAME: model.item_table.E}
    if getattr(model, "group_offset", None) is not None:
        found[OFFSET_NAME] = model.group_offset
    return found


def resolve_outer_softmax(config, model):
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


class OuterLevel:
    """The outer step of one trainer (``owner``): its optimiser, hypergradient and settings."""

    def __init__(self, owner, config):
        self.owner = owner
        model = owner.model
        interval = config["outer_interval"]
        if not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"outer_interval must be an integer >= 1, got {interval!r}")
        self.interval = interval
        self.hypergrad_name = config["hypergrad"]
        try:
            self.hypergrad = get_hypergrad(self.hypergrad_name)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.xi = config["hypergrad_xi"] if config["hypergrad_xi"] is not None else owner.learning_rate
        self.unroll = config["hypergrad_unroll"] or "optimizer"
        if self.unroll not in UNROLLS:
            raise ConfigError(f"hypergrad_unroll '{self.unroll}' is unknown; use one of {', '.join(UNROLLS)}")
        if self.unroll == "optimizer" and config["hypergrad_xi"] is not None:
            raise ConfigError("hypergrad_xi is the step size of hypergrad_unroll: sgd; with hypergrad_unroll: "
                              "optimizer the step is the optimiser's. Set hypergrad_unroll: sgd or hypergrad_xi: ~")
        self.mu = config["outer_mu"] or 0.0
        self.clip = config["outer_clip_grad_norm"]
        self.hvp_batch_size = config["hvp_batch_size"]
        self.r = config["hypergrad_r"]
        self.negatives = config["outer_negatives"]
        self.softmax = resolve_outer_softmax(config, model)
        self.objective = MetaObjective(config, self.softmax, model)
        self.optimizer = self._build_optimizer(config, model)

    def _build_optimizer(self, config, model):
        groups = [{"params": [model.item_table.E]}]
        offsets = getattr(model, "group_offset", None)  # exist only with the outer level
        if offsets is not None:
            groups.append({"params": [offsets], "lr": config["group_offset_learning_rate"]})
        if self.softmax != "sampled":
            return self.owner._build_optimizer(params=groups, learner=config["outer_learner"],
                                               learning_rate=config["outer_learning_rate"], weight_decay=0.0)
        # lazy Adam: moments and steps of the rows a step touches only
        if (config["outer_learner"] or "adam").lower() != "adam":
            raise ConfigError(f"outer_softmax: sampled updates E with a sparse (row-wise) Adam; "
                              f"outer_learner is {config['outer_learner']}: set outer_learner: adam")
        moment = config["outer_second_moment"] or "row"
        if moment not in SECOND_MOMENTS:
            raise ConfigError(f"outer_second_moment '{moment}' is unknown; use one of {', '.join(SECOND_MOMENTS)}")
        sparse_adam = RowwiseAdam if moment == "row" else torch.optim.SparseAdam
        return sparse_adam(groups, lr=config["outer_learning_rate"])

    def due(self, global_step):
        return global_step % self.interval == 0

    def _sampled_scope(self, model, meta, hvp_batch):
        """METHOD.md 4b: the meta and Hessian-vector passes see the rows the two batches touch and
        shared uniform negatives; the outer variable is those rows of E, not E."""
        negatives = model.sample_negatives(self.negatives, self.owner.device)
        rows = torch.unique(torch.cat([model.batch_rows(meta, negatives), model.batch_rows(hvp_batch, negatives)]))
        return {"softmax": "sampled", "negatives": negatives, "rows": rows}

    def _loss_functions(self, interaction, lam, meta, sampled, anchor, outer_w):
        """``(inner_loss_fn, outer_loss_fn)`` of the hypergradient, pure in (theta, outer variables)."""
        owner, call = self.owner, LossCall(self.owner.model)
        hvp_batch = interaction if not self.hvp_batch_size else head_targets(interaction, self.hvp_batch_size)

        def params(th, phi):
            return {**{f"model.{n}": t for n, t in th.items()},
                    **{f"model.{n}": t for n, t in phi.items() if n != E_ROWS}}

        def loss_kwargs(phi):
            return dict(sampled, E_rows=phi[E_ROWS]) if sampled else {}

        # Every evaluation below sees the same dropout masks: the finite-difference pair
        # theta +/- eps v must differ only in theta. The global generator is left as it was.
        seed = int(torch.randint(0, 2**62, (1,)).item())

        def losses_at(th, phi, batch):
            with torch.random.fork_rng(devices=owner._rng_devices()):
                torch.manual_seed(seed)
                return functional_call(call, params(th, phi), (batch,), loss_kwargs(phi))

        def inner_loss_fn(th, e):
            grouped = owner._group_losses(losses_at(th, e, hvp_batch))
            return owner._inner_objective(grouped.means, grouped.present, lam)

        def outer_loss_fn(th, phi):
            # the meta loss is the one ranking sees: without the training-only group offsets
            seen = {**phi, OFFSET_NAME: torch.zeros_like(phi[OFFSET_NAME])} if OFFSET_NAME in phi else phi
            out = self.objective.losses(losses_at(th, seen, meta))
            grouped = owner._group_losses(out, inner=False)
            if "w" not in outer_w:  # weights fixed at their first evaluation (they carry no gradient)
                outer_w["w"] = owner.outer_balancer.weights(distributed.global_group_losses(grouped), out)
            table = phi[E_ROWS] if sampled else phi[E_NAME]
            return (outer_w["w"] * grouped.means).sum() + self.mu * ((table - anchor) ** 2).sum()

        return inner_loss_fn, outer_loss_fn, hvp_batch

    def step(self, interaction, lam, theta, inner_grads, xi, theta_step, stats, epoch_idx):
        """One outer step after the inner step on ``interaction`` (``theta``: the parameters
        before it, ``inner_grads`` its gradient, ``xi``/``theta_step`` the step unrolled)."""
        owner, model = self.owner, self.owner.model
        outer_vars = outer_variables(model)
        meta = owner._next_meta_batch().to(owner.device)
        theta = {n: p.detach() for n, p in theta.items()}
        start = {n: t.detach() for n, t in outer_vars.items()}
        sampled, anchor, outer_w = {}, model.item_table.E0, {}
        if self.softmax == "sampled":
            hvp_batch = interaction if not self.hvp_batch_size else head_targets(interaction, self.hvp_batch_size)
            sampled = self._sampled_scope(model, meta, hvp_batch)
            start[E_ROWS] = start.pop(E_NAME)[sampled["rows"]]
            anchor = anchor[sampled["rows"]]
        inner_loss_fn, outer_loss_fn, _ = self._loss_functions(interaction, lam.detach(), meta, sampled, anchor,
                                                               outer_w)
        kwargs = {}
        if self.hypergrad_name != "exact":  # exact differentiates through its own inner gradient
            kwargs["inner_grads"] = inner_grads  # the inner step's gradient: no second inner backward
        if self.hypergrad_name == "finite_difference":
            kwargs["r"] = self.r
        if theta_step is not None:
            kwargs["theta_step"] = theta_step
        try:
            result = self.hypergrad(inner_loss_fn, outer_loss_fn, theta, start, xi, **kwargs)
        except FloatingPointError as err:
            raise owner._nonfinite(epoch_idx, interaction) from err
        self._apply(result, sampled, outer_vars)
        stats["outer_loss"] += result.outer_loss
        stats["outer_steps"] += 1
        stats["outer_w"] += outer_w["w"].detach().cpu()

    def _apply(self, result, sampled, outer_vars):
        self.optimizer.zero_grad(set_to_none=True)
        if sampled:
            # ranks touch different rows: their row gradients are merged row by row
            rows, row_grads = distributed.mean_rows_over_ranks(sampled["rows"], result.grad_E.pop(E_ROWS))
            distributed.mean_dict_over_ranks_(result.grad_E)
            self._set_sparse_grads(dict(result.grad_E, **{E_ROWS: row_grads}), rows, outer_vars)
        else:
            distributed.mean_dict_over_ranks_(result.grad_E)
            for name, tensor in outer_vars.items():
                tensor.grad = result.grad_E[name].to(tensor.dtype)
            if self.clip:
                clip_grad_norm_([outer_vars[E_NAME]], self.clip)
        self.optimizer.step()

    def _set_sparse_grads(self, grads, rows, outer_vars):
        """Row-sparse gradients for the sparse Adam (RowwiseAdam or SparseAdam): E's on ``rows``
        (clipped to ``outer_clip_grad_norm`` by the same rule as clip_grad_norm_), the offsets' on
        all K entries."""
        E = outer_vars[E_NAME]
        g = grads[E_ROWS].to(E.dtype)
        if self.clip:
            g = g * min(1.0, self.clip / (g.norm().item() + 1e-6))
        E.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), g, E.shape, is_coalesced=True, check_invariants=False)
        if OFFSET_NAME in outer_vars:
            b = outer_vars[OFFSET_NAME]
            index = torch.arange(b.numel(), device=b.device).unsqueeze(0)
            b.grad = torch.sparse_coo_tensor(index, grads[OFFSET_NAME].to(b.dtype), b.shape, is_coalesced=True,
                                             check_invariants=False)


@torch.no_grad()
def table_drift(E, E0, rows_per_chunk=8192):
    """``||E - E0||`` and its ratio to ``||E0||``, by chunks of rows (no temporary as large as
    E: a 200k x 4096 table is 3.3 GB)."""
    diff = base = 0.0
    for start in range(0, E.shape[0], rows_per_chunk):
        a, b = E[start:start + rows_per_chunk].reshape(-1), E0[start:start + rows_per_chunk].reshape(-1)
        d = a - b
        diff += torch.dot(d, d).item()
        base += torch.dot(b, b).item()
    return diff ** 0.5, diff ** 0.5 / max(base ** 0.5, 1e-12)
