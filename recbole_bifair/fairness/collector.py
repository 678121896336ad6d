"""A RecBole Collector that also keeps what per-group metrics need.

RecBole's Collector keeps the top-k items only when a metric asks for them and never keeps which
item(s) each evaluated user was tested on, so no metric can say how a group of items fares. This
one keeps, for every ranking evaluation:

- ``rec.items``: ``(n_rows, max(topk))`` top-k item ids, best first (one row per score row of the
  evaluation: per test sample for sequential full ranking, per user otherwise);
- ``rec.positives``: ``(n_pairs, 2)`` pairs ``(row, item id)`` of the ground-truth items;
- ``rec.users``: ``(n_rows,)`` internal user id of every row;
- ``data.item_groups``: the :class:`~recbole_bifair.fairness.groups.ItemGroups` of the training split.

``last_struct`` is the data struct of the latest evaluation (what the end-of-run report reads).
"""

import torch
from recbole.utils import EvaluatorType

from recbole_bifair.compat import SafeCollector
from recbole_bifair.fairness.groups import build_item_groups

PER_EVALUATION_KEYS = ("rec.positives", "rec.users")


class FairnessCollector(SafeCollector):
    def __init__(self, config):
        super().__init__(config)
        self.last_struct = None

    def data_collect(self, train_data):
        super().data_collect(train_data)
        self.data_struct.set("data.item_groups", build_item_groups(self.config, train_data.dataset))

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if self.config["eval_type"] != EvaluatorType.RANKING:
            return
        if not self.register.need("rec.items"):
            _, topk_idx = torch.topk(scores_tensor, max(self.topk), dim=-1)
            self.data_struct.update_tensor("rec.items", topk_idx)
        # positive_u counts rows within the batch; rows so far = users collected so far.
        offset = len(self.data_struct["rec.users"]) if "rec.users" in self.data_struct else 0
        pairs = torch.stack([positive_u.long().cpu() + offset, positive_i.long().cpu()], dim=1)
        self.data_struct.update_tensor("rec.positives", pairs)
        users = _row_users(interaction, self.config["USER_ID_FIELD"], len(scores_tensor))
        self.data_struct.update_tensor("rec.users", users)

    def get_data_struct(self):
        # The groups are read-only and can be large: share them instead of deep-copying them.
        groups = self.data_struct._data_dict.pop("data.item_groups", None)
        struct = super().get_data_struct()
        for key in PER_EVALUATION_KEYS:
            if key in self.data_struct:
                del self.data_struct[key]
        if groups is not None:
            self.data_struct.set("data.item_groups", groups)
            struct.set("data.item_groups", groups)
        self.last_struct = struct
        return struct


def _row_users(interaction, uid_field, n_rows):
    """Internal user id of every score row.

    Full ranking has one interaction row per score row. Sampled ranking has every user's positive
    and negative rows next to each other and one score row per user, in that order.
    """
    users = interaction[uid_field].cpu()
    if len(users) != n_rows:
        users = torch.unique_consecutive(users)
    if len(users) != n_rows:
        raise RuntimeError(f"cannot match {n_rows} score rows to the users of the evaluation batch")
    return users
