"""The ``llm_*`` config keys of the embedding tool, read and checked in one place.

The defaults below are the values of ``properties/overall.yaml``; they also apply when a config
does not define a key at all (a RecBole Config, or a plain dict from a script or test).
"""

import os
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from recbole_bifair.errors import ConfigError

POOLINGS = ("auto", "mean", "cls", "last")
MISSING_MODES = ("error", "zero", "mean")
DTYPES = ("auto", "float32", "float16", "bfloat16")

DEFAULTS = {
    "llm_emb_file": None,
    "llm_emb_generate": False,
    "llm_emb_dir": "./dataset_embeddings",
    "llm_encoder": None,
    "llm_emb_fields": None,
    "llm_emb_template": None,
    "llm_emb_pooling": "auto",
    "llm_emb_batch_size": 64,
    "llm_emb_max_length": 256,
    "llm_emb_normalize": False,
    "llm_emb_device": None,
    "llm_emb_threads": None,
    "llm_emb_dtype": "auto",
    "llm_emb_trust_remote_code": False,
    "llm_emb_missing": "error",
}


def config_value(config, key):
    """``config[key]``, or the tool's default when the config leaves it unset (None/absent)."""
    try:
        value = config[key]
    except KeyError:
        value = None
    return DEFAULTS[key] if value is None else value


@dataclass(frozen=True)
class EmbeddingOptions:
    """How item texts are built and encoded (everything that changes the vectors, and a bit more)."""

    encoder: Optional[str]
    fields: Optional[Tuple[str, ...]]
    template: Optional[str]
    pooling: str
    batch_size: int
    max_length: int
    normalize: bool
    device: Optional[str]
    threads: Optional[int]
    dtype: str
    trust_remote_code: bool

    @classmethod
    def from_config(cls, config):
        return cls(
            encoder=_optional_str(config, "llm_encoder"),
            fields=_fields(config_value(config, "llm_emb_fields")),
            template=_optional_str(config, "llm_emb_template"),
            pooling=_choice(config, "llm_emb_pooling", POOLINGS),
            batch_size=_positive_int(config, "llm_emb_batch_size"),
            max_length=_positive_int(config, "llm_emb_max_length"),
            normalize=_bool(config, "llm_emb_normalize"),
            device=_optional_str(config, "llm_emb_device") or _run_device(config),
            threads=None if config_value(config, "llm_emb_threads") is None else _positive_int(config, "llm_emb_threads"),
            dtype=_choice(config, "llm_emb_dtype", DTYPES),
            trust_remote_code=_bool(config, "llm_emb_trust_remote_code"),
        )


def missing_mode(config):
    return _choice(config, "llm_emb_missing", MISSING_MODES)


def generate_missing(config):
    """``llm_emb_generate``: may a missing explicit ``llm_emb_file`` be generated at its path?"""
    return _bool(config, "llm_emb_generate")


def embedding_dir(config):
    return str(config_value(config, "llm_emb_dir"))


def show_progress(config):
    """RecBole's ``show_progress`` (True when the config does not say)."""
    try:
        return config["show_progress"] is not False
    except KeyError:
        return True


def slug(text):
    """A file-name-safe form of an encoder name (``org/model`` -> ``org--model``)."""
    text = text.replace("/", "--") if not os.path.isdir(text) else os.path.basename(os.path.normpath(text))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "encoder"


def _run_device(config):
    """The run's own device (RecBole resolves ``device`` to a torch.device); None lets the encoder pick."""
    try:
        device = config["device"]
    except KeyError:
        return None
    return str(device) if device is not None else None


def _optional_str(config, key):
    value = config_value(config, key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"config key {key} must be a string, got {value!r}")
    return value.strip() or None


def _fields(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key llm_emb_fields must be a list of item field names, got {value!r}")
    fields = tuple(dict.fromkeys(v.strip() for v in value if v.strip()))
    if not fields:
        raise ConfigError("config key llm_emb_fields is empty: name at least one item field (or ~ for all)")
    return fields


def _choice(config, key, choices):
    value = config_value(config, key)
    if value not in choices:
        raise ConfigError(f"config key {key} is {value!r}; use one of {', '.join(choices)}")
    return value


def _positive_int(config, key):
    value = config_value(config, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config key {key} must be a positive integer, got {value!r}")
    return value


def _bool(config, key):
    value = config_value(config, key)
    if not isinstance(value, bool):
        raise ConfigError(f"config key {key} must be true or false, got {value!r}")
    return value
