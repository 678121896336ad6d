"""Apply a backbone rule of docs/METHOD.md to finished fairness-benchmark runs (validation only).

    python benchmarks/select_backbone.py --dataset=ml-1m --candidates='LLM-SASRec,LLM-SASRec[id_fusion=sum]'

The candidates are method names or sweep points of ``benchmarks/fairness.py`` whose runs of
each of ``--seeds`` under the ``converge`` budget have finished (in the work folder or the archive,
``benchmarks/results/runs/``); nothing is trained here. The rule is ``tune_backbone.select``:
among the candidates whose validation NDCG@10 is at least 98% of the best, the lowest validation
CV of group NDCG@10, each the mean over the seeds. SASRec's runs of the same seeds, if finished, is shown for reference. Test
columns are printed for the record only. Writes ``benchmarks/results/select-backbone-<dataset>.md``.
"""

import argparse
import datetime
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fairness  # noqa: E402
from tune_backbone import select  # noqa: E402


def finished_run(name, dataset, data_path, seed, workdir, archive_root):
    """The result JSON of the finished converge run of ``name`` (a method or sweep point), or None."""
    method, extra = fairness.parse_method(name)
    try:
        path, _ = fairness.run_one(method, seed, "converge", workdir, 1, dataset, data_path, extra=extra or None,
                                   label=name if extra else None, archive_root=archive_root, base_only=True)
    except RuntimeError:
        return None
    return path


def row(name, path):
    with open(path) as f:
        r = json.load(f)
    v, t = r["best_valid_result"], r["test_result"]
    return {"name": name, "valid_ndcg@10": v["ndcg@10"], "valid_cv": v["ndcgcv@10"],
            "test_ndcg@10": t["ndcg@10"], "test_cv": t["ndcgcv@10"],
            "test_ndcg_pop5": t.get("groupndcg@10[pop5]", float("nan")), "epochs": r["epochs_trained"]}


def mean_row(name, paths):
    """``row`` averaged over the runs of several seeds (``seeds``: how many)."""
    rows = [row(name, p) for p in paths]
    return {"name": name, **{k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "name"},
            "seeds": len(rows)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default=fairness.DEFAULT_DATA_PATH)
    parser.add_argument("--candidates", required=True, help="comma-separated methods / sweep points")
    parser.add_argument("--seeds", default="2020", help="comma-separated; the rule reads means over them")
    parser.add_argument("--workdir", default=os.path.join(REPO, "benchmarks", "work"))
    parser.add_argument("--archive", default=fairness.ARCHIVE)
    parser.add_argument("--out_dir", default=os.path.join(REPO, "benchmarks", "results"))
    args = parser.parse_args(argv)
    workdir = os.path.join(args.workdir, f"fairness-{args.dataset}-converge")
    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    seeds = [int(x) for x in args.seeds.split(",")]
    paths = {n: [finished_run(n, args.dataset, args.data_path, seed, workdir, args.archive or None) for seed in seeds]
             for n in ["SASRec"] + names}
    missing = [f"{n} (seed {seed})" for n in names for seed, p in zip(seeds, paths[n]) if p is None]
    if missing:
        sys.exit(f"not finished (run them with benchmarks/fairness.py --profile=converge --dataset={args.dataset} "
                 f"--seeds={args.seeds}): " + ", ".join(missing))
    rows = [mean_row(n, paths[n]) for n in names]
    chosen = select(rows)
    reference = [mean_row("SASRec (ID, reference)", paths["SASRec"])] if None not in paths["SASRec"] else []
    import pandas as pd

    from recbole_bifair.fileio import write_text_atomic

    frame = pd.DataFrame(reference + rows)
    header = (f"`python benchmarks/select_backbone.py --dataset={args.dataset} --candidates='{args.candidates}'` on "
              f"{datetime.date.today()}, seeds {args.seeds} (means), the fairness benchmark's converge budget "
              f"({fairness.BUDGETS['converge']}).\n\nRule (docs/METHOD.md, fixed before the runs): among the "
              f"candidates with validation NDCG@10 >= 98% of the best, the lowest validation CV of group NDCG@10. "
              f"**Chosen: {chosen['name']}**. Test columns are for the record only.")
    os.makedirs(args.out_dir, exist_ok=True)
    write_text_atomic(os.path.join(args.out_dir, f"select-backbone-{args.dataset}.md"),
                      header + "\n\n" + frame.to_markdown(index=False, floatfmt=".4f") + "\n")
    print(frame.to_string())
    print("chosen:", chosen["name"])


if __name__ == "__main__":
    main()
