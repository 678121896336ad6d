"""One run of the fairness benchmark: a method file under the protocol, in its own process
(``run_recbole_bifair.py``), reused when it has finished with the planned config (``cache``),
continued from its last checkpoint when it was interrupted, and archived when it finishes."""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from benchmarks.lib import archive as archives
from benchmarks.lib.cache import finished, planned_config, resumable
from benchmarks.lib.methods import DERIVED, folder_name, method_file, without_keys
from benchmarks.lib.paths import DEFAULT_DATA_PATH, REPO
from benchmarks.lib.protocol import TOPK, run_protocol
from recbole_bifair.fileio import atomic_path


class NotFinished(RuntimeError):
    """A run that ``base_only`` or ``finished_only`` needs has no finished result with the planned config."""


def run_dir(workdir, method, seed):
    return os.path.join(workdir, f"{folder_name(method)}-seed{seed}")


def launch(cmd, folder, threads, what, append=False):
    """Run ``cmd`` in ``folder`` with ``threads`` torch threads, its output in ``folder/run.log``
    (appended to when ``append``: a resumed run keeps its first part); the start time. A failed
    run raises with the log's path."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=REPO)
    started = time.time()
    with open(os.path.join(folder, "run.log"), "a" if append else "w") as log:
        # the run's console is quiet (warnings and a line per epoch): a line per attempt says which
        # process wrote what follows, and that a resumed run appended to its first part
        log.write(f"# {what}: {'resumed' if append else 'started'} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); see {folder}/run.log")
    return started


def _kept(done, archive):
    return archives.archive_run(done, archive) if archive else done


def run_cached(config_files, folder, threads, what, archive=None, base_only=False):
    """``(result JSON, seconds)`` of ``run_recbole_bifair.py --config_files=...`` run in ``folder``;
    a finished run with the same recorded config is reused (0 seconds), an unfinished one
    continues from its last checkpoint (``cache.resumable``). With an ``archive`` folder, the
    finished run's results are copied there (``archive.archive_run``) and the archived JSON is returned."""
    expected = planned_config(config_files)
    done = finished(folder, expected, archive)
    if done:
        return _kept(done, archive), 0.0
    if base_only:
        raise NotFinished(f"{what} has not finished with the planned config in {folder}: run it first "
                          f"(a derived method, {', '.join(DERIVED)}, evaluates its checkpoint)")
    cmd = [sys.executable, os.path.join(REPO, "run_recbole_bifair.py"), f"--config_files={' '.join(config_files)}"]
    resume = resumable(folder, expected)
    if resume:
        cmd.append(f"--resume_checkpoint={resume}")
    started = launch(cmd, folder, threads, what, append=bool(resume))
    done = finished(folder, expected)
    if done is None:
        raise RuntimeError(f"{what}: the run's recorded config differs from the planned one; "
                           f"compare its result JSON in {folder} with planned_config()")
    return _kept(done, archive), time.time() - started


def _base_checkpoint(method, what, base_json, base_folder):
    """The best checkpoint of a derived method's base run: where the run wrote it, or under
    ``base_folder/saved`` (a renamed folder)."""
    with open(base_json) as f:
        checkpoint = json.load(f)["checkpoint"]
    if checkpoint and not os.path.exists(checkpoint) and base_folder:
        checkpoint = os.path.join(base_folder, "saved", os.path.basename(checkpoint))
    if not checkpoint or not os.path.exists(checkpoint):
        raise RuntimeError(
            f"{what} is evaluated from {DERIVED[method]}'s best checkpoint {checkpoint}, which is gone (the work "
            f"folder is scratch; {base_json} is its archived result). Retrain that run here: move its archived "
            f"folder ({os.path.dirname(base_json)}) aside and run {DERIVED[method]} again, then {method}")
    return checkpoint


def run_derived(method, config_files, folder, threads, what, base, archive=None, base_folder=None,
                finished_only=False):
    """``(result JSON, seconds)`` of ``base``'s best checkpoint evaluated under ``config_files``
    (``benchmarks/eval_checkpoint.py --config_files``); reused like ``run_cached``'s runs.
    ``finished_only``: an evaluation made before, never a new one (``NotFinished``)."""
    base_json, _ = base
    expected = planned_config(config_files)
    done = finished(folder, expected, archive, derived=True)
    if done:
        return _kept(done, archive), 0.0
    if finished_only:
        raise NotFinished(f"{what} has not been evaluated with the planned config in {folder}")
    checkpoint = _base_checkpoint(method, what, base_json, base_folder)
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "eval_checkpoint.py"), checkpoint,
           f"--config_files={' '.join(config_files)}"]
    started = launch(cmd, folder, threads, what)
    done = finished(folder, expected, derived=True)
    if done is None:
        raise RuntimeError(f"{what}: no result file with the planned config in {folder}")
    return _kept(done, archive), time.time() - started


