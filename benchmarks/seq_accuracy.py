"""Does sequence-level training lose accuracy? SASRec on ml-100k trained to early stopping with
``train_mode: sequence`` and with RecBole's prefix samples (``train_mode: prefix``), 3 seeds.

    python benchmarks/seq_accuracy.py                       # both modes, seeds 2020-2022
    python benchmarks/seq_accuracy.py --modes=sequence --seeds=2020 --jobs=1
    python benchmarks/seq_accuracy.py --modes=sequence,sequence-s5,sequence-s20,prefix   # window strides

A mode ``sequence-s<S>`` is sequence-level training with ``seq_window_stride: S`` (plain
``sequence`` is the default stride, ``MAX_ITEM_LIST_LENGTH // 2`` = 10 here); the stride is chosen
on validation NDCG@10 (mean over the seeds), the table reports both.

Each (mode, seed) is one ``run_recbole_bifair.py`` process with SASRec at the fairness
benchmark's quick size (2 layers, hidden 32, MAX_ITEM_LIST_LENGTH 20, batch 512 targets, lr 1e-3,
dropout 0.5) and early stopping on validation NDCG@10 (``stopping_step`` below). The short window
makes this a strict test of sequence-level training: most ml-100k histories are longer than 20,
so most targets see 11 to 20 items of context where their prefix sample sees 20. Runs write their result JSON under
``benchmarks/work/seq-accuracy/<mode>-seed<seed>/``; a finished run whose recorded config equals
the planned one is reused, so an interrupted benchmark continues where it stopped. The table
(``benchmarks/results/seq-accuracy-ml-100k.md`` / ``.csv``) is made from those JSON files only:
test NDCG@10 / Recall@10 per seed, mean and std over seeds, the paired difference per seed, epochs
and seconds per epoch.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fairness import finished, run_cached  # noqa: E402  (same run cache as the fairness benchmark)

WORK = os.path.join(REPO, "benchmarks", "work", "seq-accuracy")
RESULTS = os.path.join(REPO, "benchmarks", "results")
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


def run_one(mode, seed, threads):
    folder = os.path.join(WORK, f"{mode}-seed{seed}")
    os.makedirs(folder, exist_ok=True)
    train_mode, _, stride = mode.partition("-s")
    stride_key = {"seq_window_stride": int(stride)} if stride else {}
    protocol = dict(PROTOCOL, train_mode=train_mode, **stride_key, seed=seed, results_dir=folder,
                    checkpoint_dir=os.path.join(folder, "saved"))
    protocol_file = os.path.join(folder, "protocol.yaml")
    with open(protocol_file, "w") as f:
        json.dump(protocol, f)  # JSON is YAML
    return run_cached([protocol_file], folder, threads, f"{mode} seed {seed}")[0]


def table(modes, seeds):
    rows, csv = [], ["mode,seed,ndcg@10,recall@10,epochs,best_epoch_valid_ndcg@10,sec_per_epoch,total_minutes"]
    per = {m: {} for m in modes}
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
    rows += ["| train_mode | seeds | valid NDCG@10 mean | test NDCG@10 mean (std) | test Recall@10 mean (std) | epochs run (mean) | s / epoch (mean) |",
             "|---|---|---|---|---|---|---|"]
    for mode in modes:
        rs = list(per[mode].values())
        if not rs:
            continue
        nd = [r["test_result"]["ndcg@10"] for r in rs]
        rc = [r["test_result"]["recall@10"] for r in rs]
        sd = (lambda v: statistics.stdev(v) if len(v) > 1 else float("nan"))
        rows.append(f"| {mode} | {','.join(str(s) for s in per[mode])} | "
                    f"{statistics.mean(r['best_valid_score'] for r in rs):.4f} | {statistics.mean(nd):.4f} ({sd(nd):.4f}) | "
                    f"{statistics.mean(rc):.4f} ({sd(rc):.4f}) | {statistics.mean(r['epochs_trained'] for r in rs):.1f} | "
                    f"{statistics.mean(r['seconds_per_epoch'] for r in rs):.1f} |")
    for a in modes[:-1]:
        b = modes[-1]
        common = sorted(set(per[a]) & set(per[b]))
        if common:
            rows += ["", f"Paired by seed, {a} minus {b}:", "",
                     "| seed | NDCG@10 difference | Recall@10 difference |", "|---|---|---|"]
            for s in common:
                ta, tb = per[a][s]["test_result"], per[b][s]["test_result"]
                rows.append(f"| {s} | {ta['ndcg@10'] - tb['ndcg@10']:+.4f} | {ta['recall@10'] - tb['recall@10']:+.4f} |")
    return rows, csv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="sequence,prefix")
    parser.add_argument("--seeds", default="2020,2021,2022")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    parser.add_argument("--table_only", action="store_true")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    started = time.time()
    if not args.table_only:
        jobs = [(m, s) for s in seeds for m in modes]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(run_one, m, s, 1) for m, s in jobs]:
                print("finished", future.result(), flush=True)
    from recbole_bifair.fileio import write_text_atomic

    rows, csv = table(modes, seeds)
    header = (f"`python benchmarks/seq_accuracy.py` on {datetime.date.today()}, {platform.machine()}, "
              f"{os.cpu_count()} cores, one torch thread per run. SASRec on ml-100k (hidden 32, 2 layers, "
              f"MAX_ITEM_LIST_LENGTH 20, batch 512), early stopping on validation NDCG@10 (stopping_step {PROTOCOL['stopping_step']}, at most "
              f"{PROTOCOL['epochs']} epochs), leave-one-out, full ranking; test metrics of the best validation epoch.")
    os.makedirs(RESULTS, exist_ok=True)
    write_text_atomic(os.path.join(RESULTS, "seq-accuracy-ml-100k.md"), header + "\n\n" + "\n".join(rows) + "\n")
    write_text_atomic(os.path.join(RESULTS, "seq-accuracy-ml-100k.csv"), "\n".join(csv) + "\n")
    print("\n".join(rows))
    print(f"done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
