"""The per-run group figure, drawn from a GroupReport's ``by_group`` table and nothing else.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot, so that importing the plugin
never changes the backend of the user's own session (and nothing needs a display).
"""

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recbole_bifair.fileio import atomic_path


def draw_group_figure(by_group, topk, title=None):
    """Left: NDCG@k per group for every k (groups without evaluated users marked, no bar).
    Right: exposure share at the largest k against training-interaction and item shares."""
    groups = by_group["group"].tolist()
    x = np.arange(len(groups))
    fig = Figure(figsize=(max(8, 1.6 * len(groups) + 4), 4), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    if title:
        fig.suptitle(title, fontsize=10)

    width = 0.8 / len(topk)
    for i, k in enumerate(topk):
        left.bar(x + (i - (len(topk) - 1) / 2) * width, by_group[f"ndcg@{k}"].fillna(0).to_numpy(), width,
                 label=f"NDCG@{k}")
    for position in x[by_group["n_users"].to_numpy() == 0]:
        left.text(position, 0, "no users", ha="center", va="bottom", rotation=90, fontsize=8)
    left.set_title("accuracy per item group")
    left.set_ylabel("NDCG")

    k = max(topk)
    shares = {f"exposure@{k}": by_group[f"exposure@{k}"], "training interactions": by_group["train_share"],
              "items": by_group["item_share"]}
    width = 0.8 / len(shares)
    for i, (label, values) in enumerate(shares.items()):
        right.bar(x + (i - 1) * width, values.to_numpy(), width, label=label)
    right.set_title(f"share of top-{k} slots vs. share of data")
    right.set_ylabel("share")

    for ax in (left, right):
        ax.set_xticks(x, groups, rotation=30 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center")
        ax.legend(fontsize=8)
    return fig


def save_group_figure(by_group, topk, path, title=None):
    """Draw and write ``path`` (PNG) atomically; return the absolute path."""
    fig = draw_group_figure(by_group, topk, title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return os.path.abspath(path)
