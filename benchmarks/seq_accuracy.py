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
dropout 0.5) and early stopping on validation NDCG@10 (``benchmarks.lib.seq_accuracy.PROTOCOL``).
The short window makes this a strict test of sequence-level training: most ml-100k histories are
longer than 20, so most targets see 11 to 20 items of context where their prefix sample sees 20.
Runs write their result JSON under
``benchmarks/work/seq-accuracy/<mode>-seed<seed>/``; a finished run whose recorded config equals
the planned one is reused, so an interrupted benchmark continues where it stopped. The table
(``benchmarks/results/seq-accuracy-ml-100k.md`` / ``.csv``) is made from those JSON files only:
test NDCG@10 / Recall@10 per seed, mean and std over seeds, the paired difference per seed, epochs
and seconds per epoch.
"""

import argparse
import datetime
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import seq_accuracy  # noqa: E402
from benchmarks.lib.paths import RESULTS  # noqa: E402


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
            for future in [pool.submit(seq_accuracy.run_one, m, s, 1) for m, s in jobs]:
                print("finished", future.result(), flush=True)
    from recbole_bifair.fileio import write_text_atomic

    rows, csv = seq_accuracy.table(modes, seeds)
    protocol = seq_accuracy.PROTOCOL
    header = (f"`python benchmarks/seq_accuracy.py` on {datetime.date.today()}, {platform.machine()}, "
              f"{os.cpu_count()} cores, one torch thread per run. SASRec on ml-100k (hidden 32, 2 layers, "
              f"MAX_ITEM_LIST_LENGTH 20, batch 512), early stopping on validation NDCG@10 (stopping_step "
              f"{protocol['stopping_step']}, at most {protocol['epochs']} epochs), leave-one-out, full ranking; test "
              f"metrics of the best validation epoch.")
    os.makedirs(RESULTS, exist_ok=True)
    write_text_atomic(os.path.join(RESULTS, "seq-accuracy-ml-100k.md"), header + "\n\n" + "\n".join(rows) + "\n")
    write_text_atomic(os.path.join(RESULTS, "seq-accuracy-ml-100k.csv"), "\n".join(csv) + "\n")
    print("\n".join(rows))
    print(f"done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
