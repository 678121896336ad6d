"""Train, evaluate and record one run: RecBole's ``run_recbole`` with the plugin's resolution.

Kept close to ``recbole.quick_start.run_recbole``; it differs where the plugin must: plugin
classes and properties (``BiFairConfig``, ``get_model``, ``get_trainer``), no implicit
``sys.argv``, a fresh logger per run (RecBole's ``logging.basicConfig`` is a no-op the second
time in one process), extra end-of-run reports, and one atomic JSON result file per run.

``run`` is RecBole's ``run``: one process, or ``nproc`` processes spawned on this machine
(``world_size`` in all, over several machines), each running ``run_bifair``; see
recbole_bifair/trainer/distributed.py for what is shared and what rank 0 alone does.
"""

import os
import sys
import time
import uuid
from collections.abc import MutableMapping
from logging import getLogger

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_local_time, init_seed, set_color

from recbole_bifair.compat import check_model, load_checkpoint, load_weights
from recbole_bifair.config import BiFairConfig, plugin_defaults
from recbole_bifair.data.prepare import prepare_data
from recbole_bifair.data.sequence import sequence_training_data
from recbole_bifair.embedding.threads import CpuThreads
from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness import end_of_run_report, validate_group_config
from recbole_bifair.fileio import write_json_atomic
from recbole_bifair.logging_setup import (CONSOLE, bifair_extras, epoch_line, header_line, init_logger, log_path,
                                          metrics_line)
from recbole_bifair.model.export import export_item_table
from recbole_bifair.model.sasrec_layout import apply_layout
from recbole_bifair.prior_probe import prior_probe
from recbole_bifair.schema import recorded_config, upgrade_legacy
from recbole_bifair.trainer import distributed
from recbole_bifair.utils import get_model, get_trainer


def new_run_id(config):
    """``<model>-<dataset>-<time>-<6 hex digits>``, the same on every process of a run: it names the
    result file, the log file and the TensorBoard folder. ``get_local_time`` has one-second
    resolution: parallel runs (Ray trials, the benchmark) need the random digits. A dot in the
    dataset name becomes ``_``: RecBole names the TensorBoard folder by the log file's name up to
    its first dot."""
    dataset = str(config["dataset"]).replace(".", "_")
    return distributed.broadcast_object(f"{config['model']}-{dataset}-{get_local_time()}-{uuid.uuid4().hex[:6]}")


def init_run_logger(config, run_id=None):
    """The run's logger (logging_setup: a quiet console, everything in ``log/<model>/<run_id>.log``),
    reset for each run in a process; its first console line says what runs where. Returns the run
    id (a new one when None)."""
    run_id = run_id or new_run_id(config)
    log_file = log_path(config["model"], run_id)
    init_logger(config, log_file)
    processes = 1 if config["single_spec"] else distributed.world_size()
    getLogger().info(header_line(config["model"], config["dataset"], torch.get_num_threads(), config["device"],
                                 log_file, processes), extra=CONSOLE)
    return run_id


def set_threads(config):
    """Apply the key ``threads`` (torch.set_num_threads) and return the count. ``~``: as many as
    the cores other processes leave idle, at most torch's current count (OMP_NUM_THREADS or its
    default), measured as the encoder does (embedding/threads.py): two threads of one process
    on a core shared with another job stall each other."""
    threads = config["threads"]
    if threads is None:
        with CpuThreads() as idle:
            threads = idle.threads
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1 or ~ (the idle cores), got {threads!r}")
    torch.set_num_threads(threads)
    return threads


