"""Methods as the benchmarks name them: a file of ``properties/methods/`` (what a user runs from the
command line), a method file of your own given by its path (``path/to/MyMethod.yaml``, named
``MyMethod``), or a sweep point ``<Method>[<key>=<value>]`` (that file with keys on top)."""

import os
import re

from benchmarks.lib.paths import METHODS_DIR

#: The fairness benchmark's methods, in its default order (``--methods``); each has a method file.
METHODS = [
    "SASRec", "LLM-SASRec", "IPS", "GroupDRO", "VarReg", "PostHoc", "LogitAdjust", "BiFair", "BiFair-tuned",
    "BiFair-inner-only", "BiFair-outer-only", "BiFair-first-order", "BiFair-uniform", "BiFair-dro", "BiFair-mu0",
    "BiFair-large-batches", "BiFair-offsets", "BiFair-sgd-unroll", "BiFair-no-offsets", "BiFair-score-only",
    "BiFair-sampled-outer", "BiFair-PostHoc", "BiFair-train-logits", "BiFair-learned-la",
]
#: Each baseline's default sweep (``--sweeps``): method -> (config key, values).
SWEEPS = {
    "IPS": ("ips_alpha", [0.25, 0.5, 1.0]),
    "VarReg": ("group_variance_weight", [0.1, 0.3, 1.0, 3.0]),
    "GroupDRO": ("groupdro_eta", [0.001, 0.01, 0.1]),
    "PostHoc": ("posthoc_beta", [0.25, 0.5, 1.0, 2.0]),
    "LogitAdjust": ("logit_adjust_tau", [0.25, 0.5, 1.0, 2.0]),
}
#: Methods that train nothing: each is its base method's trained model (same seed, best
#: validation checkpoint) evaluated with ranking-time keys on top (``evaluate_checkpoint``), so a
#: post-hoc sweep costs evaluations, not trainings. The base method runs first; a derived sweep
#: point on a training key (``BiFair-train-logits[dro_tau=3.0]``) has the base's point of the same
#: key (``BiFair[dro_tau=3.0]``).
DERIVED = {"PostHoc": "LLM-SASRec", "BiFair-PostHoc": "BiFair", "BiFair-train-logits": "BiFair"}

#: Method files given by path (``--methods=LLM-SASRec,path/to/MyMethod.yaml``): row name (the
#: file's stem) -> absolute path. Filled by ``parse_method``; ``method_file`` reads it.
METHOD_FILES = {}
FILE_SUFFIXES = (".yaml", ".yml")

_KEY_VALUE = r"\[(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>[^\[\]=]+)\]"
SWEEP_POINT = re.compile(rf"^(?P<method>[^\[\]=]+)(?P<keys>(?:{_KEY_VALUE})+)$")


def sweep_points(sweeps=None):
    """The names ``<Method>[<key>=<value>]`` of every point of ``sweeps`` (default ``SWEEPS``)."""
    return [f"{method}[{key}={value}]" for method, (key, values) in (sweeps or SWEEPS).items() for value in values]