def run_one(method, seed, profile, workdir, threads, dataset="ml-100k", data_path=DEFAULT_DATA_PATH, extra=None,
            label=None, archive_root=None, base_only=False, finished_only=False):
    """One run of ``method`` (its method file) under the protocol; ``extra`` keys go on top of the
    protocol (a tuning candidate), in the folder named after ``label`` (default: the method).
    ``archive_root``: where finished runs are kept (``paths.ARCHIVE``; None: the work folder only).
    ``base_only``: the finished run, never a new one (the base of a ``DERIVED`` method).
    ``finished_only``: the finished run or evaluation, nothing new (``NotFinished`` otherwise)."""
    folder = run_dir(workdir, label or method, seed)
    os.makedirs(folder, exist_ok=True)
    protocol_file = os.path.join(folder, "protocol.yaml")
    # atomically: a derived method's thread writes its base run's file (the same for both) while
    # the base's own thread may be reading it (a plain open() let it read an empty file, "no dataset")
    with atomic_path(protocol_file) as tmp, open(tmp, "w") as f:
        json.dump(run_protocol(dataset, data_path, profile, seed, folder, workdir, extra), f)  # JSON is YAML
    config_files = [method_file(method), protocol_file]
    archive = archives.archive_folder(folder, archive_root)
    if method not in DERIVED:
        return run_cached(config_files, folder, threads, f"{method} seed {seed}", archive=archive,
                          base_only=base_only or finished_only)
    # a sweep point's training keys belong to its base: BiFair-train-logits[dro_tau=3.0] is
    # BiFair[dro_tau=3.0]'s trained model; ranking keys (posthoc_beta) only to the evaluation
    from recbole_bifair.quick_start import RANKING_ONLY_KEYS

    base_extra = {k: v for k, v in (extra or {}).items() if k not in RANKING_ONLY_KEYS}
    base_label = (DERIVED[method] + without_keys(label, RANKING_ONLY_KEYS)[len(method):]
                  if base_extra and label else None)
    base = run_one(DERIVED[method], seed, profile, workdir, threads, dataset, data_path, extra=base_extra or None,
                   label=base_label, archive_root=archive_root, base_only=True)
    return run_derived(method, config_files, folder, threads, f"{method} seed {seed}", base=base, archive=archive,
                       base_folder=run_dir(workdir, base_label or DERIVED[method], seed), finished_only=finished_only)


def _progress(done, total, name, seed, path, seconds, started):
    with open(path) as f:
        t = json.load(f)["test_result"]
    return (f"[{done}/{total}] {name} seed {seed}: {'cached' if not seconds else f'{seconds:.0f} s'}, "
            f"ndcg@{TOPK} {t[f'ndcg@{TOPK}']:.4f}, cv {t[f'ndcgcv@{TOPK}']:.3f}, "
            f"min/mean {t[f'ndcgminmean@{TOPK}']:.3f}  (elapsed {time.time() - started:.0f} s)")


def run_all(points, seeds, profile, workdir, dataset, data_path, jobs=1, threads=1, archive_root=None,
            finished_only=False):
    """``{name: {seed: result JSON}}`` of every (name, seed): ``points`` maps each ``--methods``
    name to its ``(method, extra keys)`` (``methods.parse_method``). Method by method, the derived
    methods (``DERIVED``) after every training; ``jobs`` runs at a time. ``finished_only``: runs
    that have not finished are left out (said on the console), never started."""
    pairs = [(name, seed) for name in points for seed in seeds]
    phases = [[p for p in pairs if points[p[0]][0] not in DERIVED], [p for p in pairs if points[p[0]][0] in DERIVED]]
    started = time.time()
    files = {name: {} for name in points}
    done = 0
    for phase in phases:
        # One core per run (threads 1, jobs = cores): small CPU ops stall when two processes
        # share cores with two OpenMP threads each.
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(run_one, points[name][0], seed, profile, workdir, threads, dataset, data_path,
                                   extra=points[name][1] or None, label=name if points[name][1] else None,
                                   archive_root=archive_root, finished_only=finished_only): (name, seed)
                       for name, seed in phase}
            for future in as_completed(futures):
                name, seed = futures[future]
                done += 1
                try:
                    path, seconds = future.result()
                except NotFinished:
                    if not finished_only:
                        raise
                    print(f"[{done}/{len(pairs)}] {name} seed {seed}: not finished, left out", flush=True)
                    continue
                print(_progress(done, len(pairs), name, seed, path, seconds, started), flush=True)
                files[name][seed] = path
    return files
