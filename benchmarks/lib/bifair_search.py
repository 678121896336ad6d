"""The Ray Tune search over BiFair's outer level on ml-100k's quick budget (``tune_bifair.py``):
its protocol, its bound from LLM-SASRec's validation CV, and its report."""

import datetime
import json
import os
import platform

from benchmarks.lib import runs
from benchmarks.lib.paths import REPO
from benchmarks.lib.protocol import BUDGETS, PROTOCOL, legacy_keys
from recbole_bifair.fileio import write_json_atomic

SEED = 2020
PROFILE = "quick"
TARGET_CV_RATIO = 0.75  # the issue: CV at least 25% lower than LLM-SASRec's
ROUNDS = {"outer": "bifair_outer_ml100k.test", "balance": "bifair_balance_ml100k.test"}


def fixed_keys(items):
    """``{key: value}`` of ``--set KEY=VALUE`` items (YAML values); ValueError names a bad item."""
    import yaml

    fixed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item}: write KEY=VALUE")
        fixed[key] = yaml.safe_load(value)
    return fixed


def baseline_valid(workdir, threads):
    """LLM-SASRec's validation result under the quick protocol (its benchmark run), and its file."""
    path, _ = runs.run_one("LLM-SASRec", SEED, PROFILE, os.path.join(workdir, f"fairness-{PROFILE}"), threads)
    with open(path) as f:
        return json.load(f)["best_valid_result"], path


def write_protocol(search_dir, workdir, fixed):
    """The search's protocol file: the benchmark's protocol at the quick budget, ``first_order``
    hypergradients (half the cost, the same metrics to four decimals there), ``fixed`` on top."""
    protocol = {**PROTOCOL, **legacy_keys("ml-100k", PROFILE), **BUDGETS[PROFILE], "seed": SEED, "save_rankings": False,
                "hypergrad": "first_order",
                "llm_emb_dir": os.path.join(workdir, f"fairness-{PROFILE}", "embeddings"), **fixed}
    path = os.path.join(search_dir, "protocol.yaml")
    write_json_atomic(path, protocol)  # JSON is YAML; whole or not at all (Ray's trials read it)
    return path


def trial_table(trials_csv, names, base):
    """The trials (``report/trials.csv``) sorted by the grid's keys, with their accuracy and CV as
    shares of LLM-SASRec's (``base``: its validation result)."""
    import pandas as pd

    table = pd.read_csv(trials_csv)
    cols = [*names, "status", "best_epoch", "ndcg@10", "ndcgcv@10", "ndcgminmean@10", "ndcggap@10"]
    table = table[[c for c in cols if c in table]].sort_values(names)
    table["ndcg_vs_base"] = table["ndcg@10"] / base["ndcg@10"]
    table["cv_vs_base"] = table["ndcgcv@10"] / base["ndcgcv@10"]
    return table


def report_lines(args, names, fixed, minutes, base, base_file, bound, table, chosen, note):
    """The .md of a search round: what ran, LLM-SASRec's figures and the bound, the trials, the choice."""
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
        table.to_markdown(index=False, floatfmt=".4f"),
        "",
    ]
    if chosen is not None:
        params = {k: chosen.best_config[k] for k in names}
        lines.append(f"**Chosen**: {params} (trial {chosen.chosen}); its test result: NDCG@10 "
                     f"{chosen.test_result.get('ndcg@10', float('nan')):.4f}, "
                     f"CV {chosen.test_result.get('ndcgcv@10', float('nan')):.4f}.")
    else:
        lines.append(f"**No trial chosen**: {note}")
    return lines
