"""Items a user has already interacted with, kept out of sequential full ranking (``eval_exclude_seen``).

RecBole's full-ranking evaluation removes each user's training items from the ranking of a
*general* recommender (``FullSortEvalDataLoader`` hands the trainer a ``history_index``) but not
of a *sequential* one: its sequential collate returns ``None`` there, so a SASRec may put the
movies a user has already rated at the top of the list and push the next one down. The protocol
of the sequential papers whose numbers this project compares with ranks unseen items only: SASRec
and BERT4Rec, SASRec+ (Klenitskiy & Vasilev, RecSys 2023: ``filter_seen: True`` over the whole
history), gSASRec. On data where no user interacts with an item twice (ml-100k, ml-1m, Amazon
Beauty 5-core, steam-100k all have no repeated (user, item) pair) a seen item can never be the next
one, so ranking seen items only displaces the target: on ml-1m the same SASRec checkpoint (window
200, pre-norm layout, after three epochs) has validation NDCG@10 0.0949 with seen items excluded
and 0.0597 without (docs/METHOD.md 3c, benchmarks/results/select-recipe/README.md).

``eval_exclude_seen``:

- ``auto`` (default): exclude when the dataset has no repeated (user, item) pair, else rank as
  RecBole does (on data with repeats, a seen item can be the right answer);
- ``True``: exclude seen items on any data (a seen target is then excluded too: it cannot be hit);
- ``False``: RecBole's sequential ranking, every item ranked (the protocol of this project's runs
  before the key existed).

The seen items of an evaluation row are the user's items in the training split and the items of
the row's input window (under leave-one-out, the validation item is the last item of a test
row's window). That is the user's whole history before the target whenever the evaluation items
of a user fit in the window (leave-one-out: one validation item). General recommenders are left
to RecBole, which always excludes training items.
"""

from logging import getLogger

import numpy as np
import torch
from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader
from recbole.utils import ModelType

from recbole_bifair.errors import ConfigError


def has_repeats(dataset):
    """Whether some user interacts with the same item more than once in ``dataset``."""
    uid = dataset.inter_feat[dataset.uid_field].numpy().astype(np.int64)
    iid = dataset.inter_feat[dataset.iid_field].numpy().astype(np.int64)
    pairs = uid * int(dataset.item_num) + iid
    return len(np.unique(pairs)) < len(pairs)


def resolve_exclude_seen(config, dataset):
    """``eval_exclude_seen`` of the run as a bool (``auto`` decided on ``dataset``, the whole
    dataset before the split); False for models that are not sequential (RecBole's loaders)."""
    value = config["eval_exclude_seen"]
    if value is None:
        value = "auto"
    if isinstance(value, str) and value.lower() in ("true", "false"):  # from the command line
        value = value.lower() == "true"
    if not (isinstance(value, bool) or value == "auto"):
        raise ConfigError(f"eval_exclude_seen: {value!r} is not one of auto, True, False (auto: exclude the items a "
                          f"user has seen from sequential full ranking when no user repeats an item)")
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return False
    if value == "auto":
        value = not has_repeats(dataset)
        getLogger().info(f"eval_exclude_seen auto: {dataset.dataset_name} has "
                         f"{'no' if value else 'some'} repeated (user, item) pairs, so seen items are "
                         f"{'excluded from' if value else 'kept in'} full ranking")
    return bool(value)


class SeenItems:
    """Each user's training items (CSR over user ids) and the seen-item index of a batch."""

    def __init__(self, train_dataset):
        ds = train_dataset
        uid = ds.inter_feat[ds.uid_field].numpy().astype(np.int64)
        iid = ds.inter_feat[ds.iid_field].numpy().astype(np.int64)
        if ds.item_id_list_field in ds.inter_feat:
            # a sequential training split: each row is a target and its window; a history's first
            # item is never a target, so the windows' first items are added
            first = ds.inter_feat[ds.item_id_list_field][:, 0].numpy().astype(np.int64)
            keep = first > 0
            uid, iid = np.r_[uid, uid[keep]], np.r_[iid, first[keep]]
        pairs = np.unique(uid * int(ds.item_num) + iid)
        users, items = pairs // int(ds.item_num), pairs % int(ds.item_num)
        self.indptr = np.r_[0, np.cumsum(np.bincount(users, minlength=int(ds.user_num)))]
        self.indices = items
        self.uid_field, self.seq_field = ds.uid_field, ds.item_id_list_field

    def items(self, uid):
        return self.indices[self.indptr[uid]:self.indptr[uid + 1]]

    def history_index(self, interaction):
        """``(rows, items)`` of RecBole's ``history_index``: for each row of the batch, the user's
        training items and the items of its input window (padding left out)."""
        uids = interaction[self.uid_field].cpu().numpy()
        counts = self.indptr[uids + 1] - self.indptr[uids]
        rows = np.repeat(np.arange(len(uids)), counts)
        items = np.concatenate([self.items(u) for u in uids]) if len(uids) else np.zeros(0, np.int64)
        seq = interaction[self.seq_field].cpu()
        seq_rows, seq_pos = torch.nonzero(seq > 0, as_tuple=True)
        return (torch.cat([torch.from_numpy(rows), seq_rows]),
                torch.cat([torch.from_numpy(items.astype(np.int64)), seq[seq_rows, seq_pos]]))


class SeenMaskedFullSortEvalDataLoader(FullSortEvalDataLoader):
    """RecBole's sequential full-ranking loader, with the seen items of each row as the
    ``history_index`` that its collate leaves ``None`` (the trainer sets those scores to -inf)."""

    def __init__(self, config, dataset, sampler, seen, shuffle=False):
        self.seen = seen
        super().__init__(config, dataset, sampler, shuffle=shuffle)

    def collate_fn(self, index):
        interaction, history_index, positive_u, positive_i = super().collate_fn(index)
        if history_index is None:
            history_index = self.seen.history_index(interaction)
        return interaction, history_index, positive_u, positive_i


def exclude_seen(config, dataset, train_data, eval_loaders):
    """``eval_loaders`` with seen items excluded when ``eval_exclude_seen`` says so (full-ranking
    loaders of a sequential model), else unchanged."""
    if not resolve_exclude_seen(config, dataset):
        return eval_loaders
    seen = SeenItems(train_data._dataset)
    return tuple(
        SeenMaskedFullSortEvalDataLoader(config, loader._dataset, loader._sampler, seen)
        if type(loader) is FullSortEvalDataLoader else loader
        for loader in eval_loaders)
