"""Lets a benchmark run by its path (``python benchmarks/<name>.py``) import ``benchmarks.lib``.

Python then puts ``benchmarks/`` first on ``sys.path``, not the repository; each script imports
this module in that case only (``if not __package__``), which puts the repository of the script
first, so the script also uses that checkout's ``recbole_bifair``, exactly as
``python -m benchmarks.<name>`` run from the repository root does."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
