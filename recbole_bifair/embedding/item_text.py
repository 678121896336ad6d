"""One text per item, built from fields of the dataset's ``.item`` atomic file.

The file is read by RecBole's own item loader (``Dataset._load_user_or_item_feat``), so item
tokens, separators, ``seq_len`` cuts and the duplicate rule (first row wins) are exactly those of
the run's dataset. Missing values are skipped, never rendered as ``nan``.

Templates (``llm_emb_template``) are Python format strings over field names, e.g.
``"{movie_title}[ ({release_year})][, genres: {class}]"``. A ``[...]`` segment is dropped when
a field inside it has no value; outside segments a missing value becomes empty text. Without a
template every field gives ``"<field name>: <value>"`` and the present ones are joined by ``"; "``.
"""

import hashlib
import math
import os
import re
import string
from dataclasses import dataclass
from logging import getLogger
from typing import List, Tuple

from recbole.data.dataset import Dataset
from recbole.utils import FeatureSource, FeatureType

from recbole_bifair.errors import ConfigError, DataError


#: how the metadata names the default rendering
DEFAULT_TEMPLATE = "default: '<field name>: <value>' for each field with a value, joined by '; '"


@dataclass(frozen=True)
class ItemTexts:
    tokens: List[str]
    texts: List[str]
    fields: Tuple[str, ...]
    template: str
    item_file: str

    def digest(self):
        """A hash of every (token, text) pair: equal digests mean equal encoder inputs."""
        h = hashlib.sha256()
        for token, text in zip(self.tokens, self.texts):
            h.update(f"{token}\t{text}\n".encode("utf-8"))
        return h.hexdigest()


def item_file_path(config):
    return os.path.join(config["data_path"], f"{config['dataset']}.{FeatureSource.ITEM.value}")


def build_item_texts(config, fields=None, template=None):
    """Read the run's ``.item`` file and render one text per item.

    ``fields``: item fields to use (None: all but the item id). ``template``: see the module doc;
    it names its own fields, which must then be among ``fields`` when both are given.
    """
    path = item_file_path(config)
    iid_field = config["ITEM_ID_FIELD"]
    available = _header_fields(config, path)
    if iid_field not in available:
        raise DataError(
            f"item file {path} has no item id column '{iid_field}' (its fields: {', '.join(available)}); "
            f"set ITEM_ID_FIELD to the item id field"
        )
    parts = _Template(template) if template else None
    if parts and fields and not set(parts.fields) <= set(fields):
        # a dataset's properties file sets both; a user who narrows llm_emb_fields alone would
        # otherwise get the template's fields without a word
        outside = [f for f in parts.fields if f not in fields]
        raise ConfigError(
            f"llm_emb_template {template!r} uses {', '.join(map(repr, outside))}, which llm_emb_fields "
            f"({', '.join(fields)}) does not list: write a template over those fields, or set llm_emb_template: ~ "
            f"(--llm_emb_template=~) to build the text from llm_emb_fields alone"
        )
    fields = tuple(fields) if fields else tuple(f for f in available if f != iid_field)
    used = parts.fields if parts else fields
    unknown = [f for f in used if f not in available]
    if unknown:
        raise DataError(
            f"item file {path} has no field {', '.join(map(repr, unknown))}; its fields are "
            f"{', '.join(available)}: fix llm_emb_fields (--fields) or llm_emb_template (--template)"
        )
    reader = _ItemFileReader(config, [iid_field, *used])
    frame = reader.load(path)
    if frame.empty:
        raise DataError(f"item file {path} lists no item with an item id ('{iid_field}' is empty on every row)")
    seq_joiner = " " if reader.config["seq_separator"].isspace() else ", "
    columns = {field: frame[field].tolist() for field in used}
    tokens = frame[iid_field].tolist()
    texts = []
    for k in range(len(tokens)):
        values = {field: render_value(columns[field][k], reader.field2type[field], seq_joiner) for field in used}
        texts.append(parts.render(values) if parts else default_text(values, fields))
    empty = sum(1 for t in texts if not t)
    if empty:
        getLogger().warning(f"{empty} of {len(texts)} items in {path} have no value in {', '.join(used)}: "
                            "they are encoded from empty text")
    return ItemTexts(tokens, texts, used, template or DEFAULT_TEMPLATE, path)


