"""Where the benchmarks read and write, relative to this checkout."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Tables and figures (committed).
RESULTS = os.path.join(REPO, "benchmarks", "results")
#: Scratch: run folders, checkpoints, logs, encoder caches (ignored by git).
WORK = os.path.join(REPO, "benchmarks", "work")
#: Finished runs' results, committed with the repository (``archive``).
ARCHIVE = os.path.join(RESULTS, "runs")
#: The method files users and benchmarks share (docs/methods.md).
METHODS_DIR = os.path.join(REPO, "properties", "methods")
#: The shared copies of ml-1m and Amazon Beauty beside the repository.
DEFAULT_DATA_PATH = os.path.join(os.path.dirname(REPO), "shared", "datasets")
