"""Seconds per training epoch of a method on 1 and on 2 processes (``distributed_speed.py``):
``run_recbole_bifair.py --nproc=N``, one torch thread per process, RecBole's SASRec size,
sequence-level training, the same global batch."""

import glob
import json
import os
import subprocess
import sys
import time

from benchmarks.lib.methods import method_keys
from benchmarks.lib.paths import REPO
from benchmarks.lib.paths import WORK as WORK_ROOT

WORK = os.path.join(WORK_ROOT, "distributed")
#: Each row's name in the table -> the method it runs (``methods.select_rows``).
MODELS = {"BiFairSASRec": "BiFair", "LLM-SASRec": "LLM-SASRec"}


def run_config(spec, folder, dataset, epochs):
    """The config of one measured run: the method's keys, a fixed number of epochs (no early
    stopping), no probe, the embeddings of every benchmark's cache."""
    return dict(method_keys(spec), dataset=dataset, epochs=epochs, stopping_step=100, seed=2020, results_dir=folder,
                checkpoint_dir=os.path.join(folder, "saved"), show_progress=False, state="WARNING",
                prior_probe=False, llm_emb_dir=os.path.join(WORK_ROOT, "embeddings"),
                metrics=["NDCG", "Recall"], valid_metric="NDCG@10")


def measure(name, spec, nproc, dataset, epochs):
    """The run's seconds per epoch (training only), its per-epoch seconds, wall seconds and world size."""
    folder = os.path.join(WORK, f"{name}-nproc{nproc}")
    os.makedirs(folder, exist_ok=True)
    for old in glob.glob(os.path.join(folder, "*.json")):
        os.remove(old)
    config_file = os.path.join(folder, "config.yaml")
    with open(config_file, "w") as f:
        json.dump(run_config(spec, folder, dataset, epochs), f)  # JSON is YAML
    cmd = [sys.executable, os.path.join(REPO, "run_recbole_bifair.py"), f"--config_files={config_file}",
           f"--nproc={nproc}", f"--port={29500 + nproc}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    started = time.time()
    with open(os.path.join(folder, "run.log"), "w") as log:
        proc = subprocess.run(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} on {nproc} processes failed; see {folder}/run.log")
    (path,) = glob.glob(os.path.join(folder, "*.json"))
    with open(path) as f:
        result = json.load(f)
    return {"seconds_per_epoch": result["seconds_per_epoch"], "epoch_seconds": result["epoch_seconds"],
            "wall_seconds": time.time() - started, "world_size": result.get("world_size", 1)}
