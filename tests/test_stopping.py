"""valid_window: early stopping and the best checkpoint on the trailing mean of the validation
score. The rule (trainer/stopping.py) against hand-computed curves; a real run against the rule
replayed on the run's own recorded curve; a resumed run against the uninterrupted one."""

import os

import pytest
import torch

from recbole_bifair.compat import load_checkpoint
from recbole_bifair.errors import ConfigError
from recbole_bifair.logging_setup import epoch_line
from recbole_bifair.quick_start import run_bifair
from recbole_bifair.trainer.stopping import replay, trailing_mean
from tests.datagen import tiny_config

#: On the tiny data SASRec passes its best raw score at the third validation and stops at
#: stopping_step 1; the trailing mean of 3 goes on for two more validations (checked below).
SETTINGS = dict(epochs=15, stopping_step=1, learning_rate=0.01, hidden_dropout_prob=0.5, attn_dropout_prob=0.5)


def test_trailing_mean_uses_what_there_is_at_the_start():
    assert trailing_mean([0.2], 3) == 0.2
    assert trailing_mean([0.2, 0.4], 3) == pytest.approx(0.3)
    assert trailing_mean([0.2, 0.4, 0.6, 0.8], 3) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        trailing_mean([0.2], 0)


def test_a_lucky_validation_ends_the_raw_rule_and_not_the_mean():
    # one spike at validation 1, then a slow rise
    curve = [0.10, 0.15, 0.11, 0.12, 0.125, 0.13, 0.135, 0.12]
    # raw, patience 2: the spike is best, validations 2, 3, 4 are not: stop at 4
    assert replay(curve, 1, 2) == {"stop": 4, "best": 1, "best_score": 0.15}
    # trailing means of 3: .10 .125 .12 .12667 .11833 .125 .13 .12833: best at 6, no stop
    smoothed = replay(curve, 3, 2)
    assert smoothed["stop"] is None and smoothed["best"] == 6
    assert smoothed["best_score"] == pytest.approx((0.125 + 0.13 + 0.135) / 3)


def test_ties_improve_and_smaller_is_better_when_asked():
    assert replay([0.1, 0.1, 0.09], 1, 0) == {"stop": 2, "best": 1, "best_score": 0.1}
    assert replay([3.0, 2.0, 2.5, 2.6], 1, 1, bigger=False) == {"stop": 3, "best": 1, "best_score": 2.0}


@pytest.mark.parametrize("window", [1, 3])
def test_a_run_stops_and_keeps_the_checkpoint_its_replayed_curve_says(tiny_data, window):
    result = run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, valid_window=window, **SETTINGS))
    curve = result["valid_scores"]
    assert len(curve) == result["epochs_trained"]  # one validation per epoch
    expected = replay(curve, window, SETTINGS["stopping_step"])
    assert expected["stop"] == len(curve) - 1  # early stopping ended the run there
    assert result["best_valid_score"] == pytest.approx(expected["best_score"])
    assert result["best_valid_result"]["ndcg@10"] == curve[expected["best"]]
    assert load_checkpoint(result["checkpoint"])["epoch"] == expected["best"]
    if window == 3:
        raw = replay(curve, 1, SETTINGS["stopping_step"])
        # the mean trained past the raw rule's stop and kept a later checkpoint
        assert raw["stop"] < expected["stop"] and raw["best"] < expected["best"]


def test_the_mean_is_printed_beside_the_raw_score():
    line = epoch_line(3, 10, 1.5, 2.0, "ndcg@10", 0.1234, True, mean=0.1111)
    assert line.endswith("valid ndcg@10 0.1234 (mean 0.1111) best")
    assert epoch_line(3, 10, 1.5, 2.0, "ndcg@10", 0.1234, False).endswith("valid ndcg@10 0.1234")


class Interrupted(Exception):
    pass


def stop_after(epoch):
    def callback(epoch_idx, valid_score):
        if epoch_idx == epoch:
            raise Interrupted()
    return callback


def last_checkpoint():
    [last] = [os.path.join("saved", name) for name in os.listdir("saved") if name.endswith("-last.pth")]
    return last


def test_a_resumed_run_keeps_its_window_of_validations(tiny_data):
    settings = dict(valid_window=3, **SETTINGS)
    full = run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, **settings))
    os.rename("saved", "saved-full")
    with pytest.raises(Interrupted):
        run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, **settings), callback_fn=stop_after(3))
    last = last_checkpoint()
    assert load_checkpoint(last)["valid_scores"] == full["valid_scores"][:4]
    resumed = run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, resume_checkpoint=last, **settings))
    assert resumed["valid_scores"] == full["valid_scores"]
    assert resumed["best_valid_score"] == full["best_valid_score"]
    assert resumed["test_result"] == full["test_result"]


