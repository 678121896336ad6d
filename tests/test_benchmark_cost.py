"""One measurement of ``cost.py`` (``benchmarks.lib.cost_child``): the epoch's first batches timed and
scaled to the epoch, on the tiny generated data, in this process and in a child process of its own."""

import pytest

from benchmarks.lib import cost, cost_child
from benchmarks.lib.methods import method_keys
from tests.datagen import tiny_config


def test_a_stock_model_is_timed_on_its_first_batches(tiny_data):
    out = cost_child.measure({"config": tiny_config(tiny_data, **method_keys("SASRec")), "threads": 1,
                              "max_batches": 1, "warmup": 1})
    assert out["timed_batches"] == 1 and out["inner_batches"] >= 1 and out["epoch_level_seconds"] == 0.0
    assert out["epoch_seconds"] > 0 and out["eval_seconds"] > 0 and out["peak_rss_mb"] > 0
    assert out["items"] == 31 and out["train_samples"] > 0  # 30 items and RecBole's padding id


def test_bifair_is_measured_in_a_child_process_with_a_random_table(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(cost, "WORK", str(tmp_path / "cost"))
    config = tiny_config(tiny_data, **method_keys("BiFair-first-order[outer_softmax=full]"), n_item_groups=3,
                         meta_batch_size=32, hvp_batch_size=32, prior_probe=False)
    out = cost.measure(config, 1, random_table=12, max_batches=1, skip_eval=True)
    assert out["timed_batches"] == 1 and out["inner_batches"] >= 1 and "eval_seconds" not in out
    assert out["epoch_level_seconds"] > 0  # BiFair's epoch log, timed on its own and added once
    assert out["epoch_seconds"] >= out["epoch_level_seconds"]


# ----- the epoch against its matmul floor (benchmarks/lib/floor.py) ------------------------------------
def test_matmul_flop_is_two_per_multiply_add():
    from benchmarks.lib.floor import matmul_flop

    assert matmul_flop("mm", [(2, 3), (3, 4)]) == 2 * 2 * 3 * 4
    assert matmul_flop("addmm", [(4,), (2, 3), (3, 4)]) == 2 * 2 * 3 * 4
    assert matmul_flop("bmm", [(5, 2, 3), (5, 3, 4)]) == 2 * 5 * 2 * 3 * 4
    assert matmul_flop("baddbmm", [(5, 2, 4), (5, 2, 3), (5, 3, 4)]) == 2 * 5 * 2 * 3 * 4


def test_a_linear_layers_training_step_records_three_times_its_forward_flop():
    """Forward x W^T + b (addmm), backward dx = g W and dW = g^T x (two mm): 3 x 2 * 5 * 3 * 4."""
    import torch

    from benchmarks.lib.floor import MatmulRecorder, matmul_flop, replay_seconds

    layer, x = torch.nn.Linear(3, 4), torch.randn(5, 3, requires_grad=True)
    recorder = MatmulRecorder()
    with recorder:
        layer(x).sum().backward()
    assert sorted(name for name, _ in recorder.calls) == ["addmm", "mm", "mm"]
    assert sum(matmul_flop(name, shapes) for name, shapes in recorder.calls) == 3 * 2 * 5 * 3 * 4
    seconds, flop = replay_seconds(recorder.calls, repeats=1)
    assert flop == 3 * 2 * 5 * 3 * 4 and seconds > 0


def test_a_stock_models_epoch_is_set_against_its_floor(tiny_data):
    out = cost_child.measure({"config": tiny_config(tiny_data, **method_keys("SASRec"), train_mode="sequence"),
                              "threads": 1, "floor": True, "max_batches": 2, "warmup": 1})
    assert out["seconds_per_epoch"] > 0 and out["floor_seconds_per_epoch"] > 0 and out["tflop_per_epoch"] > 0
    assert out["share_of_floor"] == pytest.approx(out["floor_seconds_per_epoch"] / out["seconds_per_epoch"])
    assert out["top_ops"] and all(seconds >= 0 for _, seconds in out["top_ops"])


def test_bifairs_epoch_against_its_floor_times_its_inner_batches_only(tiny_data):
    """A group-loop trainer iterates its inner loader: the floor times the first batches of that
    loader, not whole epochs (their count is the inner loader's)."""
    config = tiny_config(tiny_data, **method_keys("BiFair-first-order[outer_softmax=full]"), n_item_groups=3,
                         meta_batch_size=32, hvp_batch_size=32, prior_probe=False, train_mode="sequence",
                         train_batch_size=16)
    from benchmarks.lib import floor
    from recbole_bifair.quick_start import build_config, prepare_run

    _, (train, _, _), _, trainer = prepare_run(build_config(config_dict=config))
    steps = []
    group_step = trainer._group_step
    trainer._group_step = lambda *args: (steps.append(1), group_step(*args))[1]
    out = floor.measure(trainer, train, batches=2, warmup=1)
    assert out["epoch_batches"] == len(trainer._inner_data) > 3
    assert len(steps) == 1 + 2 * 3  # warm-up, timed, recorded, profiled: the chosen batches only
