"""The fairness table's figures: per-group NDCG@10 bars and accuracy against unfairness."""

from benchmarks.lib.protocol import GROUPS, TOPK

MARKERS = "osD^v<>PX*"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(plt):
    return plt.get_cmap("tab20").colors  # one colour per method (the default cycle has 10)


def labels(table):
    """Each row's legend label: with its number of seeds when the rows have different seeds
    (a ``--finished_only`` table)."""
    mixed = table["seeds"].nunique() > 1
    return [f"{m} ({n} seed{'s' if n > 1 else ''})" if mixed else m for m, n in zip(table["method"], table["seeds"])]


def _save(fig, plt, path):
    from recbole_bifair.fileio import atomic_path

    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def group_bars(table, path, dataset, profile):
    """Per-group test NDCG@10 of every row, head to tail."""
    import numpy as np

    plt = _pyplot()
    colors, names = _colors(plt), labels(table)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(table)
    x = np.arange(GROUPS)
    for i, (_, row) in enumerate(table.iterrows()):
        ax.bar(x + i * width, [row[f"ndcg_pop{g}"] for g in range(1, GROUPS + 1)], width, label=names[i],
               color=colors[i % len(colors)])
    ax.set_xticks(x + 0.4 - width / 2, [f"pop{g}" + (" (head)" if g == 1 else " (tail)" if g == GROUPS else "")
                                        for g in range(1, GROUPS + 1)])
    ax.set_ylabel(f"test NDCG@{TOPK}")
    ax.set_title(f"Per-group NDCG@{TOPK} on {dataset} ({profile} profile)")
    ax.legend(ncol=4, fontsize=7)
    _save(fig, plt, path)


def pareto(table, path):
    """Overall NDCG@10 against the CV of group NDCG@10, one point per row (bars: std over seeds)."""
    plt = _pyplot()
    colors, names = _colors(plt), labels(table)
    fig, ax = plt.subplots(figsize=(8.5, 5))
    for i, (_, row) in enumerate(table.iterrows()):
        # error bars: the spread over seeds, when there are several
        ax.errorbar(row["cv"], row[f"ndcg@{TOPK}"], xerr=row.get("cv_std"), yerr=row.get(f"ndcg@{TOPK}_std"),
                    fmt=MARKERS[i % len(MARKERS)], color=colors[i % len(colors)], ms=6, capsize=2, lw=0.8,
                    label=names[i])
    ax.set_xlabel(f"CV of group NDCG@{TOPK} (lower is fairer)")
    ax.set_ylabel(f"overall NDCG@{TOPK}")
    spread = " (bars: std over seeds)" if "cv_std" in table else ""
    ax.set_title(f"Accuracy vs unfairness, up and left is better{spread}", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, plt, path)


def write_figures(table, stem, dataset, profile):
    """``<stem>-groups.png`` and ``<stem>-pareto.png``."""
    group_bars(table, stem + "-groups.png", dataset, profile)
    pareto(table, stem + "-pareto.png")
