"""recbole-bifair: fair LLM-enhanced sequential recommendation as a RecBole plugin.

Importing the package loads neither torch nor RecBole, so that ``--help`` answers at once.
``setup()`` installs what the plugin needs inside RecBole; ``BiFairConfig`` and every entry point
call it, and so must code that builds RecBole objects without a ``BiFairConfig``.
"""

__version__ = "0.1.0"


def setup():
    """Install the RecBole workarounds (``compat.apply``), register the group metrics with
    RecBole's evaluator and silence the third-party warnings the plugin cannot fix at their
    cause (``logging_setup.quiet_known_warnings``). Idempotent."""
    # imported on use: importing the package loads neither torch nor RecBole
    from recbole_bifair import compat
    from recbole_bifair.data.download import download_dataset
    from recbole_bifair.fairness.metrics import register
    from recbole_bifair.logging_setup import quiet_known_warnings

    compat.apply(download_dataset)
    register()
    quiet_known_warnings()
