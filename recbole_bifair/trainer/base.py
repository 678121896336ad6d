"""What every trainer run through the plugin gets, stock RecBole trainers included."""

import os
import uuid

import numpy as np
from recbole.utils import get_local_time

from recbole_bifair.compat import CheckpointLoadingMixin
from recbole_bifair.data.sequence import is_sequence_batch
from recbole_bifair.fairness.collector import FairnessCollector
from recbole_bifair.model.all_positions import sequence_loss
from recbole_bifair.model.padding import resolve_trim, trimmed_full_sort
from recbole_bifair.trainer import distributed


class PluginTrainerMixin(CheckpointLoadingMixin):
    """Checkpoint loading that works under torch 2.13, the collector of the item-group metrics
    (which also fixes RecBole's crashing one), the all-position loss on window batches
    (sequence-level training, ``train_mode``), the seconds of every training epoch
    (``epoch_seconds``) for the run's result file, and training windows and full ranking without
    the padding of short histories for causal backbones (``trim_padding``, model/padding.py). Under several processes (trainer/distributed.py):
    one checkpoint name for all ranks, written by rank 0 and loaded from it, and evaluation that
    every rank runs in full (nothing to gather)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole names checkpoints {model}-{time}.pth, to the second: parallel runs would collide
        self.saved_model_file = os.path.join(
            self.checkpoint_dir, f"{config['model']}-{get_local_time()}-{uuid.uuid4().hex[:6]}.pth")
        self.saved_model_file = distributed.broadcast_object(self.saved_model_file)  # rank 0's file
        self.eval_collector = FairnessCollector(config)
        self.epoch_seconds = []
        self.trim_padding = resolve_trim(config, model)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if loss_func is None:
            # decided per batch: a wrapped loader (benchmarks time the first batches) is still a
            # loader of windows
            def loss_func(interaction):
                if is_sequence_batch(interaction):
                    return sequence_loss(self.model, interaction, self.trim_padding)
                return self.model.calculate_loss(interaction)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

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
