"""This plugin's runner against RecBole's ``run_recbole`` on the same SASRec config
(``anomaly_overhead.py``): each run a fresh process that times every ``Trainer._train_epoch``."""

import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks.lib.paths import REPO, WORK

# RecBole's overall.yaml sets a training negative sampler that its own Config rejects for
# SASRec's CE loss (RECBOLE.md item 6); RecBole's runner needs it cleared by hand.
BASE_CONFIG = {
    "train_neg_sample_args": None,
    "show_progress": False,
    "state": "WARNING",
    "seed": 2020,
}

# saved=False for both: RecBole's runner cannot reload its own checkpoint under torch 2.13
# (RECBOLE.md item 2), and checkpoint writing is no part of the epoch time anyway.
RUNNERS = {
    "recbole-bifair": (
        "from recbole_bifair.quick_start import run_bifair\n"
        "run_bifair(model='SASRec', dataset='ml-100k', config_dict=CONFIG, saved=False)\n"
    ),
    "recbole run_recbole": (
        "from recbole.quick_start import run_recbole\n"
        "run_recbole(model='SASRec', dataset='ml-100k', config_dict=CONFIG, saved=False)\n"
    ),
}

CHILD = """
import json, os, time, torch
from recbole.trainer import Trainer

CONFIG = json.loads(os.environ["BENCH_CONFIG"])
TIMES = []
train_epoch = Trainer._train_epoch

def timed(self, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    loss = train_epoch(self, *args, **kwargs)
    TIMES.append((time.perf_counter() - wall, time.process_time() - cpu, torch.is_anomaly_enabled()))
    return loss

Trainer._train_epoch = timed
{runner}
print("EPOCH_TIMES", json.dumps(TIMES))
"""


def run_once(name, config):
    env = dict(os.environ, BENCH_CONFIG=json.dumps(config), PYTHONPATH=REPO)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(runner=RUNNERS[name])],
        cwd=WORK, env=env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    times = json.loads(proc.stdout.split("EPOCH_TIMES", 1)[1])
    return {
        "wall_seconds": [round(wall, 2) for wall, _, _ in times],
        "cpu_seconds": [round(cpu, 2) for _, cpu, _ in times],
        "anomaly_enabled": [on for _, _, on in times],
        "process_seconds": round(time.time() - started, 1),
    }


def medians(results):
    """``{runner: median wall and CPU seconds per training epoch}`` over every run and epoch."""
    return {name: {measure: statistics.median(s for run in runs for s in run[measure])
                   for measure in ("wall_seconds", "cpu_seconds")}
            for name, runs in results.items()}
