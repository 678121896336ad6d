"""``BiFairConfig``: RecBole's Config, aware of the plugin's models and ``properties/``.

Precedence is RecBole's: internal defaults < config files < config dict < command line. The
internal defaults are, in order: RecBole's own (overall.yaml, the model's yaml, the model type's
quick-start yaml), the backbone's RecBole yaml for plugin models (e.g. SASRec.yaml for
LLMSASRec), then the plugin's ``properties/overall.yaml``, for LLM-enhanced models
``properties/model/llm.yaml`` and ``properties/model/<Model>.yaml``, for a fairness method
``properties/method/<fair_method>.yaml``, and ``properties/dataset/<dataset>.yaml``. A run reads
(and records) only the files it uses: a stock SASRec run has none of the LLM or method keys.
"""

import os
import re
from importlib import resources
from pathlib import Path

import yaml
from recbole.config import Config
from recbole.evaluator import metric_types
from recbole.utils import ModelType

from recbole_bifair import compat, setup
from recbole_bifair.data.columns import complete_load_col
from recbole_bifair.data.sequence import resolve_train_mode, window_stride
from recbole_bifair.embedding.generate import check_embedding_file
from recbole_bifair.errors import ConfigError
from recbole_bifair.methods.bifair import GROUP_OFFSETS
from recbole_bifair.methods.catalog import import_method_modules, method_name  # registers the built-in methods
from recbole_bifair.methods.registry import lookup, registered
from recbole_bifair.model.llm import LLMModel, no_id_view_error
from recbole_bifair.model.sasrec_layout import read_layout
from recbole_bifair.schema import PROPERTY_FILES, SCHEMA, check_config, check_key_owners
from recbole_bifair.utils import available_models, get_model


def properties_dir() -> Path:
    """The plugin's ``properties/`` folder, installed or in the source tree.

    setup.py ships the top-level ``properties/`` as the package ``recbole_bifair.properties``;
    a source checkout (scripts run from the repository) has it beside the package. The checkout's
    own folder comes first: run from one checkout with another's editable install (a git
    worktree beside the repository), the installed name maps to the other checkout's files.
    """
    source_tree = Path(__file__).resolve().parent.parent / "properties"
    if (source_tree / "overall.yaml").is_file() and (source_tree.parent / "setup.py").is_file():
        return source_tree
    try:
        installed = Path(str(resources.files("recbole_bifair.properties")))
        if (installed / "overall.yaml").is_file():
            return installed
    except ModuleNotFoundError:
        pass
    if (source_tree / "overall.yaml").is_file():
        return source_tree
    raise FileNotFoundError(
        "recbole_bifair's properties/ folder is missing: reinstall the package with `pip install .`"
    )


