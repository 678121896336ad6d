"""Synthetic catalogs for the scaling benchmark: Zipf item popularity, 20 interactions per user."""

import os

import numpy as np


def make_catalog(root, n_items, n_inter, seed=0):
    """Write ``root/<name>/<name>.inter`` once and return the dataset name."""
    name = f"synthetic-{n_items}-{n_inter}"
    folder = os.path.join(root, name)
    path = os.path.join(folder, f"{name}.inter")
    if os.path.exists(path):
        return name
    rng = np.random.default_rng(seed)
    n_users = max(n_inter // 20, 1)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity /= popularity.sum()
    # every item at least once, so that the catalog really has n_items items
    items = np.concatenate([np.arange(n_items), rng.choice(n_items, size=max(n_inter - n_items, 0), p=popularity)])[:n_inter]
    users = rng.integers(0, n_users, size=len(items))
    times = rng.permutation(len(items))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        f.writelines(f"u{u}\ti{i}\t{t}\n" for u, i, t in zip(users, items, times))
    os.replace(tmp, path)
    return name
