"""Validation curves of finished runs, and what each early-stopping rule would have done on them
(benchmarks/stopping_replay.py; the rule is recbole_bifair/trainer/stopping.py's, the trainer's own).

A curve is one run's raw validation score at every validation. Runs record it in their result
JSON (``valid_scores``); runs made before that field existed are read from the benchmark's
console log ``run.log`` (one ``epoch N/M ... valid <metric> <score>`` line per validation; a
resumed run repeats none, the last line of an epoch counts).
"""

import csv
import glob
import json
import os
import re

import yaml

from recbole_bifair.fileio import atomic_path
from recbole_bifair.trainer.stopping import replay

LINE = re.compile(r"epoch (\d+)/(\d+)\s.*?\svalid \S+ ([0-9.]+)")
FIELDS = ("curve", "dataset", "method", "seed", "patience", "epochs", "ended", "scores")
#: a later validation at least this much above everything before the stop (relative) means the
#: rule stopped a run that was still improving
IMPROVING = 0.01


def run_folder_curve(folder):
    """One run folder's curve record (``FIELDS``), or None when it holds no curve.
    ``ended``: early (early stopping), epochs (the epoch budget) or running (no result yet)."""
    log = os.path.join(folder, "run.log")
    protocol_file = os.path.join(folder, "protocol.yaml")
    if not (os.path.isfile(log) and os.path.isfile(protocol_file)):
        return None
    with open(protocol_file, encoding="utf-8") as f:
        protocol = yaml.safe_load(f)
    scores = {}
    with open(log, encoding="utf-8") as f:
        for line in f:
            match = LINE.search(line)
            if match:
                scores[int(match.group(1))] = float(match.group(3))
    # a folder can hold several runs (a changed default reruns in the same folder); run.log is the
    # latest's, so is the newest result file
    results = sorted(glob.glob(os.path.join(folder, "*.json")), key=os.path.getmtime)
    recorded = None
    for path in results:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
        if "test_result" in result and "evaluated_checkpoint" not in result:
            recorded = result
    if recorded and recorded.get("valid_scores") and recorded.get("first_epoch", 0) == 0:
        curve = list(recorded["valid_scores"])
    else:
        if not scores or sorted(scores) != list(range(len(scores))):
            return None
        curve = [scores[epoch] for epoch in range(len(scores))]
    if not curve:
        return None
    epochs = int(protocol["epochs"])
    ended = "running" if recorded is None else ("epochs" if len(curve) >= epochs else "early")
    name = os.path.basename(os.path.normpath(folder))
    method, _, seed = name.rpartition("-seed")
    run = f"/{recorded['run_id']}" if recorded and recorded.get("run_id") else ""
    return {"curve": f"{os.path.basename(os.path.dirname(os.path.normpath(folder)))}/{name}{run}",
            "dataset": protocol["dataset"], "method": method, "seed": int(seed),
            "patience": int(protocol["stopping_step"]), "epochs": epochs, "ended": ended,
            "scores": " ".join(f"{s:.4f}" for s in curve)}


def collect(workdirs):
    """The curve records of every run folder ``<workdir>/<benchmark>/<run>/`` under ``workdirs``, by
    curve name (a later workdir's record of the same run wins). A run still training counts with
    what it has (``ended: running``): it tells for the rules that stop within it."""
    records = {}
    for workdir in workdirs:
        for folder in sorted(glob.glob(os.path.join(workdir, "*", "*"))):
            record = run_folder_curve(folder) if os.path.isdir(folder) else None
            if record:
                records[record["curve"]] = record
    return records


def merge(records, new):
    """``records`` (curve name -> record) with ``new`` added; a record of the same run under an older
    name (the same dataset, method, seed, patience and scores; names before run ids) is dropped, and
    so is a record of a run still training in the folder of a new record (the run went on)."""
    def same_run(record):
        return tuple(str(record[field]) for field in ("dataset", "method", "seed", "patience", "scores"))

    def folder(name):
        return "/".join(name.split("/")[:2])

    merged = dict(records)
    for name, record in new.items():
        # the same run under an older name, or what the folder's run had done while still training
        for old in [old for old, kept in merged.items() if old != name and (
                same_run(kept) == same_run(record) or (folder(old) == folder(name) and kept["ended"] == "running"))]:
            del merged[old]
        merged[name] = record
    return merged


def read_curves(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["seed"], row["patience"], row["epochs"] = int(row["seed"]), int(row["patience"]), int(row["epochs"])
        row["scores"] = [float(s) for s in row["scores"].split()]
    return rows


def write_curves(path, records):
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for name in sorted(records):
            writer.writerow(records[name])


def outcome(row, window, patience):
    """What the rule (``window``, ``patience``) does on the curve ``row``: None when the curve does
    not tell (it ended before the rule would have stopped), else ``{"stop", "best", "kept": the raw
    score of the kept checkpoint, "shortfall": how far (relative) that is below the curve's best
    raw score, "improving": whether the curve later went IMPROVING above everything before the stop}``."""
    curve = row["scores"]
    result = replay(curve, window, patience)
    stop = result["stop"]
    if stop is None or stop == len(curve) - 1:
        if row["ended"] != "epochs":
            return None  # it would stop at or after the recorded curve's end: what follows is unknown
        stop = len(curve) - 1
    kept = curve[result["best"]]
    top = max(curve)
    before = max(curve[: stop + 1])
    after = max(curve[stop + 1:], default=-1.0)
    return {"stop": stop, "best": result["best"], "kept": kept, "shortfall": (top - kept) / top,
            "improving": after > before * (1 + IMPROVING)}