def plugin_defaults():
    """The plugin's defaults: every file of ``schema.PROPERTY_FILES`` (overall, the LLM models',
    each method's) as one dict; ``fair_method`` is that of the LLM models' file (none)."""
    defaults = {}
    for file in PROPERTY_FILES:
        defaults.update(load_yaml_file(properties_dir() / file, f"the plugin's properties/{file}"))
    return defaults


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` as a string; RecBole's loader adds this float pattern, so do we."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml_file(path, what="config file"):
    """Parse a YAML mapping; errors name the file, the line and the fix."""
    path = str(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{what} '{path}' not found: check the path (it is read relative to {os.getcwd()})")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{what} '{path}'{where}: malformed YAML ({problem}); write `key: value` lines") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}': expected `key: value` lines, got a {type(data).__name__}")
    return data


# RecBole's interval notation ("[0,inf)", "[5,100)") is half-open, so not valid YAML; RecBole
# keeps such values as strings (its eval fails on them), and so do we.
_INTERVAL = re.compile(r"^[\[(][^\[\]()]*,[^\[\]()]*[\])]$")


def parse_value(text):
    """One command-line value, read as YAML like a config file line, never ``eval``-ed.

    ``1e-3`` -> 0.001, ``[10, 20]`` -> list, ``{'a': 1}`` -> dict, ``~``/``None`` -> None,
    ``true`` -> True, an interval such as ``[0,inf)`` -> the string itself.
    """
    if text.strip() in ("None", "none"):  # Python spelling, as RecBole's eval-based parser accepts
        return None
    try:
        return yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as err:
        if _INTERVAL.match(text.strip()):
            return text.strip()
        raise ValueError(str(getattr(err, "problem", None) or err)) from err


def parse_cmd_args(args):
    """``["--key=value", ...]`` -> dict, with a clear error for anything else."""
    parsed = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"command-line argument '{arg}' does not parse: write it as --key=value")
        key, text = arg[2:].split("=", 1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", key):
            raise ConfigError(f"command-line argument '{arg}': '{key}' is not a config key name; write --key=value")
        if not text.strip():
            raise ConfigError(f"command-line argument '{arg}' has no value: write --{key}=VALUE (--{key}=~ for none)")
        try:
            value = parse_value(text)
        except ValueError as err:
            raise ConfigError(f"command-line argument '{arg}': value '{text}' does not parse as YAML ({err})") from err
        if key in parsed and parsed[key] != value:
            raise ConfigError(f"command-line key '{key}' given twice with different values")
        parsed[key] = value
    return parsed


def _uses_llm_embeddings(model_class):
    return isinstance(model_class, type) and issubclass(model_class, LLMModel)


def resolve_group_offsets(config, model_class):
    """``group_offsets`` of the run (METHOD.md 4a), read only under ``fair_method: bifair``: unset
    (``~``), ``outer`` when the outer level runs (``outer_level``) with the CE loss, ``none``
    otherwise (the inner-only ablation, BPR); asked for explicitly where it cannot work, an error."""
    mode = config["group_offsets"]
    outer = _uses_llm_embeddings(model_class) and bool(config["outer_level"])
    if mode is None:
        return "outer" if outer and config["loss_type"] == "CE" else "none"
    if mode not in GROUP_OFFSETS:
        raise ConfigError(f"group_offsets '{mode}' is unknown; use one of {', '.join(GROUP_OFFSETS)} or ~ (automatic)")
    if mode == "outer" and not outer:
        raise ConfigError("group_offsets: outer needs the outer level (fair_method: bifair with outer_level: True); "
                          "set group_offsets: none (or leave it ~)")
    return mode


def resolve_id_count_half(config):
    """``id_count_half`` of an LLM-enhanced run: the value set, or with ``id_fusion: none`` 0 (the
    default weights each item's ID vector, and that fusion has none; a run records what it did).
    Set explicitly beside ``id_fusion: none``, an error naming both keys."""
    half = config["id_count_half"]
    if config["id_fusion"] != "none":
        return half
    if "id_count_half" in config.external_config_dict and half not in (0, None):
        raise no_id_view_error(half)
    return 0.0


class BiFairConfig(Config):
    """RecBole Config that resolves plugin models first and loads the plugin's properties.

    ``cmd_args`` are ``--key=value`` strings (the runner passes what it did not consume); unlike
    RecBole's Config, ``sys.argv`` is never read implicitly (RECBOLE.md item 7).
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None):
        setup()  # the group metrics must be registered before RecBole's Config checks `metrics`
        self._cmd_args = list(cmd_args or [])
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
        # resolved here, so that a config built without a run (the benchmarks' planned configs)
        # records the mode and window the run will use, and a wrong request fails before any data
        # is read
        self.final_config_dict["train_mode"] = resolve_train_mode(self, self.model_class)
        if self.final_config_dict["train_mode"] == "sequence":
            self.final_config_dict["seq_window_stride"] = window_stride(self)
        read_layout(self, self.model_class)  # sasrec_norm / item_emb_scale on another backbone: stop here
        if _uses_llm_embeddings(self.model_class):
            lookup(method_name(self))  # an unknown fair_method stops here, before any data is read
        if "id_count_half" in self.final_config_dict:
            self.final_config_dict["id_count_half"] = resolve_id_count_half(self)
        if "group_offsets" in self.final_config_dict:
            self.final_config_dict["group_offsets"] = resolve_group_offsets(self, self.model_class)
            # the offsets are learned against the worst meta groups (METHOD.md 4a); unset, the
            # outer weighting is otherwise the value of `balance` (the trainer reads it so)
            if self.final_config_dict["group_offsets"] == "outer" and self.final_config_dict.get("outer_balance") is None:
                self.final_config_dict["outer_balance"] = "dro"

    def compatibility_settings(self):
        compat.ensure_numpy_aliases()

    def _convert_config_dict(self, config_dict):
        # RecBole 1.2.1 eval()s every string value of a config dict (its command line too, which
        # _load_cmd_line replaces): a string such as "__import__('os').system(...)" would run.
        # A config dict comes from Python, already typed: its values are taken as given.
        return dict(config_dict)

    def _get_final_config_dict(self):
        final = super()._get_final_config_dict()
        # every layer merged, internal defaults included, and nothing read yet: the dataset's
        # header is first read by _set_default_parameters, which runs next
        check_config(final, metric_types)
        resume = final.get("resume_checkpoint")
        if resume and not os.path.isfile(str(resume)):
            # the file is read only after the data and the item table are ready: fail before those
            raise ConfigError(f"resume_checkpoint '{resume}' does not exist: give the .pth file of a run "
                              f"(they are written to checkpoint_dir)")
        return final

    def _init_device(self):
        compat.init_device(self.final_config_dict)  # CPU + gloo for several processes (compat item 12)

    def _set_default_parameters(self):
        super()._set_default_parameters()
        # data_path is final only now; checked before any file is read
        complete_load_col(self.final_config_dict)
        if _uses_llm_embeddings(self.model_class):
            check_embedding_file(self.final_config_dict)

    def _load_config_files(self, file_list):
        merged = {}
        for file in file_list or []:
            merged.update(load_yaml_file(file))
        return merged

    def _load_cmd_line(self):
        return parse_cmd_args(self._cmd_args)

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise ConfigError("no model given: pass --model=NAME (e.g. --model=BiFairSASRec) or set `model:` in a config file")
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise ConfigError("no dataset given: pass --dataset=NAME (e.g. --dataset=ml-100k) or set `dataset:` in a config file")
        if not isinstance(dataset, str) or not re.fullmatch(r"[^/\\\s]+", dataset):
            raise ConfigError(
                f"dataset name {dataset!r} is not a folder name: give the name of the folder under data_path "
                f"that holds <name>.inter (e.g. --dataset=ml-100k)"
            )
        if not isinstance(model, str):
            return model.__name__, model, dataset
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", model):
            raise ConfigError(
                f"model name {model!r} is not a class name. Available models: {', '.join(available_models())}"
            )
        return model, get_model(model), dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        plugin = properties_dir()
        backbone = getattr(model_class, "backbone_name", None)
        # RecBole reads a model's yaml before its dataset and quick-start yamls; the backbone's
        # comes after them here. That order is harmless: RecBole's model yamls share no key with
        # those files. The stock model file is read again only to record its keys.
        #: the model's own hyperparameters and the plugin's keys (both recorded in result files)
        self.model_config_keys = []
        self.plugin_config_keys = []
        if backbone:
            self._add_properties(compat.RECBOLE_PROPERTIES / "model" / f"{backbone}.yaml", model_keys=True)
        self._add_properties(compat.RECBOLE_PROPERTIES / "model" / f"{model}.yaml", model_keys=True, merge=False)
        self._add_properties(plugin / "overall.yaml")
        llm = _uses_llm_embeddings(model_class)
        if llm:
            self._add_properties(plugin / "model" / "llm.yaml")
        if backbone:  # the plugin's defaults of the backbone (model/SASRec.yaml) hold for its LLM models too
            self._add_properties(plugin / "model" / f"{backbone}.yaml", model_keys=True)
        self._add_properties(plugin / "model" / f"{model}.yaml", model_keys=True)
        if llm:
            self._add_method_properties(plugin)
        else:
            check_key_owners(self.external_config_dict, None)
        self._add_properties(plugin / "dataset" / f"{dataset}.yaml", record=False)
        compat.drop_sampler_for_ce(
            self.internal_config_dict,
            self.external_config_dict,
            self.internal_config_dict["MODEL_TYPE"] == ModelType.SEQUENTIAL,
        )

    def _add_properties(self, file, model_keys=False, merge=True, record=True):
        """Merge a properties file into the internal defaults (``merge``) and record its keys as the
        model's hyperparameters (``model_keys``) or the plugin's (``record``); absent files: nothing."""
        if not file.is_file():
            return
        values = load_yaml_file(file, what="properties file")
        if merge:
            self.internal_config_dict.update(values)
        if model_keys:
            self.model_config_keys += [k for k in values if k not in self.model_config_keys]
        elif record:
            self.plugin_config_keys += [k for k in values if k not in self.plugin_config_keys]

    def _add_method_properties(self, plugin):
        """``properties/method/<fair_method>.yaml``; a method of your own without such a file gets the
        schema's defaults of the built-in keys it reads (``FairMethod.keys``)."""
        modules = self.external_config_dict.get("method_modules")
        SCHEMA["method_modules"].check(modules)
        import_method_modules(modules)  # methods of your own register themselves
        method = self.external_config_dict.get("fair_method", self.internal_config_dict.get("fair_method"))
        SCHEMA["fair_method"].check(method)  # a string, before it names a file
        own_keys = getattr(registered().get(method), "keys", ())
        check_key_owners(self.external_config_dict, method, own_keys)
        file = plugin / "method" / f"{method}.yaml"
        if file.is_file():
            self._add_properties(file)
            return
        values = {k: SCHEMA[k].default for k in own_keys if k in SCHEMA}
        self.internal_config_dict.update(values)
        self.plugin_config_keys += [k for k in values if k not in self.plugin_config_keys]
