"""Params files in RecBole's hyper syntax, and trial selection (no Ray cluster needed)."""

import math
import random

import numpy as np
import pytest
from ray.tune.search.variant_generator import generate_variants

from recbole_bifair.errors import ConfigError
from recbole_bifair.tune.objective import Objective, compromise, pareto_mask, select, smaller_is_better
from recbole_bifair.tune.space import parse_space


def sample(space, n, seed=0):
    """``n`` configurations drawn the way Ray Tune's default search draws them."""
    rng = np.random.RandomState(seed)
    return [cfg for _ in range(n) for _, cfg in generate_variants(space.ray_space(), random_state=rng)]


def test_every_recbole_type_parses_and_samples_within_its_bounds():
    space = parse_space(
        "# comment\n"
        "learning_rate loguniform -8,0\n"
        "\n"
        "hidden_size choice [32, 64]\n"
        "loss_type choice ['CE', 'BPR']\n"
        "dropout_prob uniform 0.1, 0.5\n"
        "n_layers quniform 1,3,1\n"
        "reg_weight quniform 0.0,1.0,0.25\n"
    )
    assert space.names == ["learning_rate", "hidden_size", "loss_type", "dropout_prob", "n_layers", "reg_weight"]
    assert space["learning_rate"].line == 2
    configs = sample(space, 400)
    lr = np.array([c["learning_rate"] for c in configs])
    # RecBole (hyperopt) reads loguniform bounds as exponents: exp(U(-8, 0)).
    assert lr.min() >= math.exp(-8) and lr.max() <= 1.0
    assert abs(np.median(np.log(lr)) - (-4)) < 0.5
    assert {c["hidden_size"] for c in configs} == {32, 64}
    assert {c["loss_type"] for c in configs} == {"CE", "BPR"}
    assert all(0.1 <= c["dropout_prob"] <= 0.5 for c in configs)
    assert {c["n_layers"] for c in configs} == {1, 2, 3}
    assert all(type(c["n_layers"]) is int for c in configs)
    # hyperopt's round(U(1, 3)): the inner value 2 twice as likely as each end
    assert 0.4 < np.mean([c["n_layers"] == 2 for c in configs]) < 0.6
    assert {c["reg_weight"] for c in configs} <= {0.0, 0.25, 0.5, 0.75, 1.0}


def test_exhaustive_space_is_the_grid_of_choices():
    space = parse_space("a choice [1, 2]\nb choice [[8, 8], [16, 16], [32, 32]]\n")
    assert space.all_choice and space.grid_size() == 6
    grid = [cfg for _, cfg in generate_variants(space.ray_space(exhaustive=True))]
    assert sorted((c["a"], tuple(c["b"])) for c in grid) == sorted(
        (a, b) for a in (1, 2) for b in ((8, 8), (16, 16), (32, 32)))


@pytest.mark.parametrize("text, line, words", [
    ("learning_rate loguniform -8,0\nhidden_size normal 1,2\n", 2, "unknown type 'normal'"),
    ("dropout_prob uniform 0.5,0.1\n", 1, "is empty"),
    ("# x\n\nlearning_rate loguniform 0,0\n", 3, "is empty"),
    ("n_layers quniform 1,3,0\n", 1, "must be positive"),
    ("n_layers quniform 1,3\n", 1, "a,b,q"),
    ("n_layers quniform 1.1,1.4,1\n", 1, "no multiple"),
    ("dropout_prob uniform 0.1,abc\n", 1, "'abc' is not a number"),
    ("dropout_prob uniform 0.1,inf\n", 1, "not a finite number"),
    ("hidden_size choice []\n", 1, "non-empty list"),
    ("hidden_size choice [64, __import__('os')]\n", 1, "Python list literal"),
    ("hidden_size choice 64\n", 1, "non-empty list"),
    ("hidden_size choice\n", 1, "expected `name type values`"),
    ("a choice [1]\nb choice [2]\na choice [3]\n", 3, "already searched on line 1"),
    ("2bad choice [1]\n", 1, "not a config key name"),
])
def test_bad_lines_are_rejected_naming_file_and_line(text, line, words):
    with pytest.raises(ConfigError) as err:
        parse_space(text, source="my.hyper")
    message = str(err.value)
    assert f"params file 'my.hyper' line {line}" in message
    assert words in message


