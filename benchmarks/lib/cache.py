"""When a finished (or interrupted) run is the one a benchmark plans: a run is known by its
recorded config, not by its folder's name, so a changed default or method file reruns what it
affects, and a run made under another name, or in an earlier session, is reused."""

import functools
import glob
import json
import os


#: Where a run writes or what it continued from, not what it computes: a run folder may be renamed
#: (a tuning candidate that becomes a method's default moves into the method's folder), and a run
#: resumed from its last checkpoint records ``resume_checkpoint``; both stay valid. ``threads`` says
#: how a run was executed (its float rounding, not its method), and runs archived before the key
#: existed must keep matching plans that set it.
# Where a run reads and writes, not what it computes. ``llm_emb_dir`` holds the embedding cache,
# whose files are reused only under a key of the item texts and encoder settings
# (embedding/generate.py), so a run in another work folder or worktree computed the same thing.
LOCATION_KEYS = ("results_dir", "checkpoint_dir", "resume_checkpoint", "threads", "llm_emb_dir")


def plain(value):
    """``value`` as JSON gives it back (tuples become lists), the form a result file records."""
    return json.loads(json.dumps(value))


def planned_config(config_files):
    """The config a run of these files records in its result JSON (no data is loaded)."""
    from recbole_bifair.quick_start import build_config
    from recbole_bifair.schema import recorded_config

    return plain(recorded_config(build_config(config_file_list=list(config_files))))


@functools.lru_cache(maxsize=None)
def stock_only_keys():
    """The plugin keys outside ``properties/overall.yaml`` (the LLM models' and the methods'): a stock
    model does not read them, so a value among them that its runs recorded (runs made while
    ``properties/dataset/`` files still set ``id_fusion``) changes no stock model's run."""
    from recbole_bifair.schema import plugin_keys

    return frozenset(key.name for key in plugin_keys()) - frozenset(key.name for key in plugin_keys("overall.yaml"))


@functools.lru_cache(maxsize=None)
def is_stock_model(name):
    from recbole_bifair.utils import get_model

    try:
        return not get_model(name).__module__.startswith("recbole_bifair")
    except Exception:  # noqa: BLE001 - an unknown name is compared key by key as before
        return False


@functools.lru_cache(maxsize=None)
def plugin_defaults():
    """``properties/overall.yaml`` of this checkout (read once)."""
    from recbole_bifair.config import plugin_defaults as read

    return read()


def same_config(recorded, expected):
    """Whether a finished run's recorded config is the planned one.

    Every key the run recorded must have its planned value, except ``LOCATION_KEYS`` (and, for a
    stock RecBole model, ``stock_only_keys``). Keys the run did not record are keys added to the
    plugin after it ran: the project adds a key with a default that keeps the old behaviour (a
    changed default changes a recorded value, and the run is redone), so a run from an earlier
    session stays valid and long benchmarks resume across sessions, as long as the plan keeps such
    a key at the value it was added with (``schema.ADDED_KEYS``; for other keys, their default):
    changing that default later does not make old runs count as runs with the new value; a plan that sets a newer key to another
    value (``BiFair-train-logits``'s ``rank_with_offsets``) is no run made before the key existed."""
    if recorded is None:
        return False
    from recbole_bifair.schema import ADDED_KEYS, upgrade_legacy

    recorded = upgrade_legacy(recorded)  # runs from before fair_method (same computation)
    ignored = set(LOCATION_KEYS)
    if recorded.get("model") and is_stock_model(recorded["model"]):
        ignored |= stock_only_keys()  # keys a stock model does not read
    # a key the run did not record had the value that keeps the old behaviour: the default it was
    # added with (schema.ADDED_KEYS), or today's default for keys not listed there
    before = {**plugin_defaults(), **ADDED_KEYS}
    newer = [k for k in expected if k not in recorded and k in before and k not in ignored]
    return (all(k in ignored or (k in expected and expected[k] == v) for k, v in recorded.items())
            and all(expected[k] == before[k] for k in newer))


def _siblings(wheres):
    """The other run folders beside each of ``wheres`` (same work folder or archive)."""
    taken = set(map(os.path.abspath, wheres))
    return [other for where in wheres
            for other in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(where)), "*", "")))
            if os.path.abspath(other) not in taken]


def finished(folder, expected=None, archive=None, derived=False):
    """The run's result JSON, if the run completed (it is written last, atomically) with the
    recorded config ``expected`` (any config when None); see ``same_config``. The run folder is
    searched first, then the run's ``archive`` folder (``archive.archive_run``), if given.
    ``derived``: only results evaluated from another run's checkpoint count (``methods.DERIVED``),
    else only trained ones.

    Then, with an ``expected`` config, the other run folders of the same work folder and archive:
    a run is known by its config, not by its folder's name, so a sweep point that repeats a
    method's setting (``IPS[ips_alpha=1.0]``), or a candidate that became a method's default
    (``LLM-SASRec[id_fusion=sum]`` -> ``LLM-SASRec``), reuses the run already made under another name
    (``runs.run_cached`` then archives it under this one)."""
    wheres = [folder, archive] if archive else [folder]
    if expected is not None:
        wheres += _siblings(wheres)
    for where in wheres:
        for path in sorted(glob.glob(os.path.join(where, "*.json")), reverse=True):
            with open(path) as f:
                result = json.load(f)
            if ("test_result" in result and ("evaluated_checkpoint" in result) == derived
                    and (expected is None or same_config(plain(result.get("config")), expected))):
                return path
    return None


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
        if same_config(plain(checkpoint["config"]["recorded"]), expected):
            return path
    return None
