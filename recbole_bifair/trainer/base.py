"""What every trainer run through the plugin gets, stock RecBole trainers included."""

import os
import uuid

import numpy as np
import torch
from recbole.utils import get_local_time, set_color

from recbole_bifair.compat import CheckpointLoadingMixin, plain
from recbole_bifair.data.sequence import is_sequence_batch
from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness.collector import FairnessCollector
from recbole_bifair.fileio import atomic_path
from recbole_bifair.model.all_positions import sequence_loss
from recbole_bifair.model.padding import resolve_trim, trimmed_full_sort
from recbole_bifair.trainer import distributed

INNER_FIX = "lower learning_rate or set clip_grad_norm (e.g. clip_grad_norm: {max_norm: 5})"
#: What diverged, and the keys that tame it (``diverged``): a stock trainer's training, or one
#: of BiFair's levels.
DIVERGENCE = {
    "training": ("training diverged: the training loss became NaN", INNER_FIX),
    "inner": ("the inner level diverged: the training loss became NaN/Inf", INNER_FIX),
    "outer": ("the outer level diverged: the item table E became NaN/Inf",
              "lower outer_learning_rate or set outer_clip_grad_norm"),
    "hypergradient": ("the outer level diverged: the hypergradient became NaN/Inf while the training loss is finite",
                      "lower outer_learning_rate, set outer_clip_grad_norm, or use another hypergrad"),
}


def diverged(level, epoch_idx, step, checkpoints):
    """The error for a NaN/Inf at ``level`` (a ``DIVERGENCE`` key), naming the keys to change and
    which of ``checkpoints`` (``{what: path}``) exist on disk."""
    what, fix = DIVERGENCE[level]
    at = f"epoch {epoch_idx}" + (f", step {step}" if step is not None else "")
    kept = [f"{name} {path}" for name, path in checkpoints.items() if path and os.path.isfile(path)]
    saved = "Kept on disk: " + "; ".join(kept) if kept else "No checkpoint was saved yet"
    return ConfigError(f"{what} at {at}: {fix}. {saved}")


def saved_config(config):
    """A checkpoint's ``config``: the model and dataset, the recorded config (what result files
    hold, for comparing runs) and the config dict that rebuilds the Config (``load_data_and_model``),
    as plain data that loads without running code."""
    # quick_start imports the trainers, so its function is imported on use
    from recbole_bifair.quick_start import recorded_config

    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "recorded": plain(recorded_config(config), default=str),
        "config_dict": plain(dict(config.external_config_dict), default=str),
    }


class PluginTrainerMixin(CheckpointLoadingMixin):
    """Checkpoints of tensors and plain data, written atomically and loaded without running code
    (compat item 2); a NaN training loss reported with the keys that fix it; the collector of the
    item-group metrics (which also fixes RecBole's crashing one); the all-position loss on window
    batches (sequence-level training, ``train_mode``); the seconds of every training epoch
    (``epoch_seconds``) for the run's result file; and training windows and full ranking without
    the padding of short histories for causal backbones (``trim_padding``, model/padding.py).
    Under several processes (trainer/distributed.py): one checkpoint name for all ranks, written by
    rank 0 and loaded from it, and evaluation that every rank runs in full (nothing to gather)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole names checkpoints {model}-{time}.pth, to the second: parallel runs would collide
        self.saved_model_file = os.path.join(
            self.checkpoint_dir, f"{config['model']}-{get_local_time()}-{uuid.uuid4().hex[:6]}.pth")
        self.saved_model_file = distributed.broadcast_object(self.saved_model_file)  # rank 0's file
        self.eval_collector = FairnessCollector(config)
        self.epoch_seconds = []
        self.trim_padding = resolve_trim(config, model)
        self._epoch_idx = 0  # the epoch in training, for the divergence error

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._epoch_idx = epoch_idx
        if loss_func is None:
            # decided per batch: a wrapped loader (benchmarks time the first batches) is still a
            # loader of windows
            def loss_func(interaction):
                if is_sequence_batch(interaction):
                    return sequence_loss(self.model, interaction, self.trim_padding)
                return self.model.calculate_loss(interaction)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    def _check_nan(self, loss):
        # RecBole raises ValueError("Training loss is nan"), naming neither the cause nor the fix
        if torch.isnan(loss):
            raise diverged("training", self._epoch_idx, None, self._checkpoint_files())

    def _checkpoint_files(self):
        return {"best checkpoint": self.saved_model_file}

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        # RecBole's pickles its Config object, which only a code-running load rebuilds (compat item 2)
        if not distributed.is_main():
            return
        target = kwargs.get("saved_model_file", self.saved_model_file)
        state = self._checkpoint_state(epoch)
        with atomic_path(target) as tmp:
            torch.save(state, tmp)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {target}")

    def _checkpoint_state(self, epoch):
        """What a checkpoint holds: RecBole's keys, as tensors and plain data."""
        return {
            "config": saved_config(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": plain(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": plain(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
        }

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        # RecBole's fit() hands every trainer's epoch start and end time to this method, whatever
        # _train_epoch does, so it is the one place that times all of them.
        self.epoch_seconds.append(e_time - s_time)
        return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)

    def _full_sort_batch_eval(self, batched_data):
        if not self.trim_padding:
            return super()._full_sort_batch_eval(batched_data)
        # RecBole's Trainer._full_sort_batch_eval with the scores of trimmed_full_sort
        interaction, history_index, positive_u, positive_i = batched_data
        scores = trimmed_full_sort(self.model, interaction.to(self.device)).view(-1, self.tot_item_num)
        scores[:, 0] = -np.inf
        if history_index is not None:
            scores[history_index] = -np.inf
        return interaction, scores, positive_u, positive_i

    def load_best_model(self, model_file=None):
        if not distributed.active():
            return super().load_best_model(model_file)
        # rank 0 wrote the checkpoint (a file other machines may not see): it reads it, the others
        # receive its parameters
        distributed.barrier()
        checkpoint = super().load_best_model(model_file) if distributed.is_main() else None
        distributed.broadcast_module(self.model)
        other = distributed.broadcast_object(checkpoint.get("other_parameter") if checkpoint else None)
        if not distributed.is_main():
            self.model.load_other_parameter(other)
        return checkpoint

    def _map_reduce(self, result, num_sample):
        # RecBole averages the ranks' metrics over sharded evaluation data; here every rank
        # evaluated every user (distributed.prepare_data), so each rank's result is already exact
        return result
