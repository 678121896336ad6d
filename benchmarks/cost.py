"""What BiFair costs (docs/benchmarks.md; targets: default <= 2x, first_order
<= 1.3x the LLM-enhanced baseline's seconds per training epoch; evaluation <= 1.2x SASRec's).

    python benchmarks/cost.py ml100k      # ratios on ml-100k, alternating rounds, peak memory
    python benchmarks/cost.py synthetic --max_batches=20   # 100k items with 1024-d vectors, and scaling
    python benchmarks/cost.py profile     # where one BiFair epoch spends its time
    python benchmarks/cost.py seqtrain --dataset=ml-1m --max_batches=30 --threads=1
                                          # sequence-level vs prefix training, s per epoch
    python benchmarks/cost.py padding --dataset=amazon-beauty-5core --max_batches=20 --threads=1
                                          # trim_padding on vs off, s per training epoch
    python benchmarks/cost.py floor --dataset=ml-1m --recipe=R1 --models=SASRec --max_batches=20 --threads=1
                                          # s per epoch against the matmul floor (benchmarks/lib/floor.py)

Every measurement is one child process (fresh memory, so its peak RSS is its own) that builds
the data, the model and the trainer exactly as ``run_recbole_bifair.py`` does and times
``trainer._train_epoch`` (the code a run executes) and one full-ranking evaluation of the test
split (``benchmarks/lib/cost_child.py``). Variants alternate within a round so that a load change
of the machine hits all of them. Results go to ``benchmarks/results/cost-<part>.md`` / ``.json``.

Each variant is a method of ``properties/methods/`` or a sweep point on one (the rows' names and
what they measure: ``benchmarks.lib.cost``, e.g. ``BiFair first_order (outer full)`` is
``BiFair-first-order[outer_softmax=full]``); ``--variants`` and ``--models`` take those row names
or any method or sweep point, e.g. ``--variants='LLM-SASRec,BiFair[hypergrad_unroll=sgd]'``.
"""

import argparse
import datetime
import os
import time

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import cost  # noqa: E402
from benchmarks.lib.candidates import RECIPES  # noqa: E402
from benchmarks.lib.methods import select_rows  # noqa: E402
from benchmarks.lib.paths import DEFAULT_DATA_PATH, RESULTS  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["ml100k", "synthetic", "profile", "seqtrain", "padding", "floor"])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--variants", default="", help="comma-separated subset of the ml100k or synthetic variants, or "
                                                  "methods / sweep points (synthetic: the baselines they are "
                                                  "compared with are added)")
    p.add_argument("--dim", type=int, default=1024, help="synthetic: width of the random LLM table")
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--grid", default=cost.SYNTHETIC_GRID, help="synthetic: ITEMSxINTERACTIONS,...")
    p.add_argument("--max_batches", type=int, default=0,
                   help="synthetic: time the first N training batches and scale to the epoch (0: whole epoch)")
    p.add_argument("--dataset", default="ml-1m", help="seqtrain, padding: dataset")
    p.add_argument("--data_path", default=DEFAULT_DATA_PATH,
                   help="seqtrain: folder holding the dataset (default: ../shared/datasets)")
    p.add_argument("--recipe", default="R0", choices=sorted(RECIPES),
                   help="floor: the SASRec recipe of METHOD.md 3c under the models (benchmarks/lib/candidates.py)")
    p.add_argument("--models", default=",".join(cost.SEQTRAIN_MODELS),
                   help="seqtrain, padding: comma-separated models (rows of SEQTRAIN_MODELS, methods or sweep points)")
    return p


def synthetic_header(args):
    text = (f" Synthetic: a random {args.dim}-d table stands in for the encoder (no item text); "
            f"sequence-level training, batch 512 targets, meta and Hessian-vector batches 128; "
            f"'x baseline': against LLM-SASRec trained the same way (full or sampled inner softmax).")
    if args.max_batches:
        text += (f" After one untimed warm-up batch (optimiser state allocation), the first "
                 f"{args.max_batches} training batches are timed and scaled to the epoch's batch count.")
    return text


