"""Prior-unfairness probe: how fair is an item table before any training?

A training-free recommender ranks items by the cosine similarity between the item's row of the
table and the user's vector, the mean of the (normalised) rows of the user's history. Evaluated
through the same RecBole evaluator and group metrics as the trained model, once on the LLM's
``E0`` and once on BiFair's refined ``E``, it shows how much of the group disparity sits in the
representations themselves (prior unfairness) and what the outer level changed.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.trainer import Trainer
from recbole.utils import InputType

from recbole_bifair.trainer.base import PluginTrainerMixin


class ItemTableProbe(SequentialRecommender):
    """Mean-of-history cosine recommender over a fixed item table (no parameters, no training)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset, table):
        super().__init__(config, dataset)
        self.register_buffer("table", F.normalize(table.detach().float(), dim=-1))

    def _user_vectors(self, interaction):
        seq = interaction[self.ITEM_SEQ]
        mask = (seq > 0).unsqueeze(-1).float()
        user = (self.table[seq] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return F.normalize(user, dim=-1)

    def full_sort_predict(self, interaction):
        return self._user_vectors(interaction) @ self.table.T

    def predict(self, interaction):
        return (self._user_vectors(interaction) * self.table[interaction[self.ITEM_ID]]).sum(-1)

    def calculate_loss(self, interaction):
        raise NotImplementedError("ItemTableProbe is training-free")


class _ProbeEvaluator(PluginTrainerMixin, Trainer):
    """RecBole's evaluation loop and the plugin's collector, for a model with nothing to train."""

    def _build_optimizer(self, **kwargs):
        return None


def probe_item_table(config, train_data, eval_data, table):
    """Metrics (RecBole's and the plugin's group metrics) of the probe on ``table``."""
    model = ItemTableProbe(config, train_data._dataset, table).to(config["device"])
    evaluator = _ProbeEvaluator(config, model)
    evaluator.eval_collector.data_collect(train_data)
    return evaluator, evaluator.evaluate(eval_data, load_best_model=False)


@torch.no_grad()
def prior_probe(config, model, train_data, eval_data):
    """``{"E0": {...}, "E": {...}}``: the probe's metrics on the initial and the refined table."""
    table = model.item_table
    return {
        name: dict(probe_item_table(config, train_data, eval_data, rows)[1])
        for name, rows in (("E0", table.E0), ("E", table.E))
    }
