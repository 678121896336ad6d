"""Fairness and accuracy of every method (docs/benchmarks.md, the protocol); also run as
``python -m benchmarks.fairness ...``.

    python benchmarks/fairness.py --profile=quick          # ml-100k, one seed, 6 epochs
    python benchmarks/fairness.py --profile=quick3         # the quick budget, seeds 2020, 2021, 2022
    python benchmarks/fairness.py --profile=converge3 --dataset=ml-1m --methods=SASRec,LLM-SASRec
    python benchmarks/fairness.py --profile=quick --methods=LLM-SASRec,BiFair
    python benchmarks/fairness.py --profile=quick3 --methods='LLM-SASRec,VarReg[group_variance_weight=0.5]'
    python benchmarks/fairness.py --profile=quick3 --methods=LLM-SASRec,BiFair --sweeps   # + every SWEEPS point
    python benchmarks/fairness.py --profile=quick --methods=LLM-SASRec,path/to/MyMethod.yaml  # a method of your own
    python benchmarks/fairness.py --profile=converge3 --dataset=ml-1m --methods=SASRec --seeds=2022  # one seed
    python benchmarks/fairness.py --profile=converge3 --dataset=ml-1m --methods=LLM-SASRec,BiFair --finished_only

``--dataset`` is ml-100k (inside the RecBole wheel) or a folder under ``--data_path`` (default
``../shared/datasets``: ml-1m, amazon-beauty-5core); the plugin's ``properties/dataset/<name>.yaml``
gives each dataset's fields and text template. The ``converge`` budget is RecBole's SASRec size
trained to early stopping; the ``quick`` budget (6 epochs, 32 wide) is the ml-100k smoke profile.

Every (method, seed) is one run of ``run_recbole_bifair.py`` in its own process with the method's
file ``properties/methods/<method>.yaml`` and the protocol below, so a method here is exactly
what a user gets from the command line. Runs write their result JSON under
``benchmarks/work/fairness-<budget>/`` (scratch: checkpoints, logs); a finished run's JSON and test
rankings are copied to ``benchmarks/results/runs/`` (``--archive``; committed, so a new checkout
has them) and a finished run is not repeated when its recorded config equals the one the run
would have now (so an interrupted benchmark continues where it stopped, and a changed default or
method file reruns what it affects). The table (``benchmarks/results/fairness-<dataset>.md`` and
``.csv`` for ``converge3``, ``fairness-<dataset>-<profile>`` otherwise; ml-100k's quick profiles
keep their names ``fairness-quick*``) and the figures are made from those JSON files only.

Sweep points: besides method names, ``--methods`` takes ``<Method>[<key>=<value>]`` (the value is
read with ``yaml.safe_load``, so numbers stay numbers; several ``[<key>=<value>]`` stack), e.g.
``PostHoc[posthoc_beta=1.0]``: the method file with that key on top, a row of that exact name in the
table, its runs in a folder with ``[``, ``]``, ``=`` mapped to safe characters
(``PostHoc__posthoc_beta-1.0-seed2020``). ``--sweeps`` appends every point of
``benchmarks.lib.methods.SWEEPS`` (each baseline's default sweep) to ``--methods``, so that a
BiFair row is compared with each baseline's whole accuracy-fairness curve, not one setting.
A method of your own is a method file given by its path (``path/to/MyMethod.yaml``, a row named
``MyMethod``; sweep points ``path/to/MyMethod.yaml[<key>=<value>]`` too): the keys of a file of
``properties/methods/``, e.g. ``model: LLMSASRec``, ``fair_method: my_method`` and
``method_modules: /abs/path/my_method.py`` (absolute: each run starts in its own folder;
docs/extending.md).
A point that repeats a method's setting (``IPS[ips_alpha=1.0]``) is not run again: a finished run
is found by its recorded config in any run folder of the same work folder or archive
(``benchmarks.lib.cache.finished``).

PostHoc (and its sweep points) trains nothing: it is LLM-SASRec's trained model of the same seed
(its best validation checkpoint, still in the work folder) ranked with ``posthoc_beta``
(``benchmarks.lib.methods.DERIVED``; ``recbole_bifair.quick_start.evaluate_checkpoint``), so the
post-hoc curve comes from the baseline's own runs and costs evaluations only. ``BiFair-PostHoc`` is the same on BiFair's
trained model (``posthoc_beta`` below 0 adds popularity back): with PostHoc it compares the two
trained models along their whole accuracy-fairness curves. ``BiFair-train-logits`` ranks BiFair's
trained model with its training logits (``rank_with_offsets``: the learned group offsets added
back), which separates what BiFair's inner level learned from what removing the offsets trades.
Derived methods run after every training of the command.

For the BiFair rows (names starting with ``BiFair``), ``cv_paired_hi`` is the highest over seeds
of the upper end of the paired bootstrap 95% interval of the row's CV minus LLM-SASRec's on the
same test users (NaN for other rows, or without LLM-SASRec): below 0, CV is lower than
LLM-SASRec's in every seed. ``cv_minus_posthoc_curve`` is the row's CV minus that of LLM-SASRec's
post-hoc curve (LLM-SASRec and the PostHoc rows, interpolated; ``benchmarks.lib.stats.curve_cv``)
at the row's NDCG@10, per seed, then averaged: below 0, the row is beyond the curve, not only
beyond its measured points (``dominated_by``); the per-seed gaps are in
``cv_minus_posthoc_curve_per_seed`` and the ``.md``.

``--finished_only`` trains and evaluates nothing: the table is made from the runs that have
finished (work folder or archive) for the requested methods and seeds, each row with its own seeds
(column ``seeds``); a row's paired figures and Pareto check use its seeds, which the rows it is
compared with must all have. This puts a method whose three seeds do not fit in one session in the
table with the seeds it has, marked as such, without waiting for or starting the rest.

Selection is RecBole's early stopping on validation NDCG@10; the table reports test metrics.
Groups: K = 5 popularity groups with equal shares of training interactions; the equal-item-count
split is recomputed from the saved test rankings of the same runs (``save_rankings``).
"""