def test_empty_params_file_is_rejected():
    with pytest.raises(ConfigError, match="defines no parameter"):
        parse_space("# only a comment\n", source="empty.hyper")


def skyline(points, smaller):
    """Pareto front of 2-D points by a sweep (independent of ``pareto_mask``'s pairwise test)."""
    signed = [tuple(-v if s else v for v, s in zip(p, smaller)) for p in points]  # maximise both
    order = sorted(range(len(points)), key=lambda i: (-signed[i][0], -signed[i][1]))
    front, best_y, i = set(), -math.inf, 0
    while i < len(order):
        # points with the same x: only those with the largest y of that x can be on the front
        j = i
        while j < len(order) and signed[order[j]][0] == signed[order[i]][0]:
            j += 1
        top = signed[order[i]][1]
        if top > best_y:
            front |= {k for k in order[i:j] if signed[k][1] == top}
            best_y = top
        i = j
    return [k in front for k in range(len(points))]


@pytest.mark.parametrize("smaller", [(False, True), (False, False), (True, True)])
def test_pareto_mask_matches_a_sweep(smaller):
    rng = random.Random(3)
    for _ in range(50):
        points = [(rng.randint(0, 6) / 6, rng.randint(0, 6) / 6) for _ in range(rng.randint(1, 12))]
        assert pareto_mask(points, smaller) == skyline(points, smaller)


def test_pareto_mask_ignores_missing_values():
    assert pareto_mask([(0.3, float("nan")), (0.2, 0.1)], [False, True]) == [False, True]


def test_compromise_is_closest_to_the_ideal_point():
    # accuracy up, unfairness down; scaled distances to (best, best): 1.0, 0.5*sqrt(2), 1.0
    front = [(0.30, 0.40), (0.25, 0.20), (0.20, 0.00)]
    assert compromise(front, [False, True]) == 1


def test_directions_come_from_recbole_smaller_metrics():
    assert smaller_is_better("giniindex@10") and smaller_is_better("rmse")
    assert not smaller_is_better("ndcg@10")
    assert Objective.parse("NDCG@10").mode == "max"
    assert Objective.parse("averagepopularity@10").mode == "min"


ROWS = [
    {"ndcg@10": 0.30, "giniindex@10": 0.50},
    {"ndcg@10": 0.25, "giniindex@10": 0.20},
    {"ndcg@10": 0.20, "giniindex@10": 0.00},
    {"ndcg@10": 0.10, "giniindex@10": 0.30},
]


def test_single_metric_picks_the_best_value():
    feasible, pareto, chosen = select(ROWS, Objective.parse("ndcg@10"))
    assert chosen == 0 and all(feasible) and not any(pareto)


def test_constraint_picks_the_best_feasible_trial_and_marks_the_front():
    feasible, pareto, chosen = select(ROWS, Objective.parse("ndcg@10", "giniindex@10<=0.3"))
    assert feasible == [False, True, True, True]
    assert chosen == 1
    # the front among feasible trials; trial 3 is dominated by trial 1
    assert pareto == [False, True, True, False]


def test_constraint_nobody_meets_gives_no_choice():
    _, _, chosen = select(ROWS, Objective.parse("ndcg@10", "giniindex@10<0"))
    assert chosen is None


def test_pareto_objective_picks_the_compromise_point():
    feasible, pareto, chosen = select(ROWS, Objective.parse("ndcg@10,giniindex@10"))
    assert pareto == [True, True, True, False]
    assert chosen == 1


@pytest.mark.parametrize("objective, constraint, words", [
    ("ndcg@10", "ndcg@10 = 0.3", "does not parse"),
    ("ndcg@10", "ndcggap@10<=high", "does not parse"),
    ("ndcg@10,a@10,b@10", None, "give one metric, or two"),
    ("ndcg@10,ndcg@10", None, "two different metrics"),
    ("ndcg at 10", None, "not a metric name"),
])
def test_bad_objectives_are_rejected(objective, constraint, words):
    with pytest.raises(ConfigError, match=words):
        Objective.parse(objective, constraint)


def test_shipped_example_spaces_parse():
    from recbole_bifair.config import properties_dir

    files = sorted((properties_dir() / "hyper").glob("*.test"))
    assert files
    for path in files:
        assert parse_space(path.read_text(), source=str(path)).params
