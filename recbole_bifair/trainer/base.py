"""What every trainer run through the plugin gets, stock RecBole trainers included."""

import os
import random
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
from recbole_bifair.schema import recorded_config
from recbole_bifair.trainer import distributed
from recbole_bifair.trainer.stopping import trailing_mean

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


def numpy_rng_state():
    """numpy's global random state as plain data: (name, keys as an int64 tensor, pos, has_gauss,
    cached_gaussian); numpy's own holds a uint32 array, which only a code-running load rebuilds."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def set_numpy_rng_state(state):
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def random_state(loaders):
    """The process's random generators (torch, CUDA, numpy, Python) and those of ``loaders``
    (``{name: loader}``, each shuffling with its own ``generator``), as tensors and plain data."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_rng_state(),
        "python": random.getstate(),
        "loaders": {name: loader.generator.get_state() for name, loader in loaders.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state, loaders):
    """Restore ``random_state``'s generators; of the loaders, those both the state and ``loaders`` name."""
    torch.set_rng_state(state["torch"])
    set_numpy_rng_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    for name, loader in loaders.items():
        if name in state["loaders"]:
            loader.generator.set_state(state["loaders"][name])


def last_checkpoint_file(saved_model_file):
    """The last validated epoch's checkpoint beside the best one, ``saved_model_file``."""
    return saved_model_file[: -len(".pth")] + "-last.pth"


def best_checkpoint_file(named, resumed):
    """The best checkpoint that the last-epoch checkpoint ``resumed`` names (``named``): where the
    run wrote it, else beside ``resumed`` (a run folder that was moved)."""
    beside = os.path.join(os.path.dirname(resumed), os.path.basename(named))
    for path in (named, beside):
        if os.path.isfile(path):
            return path
    raise ConfigError(f"resume_checkpoint '{resumed}': its run's best checkpoint {named} is missing (not beside it "
                      f"either): keep the run's two .pth files together, or resume from the best one")


def saved_config(config):
    """A checkpoint's ``config``: the model and dataset, the recorded config (what result files
    hold, for comparing runs) and the config dict that rebuilds the Config (``load_data_and_model``),
    as plain data that loads without running code."""
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "recorded": plain(recorded_config(config), default=str),
        "config_dict": plain(dict(config.external_config_dict), default=str),
    }


