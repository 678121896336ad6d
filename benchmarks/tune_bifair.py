"""Tune BiFair's outer level on the validation split of the fairness benchmark (BENCHMARK.md A).

    python benchmarks/tune_bifair.py                      # round 1: outer level, 3 x 3 grid
    python benchmarks/tune_bifair.py --round=balance --set outer_learning_rate=0.001 outer_mu=0.0
    python benchmarks/tune_bifair.py --resume             # continue an interrupted search

The search is ``run_hyper`` (Ray Tune) with the quick profile's protocol and budget, seed 2020,
over a grid under ``properties/hyper/`` (``--round``: ``outer`` = bifair_outer_ml100k.test,
``balance`` = bifair_balance_ml100k.test), with ``--set`` values fixed. Every trial keeps its epoch by validation
NDCG@10 (as the benchmark does), and the chosen trial is the most accurate one on validation
among those that meet the issue's fairness target *on validation*: CV of group NDCG@10 at most
75% of LLM-SASRec's validation CV (same seed, same protocol; taken from the fairness benchmark's
run, which is made first if missing). Test metrics play no part in the choice.

To halve the cost the trials use ``hypergrad: first_order``; on this benchmark it gave the same
metrics as the default ``finite_difference`` to four decimals (benchmarks/results/fairness-quick.md).
Writes ``benchmarks/results/tune-bifair-<round>.md`` / ``.csv`` and the search's own report
(trials.csv, trials.md, best.yaml, pareto.png) under ``benchmarks/work/tune-bifair-<round>/``.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fairness  # noqa: E402  (benchmarks/fairness.py: the shared protocol)

SEED = 2020
PROFILE = "quick"
TARGET_CV_RATIO = 0.75  # the issue: CV at least 25% lower than LLM-SASRec's
ROUNDS = {"outer": "bifair_outer_ml100k.test", "balance": "bifair_balance_ml100k.test"}


def baseline_valid(workdir, threads):
    """LLM-SASRec's validation result under the quick protocol (its benchmark run)."""
    path, _ = fairness.run_one("LLM-SASRec", SEED, PROFILE, os.path.join(workdir, f"fairness-{PROFILE}"), threads)
    with open(path) as f:
        return json.load(f)["best_valid_result"], path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=os.path.join(REPO, "benchmarks", "work"))
    parser.add_argument("--out_dir", default=os.path.join(REPO, "benchmarks", "results"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="trials at the same time")
    parser.add_argument("--round", choices=sorted(ROUNDS), default="outer")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="settings fixed for every trial (YAML values), e.g. outer_mu=0.0")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    import yaml

    fixed = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item}: write KEY=VALUE")
        fixed[key] = yaml.safe_load(value)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from recbole_bifair.tune.runner import SearchError, plan_search, run_search

    base, base_file = baseline_valid(args.workdir, threads=1)
    bound = TARGET_CV_RATIO * base["ndcgcv@10"]
    search_dir = os.path.join(args.workdir, f"tune-bifair-{args.round}")
    os.makedirs(search_dir, exist_ok=True)
    protocol = {**fairness.PROTOCOL, **fairness.BUDGETS[PROFILE], "seed": SEED, "save_rankings": False,
                "hypergrad": "first_order",
                "llm_emb_dir": os.path.join(args.workdir, f"fairness-{PROFILE}", "embeddings"), **fixed}
    protocol_file = os.path.join(search_dir, "protocol.yaml")
    with open(protocol_file, "w") as f:
        json.dump(protocol, f)  # JSON is YAML
    plan = plan_search(
        "BiFairSASRec", "ml-100k", os.path.join(REPO, "properties", "hyper", ROUNDS[args.round]),
        config_files=[os.path.join(REPO, "properties", "methods", "BiFair.yaml"), protocol_file],
        objective="ndcg@10", constraint=f"ndcgcv@10<={bound:.4f}", scheduler="fifo",
        max_concurrent=args.jobs, cpus_per_trial=1, storage_path=os.path.join(search_dir, "ray"),
        name="search", output_dir=os.path.join(search_dir, "report"),
    )
    started = datetime.datetime.now()
    chosen, note = None, ""
    try:
        chosen = run_search(plan, resume=args.resume)
    except SearchError as err:  # no trial met the target on validation: the table still says how close
        note = str(err).replace(REPO + os.sep, "")
    minutes = (datetime.datetime.now() - started).total_seconds() / 60

    import pandas as pd

    table = pd.read_csv(os.path.join(search_dir, "report", "trials.csv"))
    names = plan.space.names
    cols = [*names, "status", "best_epoch", "ndcg@10", "ndcgcv@10", "ndcgminmean@10",
            "ndcggap@10"]
    table = table[[c for c in cols if c in table]].sort_values(names)
    lines = [
        f"BiFairSASRec grid over {', '.join(names)} on ml-100k, validation split, seed {SEED}, quick-profile "
        f"budget, hypergrad first_order, fixed {fixed or 'nothing else'}; `python benchmarks/tune_bifair.py "
        f"--round={args.round}{' --set ' + ' '.join(args.set) if args.set else ''}` ({args.jobs} trials at a time); "
        f"{datetime.date.today()}; {platform.machine()} {os.cpu_count()} cores; {minutes:.0f} min.",
        "",
        f"LLM-SASRec on the same validation split: NDCG@10 {base['ndcg@10']:.4f}, CV {base['ndcgcv@10']:.4f}, "
        f"min/mean {base['ndcgminmean@10']:.4f} ({os.path.relpath(base_file, REPO)}).",
        f"Rule: the most accurate trial (validation NDCG@10) with validation CV <= {TARGET_CV_RATIO} x "
        f"{base['ndcgcv@10']:.4f} = {bound:.4f}. Trial accuracy as a share of LLM-SASRec's is the "
        f"`ndcg_vs_base` column.",
        "",
    ]
    table["ndcg_vs_base"] = table["ndcg@10"] / base["ndcg@10"]
    table["cv_vs_base"] = table["ndcgcv@10"] / base["ndcgcv@10"]
    lines += [table.to_markdown(index=False, floatfmt=".4f"), ""]
    if chosen is not None:
        params = {k: chosen.best_config[k] for k in names}
        lines.append(f"**Chosen**: {params} (trial {chosen.chosen}); its test result: NDCG@10 {chosen.test_result.get('ndcg@10', float('nan')):.4f}, "
                     f"CV {chosen.test_result.get('ndcgcv@10', float('nan')):.4f}.")
    else:
        lines.append(f"**No trial chosen**: {note}")
    from recbole_bifair.fileio import write_text_atomic

    os.makedirs(args.out_dir, exist_ok=True)
    out = os.path.join(args.out_dir, f"tune-bifair-{args.round}.md")
    write_text_atomic(out, "\n".join(lines) + "\n")
    shutil.copy(os.path.join(search_dir, "report", "trials.csv"), os.path.join(args.out_dir, f"tune-bifair-{args.round}.csv"))
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
