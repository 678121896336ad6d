"""Hyperparameter search with Ray Tune, on one machine or a Ray cluster.

``run_search`` checks everything it can before Ray starts (params file, config files, model,
metric names, resume target), runs the trials (``recbole_bifair.tune.trainable``), selects on
validation metrics, evaluates the chosen trial once on the test split (from its checkpoint: the
very model that was selected, no retraining), and writes the report (``recbole_bifair.tune.report``).
"""

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd
import ray
from ray import tune
from ray.air import CheckpointConfig, FailureConfig, RunConfig
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from recbole_bifair.config import load_yaml_file, parse_cmd_args
from recbole_bifair.errors import BiFairError, ConfigError
from recbole_bifair.fileio import write_json_atomic
from recbole_bifair.quick_start import build_config, init_run_logger, prepare_run
from recbole_bifair.tune import report
from recbole_bifair.tune.objective import Objective, smaller_is_better
from recbole_bifair.tune.space import SearchSpace, parse_space_file
from recbole_bifair.tune.trainable import CHECKPOINT_MODEL, TrialSetup, train_trial

logger = logging.getLogger(__name__)

SCHEDULERS = ("asha", "fifo")
ALGOS = ("exhaustive", "random")
#: Keys a trial sets itself, or that must be the same in every trial for trials to be comparable.
RESERVED_KEYS = {"model", "dataset", "checkpoint_dir", "gpu_id", "valid_metric", "valid_metric_bigger",
                 "metrics", "topk"}
#: Run outputs: they belong where a run happens, so they are not pinned to the search's folder.
OUTPUT_KEYS = {"checkpoint_dir", "results_dir"}
SETTINGS_FILE = "bifair_search.json"


class SearchError(BiFairError):
    """The search ran but produced no usable choice (all trials failed, none met the constraint)."""


class SearchInterrupted(BiFairError):
    """The search stopped before all trials ended; its state is saved and ``resume`` continues it."""


@dataclass
class SearchPlan:
    """A search, fully checked; everything here is decided before Ray starts."""

    setup: TrialSetup
    space: SearchSpace
    objective: Objective
    algo: str
    num_samples: int
    scheduler: str
    grace_period: int
    reduction_factor: float
    max_t: int
    seed: int
    max_concurrent: Optional[int]
    cpus_per_trial: float
    gpus_per_trial: Optional[float]
    max_failures: int
    storage_path: str
    name: str
    output_dir: str

    @property
    def experiment_path(self):
        if "://" in self.storage_path:
            return self.storage_path.rstrip("/") + "/" + self.name
        return os.path.join(self.storage_path, self.name)

    @property
    def total_trials(self):
        return self.num_samples * (self.space.grid_size() if self.algo == "exhaustive" else 1)

    def settings(self):
        """What defines the search (a resumed search must match it)."""
        return json.loads(json.dumps({
            "model": self.setup.model, "dataset": self.setup.dataset, "fixed": self.setup.fixed,
            "space": [p.describe() for p in self.space.params], "objective": self.objective.describe(),
            "algo": self.algo, "num_samples": self.num_samples, "scheduler": self.scheduler,
        }, default=str))


@dataclass
class SearchResult:
    table: object  # pandas.DataFrame, one row per trial
    chosen: Optional[str]  # trial id
    best_config: dict
    test_result: dict
    experiment_path: str
    files: dict = field(default_factory=dict)


