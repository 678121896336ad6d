"""Seconds per training epoch of one model on 1 and on 2 processes (torch.distributed, gloo on CPU).

    python benchmarks/distributed_speed.py                       # BiFairSASRec and LLM-SASRec, ml-100k
    python benchmarks/distributed_speed.py --models=BiFairSASRec --epochs=3

Each measurement is one ``run_recbole_bifair.py`` process tree (``--nproc=1`` or ``--nproc=2``),
one torch thread per process, RecBole's SASRec size, sequence-level training, the same global
batch (``train_batch_size`` counts targets over all ranks). The figure is the run's
``seconds_per_epoch`` (training only; every rank evaluates every user, so evaluation does not
get faster). Results: ``benchmarks/results/distributed-<dataset>.md`` / ``.json``. ``--models`` takes
the rows ``BiFairSASRec`` (the ``BiFair`` method) and ``LLM-SASRec``, or any method or sweep point of
``properties/methods/``.
"""

import argparse
import datetime
import os
import platform

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import distributed  # noqa: E402
from benchmarks.lib.methods import select_rows  # noqa: E402
from benchmarks.lib.paths import RESULTS  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--models", default=",".join(distributed.MODELS))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        models = select_rows(distributed.MODELS, [m for m in args.models.split(",") if m])
    except ValueError as err:
        parser.error(str(err))
    from recbole_bifair.fileio import write_json_atomic, write_text_atomic

    results = {}
    rows = ["| model | processes | s / epoch (mean over epochs) | x 1 process | wall s |", "|---|---|---|---|---|"]
    for name, spec in models.items():
        results[name] = {n: distributed.measure(name, spec, n, args.dataset, args.epochs) for n in (1, 2)}
        one = results[name][1]["seconds_per_epoch"]
        for n, r in results[name].items():
            rows.append(f"| {name} | {n} | {r['seconds_per_epoch']:.1f} | {r['seconds_per_epoch'] / one:.2f} | "
                        f"{r['wall_seconds']:.0f} |")
            print(rows[-1], flush=True)
    header = (f"`python benchmarks/distributed_speed.py --dataset={args.dataset} --epochs={args.epochs}` on "
              f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, one torch thread per "
              f"process, gloo; RecBole's SASRec size, sequence-level training, the same global batch.")
    stem = os.path.join(RESULTS, f"distributed-{args.dataset}")
    write_text_atomic(stem + ".md", header + "\n\n" + "\n".join(rows) + "\n")
    write_json_atomic(stem + ".json", results)
    print(f"wrote {stem}.md")


if __name__ == "__main__":
    main()
