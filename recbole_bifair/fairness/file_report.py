"""The whole fairness table of a saved ranking file, with bootstrap intervals.

    python -m recbole_bifair.fairness --rankings=RUN.rankings.csv --item_groups=RUN.item_groups.csv
    python -m recbole_bifair.fairness --rankings=r.csv --item_groups=g.csv --topk=5,10 --n_boot=1000 \\
        --long_tail=threshold --long_tail_threshold=20 --output=results/mine

The two files are what a run writes with ``save_rankings: True``, or the same columns made by any
other system (README, "Fairness report of a ranking file"):

- rankings: ``user``, ``target`` (the ground-truth item token(s), space separated), ``topk`` (the
  recommended item tokens, best first, space separated); one row per evaluated user;
- item groups: ``item``, ``group``, ``train_count`` (training interactions); one row per item of
  the catalog, every item of the rankings included.

The table is :class:`~recbole_bifair.fairness.report.GroupReport`'s, the same computation the
evaluator runs inside RecBole, and the intervals come from
:mod:`~recbole_bifair.fairness.bootstrap` (resampling the users).
"""

import json
import os
import sys

import pandas as pd

from recbole_bifair.cli import run_cli, split_flags
from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness.bootstrap import bootstrap, intervals
from recbole_bifair.fairness.groups import LONG_TAIL_DEFAULTS, LONG_TAIL_RULES
from recbole_bifair.fairness.rankings import load_rankings
from recbole_bifair.fairness.report import GroupReport, _clean
from recbole_bifair.fileio import atomic_path, write_text_atomic

USAGE = __doc__
FLAGS = {"rankings", "item_groups", "topk", "n_boot", "seed", "level", "long_tail", "long_tail_share",
         "long_tail_threshold", "output"}


def file_report(rankings, item_groups, topk=None, n_boot=1000, seed=0, level=0.95,
                long_tail=LONG_TAIL_DEFAULTS["long_tail"], long_tail_share=LONG_TAIL_DEFAULTS["long_tail_share"],
                long_tail_threshold=LONG_TAIL_DEFAULTS["long_tail_threshold"]):
    """``(report, table)``: the GroupReport of the files, and one row per (k, figure) with the
    estimate and its bootstrap interval (``n_boot`` resamples of the users; 0: no intervals).
    ``topk``: list of cut-offs; None: the length of the lists."""
    if long_tail not in LONG_TAIL_RULES:
        raise ConfigError(f"--long_tail={long_tail}: choose one of {', '.join(LONG_TAIL_RULES)}")
    groups, topk_items, positives = load_rankings(rankings, item_groups, max(topk) if topk else None)
    groups.set_long_tail(long_tail, long_tail_share, long_tail_threshold)
    topk = topk or [topk_items.shape[1]]
    report = GroupReport(groups, topk_items, positives, topk)
    rows = []
    for k in report.topk:
        point = report.figures(k)
        if n_boot:
            draws = bootstrap(groups, topk_items, positives, k=k, n_boot=n_boot, seed=seed)
            for name, figure in intervals(point, draws, level).items():
                rows.append({"k": k, "figure": name, **figure})
        else:
            rows += [{"k": k, "figure": name, "estimate": value} for name, value in point.items()]
    return report, pd.DataFrame(rows)


def main(argv):
    flags, _, rest = split_flags(argv, FLAGS)
    if rest:
        raise ConfigError(f"unknown argument(s) {' '.join(rest)}; the flags are --{', --'.join(sorted(FLAGS))}")
    for required in ("rankings", "item_groups"):
        if required not in flags:
            raise ConfigError(f"--{required}=FILE is missing (see --help)")
    topk = [_number(flags, "topk", int, part) for part in flags["topk"].strip("[]").split(",")] if "topk" in flags else None
    if topk and min(topk) < 1:
        raise ConfigError(f"--topk={flags['topk']}: cut-offs are integers >= 1")
    report, table = file_report(
        flags["rankings"], flags["item_groups"], topk,
        n_boot=_number(flags, "n_boot", int, flags.get("n_boot", "1000")),
        seed=_number(flags, "seed", int, flags.get("seed", "0")),
        level=_number(flags, "level", float, flags.get("level", "0.95")),
        long_tail=flags.get("long_tail", LONG_TAIL_DEFAULTS["long_tail"]),
        long_tail_share=_number(flags, "long_tail_share", float, flags.get("long_tail_share", "0.8")),
        long_tail_threshold=_number(flags, "long_tail_threshold", int, flags.get("long_tail_threshold", "20")))
    print(report.format_table())
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    if "output" in flags:
        os.makedirs(os.path.dirname(os.path.abspath(flags["output"])), exist_ok=True)
        with atomic_path(flags["output"] + ".csv") as tmp:
            table.to_csv(tmp, index=False)
        result = dict(report.to_json(), rankings_file=flags["rankings"], item_groups_file=flags["item_groups"],
                      figures=_clean(table.to_dict(orient="records")))
        write_text_atomic(flags["output"] + ".json", json.dumps(result, indent=2) + "\n")
        print(f"wrote {flags['output']}.csv and {flags['output']}.json", file=sys.stderr)
    return report, table


def _number(flags, name, kind, text):
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"--{name}={flags.get(name, text)}: expected a{'n' if kind is int else ''} "
                          f"{'integer' if kind is int else 'number'}") from None


def console_main():
    sys.exit(run_cli(main, usage=USAGE))
