"""What every trainer run through the plugin gets, stock RecBole trainers included."""

from recbole_bifair.compat import CheckpointLoadingMixin
from recbole_bifair.fairness.collector import FairnessCollector


class PluginTrainerMixin(CheckpointLoadingMixin):
    """Checkpoint loading that works under torch 2.13, the collector of the item-group metrics
    (which also fixes RecBole's crashing one), and the seconds of every training epoch
    (``epoch_seconds``) for the run's result file."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_collector = FairnessCollector(config)
        self.epoch_seconds = []

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        # RecBole's fit() hands every trainer's epoch start and end time to this method, whatever
        # _train_epoch does, so it is the one place that times all of them.
        self.epoch_seconds.append(e_time - s_time)
        return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