def plan_search(model, dataset, params_file, config_files=(), overrides=(), objective=None, constraint=None,
                algo=None, num_samples=None, scheduler="asha", grace_period=1, reduction_factor=2,
                max_concurrent=None, cpus_per_trial=1, gpus_per_trial=None, max_failures=1,
                storage_path="ray_results", name=None, output_dir=None):
    """Check the whole search without starting Ray; raise ``ConfigError`` on the first problem.

    ``config_files`` and ``overrides`` (``--key=value`` strings) are merged here, in RecBole's
    order, into the fixed config every trial gets: workers never read the files, so on a cluster
    they need not see them.
    """
    space = parse_space_file(params_file)
    fixed = _fixed_config(space, config_files, overrides)
    config = _driver_config(model, dataset, fixed)
    model, dataset = config["model"], config["dataset"]
    if not config["eval_step"] or config["eval_step"] <= 0:
        raise ConfigError(
            f"eval_step={config['eval_step']}: a search compares trials on validation, so eval_step must be "
            f"positive (1 = validate after every epoch)"
        )
    fixed.update(absolute_paths({**config.internal_config_dict, **config.external_config_dict}))

    objective = Objective.parse(objective or config["valid_metric"], constraint)
    reported = reported_metrics(config)
    for metric in objective.metrics:
        # per-group keys (groupndcg@10[pop5]): the groups are known only once the data is loaded
        if metric.split("[")[0] not in reported:
            raise ConfigError(
                f"metric '{metric}' is not among the validation metrics this config reports "
                f"({', '.join(reported)}): add it to `metrics`/`topk` in a config file or pick one of those"
            )
    # The epoch a trial keeps (and reports as best/...) is chosen by valid_metric: make it the objective.
    if str(config["valid_metric"]).lower() != objective.metric:
        logger.info("valid_metric set to %s (the objective) instead of %s", objective.metric, config["valid_metric"])
    fixed["valid_metric"] = objective.metric
    fixed["valid_metric_bigger"] = not smaller_is_better(objective.metric)

    algo, num_samples = _algo(space, algo, num_samples)
    _check_numbers(num_samples=num_samples, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                   grace_period=grace_period, max_concurrent=max_concurrent, max_failures=max_failures,
                   reduction_factor=reduction_factor)
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler={scheduler}: use one of {', '.join(SCHEDULERS)}")
    max_t = int(space["epochs"].largest()) if "epochs" in space.names else int(config["epochs"])
    if scheduler == "asha" and grace_period > max_t:
        raise ConfigError(f"--grace_period={grace_period} exceeds the {max_t} training epochs: lower it")

    name = name or f"{model}-{dataset}"
    if "://" not in storage_path:
        storage_path = os.path.abspath(storage_path)
    return SearchPlan(
        setup=TrialSetup(model, dataset, fixed), space=space, objective=objective, algo=algo,
        num_samples=num_samples, scheduler=scheduler, grace_period=int(grace_period),
        reduction_factor=float(reduction_factor), max_t=max_t, seed=int(config["seed"]),
        max_concurrent=max_concurrent, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
        max_failures=int(max_failures), storage_path=storage_path, name=name,
        output_dir=os.path.abspath(output_dir or os.path.join("hyper_results", name)),
    )


def _fixed_config(space, config_files, overrides):
    reserved = sorted(RESERVED_KEYS & set(space.names))
    if reserved:
        raise ConfigError(
            f"params file '{space.source}' line {space[reserved[0]].line}: '{reserved[0]}' cannot be searched "
            f"(trials set it, or it must be equal in every trial to compare them): fix it in a config file instead"
        )
    fixed = {}
    for path in config_files or ():
        fixed.update(load_yaml_file(path))
    cmd = parse_cmd_args(list(overrides or ()))
    both = sorted(set(cmd) & set(space.names))
    if both:
        raise ConfigError(
            f"'{both[0]}' is both searched (params file '{space.source}' line {space[both[0]].line}) and fixed "
            f"on the command line (--{both[0]}=...): drop one of them"
        )
    fixed.update(cmd)
    fixed.pop("model", None)  # the search's --model and --dataset decide
    fixed.pop("dataset", None)
    return fixed


