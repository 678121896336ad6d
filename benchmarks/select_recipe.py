"""Choose SASRec's training recipe on validation (docs/METHOD.md section 3c: the rule, fixed first).

    python benchmarks/select_recipe.py --dataset=ml-1m                      # R0 and R1, seed 2020
    python benchmarks/select_recipe.py --dataset=amazon-beauty-5core --candidates=R0,R1-model
    python benchmarks/select_recipe.py --dataset=ml-1m --finished_only      # the table from what ran

Each candidate is the ``SASRec`` method (``properties/methods/SASRec.yaml``, RecBole's SASRec) with
a few keys on top, run by the fairness benchmark's ``runs.run_one`` under the protocol of
``benchmarks/fairness.py`` (leave-one-out, full ranking, K = 5 popularity groups) with the rule's
budget: at most 200 epochs, early stopping on validation NDCG@10 after 10 evaluations without a
gain. Finished runs are reused (same recorded config) and kept in
``benchmarks/results/runs/select-recipe-<dataset>/``; an interrupted run continues from its last
checkpoint, so the search spans sessions.

Candidates (METHOD.md 3c): R0, RecBole's SASRec settings at window 50 (today's defaults); R1, the
published SASRec+ recipe carried over (window 200, 1 head, dropout 0.1); R1-model, R1's model keys
at the dataset's own window (the check that decides whether they become plugin-wide defaults);
R2, R1 with the published code's block layout (``sasrec_norm: pre``, ``item_emb_scale: 8``, ReLU
feed-forward of width 64; recbole_bifair/model/sasrec_layout.py); R3, R1 on the published data
layout (``seq_windows: last``, 128 users a step); R4, R2's layout on R3's data layout (the
published recipe whole). The candidates pin RecBole's settings under their
keys (the ``converge`` budget, ``benchmarks/lib/protocol.py``), so R0 stays what it was after the
plugin's defaults became R1's.
The table (``benchmarks/results/select-recipe-<dataset>.md`` / ``.csv``) applies the rule to
validation NDCG@10; test columns are printed for the record and never used to choose.
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
from benchmarks.lib.runs import NotFinished  # noqa: E402
from benchmarks.lib.selection import MAX_LOSS, MIN_GAIN, choose_recipe, model_keys_check  # noqa: E402
from benchmarks.lib.tables import write_selection_table  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--data_path", default=DEFAULT_DATA_PATH,
                   help="folder holding the dataset folders (default: %(default)s)")
    p.add_argument("--candidates", default="R0,R1", help="comma-separated, from " + ", ".join(candidates.RECIPES))
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, one torch thread each")
    p.add_argument("--finished_only", action="store_true", help="train nothing: the table from finished runs")
    return p


def finished_paths(names, args):
    """``{candidate: result JSON}`` of the candidates that finished (run here unless ``--finished_only``)."""
    workdir = os.path.join(WORK, f"select-recipe-{args.dataset}")
    started = time.time()
    paths = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {n: pool.submit(candidates.run_recipe, n, args.dataset, args.data_path, args.seed, workdir,
                                  args.finished_only) for n in names}
        for n, f in futures.items():
            try:
                paths[n] = f.result()[0]
            except NotFinished as err:
                print(f"{n}: not finished ({err})", flush=True)
                continue
            print(f"{n}: {paths[n]} ({time.time() - started:.0f} s)", flush=True)
    return paths


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    names = [c for c in args.candidates.split(",") if c]
    unknown = [n for n in names if n not in candidates.RECIPES]
    if unknown:
        p.error(f"unknown candidates {unknown}; choose from {', '.join(candidates.RECIPES)}")
    paths = finished_paths(names, args)
    rows = [candidates.recipe_row(n, paths[n]) for n in names if n in paths]
    if not rows:
        return
    names_done = {r["name"] for r in rows}
    chosen = choose_recipe(rows) if "R0" in names_done else None
    verdict = (f"**Chosen: {chosen['name']}** (`{chosen['keys']}`)." if chosen
               else "No choice: R0 has not finished.")
    if {"R0", "R1-model"} <= names_done:
        passes, change = model_keys_check(rows)
        verdict += (f" Check of R1's model keys at this dataset's window (R1-model against R0): validation "
                    f"NDCG@10 {change:+.1%}, limit -{MAX_LOSS:.0%}: **{'passed' if passes else 'failed'}** "
                    f"({'they may become plugin-wide defaults' if passes else 'they stay per-dataset settings'} "
                    f"once R1 is chosen on ml-1m).")
    header = (f"`python benchmarks/select_recipe.py --dataset={args.dataset} --candidates={','.join(names)}` "
              f"on {datetime.date.today()}, seed {args.seed}, SASRec, the fairness benchmark's protocol with "
              f"{candidates.RECIPE_BUDGET} (early stopping on validation NDCG@10), one torch thread per run.\n\n"
              f"Rule (docs/METHOD.md 3c, fixed before the search): the candidate with the highest validation "
              f"NDCG@10 replaces R0 when it beats R0 by more than {MIN_GAIN:.0%}. {verdict} "
              f"Test columns are for the record only.")
    frame = write_selection_table(rows, os.path.join(RESULTS, f"select-recipe-{args.dataset}"), header)
    print(frame.to_string())


if __name__ == "__main__":
    main()