def console_epochs(config, trainer, callback_fn=None):
    """A ``fit`` callback that puts one line per validated epoch on the console (``epoch_line``),
    then calls ``callback_fn``."""
    metric = config["valid_metric"].lower()

    def after_validation(epoch_idx, valid_score):
        loss = trainer.train_loss_dict[epoch_idx]
        stats = getattr(trainer, "epoch_stats", None)
        extras = bifair_extras(stats[-1]) if stats and stats[-1]["epoch"] == epoch_idx else []
        raw = trainer.valid_scores[-1] if getattr(trainer, "valid_scores", None) else valid_score
        mean = valid_score if getattr(trainer, "valid_window", 1) > 1 else None
        getLogger().info(epoch_line(epoch_idx, config["epochs"], trainer.epoch_seconds[-1], float(loss), metric,
                                    raw, trainer.cur_step == 0, extras, mean=mean), extra=CONSOLE)
        if callback_fn:
            callback_fn(epoch_idx, valid_score)

    return after_validation


def build_config(model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None):
    return BiFairConfig(
        model=model, dataset=dataset, config_file_list=config_file_list,
        config_dict=config_dict, cmd_args=cmd_args,
    )


def prepare_run(config):
    """Dataset, splits, model and trainer for ``config``, seeded as RecBole does."""
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = prepare_data(config, dataset)
    model_class = get_model(config["model"])
    train_data = sequence_training_data(config, train_data, model_class)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = apply_layout(config, model_class(config, train_data._dataset)).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return dataset, (train_data, valid_data, test_data), model, trainer


def run_bifair(model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None,
               saved=True, callback_fn=None, config=None):
    """Train on the training split, select on validation, report test; write the result JSON.

    Returns the result dict that was written to ``<results_dir>/<run_id>.json``.
    """
    started = time.time()
    config = config or build_config(model, dataset, config_file_list, config_dict, cmd_args)
    set_threads(config)
    run_id = init_run_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset, (train_data, valid_data, test_data), model, trainer = prepare_run(config)
    logger.info(dataset)
    logger.info(model)
    validate_group_config(config, train_data._dataset)  # fail now, not after a long training
    if config["resume_checkpoint"]:
        trainer.resume_checkpoint(config["resume_checkpoint"])
        logger.info(f"resumed {config['resume_checkpoint']} at epoch {trainer.start_epoch}", extra=CONSOLE)

    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"],
        callback_fn=console_epochs(config, trainer, callback_fn),
    )
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    checkpoint = os.path.abspath(trainer.saved_model_file) if saved else None
    return write_result(config, started, dataset, model, trainer, train_data, test_data, best_valid_score,
                        best_valid_result, test_result, checkpoint, run_id=run_id)


#: Keys that change what a trained model ranks, not what it learns (``evaluate_checkpoint``),
#: and keys that say where a run writes or how it was executed.
RANKING_ONLY_KEYS = ("posthoc_beta", "rank_with_offsets")
WHERE_KEYS = ("results_dir", "checkpoint_dir", "resume_checkpoint", "threads")


