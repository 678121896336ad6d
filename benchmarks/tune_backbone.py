"""Choose the LLM-enhanced backbone's conditioning on validation (the strong-backbone issue).

    python benchmarks/tune_backbone.py                       # ml-100k, seed 2020, every candidate
    python benchmarks/tune_backbone.py --candidates=A,B --jobs=1

Each candidate is the ``LLM-SASRec`` method (``properties/methods/LLM-SASRec.yaml``) with a few
keys on top (``benchmarks.lib.candidates.BACKBONE``), run by the fairness benchmark's
``runs.run_one`` under its ``converge`` budget (RecBole's SASRec size, early stopping on validation
NDCG@10, sequence-level training); ``SASRec`` (ID) runs beside them as the reference. Finished
runs are reused (same recorded config), so the search resumes where it stopped.

Selection rule, fixed before the search: among the candidates whose **validation** NDCG@10 is at
least 98% of the best candidate's, take the one with the lowest **validation** CV of group
NDCG@10 (K = 5 popularity groups; ``selection.select_backbone``). Test metrics are printed for
the record and never used. The table goes to ``benchmarks/results/tune-backbone-<dataset>.md`` / ``.csv``.
"""

import argparse
import datetime
import os
import time
from concurrent.futures import ThreadPoolExecutor

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import candidates  # noqa: E402
from benchmarks.lib.paths import DEFAULT_DATA_PATH, RESULTS, WORK  # noqa: E402
from benchmarks.lib.protocol import BUDGETS  # noqa: E402
from benchmarks.lib.selection import select_backbone  # noqa: E402
from benchmarks.lib.tables import write_selection_table  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=DEFAULT_DATA_PATH)
    parser.add_argument("--candidates", default=",".join(candidates.BACKBONE))
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    names = ["SASRec"] + [c for c in args.candidates.split(",") if c]
    workdir = os.path.join(WORK, f"tune-backbone-{args.dataset}")
    started = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {n: pool.submit(candidates.run_backbone, n, args.dataset, args.data_path, workdir, args.seed)
                   for n in names}
        paths = {}
        for n, f in futures.items():
            paths[n] = f.result()[0]
            print(f"{n}: {paths[n]} ({time.time() - started:.0f} s)", flush=True)
    rows = [candidates.backbone_row(n, args.dataset, paths[n]) for n in names]
    chosen = select_backbone(rows)
    header = (f"`python benchmarks/tune_backbone.py --dataset={args.dataset}` on {datetime.date.today()}, seed "
              f"{args.seed}, fairness benchmark's converge budget ({BUDGETS['converge']}, RecBole's SASRec "
              f"size, sequence-level training); {args.jobs} runs at a time, one torch thread each.\n\n"
              f"Rule (fixed before the search): among candidates with validation NDCG@10 >= 98% of the best, "
              f"the lowest validation CV of group NDCG@10. **Chosen: {chosen['name']}** "
              f"(`{chosen['keys']}`). Test columns are for the record only.")
    frame = write_selection_table(rows, os.path.join(RESULTS, f"tune-backbone-{args.dataset}"), header)
    print(frame.to_string())
    print("chosen:", chosen["name"], chosen["keys"])


if __name__ == "__main__":
    main()
