"""recbole-bifair: fair LLM-enhanced sequential recommendation as a RecBole plugin."""

from recbole_bifair import compat

compat.apply()

from recbole_bifair import fairness  # noqa: E402,F401  registers the group metrics with RecBole

__version__ = "0.1.0"
