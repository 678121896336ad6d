"""Every workaround for RecBole 1.2.1 on this stack (torch 2.13, numpy 1.26/2.x) lives here.

Each item names the bug (numbering of docs/recbole-workarounds.md) so that it can be deleted the day
RecBole fixes it. ``apply()`` installs the process-wide ones; it is idempotent and is called by
``recbole_bifair.setup()`` (BiFairConfig, the entry points, and each Ray worker, a fresh process).
"""

import copy
import csv
import os
import pickle
import re
from pathlib import Path

import numpy as np
import recbole
import torch

from recbole.evaluator.collector import Collector

from recbole_bifair.errors import ConfigError, DataError

#: RecBole's own properties/ folder: its model yamls and the download urls of its datasets.
RECBOLE_PROPERTIES = Path(os.path.dirname(os.path.realpath(recbole.__file__))) / "properties"

_applied = False


def apply(download_dataset):
    """Install the process-wide workarounds (items 1, 4, 5, 11, 13 and 14). ``download_dataset``
    replaces RecBole's download (item 5): recbole_bifair.data.download's, which sits above this
    module (``recbole_bifair.setup()`` passes it)."""
    global _applied
    if _applied:
        return
    ensure_numpy_aliases()
    disable_anomaly_detection()
    _patch_dataset_download(download_dataset)
    _patch_atomic_file_reading()
    _patch_ddp_on_cpu()
    _patch_ensure_dir()
    _applied = True


# 1. recbole/model/sequential_recommender/sine.py calls torch.autograd.set_detect_anomaly(True)
#    at import time, and importing any RecBole model imports it: every model then trains ~1.6x
#    slower. Import the package once, then switch anomaly detection off again.
def disable_anomaly_detection():
    import recbole.model.sequential_recommender  # noqa: F401  (runs sine.py's side effect now)

    torch.autograd.set_detect_anomaly(False)


# 2. torch >= 2.6 loads with weights_only=True, and RecBole's checkpoints pickle its Config object
#    (RecBole's Trainer.evaluate(load_best_model=True), resume_checkpoint and load_data_and_model
#    then fail); loading them in full instead would let a crafted .pth run code. The plugin's
#    trainers write checkpoints of tensors and plain data only (PluginTrainerMixin._save_checkpoint),
#    and every load here is weights_only. Loads map to the CPU: the random generators' states
#    must stay CPU ByteTensors, and a checkpoint written on a GPU must load on a machine without
#    one; load_state_dict then copies the weights to the model's device.
CHECKPOINT_KEYS = ("config", "epoch", "cur_step", "best_valid_score", "state_dict", "optimizer")
CONFIG_KEYS = ("model", "dataset", "recorded", "config_dict")  # trainer.base.saved_config
SAME_CONFIG = "the config must match the one it was trained with"


def plain(value, default=None):
    """``value`` as tensors and plain Python data, what a weights_only load accepts: numpy scalars
    become numbers; any other object goes through ``default`` (TypeError without one)."""
    if isinstance(value, np.generic):  # before float: numpy.float64 is a float
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, dict):
        return {key: plain(item, default) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item, default) for item in value)
    if default is None:
        raise TypeError(f"a checkpoint holds tensors and plain data only, not {type(value).__name__}")
    return default(value)


