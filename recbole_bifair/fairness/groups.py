"""Item groups: the one definition shared by the fairness-aware trainers and the evaluator.

Groups are built from the *training* split only (METHOD.md section 2):

- ``item_groups: popularity`` (default): items seen in training are sorted by their number of
  training interactions (most first; ties by internal item id, so the cut is deterministic) and cut
  into ``n_item_groups`` contiguous groups, ``pop1`` (head) to ``popK`` (tail), either so that each
  group holds about the same share of training interactions (``group_split: interactions``,
  default: an item belongs to the group whose share interval holds the midpoint of its own mass)
  or the same number of items (``group_split: items``). Items never seen in training are added
  to the tail group afterwards, so they never move a cut.
- ``item_groups: attribute``: one group per value of the item field ``group_field`` (a token or
  token_seq field of the ``.item`` file, loaded through ``load_col``). A multi-valued item joins
  the group of its first value (``group_multi_value: first``) or of its value shared by the fewest
  items (``rarest``). Items without a value form the group ``[none]``. ``n_item_groups`` is not
  used. Groups are ordered by training interactions, most first.

"Training interactions" are RecBole's ``dataset.item_counter`` on the training split, the counter
RecBole's own AveragePopularity and TailPercentage use; for sequential data these are the training
targets, i.e. every training interaction except each user's first.

Long-tail items (for APLT, ACLT, PopREO, PopRSP and the head/tail metrics) are a second, two-way
split of the same items, by ``long_tail``:

- ``group`` (default): the items of the last group (``popK``; for attribute groups, the group with
  the fewest training interactions). With the default 5 equal-share popularity groups this is
  about the 20% of training interactions that Elliot's rule leaves in the tail.
- ``share`` (Elliot, ``elliot/evaluation/popularity_utils.py``): the head ("short head") is the
  smallest prefix of items, most popular first, whose training interactions reach
  ``long_tail_share`` (0.8) of all training interactions; every other item is long-tail.
- ``threshold`` (LLM-ESR, ``utils/utils.py: metric_pop_report``): items with fewer than
  ``long_tail_threshold`` (20) training interactions are long-tail.

Items never seen in training are long-tail under every rule.
"""

import numpy as np
import pandas as pd
import torch
from recbole.utils import FeatureType

from recbole_bifair.errors import ConfigError, DataError
from recbole_bifair.fileio import atomic_path

#: The values ``properties/overall.yaml`` sets; used where a config lacks the key (a stock RecBole
#: Config, or a config written before these keys existed).
GROUP_DEFAULTS = {
    "item_groups": "popularity",
    "n_item_groups": 5,
    "group_split": "interactions",
    "group_field": None,
    "group_multi_value": "first",
}
LONG_TAIL_DEFAULTS = {"long_tail": "group", "long_tail_share": 0.8, "long_tail_threshold": 20}
LONG_TAIL_RULES = ("group", "share", "threshold")
KINDS = ("popularity", "attribute")
SPLITS = ("interactions", "items")
MULTI_VALUE = ("first", "rarest")
#: Group of the padding row (internal item id 0), which is no item.
PADDING_GROUP = -1
NO_VALUE = "[none]"


def group_setting(config, key):
    value = config[key] if key in config else None
    defaults = LONG_TAIL_DEFAULTS if key in LONG_TAIL_DEFAULTS else GROUP_DEFAULTS
    return defaults[key] if value is None else value


