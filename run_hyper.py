"""Hyperparameter search with Ray Tune (see ``recbole_bifair/tune/cli.py`` and README.md)."""

from recbole_bifair.tune.cli import console_main

if __name__ == "__main__":
    console_main()
