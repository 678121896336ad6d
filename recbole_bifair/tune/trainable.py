"""The Ray Tune trainable: one RecBole training run per trial, reporting after every validation.

RecBole's ``objective_function`` reports test metrics once, with the old Ray API (RECBOLE.md item
9); this trainable reports the *validation* metrics of every evaluated epoch instead, so that ASHA
can stop bad trials early, and never touches the test split.

Each report carries the current epoch's full validation result (the scheduler compares those),
plus the result of the epoch RecBole would keep (``best/<metric>``, the epoch with the best
``valid_metric`` so far): that epoch's model is what a rerun of the configuration yields, so
selection uses it. A Ray checkpoint holding that model goes with every improving report; it is
what the test evaluation of the chosen trial loads, and what a retried or resumed trial restarts
from.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import ray
import torch
from ray.air import Checkpoint, session

import recbole_bifair
from recbole_bifair.quick_start import build_config, init_run_logger, prepare_run

CHECKPOINT_MODEL = "model.pth"
CHECKPOINT_STATE = "selection.json"


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares: the model, the dataset and the fixed config (config files and
    command-line overrides merged, paths absolute since Ray runs each trial in its own folder)."""

    model: str
    dataset: str
    fixed: dict = field(default_factory=dict)

    def config_dict(self, params, **extra):
        return {**self.fixed, **params, **extra}


class EpochReporter:
    """``callback_fn`` for ``Trainer.fit``: sends each validation to Ray Tune.

    RecBole calls ``callback_fn(epoch_idx, valid_score)`` with the score only. The full result of
    the same validation is the return value of ``trainer._valid_epoch``, which ``fit`` calls just
    before; wrapping that bound method on this one trainer instance captures it without
    subclassing any trainer (plugin trainers included). ``trainer.best_valid_result`` would not
    do: it changes only when the epoch improves.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.current = None  # the latest validation result, as _valid_epoch returned it
        self.best_epoch = None
        self.best_result = None
        valid_epoch = trainer._valid_epoch

        def capture(*args, **kwargs):
            score, result = valid_epoch(*args, **kwargs)
            self.current = result
            return score, result

        trainer._valid_epoch = capture

    def __call__(self, epoch_idx, valid_score):
        trainer = self.trainer
        # fit() stores the very object _valid_epoch returned when the epoch improves
        improved = trainer.best_valid_result is self.current
        if improved:
            self.best_epoch, self.best_result = epoch_idx + 1, dict(self.current)
        finished = epoch_idx + 1 + trainer.eval_step > trainer.epochs or trainer.cur_step > trainer.stopping_step
        metrics = {
            "epoch": epoch_idx + 1,
            "valid_score": float(valid_score),
            **dict(self.current),
            "best_epoch": self.best_epoch,
            **{f"best/{k}": v for k, v in (self.best_result or {}).items()},
            "finished": bool(finished),
        }
        checkpoint = self._checkpoint() if improved else None
        session.report(metrics, checkpoint=checkpoint)

    def _checkpoint(self):
        # Ray takes ownership of (moves) the reported folder: give it a fresh one each time.
        folder = tempfile.mkdtemp(prefix="checkpoint-", dir=self.trainer.checkpoint_dir)
        shutil.copyfile(self.trainer.saved_model_file, os.path.join(folder, CHECKPOINT_MODEL))
        with open(os.path.join(folder, CHECKPOINT_STATE), "w", encoding="utf-8") as f:
            json.dump({"best_epoch": self.best_epoch, "best_result": self.best_result}, f)
        return Checkpoint.from_directory(folder)

    def restore(self, checkpoint):
        """Continue a retried or resumed trial from its last improving epoch."""
        with checkpoint.as_directory() as folder:
            model_file = os.path.join(self.trainer.checkpoint_dir, f"resumed-{CHECKPOINT_MODEL}")
            shutil.copyfile(os.path.join(folder, CHECKPOINT_MODEL), model_file)
            with open(os.path.join(folder, CHECKPOINT_STATE), encoding="utf-8") as f:
                state = json.load(f)
        self.trainer.resume_checkpoint(model_file)
        self.trainer.best_valid_result = state["best_result"]
        self.best_epoch, self.best_result = state["best_epoch"], state["best_result"]


def train_trial(params, setup):
    """Ray Tune function trainable: ``params`` are the trial's sampled values."""
    # A Ray worker process starts bare: the RecBole workarounds and the group metrics must be
    # installed there too.
    recbole_bifair.setup()
    cpus = session.get_trial_resources().required_resources.get("CPU", 1)
    # Shared cores stall with one OpenMP pool per process at full width (RECBOLE.md item 10).
    torch.set_num_threads(max(1, int(cpus)))
    trial_dir = session.get_trial_dir()
    config = build_config(setup.model, setup.dataset, config_dict=setup.config_dict(
        params,
        checkpoint_dir=os.path.join(trial_dir, "saved"),
        # RecBole sets CUDA_VISIBLE_DEVICES to gpu_id: make that the GPUs Ray gave this trial
        # ("" = CPU only, even on a GPU node).
        gpu_id=",".join(str(i) for i in ray.get_gpu_ids()),
    ))
    init_run_logger(config)
    _, (train_data, valid_data, _), _, trainer = prepare_run(config)
    reporter = EpochReporter(trainer)
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        reporter.restore(checkpoint)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=reporter)