import argparse
import json
import os
import time

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import plots, runs, tables  # noqa: E402
from benchmarks.lib.methods import METHODS, parse_method, row_name, sweep_points  # noqa: E402
from benchmarks.lib.paths import ARCHIVE, DEFAULT_DATA_PATH, RESULTS, WORK  # noqa: E402
from benchmarks.lib.protocol import PROFILES, seeds_suffix, work_folder  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=DEFAULT_DATA_PATH,
                   help="folder holding the dataset (not used for ml-100k, which RecBole ships)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="method names, paths of method files (path/to/MyMethod.yaml, the row MyMethod) and "
                        "sweep points <Method>[<key>=<value>], comma-separated")
    p.add_argument("--sweeps", action="store_true", help="append every point of SWEEPS to --methods")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds instead of the profile's (e.g. one seed per process, to spread "
                        "one profile's runs over several commands); the table is of these seeds")
    p.add_argument("--workdir", default=WORK)
    p.add_argument("--out_dir", default=RESULTS)
    p.add_argument("--archive", default=ARCHIVE,
                   help="where finished runs' results are kept and reused (commit it); '' for none")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="runs at the same time (default: one per core)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--finished_only", action="store_true",
                   help="train and evaluate nothing: the table of the runs already finished (each row "
                        "with the seeds it has; its paired figures over those seeds)")
    p.add_argument("--compare", default="",
                   help="comma-separated A:B pairs of --methods rows: the .md gets A minus B per seed (paired "
                        "bootstrap of CV, min/mean and NDCG@10 on the same test users)")
    return p


def planned_points(args, error):
    """``{name: (method, extra keys)}`` of ``--methods`` (and ``--sweeps``) in order, each name once
    (a method file given by path is named by its stem, ``methods.row_name``), and the ``--compare``
    pairs; ``error`` reports a bad entry."""
    names = [m.strip() for m in args.methods.split(",") if m.strip()] + (sweep_points() if args.sweeps else [])
    points = {}
    for name in names:
        try:
            points.setdefault(row_name(name), parse_method(name))  # a name given twice runs once
        except ValueError as err:
            error(str(err))
    compare = [tuple(x.strip() for x in pair.split(":", 1)) for pair in args.compare.split(",") if pair.strip()]
    for pair in compare:
        if len(pair) != 2 or not set(pair) <= set(points):
            error(f"--compare {':'.join(pair)}: give A:B with both rows in --methods ({', '.join(points)})")
    return points, compare


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    points, compare = planned_points(args, p.error)
    workdir = work_folder(args.workdir, args.dataset, args.profile)
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else PROFILES[args.profile]["seeds"]
    started = time.time()
    found = runs.run_all(points, seeds, args.profile, workdir, args.dataset, args.data_path, args.jobs, args.threads,
                         args.archive or None, args.finished_only)
    # rows in --methods order, each with its seeds in the profile's order (all of them unless --finished_only)
    row_seeds = {m: [s for s in seeds if s in found[m]] for m in points if found[m]}
    if not row_seeds:
        p.error(f"--finished_only: no finished run of {', '.join(points)} for seeds {seeds} under "
                f"{workdir} or {args.archive}")
    files = {m: [found[m][s] for s in row_seeds[m]] for m in row_seeds}
    table, paired = tables.fairness_table(files, row_seeds)
    with open(next(iter(files.values()))[0]) as f:
        config = json.load(f)["config"]
    header = tables.header(args.dataset, args.profile, seeds, args.jobs, args.threads, config, args.finished_only)
    stem = tables.table_stem(args.out_dir, args.dataset, args.profile, seeds_suffix(seeds, args.profile))
    # a headline row with fewer seeds than LLM-SASRec's is compared with LLM-SASRec over its own seeds
    tables.write_tables(table, stem, header, tables.comparisons(files, row_seeds, paired, compare),
                        tables.headline_bases(files, row_seeds))
    plots.write_figures(table, stem, args.dataset, args.profile)
    print(f"wrote {stem}.md, .csv, -groups.png, -pareto.png in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
