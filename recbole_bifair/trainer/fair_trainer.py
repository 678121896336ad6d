"""``FairTrainer``: the trainer of the LLM-enhanced models (``recbole_bifair.model.llm``).

The run's fairness method (``model.method``, ``recbole_bifair.methods``) decides the loop:

- a method without ``group_loop`` (``none``, ``logit_adjust``; their changes live in the model's
  loss and scores) trains with RecBole's own ``Trainer`` loop;
- a method with it (IPS, GroupDRO, VarReg, BiFair) trains with the per-group step below: per-target
  losses, per-group means ``L_g``, group weights ``lambda`` from the inner balancer,
  ``L_in = sum_g lambda_g L_g`` (+ the method's loss term) and its gradient w.r.t. theta (projector +
  backbone), applied by the inner optimiser; then, every ``outer_interval`` steps when the method
  has an outer level (BiFair), the outer step (``outer_level.OuterLevel``).

Several processes: recbole_bifair/trainer/distributed.py (the calls marked ``distributed.``).
"""

import contextlib
from collections import defaultdict

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm

from recbole_bifair.compat import SAME_CONFIG, plain
from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness.groups import build_item_groups
from recbole_bifair.trainer import distributed
from recbole_bifair.trainer.base import PluginTrainerMixin, diverged
from recbole_bifair.trainer.group_loop import Balancer, GroupedLosses, fused_inner_grads, group_means
from recbole_bifair.trainer.meta_split import Cycle, split_meta
from recbole_bifair.trainer.outer_level import E_NAME, OFFSET_NAME, OuterLevel, outer_variables, table_drift
from recbole_bifair.trainer.unroll import clip_scale, step_derivative


