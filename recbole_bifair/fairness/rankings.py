"""Rankings and item groups as CSV files, so that anyone can recompute the metrics."""

import os
import re

import numpy as np
import pandas as pd

from recbole_bifair.errors import DataError
from recbole_bifair.fairness.groups import PADDING_GROUP, ItemGroups, write_item_groups_csv
from recbole_bifair.fileio import atomic_path


def rankings_frame(struct, dataset):
    """One row per evaluated row: ``user`` token, ``target`` (ground-truth item token(s)) and
    ``topk`` (recommended item tokens, best first), token lists separated by spaces."""
    groups = struct.get("data.item_groups")
    tokens = groups.item_tokens
    topk_items = struct.get("rec.items").numpy()
    positives = struct.get("rec.positives").numpy()
    users = struct.get("rec.users").numpy()
    user_tokens = np.asarray(dataset.field2id_token[dataset.uid_field], dtype=object)[users]

    order = np.argsort(positives[:, 0], kind="stable")
    rows, items = positives[order, 0], positives[order, 1]
    bounds = np.searchsorted(rows, np.arange(len(topk_items) + 1))
    targets = [" ".join(tokens[items[bounds[r]:bounds[r + 1]]]) for r in range(len(topk_items))]
    return pd.DataFrame({
        "user": user_tokens,
        "target": targets,
        "topk": [" ".join(row) for row in tokens[topk_items]],
    })


def save_rankings(run_dir, run_id, struct, dataset):
    """Write ``<run_dir>/<run_id>.rankings.csv`` and ``<run_id>.item_groups.csv`` atomically;
    return both absolute paths."""
    rankings_path = os.path.join(run_dir, f"{run_id}.rankings.csv")
    groups_path = os.path.join(run_dir, f"{run_id}.item_groups.csv")
    frame = rankings_frame(struct, dataset)
    with atomic_path(rankings_path) as tmp:
        frame.to_csv(tmp, index=False)
    write_item_groups_csv(groups_path, struct.get("data.item_groups"))
    return os.path.abspath(rankings_path), os.path.abspath(groups_path)


RANKINGS_COLUMNS = ("user", "target", "topk")
ITEM_GROUPS_COLUMNS = ("item", "group", "train_count")


def load_rankings(rankings_path, item_groups_path, k=None):
    """Read back what ``save_rankings`` wrote (or the same two files made by any other system):
    ``(item_groups, topk_items, positives)``, ready for ``GroupReport`` (or for regrouping with
    ``ItemGroups.popularity(groups.train_count, ...)``).

    Item ids are re-derived from the order of the item groups file (row i is id i + 1), so they
    need not be RecBole's. Groups are in natural name order (pop2 before pop10). ``k``: keep the
    first k items of every list (every list must hold at least k); None: every list must have
    the same length. The long tail is the last group (``groups.set_long_tail`` changes it).

    Raises DataError naming the file and its row (the header is row 1) for an empty file, a missing
    column, an empty item or group name, a duplicated user or item, an item listed twice in one row,
    an item missing from the item groups file, a train_count that is not a count, or a list shorter
    than k.
    """
    items = _read_csv(item_groups_path, ITEM_GROUPS_COLUMNS)
    rankings = _read_csv(rankings_path, RANKINGS_COLUMNS)
    for frame, path in ((items, item_groups_path), (rankings, rankings_path)):
        if frame.empty:
            raise DataError(f"{path} has no row after the header (row 1)")
    groups = _item_groups(items, item_groups_path)
    _no_repeats(rankings["user"], rankings_path, "user",
                hint="a rankings file has one row per evaluated user (put several targets in one row)")
    tokens = groups.item_tokens
    index = {token: i for i, token in enumerate(tokens)}

    def ids(text, row, column):
        try:
            found = [index[token] for token in text.split()]
        except KeyError as err:
            raise DataError(f"{rankings_path} row {row + 2}, column {column}: item {err} is not in "
                            f"{item_groups_path}; use the two files of the same run") from None
        items = [i for i in found if i != 0]  # padding slots ([PAD]) may repeat
        if len(set(items)) < len(items):
            twice = next(i for n, i in enumerate(items) if i in items[:n])
            raise DataError(f"{rankings_path} row {row + 2}, column {column}: item '{tokens[twice]}' is listed twice; "
                            f"a row lists each item once (it would count twice)")
        return found

    topk_items = _top_k([ids(text, r, "topk") for r, text in enumerate(rankings["topk"])], k, rankings_path)
    positives = np.array([(r, item) for r, text in enumerate(rankings["target"]) for item in ids(text, r, "target")],
                         dtype=np.int64).reshape(-1, 2)
    return groups, topk_items, positives


def _item_groups(items, path):
    """The ``ItemGroups`` of an item groups file (row i is item id i + 1), its rows checked."""
    for column, fix in (("item", "write the item's token"),
                        ("group", "write the name of the item's group (an empty name would be a group of its own)")):
        empty = np.flatnonzero((items[column].str.strip() == "").to_numpy())
        if len(empty):
            raise DataError(f"{path} row {empty[0] + 2}, column {column}: empty; {fix}")
    _no_repeats(items["item"], path, "item")
    counts = pd.to_numeric(items["train_count"], errors="coerce")
    bad = np.flatnonzero(~(counts.notna() & (counts >= 0) & (counts == counts.round())))
    if len(bad):
        raise DataError(f"{path} row {bad[0] + 2}, column train_count: "
                        f"'{items['train_count'].iloc[bad[0]]}' is not a count of training interactions (an integer >= 0)")
    tokens = np.concatenate([["[PAD]"], items["item"].to_numpy()]).astype(object)
    names = sorted(items["group"].unique(), key=_natural_key)
    group_id = {name: g for g, name in enumerate(names)}
    group_of = [PADDING_GROUP] + [group_id[name] for name in items["group"]]
    train_count = np.concatenate([[0], counts.to_numpy(dtype=np.int64)])
    return ItemGroups("loaded", names, group_of, train_count, tokens, f"loaded from {path}")


def _top_k(lists, k, path):
    """``[users, k]`` item ids: the first k of every list (k None: every list's common length)."""
    lengths = np.array([len(ranked) for ranked in lists])
    if k is None:
        k = int(lengths[0]) if len(lengths) else 0
        short = np.flatnonzero(lengths != k)
        why = f"row 2 has {k}; pass k (--topk) no larger than the shortest list"
    else:
        short = np.flatnonzero(lengths < k)
        why = f"fewer than k = {k}; pass a smaller k (--topk) or longer lists"
    if len(short):
        raise DataError(f"{path} row {short[0] + 2}, column topk: {lengths[short[0]]} items, {why}")
    return np.array([ranked[:k] for ranked in lists], dtype=np.int64).reshape(len(lists), k)


def _read_csv(path, columns):
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; row 1 must be the header {','.join(columns)}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path} row 1 (header): missing column(s) {', '.join(missing)}; the file needs the "
                        f"columns {', '.join(columns)} (found: {', '.join(map(str, frame.columns)) or 'none'})")
    return frame


def _no_repeats(values, path, column, hint=""):
    repeated = np.flatnonzero(values.duplicated().to_numpy())
    if len(repeated):
        row = repeated[0]
        first = int(np.flatnonzero((values == values.iloc[row]).to_numpy())[0])
        raise DataError(f"{path} row {row + 2}, column {column}: '{values.iloc[row]}' already appears in row "
                        f"{first + 2}" + (f"; {hint}" if hint else ""))


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
