"""Choose the LLM-enhanced backbone's conditioning on validation (the strong-backbone issue).

    python benchmarks/tune_backbone.py                       # ml-100k, seed 2020, every candidate
    python benchmarks/tune_backbone.py --candidates=A,B --jobs=1

Each candidate is the ``LLM-SASRec`` method (``properties/methods/LLM-SASRec.yaml``) with a few
keys on top, run by the fairness benchmark's ``run_one`` under its ``converge`` budget (RecBole's
SASRec size, early stopping on validation NDCG@10, sequence-level training); ``SASRec`` (ID) runs
beside them as the reference. Finished runs are reused (same recorded config), so the search
resumes where it stopped.

Selection rule, fixed before the search: among the candidates whose **validation** NDCG@10 is at
least 98% of the best candidate's, take the one with the lowest **validation** CV of group
NDCG@10 (K = 5 popularity groups). Test metrics are printed for the record and never used.
The table goes to ``benchmarks/results/tune-backbone-<dataset>.md`` / ``.csv``.
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

#: Item text without field names ("Toy Story (1995); Animation Children's Comedy"), ml-100k's fields.
PLAIN_TEMPLATE = {"ml-100k": "{movie_title}[ ({release_year})][; {class}]"}
#: E0 standardised, a wider projector, dropout kept off the scored item table.
CONDITIONED = {"llm_emb_transform": "standardize", "projector_hidden_size": 256, "projector_dropout_on": "input"}

CANDIDATES = {
    "A-defaults": {},
    "B-template": {"template": True},
    "C-standardize": {"template": True, "llm_emb_transform": "standardize"},
    "D-conditioned": {"template": True, **CONDITIONED},
    "E-id-sum": {"template": True, "id_fusion": "sum"},
    "F-conditioned-id-pca": {"template": True, **CONDITIONED, "id_fusion": "sum", "id_init": "pca"},
    "G-conditioned-cosine": {"template": True, **CONDITIONED, "score": "cosine", "score_temperature": 0.1},
    "H-conditioned-output-std": {"template": True, **CONDITIONED, "projector_output_std": 0.02},
}


def candidate_keys(name, dataset):
    keys = dict(CANDIDATES[name])
    if keys.pop("template", False):
        keys["llm_emb_template"] = PLAIN_TEMPLATE[dataset]
    return keys


def run(name, dataset, data_path, workdir, seed):
    if name == "SASRec":
        return fairness.run_one("SASRec", seed, "converge", workdir, 1, dataset, data_path)
    keys = candidate_keys(name, dataset)
    # a template gives other item texts: their embedding file must not share the cache path
    keys["llm_emb_dir"] = os.path.join(workdir, "embeddings-" + ("plain" if "llm_emb_template" in keys else "default"))
    return fairness.run_one("LLM-SASRec", seed, "converge", workdir, 1, dataset, data_path, extra=keys, label=name)


def select(rows):
    candidates = [r for r in rows if r["name"] != "SASRec"]
    best = max(r["valid_ndcg@10"] for r in candidates)
    eligible = [r for r in candidates if r["valid_ndcg@10"] >= 0.98 * best]
    return min(eligible, key=lambda r: r["valid_cv"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=fairness.DEFAULT_DATA_PATH)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    names = ["SASRec"] + [c for c in args.candidates.split(",") if c]
    workdir = os.path.join(REPO, "benchmarks", "work", f"tune-backbone-{args.dataset}")
    started = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {n: pool.submit(run, n, args.dataset, args.data_path, workdir, args.seed) for n in names}
        paths = {}
        for n, f in futures.items():
            paths[n] = f.result()[0]
            print(f"{n}: {paths[n]} ({time.time() - started:.0f} s)", flush=True)
    rows = []
    for n in names:
        with open(paths[n]) as f:
            r = json.load(f)
        v, t = r["best_valid_result"], r["test_result"]
        rows.append({"name": n, "keys": json.dumps(candidate_keys(n, args.dataset)) if n != "SASRec" else "",
                     "valid_ndcg@10": v["ndcg@10"], "valid_cv": v["ndcgcv@10"], "valid_min_mean": v["ndcgminmean@10"],
                     "test_ndcg@10": t["ndcg@10"], "test_cv": t["ndcgcv@10"],
                     "test_ndcg_pop5": t.get("groupndcg@10[pop5]", float("nan")),
                     "epochs": r["epochs_trained"], "sec_per_epoch": r["seconds_per_epoch"]})
    chosen = select(rows)
    import pandas as pd

    from recbole_bifair.fileio import atomic_path, write_text_atomic

    frame = pd.DataFrame(rows)
    out = os.path.join(REPO, "benchmarks", "results", f"tune-backbone-{args.dataset}")
    with atomic_path(out + ".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.5f")
    header = (f"`python benchmarks/tune_backbone.py --dataset={args.dataset}` on {datetime.date.today()}, seed "
              f"{args.seed}, fairness benchmark's converge budget ({fairness.BUDGETS['converge']}, RecBole's SASRec "
              f"size, sequence-level training); {args.jobs} runs at a time, one torch thread each.\n\n"
              f"Rule (fixed before the search): among candidates with validation NDCG@10 >= 98% of the best, "
              f"the lowest validation CV of group NDCG@10. **Chosen: {chosen['name']}** "
              f"(`{chosen['keys']}`). Test columns are for the record only.")
    write_text_atomic(out + ".md", header + "\n\n" + frame.to_markdown(index=False, floatfmt=".4f") + "\n")
    print(frame.to_string())
    print("chosen:", chosen["name"], chosen["keys"])


if __name__ == "__main__":
    main()
