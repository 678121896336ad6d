"""Hyperparameter search over RecBole-style configs with Ray Tune (``run_hyper``).

``space`` reads RecBole's params files, ``objective`` selects trials (one metric, a constrained
metric, or a Pareto front), ``trainable`` runs one trial, ``runner`` orchestrates the search and
the test evaluation of the chosen trial, ``report`` writes the table, figure and best YAML.
"""
