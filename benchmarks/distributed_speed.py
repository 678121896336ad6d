"""Seconds per training epoch of one model on 1 and on 2 processes (torch.distributed, gloo on CPU).

    python benchmarks/distributed_speed.py                       # BiFairSASRec and LLM-SASRec, ml-100k
    python benchmarks/distributed_speed.py --models=BiFairSASRec --epochs=3

Each measurement is one ``run_recbole_bifair.py`` process tree (``--nproc=1`` or ``--nproc=2``),
one torch thread per process, RecBole's SASRec size, sequence-level training, the same global
batch (``train_batch_size`` counts targets over all ranks). The figure is the run's
``seconds_per_epoch`` (training only; every rank evaluates every user, so evaluation does not
get faster). Results: ``benchmarks/results/distributed-<dataset>.md`` / ``.json``.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
WORK = os.path.join(REPO, "benchmarks", "work", "distributed")
MODELS = {"BiFairSASRec": {"model": "BiFairSASRec"}, "LLM-SASRec": {"model": "BiFairSASRec", "bifair": False}}


def measure(name, nproc, dataset, epochs):
    folder = os.path.join(WORK, f"{name}-nproc{nproc}")
    os.makedirs(folder, exist_ok=True)
    for old in glob.glob(os.path.join(folder, "*.json")):
        os.remove(old)
    config = dict(MODELS[name], dataset=dataset, epochs=epochs, stopping_step=100, seed=2020, results_dir=folder,
                  checkpoint_dir=os.path.join(folder, "saved"), show_progress=False, state="WARNING",
                  prior_probe=False, llm_emb_dir=os.path.join(REPO, "benchmarks", "work", "embeddings"),
                  metrics=["NDCG", "Recall"], valid_metric="NDCG@10")
    config_file = os.path.join(folder, "config.yaml")
    with open(config_file, "w") as f:
        json.dump(config, f)  # JSON is YAML
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    from recbole_bifair.fileio import write_json_atomic, write_text_atomic

    results = {}
    rows = ["| model | processes | s / epoch (mean over epochs) | x 1 process | wall s |", "|---|---|---|---|---|"]
    for name in [m for m in args.models.split(",") if m]:
        results[name] = {n: measure(name, n, args.dataset, args.epochs) for n in (1, 2)}
        one = results[name][1]["seconds_per_epoch"]
        for n, r in results[name].items():
            rows.append(f"| {name} | {n} | {r['seconds_per_epoch']:.1f} | {r['seconds_per_epoch'] / one:.2f} | "
                        f"{r['wall_seconds']:.0f} |")
            print(rows[-1], flush=True)
    header = (f"`python benchmarks/distributed_speed.py --dataset={args.dataset} --epochs={args.epochs}` on "
              f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, one torch thread per "
              f"process, gloo; RecBole's SASRec size, sequence-level training, the same global batch.")
    stem = os.path.join(REPO, "benchmarks", "results", f"distributed-{args.dataset}")
    write_text_atomic(stem + ".md", header + "\n\n" + "\n".join(rows) + "\n")
    write_json_atomic(stem + ".json", results)
    print(f"wrote {stem}.md")


if __name__ == "__main__":
    main()
