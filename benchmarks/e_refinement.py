"""Does the outer level's refinement of the LLM table ``E`` matter? docs/METHOD.md 4d, on finished
fairness-benchmark runs (nothing is trained here).

    python benchmarks/e_refinement.py --profile=recipe --dataset=ml-100k,steam-100k \\
        --data_path=../shared-extra --seeds=2020,2021 --frozen='BiFair[outer_learning_rate=0.0]' \\
        --candidates='BiFair,BiFair[outer_learning_rate=0.001],BiFair[outer_learning_rate=0.01]'

- Part A (``selection.refinement_effect``): on each dataset the first candidate (the defaults)
  against ``--frozen`` (``E`` frozen, everything else equal), seed by seed on validation: the
  refinement *matters* when, in every seed, validation NDCG@10 moves by at least 2% in the same
  direction, or validation CV of group NDCG@10 by at least 5%.
- Part C: for every run, how far ``E`` moved (``||E - E0|| / ||E0||`` of the last epoch of the
  run's ``training_log``) and the prior probe (the training-free cosine recommender of
  ``recbole_bifair.prior_probe``) on ``E0`` and on the refined ``E``.

Part B (is any candidate admissible?) is ``select_backbone.py --rule=no-harm`` on the same runs.
Writes ``e-refinement-<d1>+<d2>....md`` in ``--out_dir``; test figures are for the record only.
"""

import argparse
import datetime
import json
import os

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import selection  # noqa: E402
from benchmarks.lib.paths import ARCHIVE, DEFAULT_DATA_PATH, WORK  # noqa: E402
from benchmarks.lib.protocol import PROFILES  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="comma-separated datasets")
    p.add_argument("--profile", default="recipe", choices=sorted(PROFILES))
    p.add_argument("--data_path", default=DEFAULT_DATA_PATH)
    p.add_argument("--candidates", default="BiFair",
                   help="comma-separated methods / sweep points; the first is the one part A compares")
    p.add_argument("--frozen", default="BiFair[outer_learning_rate=0.0]", help="the run with E frozen")
    p.add_argument("--seeds", default="2020,2021")
    p.add_argument("--workdir", default=WORK)
    p.add_argument("--archive", default=ARCHIVE)
    p.add_argument("--out_dir", required=True)
    return p


def movement(path):
    """Part C's figures of one run: the last epoch's relative drift of ``E`` and the prior probe."""
    with open(path) as f:
        result = json.load(f)
    log = result.get("training_log") or []
    probe = result.get("prior_probe") or {}
    row = {"E drift %": 100 * log[-1]["E_drift_relative"] if log else float("nan")}
    for table in ("E0", "E"):
        metrics = probe.get(table, {})
        row[f"probe {table} NDCG@10"] = metrics.get("ndcg@10", float("nan"))
        row[f"probe {table} CV"] = metrics.get("ndcgcv@10", float("nan"))
    return row


def main(argv=None):
    import pandas as pd

    from recbole_bifair.fileio import write_text_atomic

    args = parser().parse_args(argv)
    datasets = [d.strip() for d in args.dataset.split(",") if d.strip()]
    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    effects, runs = [], []
    for d in datasets:
        paths = selection.finished_paths(args, d, [args.frozen] + names, seeds, [args.frozen] + names)
        effect = selection.refinement_effect([selection.row(names[0], p) for p in paths[names[0]]],
                                             [selection.row(args.frozen, p) for p in paths[args.frozen]])
        effects.append({"dataset": d, **{f"NDCG change, seed {s}": c for s, c in zip(seeds, effect["ndcg change"])},
                        **{f"CV change, seed {s}": c for s, c in zip(seeds, effect["cv change"])},
                        "matters": "yes (" + ", ".join(effect["by"]) + ")" if effect["matters"] else "no"})
        for n in [args.frozen] + names:
            for s, p in zip(seeds, paths[n]):
                r = selection.row(n, p)
                runs.append({"dataset": d, "method": n, "seed": s, "valid NDCG@10": r["valid_ndcg@10"],
                             "valid CV": r["valid_cv"], "test NDCG@10": r["test_ndcg@10"], "test CV": r["test_cv"],
                             "test pop5": r["test_ndcg_pop5"], **movement(p), "epochs": r["epochs"]})
    command = (f"`python benchmarks/e_refinement.py --profile={args.profile} --dataset={args.dataset} "
               f"--seeds={args.seeds} --frozen='{args.frozen}' --candidates='{args.candidates}'` on "
               f"{datetime.date.today()}")
    text = (f"{command}.\n\nPart A (docs/METHOD.md 4d, validation, fixed before the runs): {names[0]} against "
            f"{args.frozen}, relative changes per seed; the refinement matters when every seed moves by at least "
            f"{selection.MATTERS_NDCG:.0%} in NDCG@10 or {selection.MATTERS_CV:.0%} in CV, in the same direction.\n\n"
            + pd.DataFrame(effects).to_markdown(index=False, floatfmt="+.3f")
            + "\n\nPart C: every run (E drift: ||E - E0|| / ||E0|| at the last epoch; the prior probe on E0 and on "
            "the refined E; test columns for the record only):\n\n"
            + pd.DataFrame(runs).to_markdown(index=False, floatfmt=".4f") + "\n")
    os.makedirs(args.out_dir, exist_ok=True)
    write_text_atomic(os.path.join(args.out_dir, f"e-refinement-{'+'.join(datasets)}.md"), text)
    print(pd.DataFrame(effects).to_string())
    return effects


if __name__ == "__main__":
    main()