class ItemGroups:
    """Which group every item belongs to, and how much training data each item has.

    Attributes:
        kind: ``"popularity"``, ``"attribute"``, or ``"loaded"`` (read back by ``load_rankings``).
        names: group names, index = group id (``pop1`` ... for popularity, attribute values else).
        group_of: ``LongTensor (n_items,)`` indexed by RecBole internal item id; row 0 (padding)
            holds ``PADDING_GROUP`` (-1) so that using it as an index fails loudly.
        train_count: ``LongTensor (n_items,)`` training interactions of every item (0 for padding).
        item_tokens: ``ndarray (n_items,)`` of the original item tokens (row 0 is ``[PAD]``).
        description: one line saying how the groups were made.
        tail: ``ndarray (n_items,)`` bool, the long-tail items (padding: False); the last group
            unless ``set_long_tail`` chose another rule.
        tail_description: one line saying which items are long-tail.
    """

    def __init__(self, kind, names, group_of, train_count, item_tokens, description):
        self.kind = kind
        self.names = list(names)
        self.group_of = torch.as_tensor(group_of, dtype=torch.long)
        self.train_count = torch.as_tensor(train_count, dtype=torch.long)
        self.item_tokens = np.asarray(item_tokens)
        self.description = description
        keys = [name.lower() for name in self.names]
        if len(set(keys)) != len(keys):
            # Metric keys carry the lower-cased name (RecBole lower-cases valid_metric).
            raise DataError(f"item group names {self.names} differ only by case; rename the values")
        self.set_long_tail(LONG_TAIL_DEFAULTS["long_tail"])

    def set_long_tail(self, rule, share=LONG_TAIL_DEFAULTS["long_tail_share"],
                      threshold=LONG_TAIL_DEFAULTS["long_tail_threshold"]):
        """Choose the long-tail items by ``rule`` (see the module docstring); returns self."""
        self.tail, self.tail_description = long_tail_items(
            self.group_of.numpy(), self.train_count.numpy(), self.names, rule, share, threshold)
        self.tail_description = f"{self.tail_description} ({int(self.tail.sum())} of {self.n_items - 1} items)"
        return self

    @property
    def n_groups(self):
        return len(self.names)

    @property
    def n_items(self):
        """Number of rows of ``group_of``: RecBole's item_num, padding included."""
        return len(self.group_of)

    def items_per_group(self):
        """Number of real items (padding excluded) in every group, as ``ndarray (n_groups,)``."""
        real = self.group_of[1:].numpy()
        return np.bincount(real, minlength=self.n_groups)

    def train_per_group(self):
        """Training interactions of every group, as ``ndarray (n_groups,)``."""
        real = self.group_of[1:].numpy()
        return np.bincount(real, weights=self.train_count[1:].numpy(), minlength=self.n_groups).astype(np.int64)

    def to_frame(self):
        """One row per real item: ``item`` (token), ``group`` (name), ``train_count``."""
        group_ids = self.group_of[1:].numpy()
        return pd.DataFrame({
            "item": self.item_tokens[1:],
            "group": np.asarray(self.names, dtype=object)[group_ids],
            "train_count": self.train_count[1:].numpy(),
        })

    @classmethod
    def popularity(cls, train_count, n_groups, split, item_tokens):
        """Popularity groups from per-item training counts (``train_count[0]`` is padding)."""
        train_count = np.asarray(train_count, dtype=np.int64)
        items = np.arange(1, len(train_count))
        seen = items[train_count[items] > 0]
        # Most interactions first; a stable sort keeps ties in item id order.
        seen = seen[np.argsort(-train_count[seen], kind="stable")]
        if split == "interactions":
            starts = _equal_share_starts(train_count[seen], n_groups)
        else:
            starts = _equal_size_starts(len(seen), n_groups)
        group_of = np.full(len(train_count), n_groups - 1, dtype=np.int64)
        group_of[0] = PADDING_GROUP
        group_of[seen] = np.searchsorted(starts, np.arange(len(seen)), side="right") - 1
        rule = "equal share of training interactions" if split == "interactions" else "equal numbers of items"
        names = [f"pop{g + 1}" for g in range(n_groups)]
        description = (f"popularity: {n_groups} groups by {rule}, pop1 = most popular; "
                       f"{len(items) - len(seen)} items unseen in training are in pop{n_groups}")
        return cls("popularity", names, group_of, train_count, item_tokens, description)

    @classmethod
    def attribute(cls, values, train_count, multi_value, field, item_tokens):
        """Attribute groups from ``values``: ``ndarray (n_items, L)`` of value names, ``None``
        where absent, in the field's order (L = 1 for a single-valued field)."""
        train_count = np.asarray(train_count, dtype=np.int64)
        n_items = len(train_count)
        chosen = np.full(n_items, NO_VALUE, dtype=object)
        holders = pd.Series([v for row in values[1:] for v in dict.fromkeys(row) if v is not None]).value_counts()
        for item in range(1, n_items):
            present = [v for v in values[item] if v is not None]
            if not present:
                continue
            if multi_value == "first":
                chosen[item] = present[0]
            else:
                chosen[item] = min(present, key=lambda v: holders[v])
        real = pd.DataFrame({"value": chosen[1:], "count": train_count[1:]})
        totals = real.groupby("value")["count"].sum()
        # Most training interactions first, ties by name: the same head-to-tail order as popularity.
        names = sorted(totals.index, key=lambda name: (-totals[name], name))
        index = {name: g for g, name in enumerate(names)}
        group_of = np.array([PADDING_GROUP] + [index[v] for v in chosen[1:]], dtype=np.int64)
        description = f"attribute: {len(names)} groups by item field '{field}' ({multi_value} value)"
        return cls("attribute", names, group_of, train_count, item_tokens, description)