def evaluate_checkpoint(checkpoint_file, config_file_list=None, config_dict=None, cmd_args=None, config=None):
    """A trained model's best weights evaluated under a config that differs from its training
    config only in ranking-time keys (``RANKING_ONLY_KEYS``, e.g. ``posthoc_beta``: the post-hoc
    baseline applied to a trained LLM-SASRec, the model selected by the trained model's own
    validation); no training. Writes and returns the result file of ``run_bifair``, whose
    ``best_valid_result`` is the validation metrics of those weights under the new config, with
    ``epochs_trained`` 0 and ``evaluated_checkpoint``.

    Raises ConfigError naming the keys when the configs differ in anything else."""
    started = time.time()
    config = config or build_config(None, None, config_file_list, config_dict, cmd_args)
    trained = load_checkpoint(checkpoint_file, "checkpoint_file")
    theirs = trained["config"]["recorded"]
    if "bifair" in theirs:  # from before fair_method: its model and keys in today's terms
        theirs = upgrade_legacy({**theirs, "model": trained["config"]["model"]})
        trained["config"]["model"] = theirs["model"] if "model" in trained["config"]["recorded"] else theirs.pop("model")
    check_model(trained, config["model"], "checkpoint_file", checkpoint_file)
    ours = recorded_config(config)
    # a key added to the plugin after the checkpoint was written comes with a default that keeps
    # the old behaviour (as fairness.py's same_config assumes): unset in the checkpoint, it may
    # have that default now, nothing else
    defaults = plugin_defaults()
    differ = sorted(k for k in set(ours) | set(theirs)
                    if k not in RANKING_ONLY_KEYS + WHERE_KEYS and ours.get(k, "<unset>") != theirs.get(k, "<unset>")
                    and not (k not in theirs and k in defaults and ours.get(k) == defaults[k]))
    if differ:
        raise ConfigError(f"{checkpoint_file} was trained with another config than the one to evaluate it under: "
                          + "; ".join(f"{k}: trained {theirs.get(k, '<unset>')!r}, now {ours.get(k, '<unset>')!r}"
                                      for k in differ)
                          + f". Only {', '.join(RANKING_ONLY_KEYS)} may differ; train a model for the other keys")
    run_id = init_run_logger(config)
    logger = getLogger()
    logger.info(f"evaluating {checkpoint_file} (no training)")
    dataset, (train_data, valid_data, test_data), model, trainer = prepare_run(config)
    load_weights(model, trained["state_dict"], "checkpoint_file", checkpoint_file)
    model.load_other_parameter(trained.get("other_parameter"))
    trainer.eval_collector.data_collect(train_data)
    valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=config["show_progress"])
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
    return write_result(config, started, dataset, model, trainer, train_data, test_data,
                        valid_result[config["valid_metric"].lower()], valid_result, test_result, None,
                        run_id=run_id, evaluated_checkpoint=os.path.abspath(checkpoint_file))


def write_result(config, started, dataset, model, trainer, train_data, test_data, best_valid_score,
                 best_valid_result, test_result, checkpoint, run_id=None, **more):
    """The end-of-run reports and the result JSON ``<results_dir>/<run_id>.json`` (rank 0 writes);
    ``run_id``: the one the run's log file has (``init_run_logger``), None: a new one."""
    logger = getLogger()
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    logger.info(metrics_line("test", test_result), extra=CONSOLE)

    run_id = run_id or new_run_id(config)
    results_dir = config["results_dir"] or "results"
    main = distributed.is_main()  # under several processes, rank 0 alone writes files
    extras = end_of_run_report(config, trainer, test_data, results_dir, run_id) if main else {}
    if main:
        extras.update(end_of_run_extras(config, dataset, model, trainer, train_data, test_data, results_dir, run_id))
    result = {
        "run_id": run_id,
        "model": config["model"],
        "dataset": config["dataset"],
        "config": recorded_config(config),
        "best_valid_score": best_valid_score,
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result or {}),
        # epochs this process trained; a run resumed from a checkpoint (resume_checkpoint) started at
        # first_epoch, so first_epoch + epochs_trained is the run's whole count
        "epochs_trained": len(trainer.epoch_seconds),
        "first_epoch": int(getattr(trainer, "start_epoch", 0) or 0),
        "seconds_per_epoch": (sum(trainer.epoch_seconds) / len(trainer.epoch_seconds)) if trainer.epoch_seconds else None,
        "epoch_seconds": trainer.epoch_seconds,
        # the raw validation score of every validation of the run, resumed ones included (the
        # curve valid_window smooths; benchmarks/stopping_replay.py reads it)
        "valid_scores": list(getattr(trainer, "valid_scores", [])),
        "total_seconds": time.time() - started,
        "checkpoint": checkpoint,
        **more,
        **extras,
    }
    if not config["single_spec"]:
        result["world_size"] = distributed.world_size()
    result_path = os.path.join(results_dir, f"{run_id}.json")
    if main:
        write_json_atomic(result_path, result)
    result["result_file"] = os.path.abspath(result_path)
    logger.info(f"result file: {result['result_file']}", extra=CONSOLE)
    distributed.barrier()  # no rank leaves (and tears the group down) while rank 0 still writes
    return result


