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
:mod:`~recbole_bifair.fairness.bootstrap` (resampling the users): percentile intervals at
``--level`` over ``--n_boot`` resamples, which the printed table states.
"""

import argparse
import json
import os
import sys

import pandas as pd

from recbole_bifair.cli import run_cli
from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness.bootstrap import bootstrap, intervals
from recbole_bifair.fairness.groups import LONG_TAIL_DEFAULTS, LONG_TAIL_RULES
from recbole_bifair.fairness.rankings import load_rankings
from recbole_bifair.fairness.report import GroupReport, _clean
from recbole_bifair.fileio import atomic_path, write_text_atomic

DEFAULTS = {"n_boot": 1000, "seed": 0, "level": 0.95, **LONG_TAIL_DEFAULTS}


def file_report(rankings, item_groups, topk=None, n_boot=DEFAULTS["n_boot"], seed=DEFAULTS["seed"],
                level=DEFAULTS["level"], long_tail=LONG_TAIL_DEFAULTS["long_tail"],
                long_tail_share=LONG_TAIL_DEFAULTS["long_tail_share"],
                long_tail_threshold=LONG_TAIL_DEFAULTS["long_tail_threshold"]):
    """``(report, table)``: the GroupReport of the files, and one row per (k, figure) with the
    estimate and its bootstrap interval (``n_boot`` resamples of the users; 0: no intervals).
    ``topk``: list of cut-offs; None: the length of the lists."""
    if long_tail not in LONG_TAIL_RULES:
        raise ConfigError(f"--long_tail={long_tail}: choose one of {', '.join(LONG_TAIL_RULES)}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ConfigError(f"--n_boot={n_boot}: the number of bootstrap resamples is an integer >= 0 (0: no intervals)")
    if not 0 < level < 1:
        raise ConfigError(f"--level={level}: the interval level is a probability strictly between 0 and 1, e.g. 0.95")
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


def interval_note(n_boot, level, seed, n_users):
    """The line above the figures: what their intervals are."""
    if not n_boot:
        return "no intervals (--n_boot=0)"
    return (f"intervals: {100 * level:g}% percentile bootstrap, {n_boot} resamples of the {n_users} users "
            f"(seed {seed})")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError(f"{message} (see --help)")


def _bounded(kind, low, high, what, low_open=False, high_open=False):
    """An argparse type: ``kind(text)`` within [low, high] (open ends where asked; None: unbounded)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
        if value != value or (low is not None and (value < low or (low_open and value == low))) or \
                (high is not None and (value > high or (high_open and value == high))):  # NaN first
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}")
        return value
    return parse


def _cutoffs(text):
    try:
        cutoffs = [int(part) for part in text.strip("[]").split(",")]
    except ValueError:
        cutoffs = []
    if not cutoffs or min(cutoffs) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': cut-offs are integers >= 1, separated by commas (5,10)")
    return cutoffs


def build_parser():
    parser = _Parser(prog="python -m recbole_bifair.fairness", description=__doc__, allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--rankings", metavar="FILE", help="the rankings CSV (user, target, topk); required")
    add("--item_groups", metavar="FILE", help="the item groups CSV (item, group, train_count); required")
    add("--topk", type=_cutoffs, metavar="K[,K...]", help="cut-offs (default: the length of the lists)")
    add("--n_boot", type=_bounded(int, 0, None, "an integer >= 0 (0: no intervals)"), default=DEFAULTS["n_boot"],
        metavar="N", help="bootstrap resamples of the users; 0: no intervals (default: %(default)s)")
    add("--level", type=_bounded(float, 0, 1, "a number strictly between 0 and 1 (0.95)", True, True),
        default=DEFAULTS["level"], metavar="P", help="level of the percentile intervals (default: %(default)s)")
    add("--seed", type=_bounded(int, 0, None, "an integer >= 0"), default=DEFAULTS["seed"],
        help="seed of the resampling (default: %(default)s)")
    add("--long_tail", default=LONG_TAIL_DEFAULTS["long_tail"], metavar="RULE",
        help="the long-tail items: group (the last group), share (outside the head holding long_tail_share of "
             "the training interactions, Elliot) or threshold (fewer than long_tail_threshold training "
             "interactions, LLM-ESR) (default: %(default)s)")
    add("--long_tail_share", type=_bounded(float, 0, 1, "a number in (0, 1]", low_open=True),
        default=LONG_TAIL_DEFAULTS["long_tail_share"], metavar="SHARE",
        help="--long_tail=share: the head's share of the interactions (default: %(default)s)")
    add("--long_tail_threshold", type=_bounded(int, 0, None, "an integer >= 0"),
        default=LONG_TAIL_DEFAULTS["long_tail_threshold"], metavar="COUNT",
        help="--long_tail=threshold: training interactions of a head item, at least (default: %(default)s)")
    add("--output", metavar="PREFIX", help="also write PREFIX.csv (the figures) and PREFIX.json (report and "
                                             "figures) (default: print only)")
    add("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv):
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        raise ConfigError(f"unknown argument(s) {' '.join(unknown)}; see --help for the flags")
    for required in ("rankings", "item_groups"):
        if getattr(args, required) is None:
            raise ConfigError(f"--{required}=FILE is missing (see --help)")
    report, table = file_report(
        args.rankings, args.item_groups, args.topk, n_boot=args.n_boot, seed=args.seed, level=args.level,
        long_tail=args.long_tail, long_tail_share=args.long_tail_share, long_tail_threshold=args.long_tail_threshold)
    print(report.format_table())
    print()
    print(interval_note(args.n_boot, args.level, args.seed, report.n_rows))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with atomic_path(args.output + ".csv") as tmp:
            table.to_csv(tmp, index=False)
        result = dict(report.to_json(), rankings_file=args.rankings, item_groups_file=args.item_groups,
                      bootstrap={"n_boot": args.n_boot, "level": args.level, "seed": args.seed},
                      figures=_clean(table.to_dict(orient="records")))
        write_text_atomic(args.output + ".json", json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.output}.csv and {args.output}.json", file=sys.stderr)
    return report, table


def console_main():
    sys.exit(run_cli(main, usage=build_parser().format_help()))