def load_checkpoint(path, argument="checkpoint"):
    """The checkpoint at ``path``, its tensors on the CPU, loaded without running any code.

    Every way it can fail is a one-line ConfigError naming ``argument`` (the option or config key
    that gave the path) and the file."""
    path = str(path)
    where = f"{argument} '{path}'"
    if not os.path.isfile(path):
        raise ConfigError(f"{where} does not exist: give the .pth file of a run (they are written to checkpoint_dir)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        if refused is None:
            raise ConfigError(f"{where} is a pickle torch cannot read without running code (a legacy or foreign "
                              f"format): give the .pth file of a run") from None
        raise ConfigError(f"{where} was not loaded: it holds Python objects ({refused.group(1)}) that only a load "
                          f"able to run code would rebuild; it is an old-format checkpoint (RecBole's, or the "
                          f"plugin's before checkpoints held data only) or a crafted file: retrain to get a "
                          f"data-only one") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as err:
        raise ConfigError(f"{where} is truncated or not a torch file ({_first_line(err) or type(err).__name__}): "
                          f"give the .pth file of a run, or retrain") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if not missing:
        config = checkpoint["config"]
        missing = [f"config {key}" for key in CONFIG_KEYS if not isinstance(config, dict) or key not in config]
    if missing:
        raise ConfigError(f"{where} is a torch file but not a checkpoint of a run (no {', '.join(missing)}): give "
                          f"the .pth file of a run (they are written to checkpoint_dir)")
    return checkpoint


def _first_line(err):
    return str(err).strip().splitlines()[0] if str(err).strip() else ""


def check_model(checkpoint, model_name, argument, path):
    """ConfigError unless ``checkpoint`` was written by the model ``model_name``."""
    trained = checkpoint["config"]["model"]
    if str(trained).lower() != str(model_name).lower():
        raise ConfigError(f"{argument} '{path}' was written by model {trained}, not {model_name}: use --model="
                          f"{trained}, or a checkpoint of {model_name}")


def load_weights(model, state_dict, argument, path):
    """``model.load_state_dict(state_dict)`` (load_state_dict copies to the model's device), with a
    one-line ConfigError naming ``argument`` instead of torch's dump of every mismatch."""
    try:
        model.load_state_dict(state_dict)
    except ConfigError as err:  # a model's own check (BiFair models: the LLM table's shape)
        raise ConfigError(f"{argument} '{path}': {err}") from None
    except RuntimeError as err:
        difference = _first_difference(model.state_dict(), state_dict) or f"does not fit: {_first_line(err)}"
        raise ConfigError(f"{argument} '{path}' {difference}: {SAME_CONFIG}") from None


def _first_difference(own, saved):
    """What first tells the parameters of ``saved`` from the model's ``own``, or None."""
    for name, tensor in own.items():
        if name not in saved:
            return f"has no parameter {name}"
        if tuple(saved[name].shape) != tuple(tensor.shape):
            return f"has {name} of shape {list(saved[name].shape)}, this config's model {list(tensor.shape)}"
    extra = next((name for name in saved if name not in own), None)
    return f"has a parameter {extra} that this config's model lacks" if extra is not None else None


class CheckpointLoadingMixin:
    """Trainer mixin: RecBole's checkpoint loading, safe and with clear errors (item 2)."""

    def resume_checkpoint(self, resume_file):
        path = str(resume_file)
        checkpoint = load_checkpoint(path, "resume_checkpoint")
        check_model(checkpoint, self.config["model"], "resume_checkpoint", path)
        load_weights(self.model, checkpoint["state_dict"], "resume_checkpoint", path)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as err:
            raise ConfigError(f"resume_checkpoint '{path}': its optimiser state does not fit this run's ({err}): "
                              f"{SAME_CONFIG}") from None
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.saved_model_file = path
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self._load_extra_checkpoint_state(checkpoint)
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")
        return checkpoint

    def _load_extra_checkpoint_state(self, checkpoint):
        """Hook for trainers that store more than RecBole does."""

    def load_best_model(self, model_file=None):
        checkpoint_file = str(model_file or self.saved_model_file)
        checkpoint = load_checkpoint(checkpoint_file)
        load_weights(self.model, checkpoint["state_dict"], "checkpoint", checkpoint_file)
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return checkpoint

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            self.load_best_model(model_file)
        return super().evaluate(
            eval_data, load_best_model=False, model_file=None, show_progress=show_progress
        )


# 3. Collector.get_data_struct calls .cpu() on every collected value, including the int
#    `data.num_items` and the Counter `data.count_items`: GiniIndex, ItemCoverage,
#    AveragePopularity and TailPercentage crash. Move only tensors.
class SafeCollector(Collector):
    def get_data_struct(self):
        for key, value in self.data_struct._data_dict.items():
            if isinstance(value, torch.Tensor):
                self.data_struct._data_dict[key] = value.cpu()
        returned_struct = copy.deepcopy(self.data_struct)
        for key in ["rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"]:
            if key in self.data_struct:
                del self.data_struct[key]
        return returned_struct


# 4. Config.compatibility_settings assigns np.float_, np.complex_, np.unicode_ ... which numpy 2
#    removed, so building a Config raises AttributeError there. Keep only the aliases that exist.
_NUMPY_ALIASES = {
    "bool": "bool_", "int": "int_", "float": "float64", "complex": "complex128",
    "object": "object_", "str": "str_", "long": "int_", "unicode": "str_",
}


def ensure_numpy_aliases():
    """What Config.compatibility_settings does, with names that exist in numpy 1 and 2."""
    for alias, target in _NUMPY_ALIASES.items():
        setattr(np, alias, getattr(np, target))


# 5. Dataset._download calls torch.distributed.barrier() even in a single process (crash after a
#    successful download), prompts with input() for files over 1 GB (hangs without stdin), and
#    exits with a bare traceback when offline. Replace it with recbole_bifair.data.download.
#    (KnowledgeBasedDataset._download still fetches its extra kg_url file RecBole's way; this
#    plugin has no knowledge-aware models.)
def _patch_dataset_download(download_dataset):
    from recbole.data.dataset import Dataset

    def _download(self):
        download_dataset(self.config, self.dataset_name, self.dataset_path, self.logger)

    Dataset._download = _download


# 6. SASRec-style models default to loss_type CE, but overall.yaml sets a training negative
#    sampler, and Config rejects that pair ("train_neg_sample_args should be None"). Unless the
#    user set a sampler explicitly, drop it for sequential CE models.
def drop_sampler_for_ce(internal_config, external_config, is_sequential):
    loss_type = external_config.get("loss_type", internal_config.get("loss_type"))
    if is_sequential and loss_type == "CE" and "train_neg_sample_args" not in external_config:
        internal_config["train_neg_sample_args"] = None


# 7. Config._load_cmd_line reads sys.argv on its own and eval()s every value: inside pytest or a
#    Ray worker it picks up foreign arguments. recbole_bifair.config.BiFairConfig overrides it and
#    takes its command-line overrides only from an explicit argument list (see recbole_bifair.cli).


# 11. (RECBOLE.md's list ends at 10.) Dataset._load_feat reads every atomic file (.inter, .item,
#    .user, .kg, .link and the additional feature files) with pd.read_csv(delimiter=
#    field_separator) and pandas' default quoting: a value that starts with a double quote
#    (Amazon titles such as `"No Makeup" Makeup Kit`) opens a quoted field, so its quotes vanish
#    or the read stops with ParserError "'\t' expected after '"'", naming neither the file nor
#    the line. The atomic format has no quoting (a value is everything between two separators),
#    so quotes are read as plain characters; what can still fail is reported with the file: a
#    non-number in a float column with its line, a wrong encoding with its byte offset.
#    _load_feat holds the module's only read_csv call.
class _AtomicFilePandas:
    """``pandas`` as recbole.data.dataset.dataset sees it: the real module, except ``read_csv``."""

    def __init__(self, pandas):
        self._pandas = pandas

    def __getattr__(self, name):
        return getattr(self._pandas, name)

    def read_csv(self, filepath, **kwargs):
        kwargs.setdefault("quoting", csv.QUOTE_NONE)
        try:
            return self._pandas.read_csv(filepath, **kwargs)
        except UnicodeDecodeError as err:
            raise DataError(
                f"atomic file {filepath} is not valid {kwargs.get('encoding') or 'utf-8'} (byte {err.start}: "
                f"{err.reason}): convert the file, or set the config key `encoding` to the file's encoding"
            ) from err
        except ValueError as err:  # pandas' ParserError is one too
            bad = _first_bad_number(filepath, kwargs)
            if bad is None:
                raise DataError(f"atomic file {filepath} could not be read: {err}") from err
            line, column, value = bad
            raise DataError(
                f"atomic file {filepath} line {line}: column {column} holds {value!r}, not a number: fix the "
                f"value, or declare the column as {column.split(':')[0]}:token in the header"
            ) from err


def _first_bad_number(filepath, kwargs):
    """(line, column, value) of the first value of a float column that is not a number, or None."""
    separator = kwargs.get("delimiter")
    floats = [column for column, kind in (kwargs.get("dtype") or {}).items() if kind is np.float64]
    with open(filepath, encoding=kwargs.get("encoding") or "utf-8") as f:
        header = f.readline().rstrip("\r\n").split(separator)
        positions = [(header.index(column), column) for column in floats if column in header]
        for number, line in enumerate(f, start=2):
            values = line.rstrip("\r\n").split(separator)
            for position, column in positions:
                value = values[position].strip() if position < len(values) else ""
                if not value:
                    continue
                try:
                    float(value)
                except ValueError:
                    return number, column, value
    return None


def _patch_atomic_file_reading():
    import recbole.data.dataset.dataset as dataset_module

    if not isinstance(dataset_module.pd, _AtomicFilePandas):
        dataset_module.pd = _AtomicFilePandas(dataset_module.pd)


# 12. Config._init_device assumes CUDA whenever `local_rank` is set (a run on several processes):
#    it asserts len(gpu_id) >= nproc, always calls init_process_group(backend="nccl") and
#    torch.cuda.set_device(local_rank), and puts the model on cuda:<local_rank>, so
#    distributed training cannot run on CPU. BiFairConfig._init_device calls this instead: the
#    same on GPU (nccl, one GPU per local rank), gloo and the CPU without CUDA; the key `backend`
#    overrides the choice. A process group that already exists is joined as it is.
def init_device(final):
    """RecBole's ``Config._init_device`` on ``final`` (the config dict), CPU-capable."""
    import os

    gpu_id = final["gpu_id"]
    gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
    final["gpu_id"] = gpu_id
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
    cuda = bool(final.get("use_gpu", True)) and len(gpu_id) > 0 and torch.cuda.is_available()
    # RecBole ignores use_gpu and keeps its defaults (gpu_id '0', use_gpu True) on a machine
    # without CUDA: the config, and its dump in the log, then name a GPU the run does not use.
    # They say what it uses ('' is RecBole's gpu_id of a CPU run).
    final["use_gpu"] = cuda
    if not cuda:
        final["gpu_id"] = ""
    if "local_rank" not in final:
        final["single_spec"] = True
        final["local_rank"] = 0
        final["device"] = torch.device("cuda") if cuda else torch.device("cpu")
        return
    local_rank = final["local_rank"]
    backend = final.get("backend") or ("nccl" if cuda else "gloo")
    if backend == "nccl":
        if not cuda:
            raise ConfigError("backend nccl needs CUDA GPUs: use backend: gloo on CPU")
        if len(gpu_id.split(",")) < final["nproc"]:
            raise ConfigError(f"nproc={final['nproc']} processes need as many GPUs in gpu_id, got '{gpu_id}'")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend=backend,
            rank=local_rank + final.get("offset", 0),
            world_size=final["world_size"],
            init_method=f"tcp://{final['ip']}:{final['port']}",
        )
    final["backend"] = backend
    final["single_spec"] = False
    if cuda:
        final["device"] = torch.device("cuda", local_rank)
        torch.cuda.set_device(local_rank)
    else:
        final["device"] = torch.device("cpu")
    if local_rank != 0:
        final["state"] = "error"
        final["show_progress"] = False
        final["verbose"] = False


