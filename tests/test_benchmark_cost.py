"""One measurement of ``cost.py`` (``benchmarks.lib.cost_child``): the epoch's first batches timed and
scaled to the epoch, on the tiny generated data, in this process and in a child process of its own."""

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