def end_of_run_extras(config, dataset, model, trainer, train_data, test_data, results_dir, run_id):
    """What a run reports beyond RecBole's metrics: the BiFair training log, the prior-unfairness
    probe and the exported item table, for models that have an LLM item table."""
    logger = getLogger()
    extras = {}
    if getattr(trainer, "epoch_stats", None):
        extras["training_log"] = trainer.epoch_stats
    if not hasattr(model, "item_table"):
        return extras
    if config["prior_probe"]:
        extras["prior_probe"] = prior_probe(config, model, train_data, test_data)
        for name, metrics in extras["prior_probe"].items():
            logger.info(set_color(f"prior probe on {name}", "yellow") + f": {metrics}")
    if config["export_llm_emb"]:
        path = os.path.abspath(os.path.join(results_dir, f"{run_id}.llmemb"))
        extras["llm_emb_export"] = export_item_table(model, dataset, path)
        logger.info(set_color("refined item table", "yellow") + f": {path}")
    return extras


#: Keys of a run on several processes: a checkpoint reloads in one process.
PROCESS_KEYS = ("local_rank", "world_size", "nproc", "offset", "ip", "port", "backend")


def load_data_and_model(model_file):
    """RecBole's ``load_data_and_model`` for a checkpoint written by the plugin: the Config rebuilt
    from the config dict the checkpoint stores, on this machine's device."""
    checkpoint = load_checkpoint(model_file, "model_file")
    saved = checkpoint["config"]
    # a checkpoint from before fair_method: its model and keys in today's terms (schema.upgrade_legacy)
    config_dict = upgrade_legacy({"model": saved["model"], **saved["config_dict"]})
    model_name = config_dict.pop("model")
    config_dict = {k: v for k, v in config_dict.items() if k not in PROCESS_KEYS}
    config = build_config(model_name, saved["dataset"], config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_run_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = apply_layout(config, get_model(config["model"])(config, train_data._dataset)).to(config["device"])
    load_weights(model, checkpoint["state_dict"], "model_file", model_file)
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data


def run(model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None, saved=True,
        nproc=1, world_size=-1, ip="localhost", port="5678", offset=0):
    """``run_bifair`` in this process, or on ``nproc`` spawned processes (RecBole's ``run``).

    Several machines: start this on each one with the same ``world_size``, ``ip`` and ``port``
    (rank 0's machine) and ``offset`` = the global rank of its first process. Returns rank 0's
    result on rank 0's machine, None on the others.
    """
    if nproc == 1 and world_size <= 0:
        return run_bifair(model=model, dataset=dataset, config_file_list=config_file_list,
                          config_dict=config_dict, cmd_args=cmd_args, saved=saved)
    import torch.multiprocessing as mp

    world_size = nproc if world_size == -1 else world_size
    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(config_dict or {}, world_size=world_size, ip=ip, port=str(port), nproc=nproc, offset=offset)
    kwargs = {"model": model, "dataset": dataset, "config_file_list": config_file_list,
              "config_dict": config_dict, "cmd_args": cmd_args, "saved": saved, "queue": queue}
    mp.spawn(run_bifairs, args=(kwargs,), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def run_bifairs(local_rank, kwargs):
    """One spawned process of ``run`` (RecBole's ``run_recboles``)."""
    if not isinstance(kwargs, MutableMapping):
        raise ValueError(f"run_bifairs takes a dict of run_bifair's arguments, got {type(kwargs)}")
    kwargs = dict(kwargs)
    queue = kwargs.pop("queue", None)
    kwargs["config_dict"] = dict(kwargs.get("config_dict") or {}, local_rank=local_rank)
    try:
        result = run_bifair(**kwargs)
        if distributed.is_main() and queue is not None:
            queue.put(result)
    finally:
        distributed.destroy()
