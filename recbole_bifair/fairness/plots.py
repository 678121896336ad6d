"""The per-run group figure, drawn from a GroupReport's tables (``by_group``, ``by_tail``) and the
figures derived from them, and nothing else.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot, so that importing the plugin
never changes the backend of the user's own session (and nothing needs a display).
"""

import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recbole_bifair.fileio import atomic_path

SHARE_LABELS = ("top-{k} slots", "training interactions", "items")


def draw_group_figure(report, title=None):
    """Left: NDCG@k per group for every k (groups without evaluated users marked, no bar), with
    the spread of NDCG@k over the groups. Middle: exposure share at the largest k against
    training-interaction and item shares, with IFairLRS's MGU/DGU and the exposure disparity.
    Right: the same shares for head vs. long tail, with the popularity-bias figures and the
    head/tail NDCG (LLM-ESR's split)."""
    by_group, by_tail, topk = report.by_group, report.by_tail, report.topk
    k = max(topk)
    unfairness = report.unfairness()
    groups = by_group["group"].tolist()
    x = np.arange(len(groups))
    fig = Figure(figsize=(max(12, 1.6 * len(groups) + 8), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, middle, right = fig.subplots(1, 3, width_ratios=[len(groups), len(groups), 2.4])
    if title:
        # wrap=True breaks the line at the figure's width instead of cutting it off at both ends.
        fig.suptitle(title, fontsize=10, wrap=True)

    width = 0.8 / len(topk)
    for i, cutoff in enumerate(topk):
        left.bar(x + (i - (len(topk) - 1) / 2) * width, by_group[f"ndcg@{cutoff}"].fillna(0).to_numpy(), width,
                 label=f"NDCG@{cutoff}")
    for position in x[by_group["n_users"].to_numpy() == 0]:
        left.text(position, 0, "no users", ha="center", va="bottom", rotation=90, fontsize=8)
    ndcg = unfairness[f"ndcg@{k}"]
    _title(left, "accuracy per item group",
           f"NDCG@{k}: CV {_num(ndcg['cv'])}, min/mean {_num(ndcg['min_mean'])}, gap {_num(ndcg['gap'])}")
    left.set_ylabel("NDCG")

    exposure = unfairness[f"exposure@{k}"]
    _share_bars(middle, x, by_group, k)
    _title(middle, f"share of top-{k} slots vs. share of data",
           f"MGU@{k} {_num(exposure['mgu'])}, DGU@{k} {_num(exposure['dgu'])}, "
           f"disparity (TV) {_num(exposure['vs_interactions'])}")
    middle.set_ylabel("share")

    for ax in (left, middle):
        ax.set_xticks(x, groups, rotation=30 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center")
        ax.legend(fontsize=8)

    popularity = unfairness[f"popularity@{k}"]
    _share_bars(right, np.arange(2), by_tail, k)
    labels = [f"{side}\nNDCG@{k} {_num(value)}\n{users} users"
              for side, value, users in zip(by_tail["group"], by_tail[f"ndcg@{k}"], by_tail["n_users"])]
    right.set_xticks(np.arange(2), labels, fontsize=8)
    _title(right, "head vs. long tail",
           f"APLT@{k} {_num(popularity['aplt'])}, ACLT {_num(popularity['aclt'], 2)}, ARP {_num(popularity['arp'], 1)}\n"
           f"PopRSP@{k} {_num(popularity['poprsp'])}, PopREO@{k} {_num(popularity['popreo'])}")
    right.legend(fontsize=7)
    return fig


def _share_bars(ax, x, table, k):
    columns = (f"exposure@{k}", "train_share", "item_share")
    width = 0.8 / len(columns)
    for i, (column, label) in enumerate(zip(columns, SHARE_LABELS)):
        ax.bar(x + (i - 1) * width, table[column].fillna(0).to_numpy(), width, label=label.format(k=k))


def _title(ax, title, figures):
    ax.set_title(f"{title}\n{figures}", fontsize=9)


def _num(value, decimals=3):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def save_group_figure(report, path, title=None):
    """Draw and write ``path`` (PNG) atomically; return the absolute path."""
    fig = draw_group_figure(report, title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return os.path.abspath(path)
