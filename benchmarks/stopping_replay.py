"""Early-stopping rules replayed on recorded validation curves (METHOD.md 3e: ``valid_window``).

    python benchmarks/stopping_replay.py --collect benchmarks/work /other/checkout/benchmarks/work
    python benchmarks/stopping_replay.py            # the tables from the committed curves

``--collect`` reads the validation curve of every run under the given benchmark work folders
(finished, or as far as a run still training got) (``<workdir>/<benchmark>/<run>/``: its result JSON's ``valid_scores``, or its ``run.log``)
into ``benchmarks/results/stopping/curves.csv`` (committed: the tables need no scratch folder),
adding to the curves already there. The tables (``benchmarks/results/stopping/README.md``) say,
for every rule (``valid_window`` k, ``stopping_step`` p), on every curve that tells (the recorded
run went on at least as long as the rule would have, or ran to its epoch budget): where the rule
stops, whether the curve was still improving there (a later validation >= 1% above everything
before the stop), and how far the kept checkpoint's raw validation score is below the curve's
best. Validation only: no test metric is read.
"""

import argparse
import os
import statistics

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib.paths import RESULTS  # noqa: E402
from benchmarks.lib.stopping import IMPROVING, collect, merge, outcome, read_curves, write_curves  # noqa: E402
from recbole_bifair.fileio import atomic_path  # noqa: E402

OUT = os.path.join(RESULTS, "stopping")
WINDOWS = (1, 2, 3, 5)
PATIENCES = (5, 10, 20)
#: the rules of the per-curve table
PER_CURVE = ((1, 5), (3, 5), (1, 10), (3, 10), (1, 20), (3, 20))


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--collect", nargs="*", metavar="WORKDIR", help="add the curves of the runs under these folders")
    p.add_argument("--out_dir", default=OUT)
    return p


def rule_rows(curves):
    rows = []
    for patience in PATIENCES:
        for window in WINDOWS:
            told = [(c, o) for c in curves if (o := outcome(c, window, patience)) is not None]
            if not told:
                rows.append(f"| {window} | {patience} | 0 | - | - | - | - |")
                continue
            improving = [c["curve"] for c, o in told if o["improving"]]
            short = [100 * o["shortfall"] for _, o in told]
            used = [o["stop"] + 1 for _, o in told]
            rows.append(f"| {window} | {patience} | {len(told)} of {len(curves)} | {len(improving)} | "
                        f"{statistics.mean(short):.2f} | {max(short):.2f} | {statistics.mean(used):.1f} |")
    return rows


def curve_rows(curves):
    rows = []
    for c in curves:
        cells = []
        for window, patience in PER_CURVE:
            o = outcome(c, window, patience)
            cells.append("?" if o is None else
                         f"{o['stop'] + 1}{'!' if o['improving'] else ''} / {o['kept']:.4f}")
        best = max(c["scores"])
        rows.append(f"| {c['dataset']} | {c['method']} | {c['seed']} | {c['patience']} | {len(c['scores'])} "
                    f"({c['ended']}) | {best:.4f} @ {c['scores'].index(best) + 1} | " + " | ".join(cells) + " |")
    return rows


def write_tables(out_dir, curves):
    lines = [
        "# Early-stopping rules replayed on recorded validation curves",
        "",
        "Made by `python benchmarks/stopping_replay.py` from `curves.csv` (each a run's raw validation "
        "NDCG@10 at every epoch, or as far as a run still training got; `--collect` adds curves). A rule is `valid_window` k (early stopping and the "
        "kept checkpoint follow the mean of the last k validations; k = 1 is RecBole's rule) with `stopping_step` "
        "p. A curve *tells* for a rule when its run went on at least as long as the rule would have (its own "
        f"patience was larger) or ran to its epoch budget. *Improving*: the curve later rose >= {100 * IMPROVING:.0f}% "
        "above everything before the stop. *Shortfall*: the kept checkpoint's raw validation score below the "
        "curve's best raw validation score (relative; the best raw score is itself a noisy maximum). "
        "Validation only.",
        "",
        "| window k | patience p | curves that tell | stopped while improving | mean shortfall % | max shortfall % "
        "| validations used (mean) |",
        "|---|---|---|---|---|---|---|",
        *rule_rows(curves),
        "",
        "Per curve: validations used (`!`: stopped while improving) / raw validation score of the kept checkpoint; "
        "`?`: the curve does not tell.",
        "",
        "| dataset | method | seed | recorded patience | validations | best raw @ validation | "
        + " | ".join(f"k{k} p{p}" for k, p in PER_CURVE) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(PER_CURVE),
        *curve_rows(curves),
        "",
    ]
    path = os.path.join(out_dir, "README.md")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


def main(argv=None):
    args = parser().parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "curves.csv")
    if args.collect:
        records = {}
        if os.path.isfile(path):
            records = {row["curve"]: {**row, "scores": " ".join(f"{s:.4f}" for s in row["scores"])}
                       for row in read_curves(path)}
        records = merge(records, collect(args.collect))
        write_curves(path, records)
    curves = sorted(read_curves(path), key=lambda c: (c["dataset"], c["method"], c["seed"], c["curve"]))
    print(write_tables(args.out_dir, curves))


if __name__ == "__main__":
    main()
