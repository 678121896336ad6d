"""Atomic file output: a reader never sees a half-written file, a failure leaves nothing behind."""

import contextlib
import json
import math
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file lives in the same folder so that ``os.replace`` is a rename on one file
    system. ``suffix`` keeps an extension that some writers insist on (``np.save`` adds ``.npy``).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=folder)
    os.close(fd)
    # mkstemp creates 0600; give the file the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json_atomic(path, obj):
    """``obj`` as indented JSON; NaN and infinities are written as null (see ``to_json_value``)."""
    write_text_atomic(path, json.dumps(to_json_value(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def to_json_value(value):
    """``value`` with JSON types only, recursively: a non-finite float becomes None (null).

    Python's json writes NaN and Infinity, which are not JSON: strict readers (JavaScript's
    JSON.parse, most other languages' parsers) reject the whole file. numpy/torch values become
    Python numbers and lists first, so that their NaNs are caught too; anything else becomes its
    string.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, dict):
        return {key: to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_json_value(value.tolist())
    if hasattr(value, "item"):
        return to_json_value(value.item())
    return str(value)
