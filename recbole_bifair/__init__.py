"""recbole-bifair: fair LLM-enhanced sequential recommendation as a RecBole plugin."""

from recbole_bifair import compat

compat.apply()

__version__ = "0.1.0"
