"""Tiny generated RecBole atomic datasets for tests (seconds to train on)."""

import os

import numpy as np

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]
WORDS = ["Star", "Night", "River", "Ghost", "Love", "Dark", "City", "Last", "Blue", "Iron"]


def make_dataset(root, name="tiny", n_users=40, n_items=30, n_inter=500, seed=0, with_item=True, distinct=False):
    """Write ``root/name/name.inter`` (and ``.item``) with a popularity skew; return ``root``.
    ``distinct``: no user interacts with an item twice (as in ml-1m), else repeats happen.

    Items get ml-100k-like fields (movie_title, release_year, class) so that text, attribute
    groups and popularity groups all have something to work on. Item tokens are ``i<n>`` so that
    they never coincide with RecBole's internal ids.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    users = np.concatenate([np.arange(n_users), rng.integers(0, n_users, n_inter - n_users)])
    items = rng.choice(n_items, size=n_inter, p=popularity)
    if distinct:
        for u in range(n_users):
            rows = np.flatnonzero(users == u)
            items[rows] = rng.choice(n_items, size=len(rows), replace=False, p=popularity)
    times = rng.permutation(n_inter).astype(float) + 1e9
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u, i, t in zip(users, items, times):
            f.write(f"u{u}\ti{i}\t{1 + (u + i) % 5}\t{t:.0f}\n")
    if with_item:
        with open(os.path.join(folder, f"{name}.item"), "w") as f:
            f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
            for i in range(n_items):
                title = f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7 + 3) % len(WORDS)]} {i}"
                genres = " ".join(sorted({GENRES[i % len(GENRES)], GENRES[(i * 5 + 1) % len(GENRES)]}))
                f.write(f"i{i}\t{title}\t{1970 + i % 30}\t{genres}\n")
    return root


def tiny_config(data_root, **overrides):
    """Config dict for a fast run on ``make_dataset`` output."""
    config = {
        "data_path": str(data_root),
        "dataset": "tiny",
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 256,
        "hidden_size": 8,
        "inner_size": 16,
        "n_layers": 1,
        "n_heads": 1,
        "MAX_ITEM_LIST_LENGTH": 10,
        "show_progress": False,
        "seed": 2020,
        "state": "WARNING",
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "metrics": ["Recall", "NDCG", "Hit"],
        "valid_metric": "NDCG@10",
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
    }
    config.update(overrides)
    return config


def make_ml1m_like(root, name="ml-1m", n_users=40, n_items=30, n_inter=600, seed=0, titles=None):
    """Write ``root/name/name.inter`` and ``.item`` laid out like ../shared/datasets/ml-1m; return ``root``.

    ``.inter``: user_id, item_id, timestamp (no rating); ``.item``: movie_title, release_year,
    genre (RecBole's ml-1m field names). ``titles`` replaces the generated movie titles (one per
    item, written verbatim). Every item gets at least 5 interactions (properties/dataset/ml-1m.yaml
    keeps items with 5 or more).
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    items = np.concatenate([np.repeat(np.arange(n_items), 5), rng.choice(n_items, size=n_inter - 5 * n_items, p=popularity)])
    users = np.concatenate([np.arange(n_users), rng.integers(0, n_users, n_inter - n_users)])
    rng.shuffle(items)
    times = rng.permutation(n_inter) * 60 + 978300000
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, i, t in zip(users, items, times):
            f.write(f"{u + 1}\t{i + 1}\t{t}\n")
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\n")
        for i in range(n_items):
            title = titles[i] if titles else f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7 + 3) % len(WORDS)]} {i}"
            genres = " ".join(sorted({GENRES[i % len(GENRES)], GENRES[(i * 5 + 1) % len(GENRES)]}))
            f.write(f"{i + 1}\t{title}\t{1970 + i % 30}\t{genres}\n")
    return root