def _algo(space, algo, num_samples):
    """RecBole's default: every combination of `choice` lines (exhaustive); random sampling
    (10 trials unless told) as soon as a line is a distribution."""
    algo = algo or ("exhaustive" if space.all_choice else "random")
    if algo not in ALGOS:
        raise ConfigError(f"--algo={algo}: use one of {', '.join(ALGOS)}")
    if algo == "random":
        return algo, 10 if num_samples is None else num_samples
    if not space.all_choice:
        bad = next(p for p in space.params if p.kind != "choice")
        raise ConfigError(
            f"--algo=exhaustive needs `choice` lines only; params file '{space.source}' line {bad.line} is "
            f"{bad.kind}: use --algo=random"
        )
    if num_samples is not None:
        raise ConfigError(
            f"--num_samples does not apply to --algo=exhaustive (it tries all {space.grid_size()} "
            f"combinations once): drop it, or use --algo=random"
        )
    return algo, 1


def _check_numbers(num_samples, cpus_per_trial, gpus_per_trial, grace_period, max_concurrent, max_failures,
                   reduction_factor):
    checks = [
        ("num_samples", num_samples, num_samples > 0, "must be positive"),
        ("cpus_per_trial", cpus_per_trial, cpus_per_trial > 0, "must be positive"),
        ("gpus_per_trial", gpus_per_trial, gpus_per_trial is None or gpus_per_trial >= 0, "must be 0 or more"),
        ("grace_period", grace_period, grace_period > 0, "must be positive"),
        ("max_concurrent", max_concurrent, max_concurrent is None or max_concurrent > 0, "must be positive"),
        ("max_failures", max_failures, max_failures >= 0, "must be 0 or more"),
        ("reduction_factor", reduction_factor, reduction_factor > 1, "must be above 1"),
    ]
    for flag, value, ok, rule in checks:
        if not ok:
            raise ConfigError(f"--{flag}={value}: {rule}")


@contextlib.contextmanager
def _cuda_env_kept():
    # RecBole's Config sets CUDA_VISIBLE_DEVICES to its gpu_id: in the driver, that would hide
    # GPUs from the Ray node it starts next. Building a config here must leave it as it was.
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def _driver_config(model, dataset, config_dict):
    with _cuda_env_kept():
        return build_config(model, dataset, config_dict=dict(config_dict))


def absolute_paths(values, base=None):
    """Relative paths in path-like keys (``data_path``, ``*_path``, ``*_dir``, ``*_file``) made
    absolute against ``base`` (the current folder): Ray runs each trial in its own folder.
    Run outputs (``checkpoint_dir``, ``results_dir``) are left alone."""
    base = base or os.getcwd()
    absolute = {}
    for key, value in values.items():
        path_like = key == "data_path" or key.endswith(("_path", "_dir", "_file"))
        if (path_like and key not in OUTPUT_KEYS and isinstance(value, str) and value
                and "://" not in value and not os.path.isabs(value)):
            absolute[key] = os.path.normpath(os.path.join(base, value))
    return absolute


def reported_metrics(config):
    """The keys of RecBole's valid_result for this config: ``name@k`` for metrics computed on
    the top-k lists (those that need ``rec.topk`` or ``rec.items``), ``name`` for the others.
    A metric not registered (yet) in this process may be either."""
    from recbole.evaluator import metric_information

    topk = config["topk"] if isinstance(config["topk"], list) else [config["topk"]]
    names = []
    for metric in config["metrics"]:
        low = metric.lower()
        needs = metric_information.get(low)
        if needs is None or {"rec.topk", "rec.items"} & set(needs):
            names += [f"{low}@{k}" for k in topk]
        if needs is None or not {"rec.topk", "rec.items"} & set(needs):
            names.append(low)
    return names


def _trial_dirname(trial):
    return trial.trial_id