def dataset_header(args):
    """What the seqtrain and padding parts add to the header."""
    if args.part == "seqtrain":
        return (f" Dataset {args.dataset} from {args.data_path}; RecBole's SASRec settings (hidden 64, "
                f"2 layers, MAX_ITEM_LIST_LENGTH 50, batch 2048 targets); "
                + (f"the first {args.max_batches} batches timed and scaled to the epoch." if args.max_batches
                   else "whole epochs."))
    return (f" Dataset {args.dataset} from {args.data_path}; sequence-level training with RecBole's SASRec "
            f"settings (hidden 64, 2 layers, MAX_ITEM_LIST_LENGTH 50, batch 2048 targets); after 2 untimed "
            f"batches, " + (f"the first {args.max_batches} batches timed and scaled to the epoch"
                            if args.max_batches else "whole epochs")
            + "; trimmed and padded alternate within each round.")


def floor_header(args):
    keys = ", ".join(f"{k} {v}" for k, v in RECIPES[args.recipe].items()) or "RecBole's SASRec settings"
    return (f" Dataset {args.dataset} from {args.data_path}; recipe {args.recipe} ({keys}), sequence-level "
            f"training, batch 2048 targets; after 2 untimed batches, the first {args.max_batches or 20} "
            f"batches timed and scaled to the epoch. Floor: the same steps' matrix products (forward and "
            f"backward, recorded with their shapes) replayed on their own; share of floor = floor / "
            f"measured.")


def run_part(args, only):
    """``(file name part, extra header, table rows, JSON payload)`` of ``args.part``."""
    if args.part == "ml100k":
        med, samples, rows = cost.ml100k(args.rounds, args.threads, only)
        return "ml100k" + args.tag, "", rows, {"median": med, "samples": samples}
    if args.part == "synthetic":
        grid = [tuple(int(n) for n in point.split("x")) for point in args.grid.split(",") if point]
        results, rows = cost.synthetic(args.threads, grid, args.max_batches, only, args.dim)
        return "synthetic" + args.tag, synthetic_header(args), rows, results
    models = [m for m in args.models.split(",") if m]
    if args.part == "seqtrain":
        results, rows = cost.seqtrain(args.threads, args.dataset, args.data_path, args.max_batches, models)
        return "seqtrain-" + args.dataset + args.tag, dataset_header(args), rows, results
    if args.part == "padding":
        results, rows = cost.padding(args.threads, args.dataset, args.data_path, args.max_batches, models,
                                     args.rounds)
        return "padding-" + args.dataset + args.tag, dataset_header(args), rows, results
    if args.part == "floor":
        results, rows = cost.floor(args.threads, args.dataset, args.data_path, args.max_batches, models,
                                   RECIPES[args.recipe])
        return f"floor-{args.dataset}-{args.recipe}{args.tag}", floor_header(args), rows, results
    res, rows = cost.profile(args.threads)
    return "profile", "", rows, res


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    only = [v for v in args.variants.split(",") if v]
    models = [m for m in args.models.split(",") if m]
    named = {"ml100k": (cost.ML100K_VARIANTS, only), "synthetic": (cost.SYNTHETIC_VARIANTS, only),
             "seqtrain": (cost.SEQTRAIN_MODELS, models), "padding": (cost.SEQTRAIN_MODELS, models),
             "floor": (cost.SEQTRAIN_MODELS, models)}
    try:
        select_rows(*named.get(args.part, ({}, ())))
    except ValueError as err:
        p.error(str(err))
    started = time.time()
    header = (f"`python benchmarks/cost.py {args.part}` on {datetime.date.today()}, {cost.machine()}, "
              f"torch threads {args.threads}; one training epoch per measurement (medians over rounds).")
    part, more, rows, payload = run_part(args, only)
    cost.write(part, header + more, rows, payload, RESULTS)
    print(f"done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