def long_tail_items(group_of, train_count, names, rule, share, threshold):
    """``(tail, description)``: the bool mask (n_items,) of long-tail items under ``rule``
    (``names``: the group names, last = the tail group)."""
    group_of = np.asarray(group_of)
    train_count = np.asarray(train_count, dtype=np.int64)
    if rule == "group":
        tail = group_of == len(names) - 1
        description = f"long tail: the last item group, {names[-1]}"
    elif rule == "share":
        items = np.arange(1, len(train_count))
        # Most popular first, ties in item id order, as Elliot's stable sort of its item map.
        ranked = items[np.argsort(-train_count[items], kind="stable")]
        cumulative = np.cumsum(train_count[ranked])
        # Elliot adds items until the remaining budget share * total is <= 0: the item that
        # reaches the share still belongs to the head.
        n_head = int(np.searchsorted(cumulative, share * cumulative[-1], side="left")) + 1
        tail = np.ones(len(train_count), dtype=bool)
        tail[ranked[:n_head]] = False
        description = f"long tail: items outside the short head holding {share:g} of training interactions (Elliot)"
    elif rule == "threshold":
        tail = train_count < threshold
        description = f"long tail: items with fewer than {threshold} training interactions (LLM-ESR)"
    else:
        raise ConfigError(f"long_tail: '{rule}' is not one of {', '.join(LONG_TAIL_RULES)}")
    tail = np.array(tail, dtype=bool)
    tail[0] = False
    return tail, description


def _check_long_tail_settings(config):
    rule = group_setting(config, "long_tail")
    share = group_setting(config, "long_tail_share")
    threshold = group_setting(config, "long_tail_threshold")
    if rule not in LONG_TAIL_RULES:
        raise ConfigError(f"long_tail: '{rule}' is not one of {', '.join(LONG_TAIL_RULES)}")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ConfigError(f"long_tail_share: {share!r} is not a number in (0, 1]; set e.g. long_tail_share: 0.8")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 1:
        raise ConfigError(f"long_tail_threshold: {threshold!r} is not an integer >= 1; set e.g. long_tail_threshold: 20")
    return rule, float(share), int(threshold)


def _equal_share_starts(counts, n_groups):
    """Start index of every group in ``counts`` (sorted, most first): item i joins the group whose
    share interval ``[g/K, (g+1)/K)`` holds the midpoint of its mass; then every group gets at
    least one item (an item heavier than 1/K would otherwise leave the next group empty)."""
    mass = counts / counts.sum()
    midpoints = np.cumsum(mass) - mass / 2
    starts = np.searchsorted(midpoints, np.arange(1, n_groups) / n_groups, side="left")
    return _nonempty([0, *starts], len(counts))


def _equal_size_starts(n_seen, n_groups):
    sizes = [len(chunk) for chunk in np.array_split(np.arange(n_seen), n_groups)]
    return np.concatenate([[0], np.cumsum(sizes)[:-1]])


def _nonempty(starts, n):
    """Move group starts the least so that ``0 = s_0 < s_1 < ... < s_{K-1} < n`` (needs n >= K)."""
    starts = list(starts)
    k = len(starts)
    for g in range(1, k):
        starts[g] = max(starts[g], starts[g - 1] + 1)
    upper = n
    for g in range(k - 1, 0, -1):
        starts[g] = min(starts[g], upper - 1)
        upper = starts[g]
    return np.asarray(starts, dtype=np.int64)


def item_train_counts(dataset):
    """``int64 (item_num,)``: training interactions of every item of ``dataset`` (the TRAINING
    split), 0 for padding and unseen items. The one counting rule of the plugin: item groups, the
    IPS weights, post-hoc debiasing and logit adjustment all read these counts."""
    train_count = np.zeros(dataset.item_num, dtype=np.int64)
    for item, count in dataset.item_counter.items():
        train_count[item] = count
    return train_count


