"""Fake finished runs of the fairness benchmark: result JSONs, with saved test rankings where a
test needs them, for the table and statistics code of ``benchmarks.lib``."""

import json
import os

import numpy as np
import pandas as pd

N_ITEMS, N_USERS = 40, 60


def fake_run(folder, seed, quality):
    """A result JSON with saved test rankings: users hit their target with probability ``quality``."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    items = [f"i{i}" for i in range(1, N_ITEMS + 1)]
    counts = np.arange(N_ITEMS, 0, -1) * 3
    groups = [f"pop{1 + i * 5 // N_ITEMS}" for i in range(N_ITEMS)]
    pd.DataFrame({"item": items, "group": groups, "train_count": counts}).to_csv(
        os.path.join(folder, "run.item_groups.csv"), index=False)
    rows = []
    for u in range(N_USERS):
        target = items[(u * 7 + 3) % N_ITEMS]
        ranked = list(rng.permutation(items)[:10])
        if rng.random() < quality and target not in ranked:
            ranked[int(rng.integers(0, 10))] = target
        rows.append({"user": f"u{u}", "target": target, "topk": " ".join(ranked)})
    pd.DataFrame(rows).to_csv(os.path.join(folder, "run.rankings.csv"), index=False)
    test = {"ndcg@10": 0.1, "recall@10": 0.2, "ndcgcv@10": 0.5, "ndcgminmean@10": 0.3, "ndcggap@10": 0.1,
            "exposuredisparity@10": 0.4, "itemexposuredisparity@10": 0.6}
    test.update({f"groupndcg@10[pop{g}]": 0.1 * g for g in range(1, 6)})
    path = os.path.join(folder, "run.json")
    with open(path, "w") as f:
        json.dump({"test_result": test, "epochs_trained": 3, "seconds_per_epoch": 1.0, "total_seconds": 3.0}, f)
    return path


def with_true_figures(path):
    """Give a fake run's JSON the NDCG@10 and CV of its own saved rankings (public bootstrap.figures)."""
    from benchmarks.lib.stats import test_rankings
    from recbole_bifair.fairness.bootstrap import figures

    groups, topk, positives, _ = test_rankings(path)
    point = figures(groups, topk, positives, 10)
    with open(path) as f:
        record = json.load(f)
    record["test_result"].update({"ndcg@10": point["ndcg"], "ndcgcv@10": point["cv"]})
    with open(path, "w") as f:
        json.dump(record, f)
    return path


def point_run(folder, ndcg, cv):
    """A result JSON holding only the test NDCG@10 and CV (what the curve gap reads)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "run.json")
    with open(path, "w") as f:
        json.dump({"test_result": {"ndcg@10": ndcg, "ndcgcv@10": cv}}, f)
    return path