def render_value(value, ftype, seq_joiner=" "):
    """A field value as text by its RecBole type; None when missing (NaN, empty, empty sequence)."""
    if ftype == FeatureType.TOKEN:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" else str(value)
    if ftype == FeatureType.FLOAT:
        return None if value is None or math.isnan(value) else _number(value)
    if ftype == FeatureType.TOKEN_SEQ:
        return seq_joiner.join(str(v) for v in value) if len(value) else None
    if ftype == FeatureType.FLOAT_SEQ:
        present = [_number(v) for v in value if not math.isnan(v)]
        return " ".join(present) if present else None
    raise ValueError(f"unknown RecBole feature type {ftype}")


def default_text(values, fields):
    return "; ".join(f"{field.replace('_', ' ')}: {values[field]}" for field in fields if values[field] is not None)


def _number(value):
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _header_fields(config, path):
    if not os.path.isfile(path):
        raise DataError(
            f"dataset '{config['dataset']}' has no item file {path}: the item texts come from it. "
            f"Add <dataset>.item with text fields (e.g. item_id:token\\ttitle:token_seq), or import "
            f"existing vectors with `python -m recbole_bifair.embed --import_matrix=...`"
        )
    with open(path, encoding=config["encoding"]) as f:
        header = f.readline().rstrip("\r\n")
        has_rows = any(line.strip() for line in f)
    if not has_rows:  # RecBole's loader fails on an empty file with max() of an empty sequence
        raise DataError(f"item file {path} lists no items (only a header?): the item texts come from its rows")
    return [column.split(":", 1)[0] for column in header.split(config["field_separator"])]


class _Template:
    _SEGMENT = re.compile(r"\[([^\[\]]*)\]")

    def __init__(self, template):
        self.template = template
        if template.count("[") != template.count("]") or re.search(r"\[[^\]]*\[|\][^\[]*\]", template):
            raise ConfigError(f"llm_emb_template {template!r}: '[' and ']' must pair up and cannot nest")
        # (text, is_optional) pieces in order
        self.pieces = []
        last = 0
        for match in self._SEGMENT.finditer(template):
            self.pieces.append((template[last:match.start()], False))
            self.pieces.append((match.group(1), True))
            last = match.end()
        self.pieces.append((template[last:], False))
        names = []
        for text, _ in self.pieces:
            try:
                parsed = list(string.Formatter().parse(text))
            except ValueError as err:
                raise ConfigError(f"llm_emb_template {template!r} does not parse ({err}); write fields as {{name}}") from err
            for _, name, spec, conv in parsed:
                if name is None:
                    continue
                if not name or spec or conv:
                    raise ConfigError(f"llm_emb_template {template!r}: write fields as plain {{name}} (got {{{name}...}})")
                names.append(name)
        if not names:
            raise ConfigError(f"llm_emb_template {template!r} names no field; write fields as {{movie_title}}")
        self.fields = tuple(dict.fromkeys(names))

    def render(self, values):
        out = []
        for text, optional in self.pieces:
            names = [name for _, name, _, _ in string.Formatter().parse(text) if name]
            if optional and any(values[n] is None for n in names):
                continue
            out.append(text.format(**{n: values[n] or "" for n in names}))
        return "".join(out).strip()


class _ItemFileReader(Dataset):
    """RecBole's item-file loader without the rest of ``Dataset``.

    ``Dataset.__init__`` would load the ``.inter`` file and run the whole preprocessing; only its
    item loader is needed, and it reads nothing but these attributes and config keys.
    """

    def __init__(self, config, columns):  # noqa: super().__init__ deliberately not called
        self.config = _ConfigView(config, {"load_col": {FeatureSource.ITEM.value: list(dict.fromkeys(columns))},
                                           "unload_col": None})
        self.dataset_name = config["dataset"]
        self.logger = getLogger()
        self._get_preset()
        self._get_field_from_config()

    def load(self, path):
        frame = self._load_user_or_item_feat(self.dataset_name, os.path.dirname(path), FeatureSource.ITEM, "iid_field")
        if frame is None:
            raise DataError(f"item file {path} could not be read: check its header (field:type columns)")
        # RecBole drops rows without an item id (Dataset._filter_nan_user_or_item); so do we.
        frame = frame[frame[self.iid_field].notna() & (frame[self.iid_field] != "")]
        return frame[list(self.config["load_col"][FeatureSource.ITEM.value])].reset_index(drop=True)


class _ConfigView:
    """Read-only view of a RecBole Config (or dict) with a few keys replaced; unknown keys give None."""

    def __init__(self, config, overrides):
        self._config, self._overrides = config, overrides

    def __getitem__(self, key):
        if key in self._overrides:
            return self._overrides[key]
        try:
            return self._config[key]
        except KeyError:
            return None