def _value(name, text):
    """A sweep point's value as YAML reads it (numbers stay numbers)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"'{name}': value '{text}' does not parse as YAML ({err})") from None
    if isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 as a string
            value = float(value)
        except ValueError:
            pass
    return value


def _method_by_path(name, path):
    """The row name (the stem) of the method file at ``path``, recorded in ``METHOD_FILES`` (a file of
    ``properties/methods/`` is its method). ValueError for a missing file, a path with a space (the
    runs pass config files space-separated), or a stem that names a method of
    ``properties/methods/`` or another file."""
    full = os.path.abspath(path)
    stem = os.path.splitext(os.path.basename(full))[0]
    if not os.path.isfile(full):
        raise ValueError(f"'{name}': no method file {full}; give the path of a YAML file (model, fair_method, ...)")
    if any(c.isspace() for c in full):
        raise ValueError(f"'{name}': the path {full} has a space; move or rename the file")
    if os.path.realpath(full) == os.path.realpath(os.path.join(METHODS_DIR, f"{stem}.yaml")):
        return stem  # a file of properties/methods/ given by path: that method
    if stem in METHODS or stem in DERIVED or os.path.isfile(os.path.join(METHODS_DIR, f"{stem}.yaml")):
        raise ValueError(f"'{name}': '{stem}' is the name of a method of properties/methods/; rename your file")
    if METHOD_FILES.get(stem, full) != full:
        raise ValueError(f"'{name}': another method file is named '{stem}' ({METHOD_FILES[stem]}); rename one")
    METHOD_FILES[stem] = full
    return stem


def row_name(name):
    """The table's name of a ``--methods`` entry: a method file given by path is named by its stem
    (``path/to/MyMethod.yaml[key=1]`` -> ``MyMethod[key=1]``), any other entry by itself."""
    name = name.strip()
    head, bracket, rest = name.partition("[")
    if head.endswith(FILE_SUFFIXES):
        return os.path.splitext(os.path.basename(head))[0] + bracket + rest
    return name


def parse_method(name, known=None):
    """``(method, extra keys)`` of a ``--methods`` entry: ``"VarReg"`` -> ``("VarReg", {})``,
    ``"VarReg[group_variance_weight=0.5]"`` -> ``("VarReg", {"group_variance_weight": 0.5})``;
    several keys stack, ``"BiFair[hypergrad=first_order][outer_softmax=full]"``. A method file
    given by path (ending in ``.yaml``) is the method named by its stem:
    ``"path/to/MyMethod.yaml"`` -> ``("MyMethod", {})`` (``METHOD_FILES``).
    Raises ValueError saying what is wrong (syntax, a key given twice, a method file that is not
    there, or a method not in ``known``, default METHODS)."""
    known = METHODS if known is None else known
    name = name.strip()
    extra = {}
    method = name
    if "[" in name or "]" in name or "=" in name:
        match = SWEEP_POINT.match(name)
        if match is None:
            raise ValueError(f"'{name}' is neither a method name nor a sweep point; write <Method>[<key>=<value>], "
                             f"e.g. VarReg[group_variance_weight=0.5]")
        method = match["method"]
        for pair in re.finditer(_KEY_VALUE, match["keys"]):
            if pair["key"] in extra:
                raise ValueError(f"'{name}': key '{pair['key']}' is given twice; give each key once")
            extra[pair["key"]] = _value(name, pair["value"].strip())
    if method.endswith(FILE_SUFFIXES):
        method = _method_by_path(name, method)
    elif method not in known and method not in METHOD_FILES:
        raise ValueError(f"'{name}': unknown method '{method}'; choose from {', '.join(known)} "
                         f"(or give the path of a method file, path/to/MyMethod.yaml)")
    return method, extra


def without_keys(label, keys):
    """``label`` without its ``[<key>=<value>]`` parts for ``keys``:
    ``BiFair-PostHoc[dro_tau=3.0][posthoc_beta=1.0]`` -> ``BiFair-PostHoc[dro_tau=3.0]``."""
    return re.sub(_KEY_VALUE, lambda m: "" if m["key"] in keys else m[0], label)


def folder_name(label):
    """``label`` as a folder name: ``VarReg[group_variance_weight=0.5]`` -> ``VarReg__group_variance_weight-0.5``
    (method names, which hold only letters, digits and ``-``, stay as they are)."""
    safe = label.replace("[", "__").replace("]", "").replace("=", "-")
    return re.sub(r"[^A-Za-z0-9._-]", "_", safe)


def method_file(method):
    """The file of ``method``: under ``properties/methods/``, or the file given by path for it."""
    return METHOD_FILES.get(method) or os.path.join(METHODS_DIR, f"{method}.yaml")


def method_keys(name, known=None):
    """The config keys of a method or sweep point: its method file with the point's keys on top
    (what ``run_recbole_bifair.py --config_files=<method file>`` plus those keys runs)."""
    from recbole_bifair.config import load_yaml_file

    method, extra = parse_method(name, known)
    return {**(load_yaml_file(method_file(method)) or {}), **extra}


def select_rows(rows, names=()):
    """``{row name: method or sweep point}`` of ``names`` in their order (every one of ``rows`` when
    none): a row of ``rows`` (a table's name for a method, e.g. ``"BiFair first_order"`` ->
    ``"BiFair-first-order"``), or else a method or sweep point named as itself. Raises ValueError
    for a name that is neither."""
    chosen = {n: rows.get(n, n) for n in names} if names else dict(rows)
    for spec in chosen.values():
        parse_method(spec)
    return chosen


def is_bifair(method):
    """Whether a row is one of BiFair's (the rows the paired figures and the Pareto check are about)."""
    return method.startswith("BiFair")