# 13. AbstractTrainer.__init__ wraps the model in DistributedDataParallel(model,
#    device_ids=[local_rank]) whenever a run has several processes; torch rejects device_ids for
#    a module on the CPU ("device_ids ... only work with single-device/multiple-device GPU
#    modules or CPU modules" with device_ids None), so RecBole's trainer cannot start on CPU.
#    Give device_ids only for a CUDA module.
def _ddp_without_cpu_device_ids(module, device_ids=None, **kwargs):
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = any(p.is_cuda for p in module.parameters())
    return DistributedDataParallel(module, device_ids=device_ids if on_cuda else None, **kwargs)


def _patch_ddp_on_cpu():
    import recbole.trainer.trainer as trainer_module

    trainer_module.DistributedDataParallel = _ddp_without_cpu_device_ids


# 14. recbole.utils.ensure_dir checks os.path.exists and then calls os.makedirs: processes that
#    start together (nproc > 1) race for ./saved, ./log and the checkpoint folder, and the loser
#    dies with FileExistsError. Every module that imported the name gets a race-free one.
def _ensure_dir(dir_path):
    import os

    os.makedirs(dir_path, exist_ok=True)


def _patch_ensure_dir():
    import importlib

    for name in ("recbole.utils.utils", "recbole.utils", "recbole.utils.logger", "recbole.trainer.trainer",
                 "recbole.data.utils", "recbole.data.dataset.dataset"):
        module = importlib.import_module(name)
        if hasattr(module, "ensure_dir"):
            module.ensure_dir = _ensure_dir
