"""Seconds per training epoch of SASRec on ml-100k: recbole-bifair's runner vs RecBole's ``run_recbole``.

RecBole 1.2.1 switches autograd anomaly detection on when its models are imported
(docs/recbole-workarounds.md item 1); the plugin switches it off again. Both runners get the same
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

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import anomaly  # noqa: E402
from benchmarks.lib.paths import WORK  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="training epochs per run (default 1)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each runner, alternating (default 2)")
    parser.add_argument("--max-len", type=int, default=50, help="MAX_ITEM_LIST_LENGTH (default 50, RecBole's)")
    args = parser.parse_args()
    os.makedirs(WORK, exist_ok=True)
    config = dict(anomaly.BASE_CONFIG, epochs=args.epochs, MAX_ITEM_LIST_LENGTH=args.max_len)

    results = {name: [] for name in anomaly.RUNNERS}
    for round_idx in range(args.rounds):
        order = list(anomaly.RUNNERS) if round_idx % 2 == 0 else list(reversed(anomaly.RUNNERS))
        for name in order:
            run = anomaly.run_once(name, config)
            results[name].append(run)
            print(f"round {round_idx + 1} {name:>19}: epoch wall {run['wall_seconds']} s, "
                  f"CPU {run['cpu_seconds']} s, anomaly detection on: {run['anomaly_enabled']}", flush=True)

    print(f"\nSASRec on ml-100k, MAX_ITEM_LIST_LENGTH {args.max_len}, {args.epochs} epoch(s) x "
          f"{args.rounds} round(s), {os.cpu_count()} CPU cores")
    summary = anomaly.medians(results)
    for name in results:
        print(f"{name:>19}: median per training epoch {summary[name]['wall_seconds']:.1f} s wall, "
              f"{summary[name]['cpu_seconds']:.1f} s CPU")
    ours, theirs = summary["recbole-bifair"], summary["recbole run_recbole"]
    print(f"run_recbole / recbole-bifair: {theirs['wall_seconds'] / ours['wall_seconds']:.2f}x wall, "
          f"{theirs['cpu_seconds'] / ours['cpu_seconds']:.2f}x CPU")
    with open(os.path.join(WORK, "anomaly_overhead.json"), "w", encoding="utf-8") as f:
        json.dump({"config": config, "runs": results, "median_per_epoch": summary}, f, indent=2)


if __name__ == "__main__":
    main()
