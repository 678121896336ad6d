"""Seconds per training epoch of SASRec on ml-100k: recbole-bifair's runner vs RecBole's ``run_recbole``.

RecBole 1.2.1 switches autograd anomaly detection on when its models are imported
(shared/docs/RECBOLE.md item 1); the plugin switches it off again. Both runners get the same
config and train with the same RecBole ``Trainer._train_epoch``, so the difference per epoch is
that switch. Each run is a fresh process (anomaly mode is process-wide) and the two runners
alternate, so that a change of load on the machine hits both. The child times every
``Trainer._train_epoch`` call in wall-clock seconds and in CPU seconds of the process: on a
machine shared with other work the CPU seconds are the steadier figure.

    python benchmarks/anomaly_overhead.py [--epochs 1] [--rounds 2] [--max-len 50]

Work files (logs, checkpoints, result JSONs, anomaly_overhead.json) go to ``benchmarks/work/``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(REPO, "benchmarks", "work")

# RecBole's overall.yaml sets a training negative sampler that its own Config rejects for
# SASRec's CE loss (RECBOLE.md item 6); RecBole's runner needs it cleared by hand.
BASE_CONFIG = {
    "train_neg_sample_args": None,
    "show_progress": False,
    "state": "WARNING",
    "seed": 2020,
}

# saved=False for both: RecBole's runner cannot reload its own checkpoint under torch 2.13
# (RECBOLE.md item 2), and checkpoint writing is no part of the epoch time anyway.
RUNNERS = {
    "recbole-bifair": (
        "from recbole_bifair.quick_start import run_bifair\n"
        "run_bifair(model='SASRec', dataset='ml-100k', config_dict=CONFIG, saved=False)\n"
    ),
    "recbole run_recbole": (
        "from recbole.quick_start import run_recbole\n"
        "run_recbole(model='SASRec', dataset='ml-100k', config_dict=CONFIG, saved=False)\n"
    ),
}

CHILD = """
import json, os, time, torch
from recbole.trainer import Trainer

CONFIG = json.loads(os.environ["BENCH_CONFIG"])
TIMES = []
train_epoch = Trainer._train_epoch

def timed(self, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    loss = train_epoch(self, *args, **kwargs)
    TIMES.append((time.perf_counter() - wall, time.process_time() - cpu, torch.is_anomaly_enabled()))
    return loss

Trainer._train_epoch = timed
{runner}
print("EPOCH_TIMES", json.dumps(TIMES))
"""


def run_once(name, config):
    env = dict(os.environ, BENCH_CONFIG=json.dumps(config), PYTHONPATH=REPO)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(runner=RUNNERS[name])],
        cwd=WORK, env=env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    times = json.loads(proc.stdout.split("EPOCH_TIMES", 1)[1])
    return {
        "wall_seconds": [round(wall, 2) for wall, _, _ in times],
        "cpu_seconds": [round(cpu, 2) for _, cpu, _ in times],
        "anomaly_enabled": [on for _, _, on in times],
        "process_seconds": round(time.time() - started, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="training epochs per run (default 1)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each runner, alternating (default 2)")
    parser.add_argument("--max-len", type=int, default=50, help="MAX_ITEM_LIST_LENGTH (default 50, RecBole's)")
    args = parser.parse_args()
    os.makedirs(WORK, exist_ok=True)
    config = dict(BASE_CONFIG, epochs=args.epochs, MAX_ITEM_LIST_LENGTH=args.max_len)

    results = {name: [] for name in RUNNERS}
    for round_idx in range(args.rounds):
        order = list(RUNNERS) if round_idx % 2 == 0 else list(reversed(RUNNERS))
        for name in order:
            run = run_once(name, config)
            results[name].append(run)
            print(f"round {round_idx + 1} {name:>19}: epoch wall {run['wall_seconds']} s, "
                  f"CPU {run['cpu_seconds']} s, anomaly detection on: {run['anomaly_enabled']}", flush=True)

    print(f"\nSASRec on ml-100k, MAX_ITEM_LIST_LENGTH {args.max_len}, {args.epochs} epoch(s) x "
          f"{args.rounds} round(s), {os.cpu_count()} CPU cores")
    summary = {}
    for name, runs in results.items():
        summary[name] = {
            measure: statistics.median(s for run in runs for s in run[measure])
            for measure in ("wall_seconds", "cpu_seconds")
        }
        print(f"{name:>19}: median per training epoch {summary[name]['wall_seconds']:.1f} s wall, "
              f"{summary[name]['cpu_seconds']:.1f} s CPU")
    ours, theirs = summary["recbole-bifair"], summary["recbole run_recbole"]
    print(f"run_recbole / recbole-bifair: {theirs['wall_seconds'] / ours['wall_seconds']:.2f}x wall, "
          f"{theirs['cpu_seconds'] / ours['cpu_seconds']:.2f}x CPU")
    with open(os.path.join(WORK, "anomaly_overhead.json"), "w", encoding="utf-8") as f:
        json.dump({"config": config, "runs": results, "median_per_epoch": summary}, f, indent=2)


if __name__ == "__main__":
    main()
