"""Columns a run cannot do without, loaded whatever ``load_col`` says, or a clear error.

RecBole loads only the ``.inter`` columns that ``load_col`` names, and its default (sample.yaml)
names ``user_id`` and ``item_id`` alone. A sequential model (or a time-ordered split) then fails
deep in the data preparation: ``SequentialDataset.data_augmentation`` sorts each user's
interactions by ``TIME_FIELD`` and stops with ``ValueError: [timestamp] is not exist in
interaction``, a message that names neither the file nor the key that fixes it. Here the time
column is added to ``load_col`` when the ``.inter`` file has it (or is still to be downloaded),
and its absence is reported with the fix.

The item text of LLM-enhanced models needs nothing here: the embedding module reads the ``.item``
fields it uses itself (``recbole_bifair.embedding.item_text``), whatever ``load_col`` says.
"""

import os
from logging import getLogger

from recbole.utils import ModelType

from recbole_bifair.errors import ConfigError, DataError


def complete_load_col(config_dict):
    """Add the columns the run needs to ``config_dict['load_col']`` (a final RecBole config dict)."""
    reason = _why_time_is_needed(config_dict)
    if reason is None:
        return
    time_field = config_dict.get("TIME_FIELD")
    if not time_field:
        raise ConfigError(
            f"{reason} by TIME_FIELD, which is unset: set TIME_FIELD to the .inter column that holds the time "
            f"(e.g. TIME_FIELD: timestamp)"
        )
    inter_file = os.path.join(config_dict["data_path"], f"{config_dict['dataset']}.inter")
    columns = _header_fields(inter_file, config_dict.get("field_separator") or "\t", config_dict.get("encoding"))
    if columns is not None and time_field not in columns:
        raise DataError(
            f"{inter_file} has no column '{time_field}' (its columns: {', '.join(columns)}), and {reason} by "
            f"TIME_FIELD ('{time_field}'): add a {time_field}:float column, or set TIME_FIELD to the column that "
            f"holds the time"
        )
    unload = (config_dict.get("unload_col") or {}).get("inter") or []
    if time_field in unload:
        raise ConfigError(f"unload_col drops '{time_field}' from .inter, and {reason} by it (TIME_FIELD): "
                          f"remove it from unload_col")
    load_col = config_dict.get("load_col")
    if load_col is None or "inter" not in load_col or load_col["inter"] == "*":
        return  # every column is loaded (or RecBole's own error about .inter comes first)
    if time_field not in load_col["inter"]:
        # a new dict: the old one may be shared with the internal defaults
        config_dict["load_col"] = {**load_col, "inter": [*load_col["inter"], time_field]}
        getLogger().info(f"load_col: added '{time_field}' to the .inter columns ({reason} by it)")


def _why_time_is_needed(config_dict):
    """Why the run sorts interactions by time, as the start of a sentence; None if it does not."""
    if config_dict.get("benchmark_filename"):
        return None  # pre-split files: RecBole neither orders them nor runs its sequential augmentation
    if config_dict["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        return f"sequential model {config_dict['model']} orders each user's interactions"
    if (config_dict.get("eval_args") or {}).get("order") == "TO":
        return "the time-ordered split (eval_args order: TO) orders the interactions"
    return None


def _header_fields(path, separator, encoding):
    """Field names of an atomic file's header; None when the file is not there (yet: a download)."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding=encoding or "utf-8") as f:
        header = f.readline().rstrip("\r\n")
    return [column.split(":", 1)[0] for column in header.split(separator)]