class FairTrainer(PluginTrainerMixin, Trainer):
    def __init__(self, config, model):
        method = getattr(model, "method", None)
        if method is None:
            raise ConfigError(f"{type(model).__name__} is not an LLM-enhanced model: FairTrainer trains the models of "
                              f"recbole_bifair.model.llm (LLMSASRec, BiFairSASRec, ...)")
        self.method = method
        self.group_loop = method.group_loop
        super().__init__(config, model)
        self.global_step = 0
        self.epoch_stats = []  # one record per epoch: losses, group weights, ||E - E0||
        self.item_groups = None
        self.inner_balancer = self.outer_balancer = None
        self._inner_data = self._meta = None
        self._resumed_state = None
        self.outer = OuterLevel(self, config) if self.group_loop and method.outer_level else None
        if self.group_loop and distributed.active():
            # the per-group loop syncs its gradients itself (autograd.grad never reaches DDP's hooks)
            self.distributed_model = None
            distributed.broadcast_module(self.model)

    @property
    def outer_optimizer(self):
        return self.outer.optimizer if self.outer is not None else None

    @property
    def outer_softmax(self):
        return self.outer.softmax if self.outer is not None else None

    # ----- set-up -------------------------------------------------------------------------
    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs:
            kwargs["params"] = self.model.inner_parameters()  # E has its own optimiser
        return super()._build_optimizer(**kwargs)

    def _setup(self, train_data):
        """Groups, balancers and the meta split, once, from the full training split."""
        if self.item_groups is not None:
            return
        self.item_groups = build_item_groups(self.config, train_data._dataset)
        self.group_of = self.item_groups.group_of.to(self.device)
        K = self.item_groups.n_groups
        method, cfg = self.method, self.config
        self.inner_balancer = Balancer(method.inner_balance, K, cfg, getattr(method, "inner_balance_key", "fair_method"))
        if self.outer is not None:
            key = "outer_balance" if cfg["outer_balance"] else "balance"
            self.outer_balancer = Balancer(cfg["outer_balance"] or cfg["balance"], K, cfg, key)
            self.outer.objective.check_balancer(self.outer_balancer, key)
            self._inner_data, meta_data = split_meta(cfg, train_data)
            self._meta = Cycle(meta_data)
        else:
            self._inner_data = train_data
        self.sample_weight = method.target_weights(self.item_groups, self.device)
        if self._resumed_state is not None:
            self._restore_loop_state(self._resumed_state)
            self._resumed_state = None

    def _before_training(self, train_data):
        if self.group_loop:
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
        if not self.group_loop:
            return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        self._setup(train_data)
        data = self._inner_data
        if self._meta is not None:
            self._meta.restart(epoch_idx)  # each epoch starts a fresh pass: resuming at an epoch boundary is exact
        distributed.set_sampler_epoch(data, epoch_idx)
        self.model.train()
        stats = defaultdict(float)
        K = self.item_groups.n_groups
        for name in ("group_loss", "group_steps", "inner_w", "outer_w"):
            stats[name] = torch.zeros(K)
        batches = tqdm(data, total=len(data), ncols=100, desc=set_color(f"Train {epoch_idx:>5}", "pink")) \
            if show_progress else data
        for interaction in batches:
            self.global_step += 1
            self._group_step(interaction.to(self.device), stats, epoch_idx)
        self._log_epoch(epoch_idx, stats)
        return stats["inner_loss"]

    def _group_losses(self, out, inner=True):
        """Per-group mean losses; the inner level's losses carry the method's target weights, if any."""
        losses = out.losses
        if inner and self.sample_weight is not None:
            w = self.sample_weight[out.targets]
            losses = losses * (w / w.mean())
        group_ids = self.group_of[out.targets]
        means, present, counts = group_means(losses, group_ids, self.item_groups.n_groups)
        return GroupedLosses(means, present, counts, group_ids, losses)

    def _inner_objective(self, L_g, present, lam):
        """``sum_g lambda_g L_g`` plus the method's loss term (VarReg's variance of the group losses)."""
        loss = (lam * L_g).sum()
        term = self.method.loss_term(L_g, present)
        return loss if term is None else loss + term

    def _inner_gradients(self, out, grouped, lam, inner_loss, theta_params, parts):
        """The inner loss's gradient w.r.t. theta, summed over the ranks. The Gram's products
        double as the logits' backward when the loss is the weighted group mean alone
        (``fused_inner_grads``, from the ``parts`` the balancer filled in)."""
        if parts:
            grads = fused_inner_grads(out, parts, lam.detach(), grouped.group_ids, grouped.counts,
                                      theta_params)
        else:
            grads = torch.autograd.grad(inner_loss, theta_params, allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, theta_params)]
        distributed.sum_over_ranks_(grads)  # the ranks' shares of the global batch's gradient
        return grads

    def _group_step(self, interaction, stats, epoch_idx):
        model = self.model
        outer_names = {E_NAME, OFFSET_NAME}
        theta_names = [n for n, _ in model.named_parameters() if n not in outer_names]
        theta_params = [p for n, p in model.named_parameters() if n not in outer_names]

        out = model.target_losses(interaction)
        if not torch.isfinite(out.losses).all():
            raise self._nonfinite(epoch_idx)
        grouped = distributed.global_group_losses(self._group_losses(out))
        L_g, present = grouped.means, grouped.present
        parts = {} if out.logits is not None and not self.method.adds_loss_term() else None
        lam = self.inner_balancer.weights(grouped, out, parts)
        inner_loss = self._inner_objective(L_g, present, lam)
        grads = self._inner_gradients(out, grouped, lam, inner_loss, theta_params, parts)

        stats["inner_loss"] += inner_loss.item()
        stats["group_loss"] += L_g.detach().cpu() * present.cpu()
        stats["group_steps"] += present.cpu().float()
        stats["inner_w"] += lam.detach().cpu()
        stats["steps"] += 1

        outer_now = self.outer is not None and self.outer.due(self.global_step)
        theta_before = {n: p.detach().clone() for n, p in zip(theta_names, theta_params)} if outer_now else None

        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(theta_params, grads):
            p.grad = g.clone() if outer_now and self.clip_grad_norm else g  # clipping is in place
        total_norm = clip_grad_norm_(theta_params, **self.clip_grad_norm) if self.clip_grad_norm else None
        self.optimizer.step()

        if outer_now:
            if self.outer.unroll == "optimizer":
                max_norm = self.clip_grad_norm.get("max_norm") if self.clip_grad_norm else None
                xi = step_derivative(self.optimizer, dict(zip(theta_names, theta_params)),
                                     clip_scale(total_norm, max_norm))
                theta_step = {n: p.detach() for n, p in zip(theta_names, theta_params)}
            else:
                xi, theta_step = self.outer.xi, None
            self.outer.step(interaction, lam, theta_before, dict(zip(theta_names, grads)), xi, theta_step,
                            stats, epoch_idx)

    def _rng_devices(self):
        return [self.device] if self.device.type == "cuda" else []

    def _next_meta_batch(self):
        return self._meta.next()

    def _nonfinite(self, epoch_idx, batch=None):
        """The error for a NaN/Inf in the step, naming the level that diverged. ``batch``: the
        hypergradient failed, and the training loss on ``batch`` at the parameters the inner step
        reached tells whether that step diverged (a huge learning_rate leaves theta finite but
        the losses not) or the hypergradient itself; None: the training loss was not finite."""
        if not all(torch.isfinite(t).all() for t in outer_variables(self.model).values()):
            level = "outer"
        elif batch is None:
            level = "inner"
        else:
            with torch.no_grad():
                level = "hypergradient" if torch.isfinite(self.model.target_losses(batch).losses).all() else "inner"
        return diverged(level, epoch_idx, self.global_step, self._checkpoint_files())

    # ----- logging ------------------------------------------------------------------------
    def _drift(self):
        return table_drift(self.model.item_table.E, self.model.item_table.E0)

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
        self.logger.info(set_color(f"epoch {epoch_idx} {self.method.name}", "green") + " [" + ", ".join(parts) + "]")
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
        return {**super()._checkpoint_state(epoch), "bifair": self._loop_state() if self.group_loop else None}

    def _loop_state(self):
        return {
            "global_step": self.global_step,
            "epoch_stats": plain(self.epoch_stats),
            "outer_optimizer": self.outer_optimizer.state_dict() if self.outer_optimizer else None,
            "inner_balancer": self.inner_balancer.state_dict() if self.inner_balancer else None,
            "outer_balancer": self.outer_balancer.state_dict() if self.outer_balancer else None,
            "method": self.method.state_dict(),
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
            self.method.load_state_dict(state.get("method") or {})