def run_search(plan, address=None, resume=False, callbacks=None, verbose=1):
    """Run ``plan`` (from ``plan_search``) and write its report; return a ``SearchResult``.

    ``address``: a Ray cluster (``auto`` or ``HOST:PORT``); a local Ray instance otherwise (or
    the one this process already runs). ``resume``: continue the search stored under
    ``plan.storage_path/plan.name``. ``callbacks``: extra Ray Tune callbacks.
    """
    _check_experiment(plan, resume)
    started = _connect(address)
    try:
        resources = _resources(plan)
        trainable = tune.with_resources(tune.with_parameters(train_trial, setup=plan.setup), resources)
        if resume:
            tuner = tune.Tuner.restore(plan.experiment_path, trainable=trainable, resume_unfinished=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=plan.space.ray_space(exhaustive=plan.algo == "exhaustive"),
                tune_config=tune.TuneConfig(
                    metric=plan.objective.metric, mode=plan.objective.mode, scheduler=_scheduler(plan),
                    # Ray's default search, seeded; it limits concurrency itself (max_concurrent_trials
                    # applies to Searchers only and is ignored with it).
                    search_alg=BasicVariantGenerator(random_state=plan.seed, max_concurrent=plan.max_concurrent or 0),
                    num_samples=plan.num_samples, trial_dirname_creator=_trial_dirname,
                ),
                run_config=RunConfig(
                    name=plan.name, storage_path=plan.storage_path, callbacks=callbacks, verbose=verbose,
                    failure_config=FailureConfig(max_failures=plan.max_failures),
                    # A trial reports a checkpoint only when its epoch improves: the latest is its best.
                    checkpoint_config=CheckpointConfig(num_to_keep=1),
                ),
            )
            _save_settings(plan)
        grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    ended = grid.num_terminated + grid.num_errors
    if ended < plan.total_trials:
        raise SearchInterrupted(
            f"the search stopped after {ended} of {plan.total_trials} trials; "
            f"its state is saved in {plan.experiment_path}: rerun the same command with --resume to continue it"
        )
    return finish(plan, list(grid))


def _check_experiment(plan, resume):
    exists = tune.Tuner.can_restore(plan.experiment_path)
    if resume and not exists:
        raise ConfigError(
            f"--resume: no search named '{plan.name}' in {plan.storage_path}: check --name and --storage_path"
        )
    if not resume and exists:
        raise ConfigError(
            f"a search named '{plan.name}' already exists in {plan.storage_path}: pass --resume to continue it, "
            f"or --name=OTHER for a new one"
        )
    settings_file = os.path.join(plan.experiment_path, SETTINGS_FILE)
    if resume and os.path.isfile(settings_file):
        with open(settings_file, encoding="utf-8") as f:
            saved = json.load(f)
        changed = [k for k, v in plan.settings().items() if saved.get(k) != v]
        if changed:
            raise ConfigError(
                f"--resume: the search '{plan.name}' was started with other {', '.join(changed)} "
                f"(see {settings_file}): resume it with its original arguments"
            )


def _save_settings(plan):
    if "://" in plan.experiment_path:
        return  # cloud storage: Ray keeps its own state there; the settings check is local only
    write_json_atomic(os.path.join(plan.experiment_path, SETTINGS_FILE), plan.settings())


def _connect(address):
    """Join the cluster at ``address``, or start a local Ray instance; True when started here."""
    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address)
        except ConnectionError as err:
            raise ConfigError(
                f"--address={address}: no Ray cluster there ({err}); start one with `ray start --head`"
            ) from err
        return False
    # Local workers inherit this process's environment: let them import this package even from a
    # source checkout that is not pip-installed.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + paths)
    ray.init(include_dashboard=False)
    return True


