"""Choose SASRec's training recipe on validation (docs/METHOD.md section 3c: the rule, fixed first).

    python benchmarks/select_recipe.py --dataset=ml-1m                      # R0 and R1, seed 2020
    python benchmarks/select_recipe.py --dataset=amazon-beauty-5core --candidates=R0,R1-model
    python benchmarks/select_recipe.py --dataset=ml-1m --finished_only      # the table from what ran

Each candidate is the ``SASRec`` method (``properties/methods/SASRec.yaml``, RecBole's SASRec) with
a few keys on top, run by the fairness benchmark's ``run_one`` under the protocol of
``benchmarks/fairness.py`` (leave-one-out, full ranking, K = 5 popularity groups) with the rule's
budget: at most 200 epochs, early stopping on validation NDCG@10 after 10 evaluations without a
gain. Finished runs are reused (same recorded config) and kept in
``benchmarks/results/runs/select-recipe-<dataset>/``; an interrupted run continues from its last
checkpoint, so the search spans sessions.

Candidates (METHOD.md 3c): R0, RecBole's SASRec settings at window 50 (today's defaults); R1, the
published SASRec+ recipe carried over (window 200, 1 head, dropout 0.1); R1-model, R1's model keys
at the dataset's own window (the check that decides whether they become plugin-wide defaults).
The table (``benchmarks/results/select-recipe-<dataset>.md`` / ``.csv``) applies the rule to
validation NDCG@10; test columns are printed for the record and never used to choose.
"""

import argparse
import datetime
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fairness  # noqa: E402

#: The rule's budget: patience 10 evaluations (one per epoch), at most 200 epochs.
BUDGET = {"epochs": 200, "stopping_step": 10}
#: The published recipe's model keys (Klenitskiy & Vasilev, RecSys 2023: SASRec+ on ml-1m).
PUBLISHED_MODEL = {"n_heads": 1, "hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1}
CANDIDATES = {
    "R0": {},
    "R1": {"MAX_ITEM_LIST_LENGTH": 200, **PUBLISHED_MODEL},
    "R1-model": dict(PUBLISHED_MODEL),
}
#: A candidate replaces R0 when its validation NDCG@10 beats R0's by more than this (relative).
MIN_GAIN = 0.02


def run(name, dataset, data_path, seed, finished_only=False):
    workdir = os.path.join(REPO, "benchmarks", "work", f"select-recipe-{dataset}")
    return fairness.run_one("SASRec", seed, "converge", workdir, 1, dataset, data_path,
                            extra={**BUDGET, **CANDIDATES[name]}, label=name,
                            archive_root=fairness.ARCHIVE, finished_only=finished_only)


def choose(rows):
    """The rule of METHOD.md 3c on the rows' validation NDCG@10: the best candidate if it beats R0
    by more than ``MIN_GAIN``, else R0."""
    base = next(r for r in rows if r["name"] == "R0")
    best = max(rows, key=lambda r: r["valid_ndcg@10"])
    return best if best["valid_ndcg@10"] > (1 + MIN_GAIN) * base["valid_ndcg@10"] else base


def row(name, path):
    with open(path) as f:
        r = json.load(f)
    v, t = r["best_valid_result"], r["test_result"]
    return {"name": name, "keys": json.dumps(CANDIDATES[name]),
            "valid_ndcg@10": v["ndcg@10"], "valid_recall@10": v["recall@10"], "valid_cv": v["ndcgcv@10"],
            "test_ndcg@10": t["ndcg@10"], "test_recall@10": t["recall@10"], "test_cv": t["ndcgcv@10"],
            "epochs": r["first_epoch"] + r["epochs_trained"], "sec_per_epoch": r["seconds_per_epoch"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data_path", default=fairness.DEFAULT_DATA_PATH,
                        help="folder holding the dataset folders (default: %(default)s)")
    parser.add_argument("--candidates", default="R0,R1", help="comma-separated, from " + ", ".join(CANDIDATES))
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one torch thread each")
    parser.add_argument("--finished_only", action="store_true", help="train nothing: the table from finished runs")
    args = parser.parse_args(argv)
    names = [c for c in args.candidates.split(",") if c]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; choose from {', '.join(CANDIDATES)}")
    started = time.time()
    paths = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {n: pool.submit(run, n, args.dataset, args.data_path, args.seed, args.finished_only) for n in names}
        for n, f in futures.items():
            try:
                paths[n] = f.result()[0]
            except fairness.NotFinished as err:
                print(f"{n}: not finished ({err})", flush=True)
                continue
            print(f"{n}: {paths[n]} ({time.time() - started:.0f} s)", flush=True)
    rows = [row(n, paths[n]) for n in names if n in paths]
    if not rows:
        return
    import pandas as pd

    from recbole_bifair.fileio import atomic_path, write_text_atomic

    chosen = choose(rows) if any(r["name"] == "R0" for r in rows) else None
    frame = pd.DataFrame(rows)
    out = os.path.join(REPO, "benchmarks", "results", f"select-recipe-{args.dataset}")
    with atomic_path(out + ".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.5f")
    verdict = (f"**Chosen: {chosen['name']}** (`{chosen['keys']}`)." if chosen
               else "No choice: R0 has not finished.")
    header = (f"`python benchmarks/select_recipe.py --dataset={args.dataset} --candidates={','.join(names)}` "
              f"on {datetime.date.today()}, seed {args.seed}, SASRec, the fairness benchmark's protocol with "
              f"{BUDGET} (early stopping on validation NDCG@10), one torch thread per run.\n\n"
              f"Rule (docs/METHOD.md 3c, fixed before the search): the candidate with the highest validation "
              f"NDCG@10 replaces R0 when it beats R0 by more than {MIN_GAIN:.0%}. {verdict} "
              f"Test columns are for the record only.")
    write_text_atomic(out + ".md", header + "\n\n" + frame.to_markdown(index=False, floatfmt=".4f") + "\n")
    print(frame.to_string())


if __name__ == "__main__":
    main()