def test_a_checkpoint_from_before_valid_window_resumes_only_with_the_raw_rule(tiny_data):
    with pytest.raises(Interrupted):
        run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, **SETTINGS), callback_fn=stop_after(1))
    last = last_checkpoint()
    checkpoint = load_checkpoint(last)
    del checkpoint["valid_scores"]
    torch.save(checkpoint, last)
    with pytest.raises(ConfigError, match=f"resume_checkpoint '.*' was written before valid_window existed.*"
                                          f"Resume it with valid_window: 1"):
        run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, resume_checkpoint=last, valid_window=3,
                                                           **SETTINGS))
    resumed = run_bifair(model="SASRec", config_dict=tiny_config(tiny_data, resume_checkpoint=last, **SETTINGS))
    # the validations before the resume are unknown: the curve holds the resumed ones only
    assert len(resumed["valid_scores"]) == resumed["epochs_trained"] > 0


def write_run_folder(folder, lines, epochs=20, patience=3, result=None):
    import json
    folder.mkdir(parents=True)
    (folder / "protocol.yaml").write_text(f"{{dataset: tiny, epochs: {epochs}, stopping_step: {patience}}}\n")
    (folder / "run.log").write_text("\n".join(lines) + "\n")
    if result is not None:
        (folder / "result.json").write_text(json.dumps(result))


def test_the_benchmark_reads_curves_and_tells_only_what_they_show(tmp_path):
    from benchmarks.lib.stopping import collect, outcome
    scores = [0.10, 0.15, 0.11, 0.12, 0.125, 0.13, 0.135, 0.12, 0.11, 0.10]
    lines = ["# BiFair seed 2020: started"] + [
        f"17:19:16 epoch {i}/20  5.7 s  loss 290.3786  valid ndcg@10 {s:.4f}{' best' if i == 1 else ''}  E drift 0.07%"
        for i, s in enumerate(scores)]
    # a resumed run repeats its last epoch's line: the later one counts
    lines.insert(3, "17:20:00 epoch 2/20  5.7 s  loss 290.0  valid ndcg@10 0.9999")
    write_run_folder(tmp_path / "work" / "bench" / "BiFair-seed2020", lines, result={"test_result": {}})
    write_run_folder(tmp_path / "work" / "bench" / "SASRec-seed2020", lines[:3])  # running: no result
    records = collect([str(tmp_path / "work")])
    assert sorted(records) == ["bench/BiFair-seed2020", "bench/SASRec-seed2020"]
    running = dict(records.pop("bench/SASRec-seed2020"))
    assert running["ended"] == "running" and running["scores"] == "0.1000 0.1500"
    row = dict(records["bench/BiFair-seed2020"])
    assert (row["method"], row["seed"], row["patience"], row["ended"]) == ("BiFair", 2020, 3, "early")
    row["scores"] = [float(s) for s in row["scores"].split()]
    assert row["scores"] == scores
    # raw, patience 2: stops at validation 4, keeps 0.15, and the curve never rose 1% above it later
    assert outcome(row, 1, 2) == {"stop": 4, "best": 1, "kept": 0.15, "shortfall": 0.0, "improving": False}
    # patience 1 on [.10 .20 .12 .13 .21]: stops at 3 while the curve still rises to .21
    rising = {**row, "scores": [0.10, 0.20, 0.12, 0.13, 0.21, 0.15, 0.14, 0.13]}
    stopped = outcome(rising, 1, 1)
    assert stopped["stop"] == 3 and stopped["improving"] and stopped["shortfall"] == pytest.approx(0.01 / 0.21)
    # the recorded rule itself (patience 3 stops at validation 5, where its run ended): nothing after it is known
    assert outcome({**row, "scores": scores[:6]}, 1, 3) is None
    assert outcome({**row, "scores": scores[:6]}, 1, 2)["stop"] == 4
    # a run still training tells as far as it got, as one that stopped early
    assert outcome({**row, "ended": "running"}, 1, 2) == outcome(row, 1, 2)
    assert outcome({**row, "ended": "running"}, 1, 20) is None
    # a rule more patient than the run tells nothing, unless the run trained its whole budget
    assert outcome(row, 1, 20) is None
    assert outcome({**row, "ended": "epochs"}, 1, 20)["stop"] == len(scores) - 1


def test_collected_curves_replace_the_same_runs_under_older_names():
    from benchmarks.lib.stopping import merge
    run = {"dataset": "tiny", "method": "BiFair", "seed": 2020, "patience": 10, "ended": "early",
           "scores": "0.1000 0.2000"}
    other = {**run, "scores": "0.1000 0.3000"}  # a second run in the same folder
    kept = merge({"bench/BiFair-seed2020": run}, {"bench/BiFair-seed2020/run-b": other})
    assert kept == {"bench/BiFair-seed2020": run, "bench/BiFair-seed2020/run-b": other}
    renamed = merge(kept, {"bench/BiFair-seed2020/run-a": dict(run)})
    assert sorted(renamed) == ["bench/BiFair-seed2020/run-a", "bench/BiFair-seed2020/run-b"]
    # a run seen while training, then finished: only the finished curve stays
    training = {"bench/SASRec-seed2020": {**run, "method": "SASRec", "ended": "running"}}
    done = {"bench/SASRec-seed2020/run-c": {**run, "method": "SASRec", "ended": "epochs", "scores": "0.1 0.2 0.3"}}
    assert sorted(merge({**kept, **training}, done)) == sorted([*kept, *done])
