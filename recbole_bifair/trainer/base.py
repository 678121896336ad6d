"""What every trainer run through the plugin gets, stock RecBole trainers included."""

import os
import uuid

from recbole.utils import get_local_time

from recbole_bifair.compat import CheckpointLoadingMixin
from recbole_bifair.fairness.collector import FairnessCollector


class PluginTrainerMixin(CheckpointLoadingMixin):
    """Checkpoint loading that works under torch 2.13, the collector of the item-group metrics
    (which also fixes RecBole's crashing one), and the seconds of every training epoch
    (``epoch_seconds``) for the run's result file."""

    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole names checkpoints {model}-{time}.pth, to the second: parallel runs would collide
        self.saved_model_file = os.path.join(
            self.checkpoint_dir, f"{config['model']}-{get_local_time()}-{uuid.uuid4().hex[:6]}.pth")
        self.eval_collector = FairnessCollector(config)
        self.epoch_seconds = []

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        # RecBole's fit() hands every trainer's epoch start and end time to this method, whatever
        # _train_epoch does, so it is the one place that times all of them.
        self.epoch_seconds.append(e_time - s_time)
        return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