def _resources(plan):
    """CPUs and GPUs per trial; GPUs by default only where the cluster has some, and never more
    than one node offers (a trial asking for more would wait forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    gpus = plan.gpus_per_trial if plan.gpus_per_trial is not None else (1 if most_gpus else 0)
    if plan.cpus_per_trial > most_cpus:
        raise ConfigError(
            f"--cpus_per_trial={plan.cpus_per_trial}: no Ray node has that many CPUs (the largest has {most_cpus:g})"
        )
    if gpus > most_gpus:
        raise ConfigError(
            f"--gpus_per_trial={gpus:g}: no Ray node has that many GPUs (the largest has {most_gpus:g}); "
            f"use --gpus_per_trial=0 to train on CPUs"
        )
    return {"cpu": plan.cpus_per_trial, "gpu": gpus}


def _scheduler(plan):
    if plan.scheduler == "fifo":
        return FIFOScheduler()
    # time_attr "epoch": the trainable reports epochs trained, so milestones are in epochs.
    return ASHAScheduler(time_attr="epoch", max_t=plan.max_t, grace_period=plan.grace_period,
                         reduction_factor=plan.reduction_factor)


def finish(plan, results):
    """Table, selection, test evaluation of the chosen trial, files."""
    setup, objective = plan.setup, plan.objective
    table, chosen = report.build_table(results, plan.space, objective)
    title = f"Hyperparameter search: {setup.model} on {setup.dataset}"
    write = dict(output_dir=plan.output_dir, table=table, space=plan.space, objective=objective, title=title)
    if chosen is None:
        note = _no_choice(table, objective)
        report.write_outputs(**write, note=f"No trial chosen: {note}")
        raise SearchError(f"{note} (table: {os.path.join(plan.output_dir, 'trials.md')})")
    result = results[chosen]
    params = {k: result.config[k] for k in plan.space.names}
    config = report.best_config(setup.model, setup.dataset, setup.fixed, params)
    test_result = evaluate_on_test(setup, params, result.checkpoint)
    trial_id = table.loc[chosen, "trial"]
    summary = {
        "trial": trial_id, "objective": objective.describe(), "params": report.plain(params),
        "valid_result": {m: table.loc[chosen, m] for m in report.metric_columns(table, plan.space)},
        "test_result": test_result, "best_epoch": table.loc[chosen, "best_epoch"],
        "experiment_path": plan.experiment_path, "trial_path": str(result.path),
    }
    files = report.write_outputs(**write, chosen=chosen, config=config, test_result=test_result, summary=summary)
    logger.info("chosen trial %s; test result %s; report in %s", trial_id, test_result, plan.output_dir)
    return SearchResult(table, trial_id, config, test_result, plan.experiment_path, files)


def _no_choice(table, objective):
    failed = table["status"] == report.STATUS_FAILED
    if failed.all():
        return f"all {len(table)} trials failed; first error: {table.loc[failed.idxmax(), 'error']}"
    if objective.constraint:
        c = objective.constraint
        values = table.loc[~failed, c.metric].dropna() if c.metric in table else pd.Series(dtype=float)
        closest = f" (closest: {c.metric}={(values.min() if '<' in c.op else values.max()):.4g})" if len(values) else ""
        return f"no trial satisfies {c}{closest}; relax --constraint or widen the search"
    return f"no trial reported {objective.metric}"


def evaluate_on_test(setup, params, checkpoint):
    """The chosen trial's kept model (its last checkpoint: the best epoch), on the test split."""
    if checkpoint is None:
        raise SearchError("the chosen trial saved no checkpoint, so its model cannot be tested")
    with checkpoint.as_directory() as folder, _cuda_env_kept():
        model_file = os.path.join(folder, CHECKPOINT_MODEL)
        config = build_config(setup.model, setup.dataset,
                              config_dict=setup.config_dict(params, checkpoint_dir=folder))
        init_run_logger(config)
        _, (train_data, _, test_data), _, trainer = prepare_run(config)
        # What Trainer.fit does first: metrics on item counts and groups read the training data.
        trainer.eval_collector.data_collect(train_data)
        result = trainer.evaluate(test_data, load_best_model=True, model_file=model_file)
    return {k: float(v) for k, v in dict(result).items()}


__all__ = ["plan_search", "run_search", "SearchPlan", "SearchResult", "SearchError", "SearchInterrupted"]