class PluginTrainerMixin(CheckpointLoadingMixin):
    """Checkpoints of tensors and plain data, written atomically and loaded without running code
    (compat item 2): the best epoch's (RecBole's) and, after every validation, the last epoch's
    (``last_model_file``, ``<saved_model_file>-last.pth``), each holding what an exact resume
    needs (``resume_checkpoint``: the random generators, the training loader's shuffle, the
    early-stopping state, the best checkpoint's file); a NaN training loss reported with the keys
    that fix it; the collector of the item-group metrics (which also fixes RecBole's crashing
    one); the all-position loss on window batches (sequence-level training, ``train_mode``); the
    seconds of every training epoch (``epoch_seconds``) for the run's result file; and training
    windows and full ranking without the padding of short histories for causal backbones
    (``trim_padding``, model/padding.py).
    Under several processes (trainer/distributed.py): one checkpoint name for all ranks, written by
    rank 0 and loaded from it, and evaluation that every rank runs in full (nothing to gather)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole names checkpoints {model}-{time}.pth, to the second: parallel runs would collide
        self.saved_model_file = os.path.join(
            self.checkpoint_dir, f"{config['model']}-{get_local_time()}-{uuid.uuid4().hex[:6]}.pth")
        self.saved_model_file = distributed.broadcast_object(self.saved_model_file)  # rank 0's file
        self.last_model_file = last_checkpoint_file(self.saved_model_file)
        self._train_data = None  # fit's training loader, whose shuffle a checkpoint keeps
        self._resumed_file = None  # resume_checkpoint's file
        self._resumed_random_state = None  # restored when fit starts, the loaders built
        self.eval_collector = FairnessCollector(config)
        self.epoch_seconds = []
        self.trim_padding = resolve_trim(config, model)
        self._epoch_idx = 0  # the epoch in training, for the divergence error
        self.valid_window = config["valid_window"] or 1
        self.valid_scores = []  # every validation's raw score, in order (the run's validation curve)

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

    def _valid_epoch(self, valid_data, show_progress=False):
        # RecBole's fit() hands this score to early_stopping, which both ends the run and picks the
        # best checkpoint: with valid_window > 1 it is the trailing mean (trainer/stopping.py)
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.valid_scores.append(score)
        if self.valid_window == 1:
            return score, result
        return trailing_mean(self.valid_scores, self.valid_window), result

    def _check_nan(self, loss):
        # RecBole raises ValueError("Training loss is nan"), naming neither the cause nor the fix
        if torch.isnan(loss):
            raise diverged("training", self._epoch_idx, None, self._checkpoint_files())

    def _checkpoint_files(self):
        return {"best checkpoint": self.saved_model_file, "last epoch's checkpoint": self.last_model_file}

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        def after_validation(epoch_idx, valid_score):
            # RecBole saves only improving epochs; a run resumes from the latest one
            if saved:
                self._save_checkpoint(epoch_idx, verbose=False, saved_model_file=self.last_model_file)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        self._train_data = train_data
        self._before_training(train_data)
        if self._resumed_random_state is not None:
            set_random_state(self._resumed_random_state, self._shuffled_loaders())
            self._resumed_random_state = None
        return super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                           show_progress=show_progress, callback_fn=after_validation)

    def _before_training(self, train_data):
        """Hook: what a trainer builds from the training data before its first epoch. A resumed
        run's random state is restored after it: what it draws does not shift the epochs' draws."""

    def _shuffled_loaders(self):
        """The loaders whose shuffle a checkpoint keeps, by name."""
        return {"train": self._train_data} if self._train_data is not None else {}

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        # RecBole's pickles its Config object, which only a code-running load rebuilds (compat item 2)
        if not distributed.is_main():
            return
        if epoch == -1 and self._resumed_file is not None:
            # RecBole's fit saves the current weights as the best model when no epoch is left to
            # train; a resumed run's best checkpoint is the one it resumed with
            return
        target = kwargs.get("saved_model_file", self.saved_model_file)
        state = self._checkpoint_state(epoch)
        if target != self.saved_model_file:
            state["best_model_file"] = self.saved_model_file
        with atomic_path(target) as tmp:
            torch.save(state, tmp)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {target}")

    def _checkpoint_state(self, epoch):
        """What a checkpoint holds: RecBole's keys and the rest of the training state, as tensors
        and plain data."""
        return {
            "config": saved_config(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": plain(self.best_valid_score),
            "best_valid_result": plain(self.best_valid_result),
            "train_loss_dict": plain(self.train_loss_dict),
            "state_dict": self.model.state_dict(),
            "other_parameter": plain(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
            "rng": random_state(self._shuffled_loaders()),
            "valid_scores": [float(score) for score in self.valid_scores],
        }

    def _load_extra_checkpoint_state(self, checkpoint):
        self._resumed_file = self.saved_model_file  # resume_checkpoint's file
        self.best_valid_result = checkpoint.get("best_valid_result")
        self.train_loss_dict = dict(checkpoint.get("train_loss_dict") or {})
        if checkpoint.get("best_model_file"):
            # a last epoch's checkpoint: the run goes on saving improvements into its best one
            self.last_model_file = self._resumed_file
            self.saved_model_file = best_checkpoint_file(checkpoint["best_model_file"], self._resumed_file)
        if self.cur_step > self.stopping_step:
            # written at the epoch where early stopping ended the run: no epoch is left to train
            self.epochs = self.start_epoch
        self._resumed_random_state = checkpoint.get("rng")
        if "valid_scores" in checkpoint:
            self.valid_scores = list(checkpoint["valid_scores"])
        elif self.valid_window > 1 and self.start_epoch > 0:
            raise ConfigError(
                f"resume_checkpoint '{self._resumed_file}' was written before valid_window existed: the "
                f"validations its trailing mean needs are not in it. Resume it with valid_window: 1 (the rule "
                f"it was trained with), or train from the start")

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
        # evaluated every user (data.prepare.prepare_data), so each rank's result is already exact
        return result