def build_item_groups(config, dataset):
    """The item groups that ``config`` asks for, from ``dataset``, which must be the TRAINING split.

    Raises ConfigError naming the key when the settings cannot work for this dataset.
    """
    kind = group_setting(config, "item_groups")
    if kind not in KINDS:
        raise ConfigError(f"item_groups: '{kind}' is not one of {', '.join(KINDS)}")
    iid_field = dataset.iid_field
    train_count = item_train_counts(dataset)
    item_tokens = np.asarray(dataset.field2id_token[iid_field], dtype=object)
    long_tail = _check_long_tail_settings(config)
    if kind == "popularity":
        n_groups, split = _check_popularity_settings(config, dataset, train_count)
        return ItemGroups.popularity(train_count, n_groups, split, item_tokens).set_long_tail(*long_tail)
    field, multi_value = _check_attribute_settings(config, dataset)
    groups = ItemGroups.attribute(_field_values(dataset, field), train_count, multi_value, field, item_tokens)
    if groups.n_groups < 2:
        raise ConfigError(
            f"group_field: item field '{field}' of dataset '{dataset.dataset_name}' has a single value "
            f"({groups.names[0]}), so there is nothing to compare; choose a field with at least 2 values"
        )
    return groups.set_long_tail(*long_tail)


def validate_group_config(config, dataset):
    """Check the item-group settings against ``dataset`` (the training split) before training.

    Builds the groups once (cheap) so that every rule is checked by the code that uses it; also
    checks a ``valid_metric`` that names one group, e.g. ``GroupNDCG@10[pop5]``.
    """
    groups = build_item_groups(config, dataset)
    valid_metric = (config["valid_metric"] if "valid_metric" in config else None) or ""
    if valid_metric.endswith("]") and "[" in valid_metric:
        name = valid_metric[valid_metric.index("[") + 1:-1].lower()
        known = [n.lower() for n in groups.names]
        if name not in known:
            raise ConfigError(
                f"valid_metric: '{valid_metric}' names item group '{name}', which does not exist; "
                f"the groups are {', '.join(known)}"
            )
    return groups


def _check_popularity_settings(config, dataset, train_count):
    n_groups = group_setting(config, "n_item_groups")
    split = group_setting(config, "group_split")
    if isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer)) or n_groups < 2:
        raise ConfigError(f"n_item_groups: {n_groups!r} is not an integer >= 2; set e.g. n_item_groups: 5")
    if split not in SPLITS:
        raise ConfigError(f"group_split: '{split}' is not one of {', '.join(SPLITS)}")
    n_seen = int((train_count[1:] > 0).sum())
    if n_groups > n_seen:
        raise ConfigError(
            f"n_item_groups: {n_groups} groups, but only {n_seen} of the {dataset.item_num - 1} items of "
            f"dataset '{dataset.dataset_name}' appear in the training split; set n_item_groups to at most {n_seen}"
        )
    return int(n_groups), split


def _check_attribute_settings(config, dataset):
    field = group_setting(config, "group_field")
    multi_value = group_setting(config, "group_multi_value")
    if multi_value not in MULTI_VALUE:
        raise ConfigError(f"group_multi_value: '{multi_value}' is not one of {', '.join(MULTI_VALUE)}")
    if not field:
        raise ConfigError("group_field: item_groups is 'attribute' but group_field is not set; "
                          "name an item field, e.g. group_field: class")
    item_fields = list(dataset.item_feat.columns) if dataset.item_feat is not None else []
    if field not in item_fields:
        loaded = ", ".join(f for f in item_fields if f != dataset.iid_field) or "none"
        raise ConfigError(
            f"group_field: '{field}' is not an item field of dataset '{dataset.dataset_name}' "
            f"(loaded item fields: {loaded}); check the .item file and list the field in "
            f"load_col, e.g. load_col: {{item: [{dataset.iid_field}, {field}]}}"
        )
    if dataset.field2type[field] not in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ):
        raise ConfigError(
            f"group_field: '{field}' is a {dataset.field2type[field].value} field; groups need a token or "
            f"token_seq field (bin a numeric field into tokens first)"
        )
    return field, multi_value


def _field_values(dataset, field):
    """``ndarray (n_items, L)`` of value names of ``field``, ``None`` where absent (token id 0)."""
    ids = dataset.item_feat[field].numpy()
    if ids.ndim == 1:
        ids = ids[:, None]
    tokens = np.asarray(dataset.field2id_token[field], dtype=object)
    values = tokens[ids]
    values[ids == 0] = None
    return values


def write_item_groups_csv(path, groups):
    """Write ``path`` (columns item, group, train_count; one row per real item) atomically."""
    with atomic_path(path) as tmp:
        groups.to_frame().to_csv(tmp, index=False)
    return path
