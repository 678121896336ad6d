"""Sequence-level against prefix training (``seq_accuracy.py``): SASRec on ml-100k at the fairness
benchmark's quick size, one run per (mode, seed), reused by the run cache."""

import json
import os
import statistics

from benchmarks.lib.cache import finished
from benchmarks.lib.paths import WORK as WORK_ROOT
from benchmarks.lib.runs import run_cached

WORK = os.path.join(WORK_ROOT, "seq-accuracy")
PROTOCOL = {
    "model": "SASRec",
    "dataset": "ml-100k",
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "metrics": ["NDCG", "Recall"],
    "topk": [10],
    "valid_metric": "NDCG@10",
    # The fairness benchmark's quick model size: RecBole's SASRec settings (length 50, hidden 64)
    # cost about 300 s per prefix epoch here with the other core busy, i.e. hours per run.
    "MAX_ITEM_LIST_LENGTH": 20,
    "hidden_size": 32,
    "inner_size": 64,
    "train_batch_size": 512,
    "epochs": 100,
    "stopping_step": 5,
    "show_progress": False,
    "state": "INFO",
}
CSV_HEADER = "mode,seed,ndcg@10,recall@10,epochs,best_epoch_valid_ndcg@10,sec_per_epoch,total_minutes"


def mode_keys(mode):
    """The config keys of a mode: ``sequence``, ``prefix``, or ``sequence-s<S>`` (sequence-level
    training with window stride S)."""
    train_mode, _, stride = mode.partition("-s")
    return {"train_mode": train_mode, **({"seq_window_stride": int(stride)} if stride else {})}


def run_one(mode, seed, threads):
    """The result JSON of ``mode`` with ``seed`` (run unless it has finished)."""
    folder = os.path.join(WORK, f"{mode}-seed{seed}")
    os.makedirs(folder, exist_ok=True)
    protocol = dict(PROTOCOL, **mode_keys(mode), seed=seed, results_dir=folder,
                    checkpoint_dir=os.path.join(folder, "saved"))
    protocol_file = os.path.join(folder, "protocol.yaml")
    with open(protocol_file, "w") as f:
        json.dump(protocol, f)  # JSON is YAML
    return run_cached([protocol_file], folder, threads, f"{mode} seed {seed}")[0]


def finished_results(modes, seeds):
    """``{mode: {seed: result}}`` of the runs that have finished, and their CSV lines."""
    csv, per = [CSV_HEADER], {m: {} for m in modes}
    for mode in modes:
        for seed in seeds:
            path = finished(os.path.join(WORK, f"{mode}-seed{seed}"))
            if not path:
                continue
            with open(path) as f:
                r = json.load(f)
            per[mode][seed] = r
            t = r["test_result"]
            csv.append(f"{mode},{seed},{t['ndcg@10']},{t['recall@10']},{r['epochs_trained']},"
                       f"{r['best_valid_score']},{r['seconds_per_epoch']:.2f},{r['total_seconds'] / 60:.1f}")
    return per, csv


def _std(values):
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def summary_rows(per, modes):
    """One Markdown row per mode: means (and std) over its seeds."""
    rows = ["| train_mode | seeds | valid NDCG@10 mean | test NDCG@10 mean (std) | test Recall@10 mean (std) | epochs run (mean) | s / epoch (mean) |",
            "|---|---|---|---|---|---|---|"]
    for mode in modes:
        rs = list(per[mode].values())
        if not rs:
            continue
        nd = [r["test_result"]["ndcg@10"] for r in rs]
        rc = [r["test_result"]["recall@10"] for r in rs]
        rows.append(f"| {mode} | {','.join(str(s) for s in per[mode])} | "
                    f"{statistics.mean(r['best_valid_score'] for r in rs):.4f} | {statistics.mean(nd):.4f} ({_std(nd):.4f}) | "
                    f"{statistics.mean(rc):.4f} ({_std(rc):.4f}) | {statistics.mean(r['epochs_trained'] for r in rs):.1f} | "
                    f"{statistics.mean(r['seconds_per_epoch'] for r in rs):.1f} |")
    return rows


def paired_rows(per, modes):
    """Each mode minus the last one, seed by seed (the seeds both have)."""
    rows = []
    for a in modes[:-1]:
        b = modes[-1]
        common = sorted(set(per[a]) & set(per[b]))
        if common:
            rows += ["", f"Paired by seed, {a} minus {b}:", "",
                     "| seed | NDCG@10 difference | Recall@10 difference |", "|---|---|---|"]
            for s in common:
                ta, tb = per[a][s]["test_result"], per[b][s]["test_result"]
                rows.append(f"| {s} | {ta['ndcg@10'] - tb['ndcg@10']:+.4f} | {ta['recall@10'] - tb['recall@10']:+.4f} |")
    return rows


def table(modes, seeds):
    """``(Markdown rows, CSV lines)`` of the finished runs."""
    per, csv = finished_results(modes, seeds)
    return summary_rows(per, modes) + paired_rows(per, modes), csv
