"""A trained model evaluated under ranking-time keys without training
(``recbole_bifair.quick_start.evaluate_checkpoint``), and the fairness benchmark's PostHoc points
derived that way from LLM-SASRec's checkpoints (``benchmarks.lib.methods.DERIVED``)."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from recbole_bifair.errors import ConfigError
from recbole_bifair.quick_start import evaluate_checkpoint, load_data_and_model, run_bifair
from benchmarks import fairness
from benchmarks.lib import archive, cache, protocol, runs
from tests.bifair_fixtures import bifair_config, bifair_setup

RANKING = dict(metrics=["NDCG", "Recall", "GroupNDCG", "NDCGCV"], topk=[10], save_rankings=True,
               eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"})


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """A finished LLM-SASRec run (2 epochs) and the config files it was made with."""
    root, emb = bifair_setup(tmp_path, monkeypatch)
    method = tmp_path / "method.yaml"
    method.write_text(yaml.safe_dump({"model": "LLMSASRec"}))
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(json.dumps(bifair_config(root, emb, epochs=2, results_dir=str(tmp_path / "base"), **RANKING)))
    result = run_bifair(config_file_list=[str(method), str(protocol)])
    return root, emb, tmp_path, [str(method), str(protocol)], result


def _config_files(tmp_path, files, name, **keys):
    extra = tmp_path / f"{name}.yaml"
    extra.write_text(yaml.safe_dump({"results_dir": str(tmp_path / name), **keys}))
    return files + [str(extra)]


def test_with_the_training_config_it_gives_the_runs_own_metrics(trained):
    _, _, tmp_path, files, result = trained
    again = evaluate_checkpoint(result["checkpoint"], config_file_list=_config_files(tmp_path, files, "same"))
    assert again["test_result"] == result["test_result"]
    assert again["best_valid_result"] == result["best_valid_result"]
    assert again["epochs_trained"] == 0 and again["evaluated_checkpoint"] == result["checkpoint"]
    assert pd.read_csv(again["rankings_file"]).equals(pd.read_csv(result["rankings_file"]))


def test_posthoc_rankings_are_the_trained_scores_minus_beta_log_count_by_hand(trained):
    root, _, tmp_path, files, result = trained
    beta = 2.0
    derived = evaluate_checkpoint(result["checkpoint"],
                                  config_file_list=_config_files(tmp_path, files, "posthoc", posthoc_beta=beta))
    assert derived["config"]["posthoc_beta"] == beta
    # by hand: the trained model's plain scores minus beta log(1 + training count)
    config, model, dataset, train, _, test = load_data_and_model(result["checkpoint"])
    assert model.posthoc.beta == 0.0
    inter = pd.read_csv(root / "tiny" / "tiny.inter", sep="\t", dtype=str)
    tokens = np.asarray(dataset.field2id_token["item_id"], dtype=object)
    train_items = train._dataset.inter_feat["item_id"].numpy()  # the training split as RecBole made it
    counts = np.bincount(train_items, minlength=len(tokens)).astype(float)
    assert counts[1:].sum() == len(train_items) and set(tokens[1:]) <= set(inter["item_id:token"])
    model.eval()
    expected = {}
    with torch.no_grad():
        for interaction, history, _, _ in test:
            scores = model.full_sort_predict(interaction).view(len(interaction), -1).double()
            scores -= beta * torch.log1p(torch.as_tensor(counts))
            scores[:, 0] = -np.inf
            if history is not None:  # RecBole masks no history for sequential models (None)
                scores[history] = -np.inf
            top = torch.topk(scores, 10).indices.numpy()
            users = dataset.field2id_token["user_id"][interaction["user_id"].numpy()]
            expected.update({u: " ".join(tokens[row]) for u, row in zip(users, top)})
    got = pd.read_csv(derived["rankings_file"], dtype=str)
    assert len(got) == len(expected) and (got["topk"].to_numpy() == got["user"].map(expected).to_numpy()).all()
    plain = pd.read_csv(result["rankings_file"], dtype=str)
    assert not plain["topk"].equals(got["topk"])  # beta 2 changes the lists


def test_any_other_difference_is_a_config_error_naming_the_key(trained):
    _, _, tmp_path, files, result = trained
    with pytest.raises(ConfigError, match=r"hidden_size: trained 8, now 16.*posthoc_beta, rank_with_offsets may differ"):
        evaluate_checkpoint(result["checkpoint"], config_file_list=_config_files(tmp_path, files, "x", hidden_size=16))


def _tiny_benchmark(tmp_path, monkeypatch):
    """The data root of a ``tiny`` dataset for the fairness benchmark, with a 1-epoch ``quick`` budget."""
    root, emb = bifair_setup(tmp_path, monkeypatch)
    monkeypatch.setitem(protocol.DATASETS, "tiny", bifair_config(root, emb))
    monkeypatch.setitem(protocol.BUDGETS, "quick", {"epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "hidden_size": 8,
                                                    "inner_size": 16, "train_batch_size": 64})
    return root


def test_the_benchmark_derives_posthoc_points_from_llm_sasrec(tmp_path, monkeypatch):
    root = _tiny_benchmark(tmp_path, monkeypatch)
    work, runs_root = str(tmp_path / "work" / "fairness-tiny-quick"), str(tmp_path / "runs")
    point = dict(extra={"posthoc_beta": 1.0}, label="PostHoc[posthoc_beta=1.0]", archive_root=runs_root)
    with pytest.raises(RuntimeError, match="run it first"):
        runs.run_one("PostHoc", 2020, "quick", work, 1, "tiny", str(root), **point)
    base, _ = runs.run_one("LLM-SASRec", 2020, "quick", work, 1, "tiny", str(root), archive_root=runs_root)
    path, seconds = runs.run_one("PostHoc", 2020, "quick", work, 1, "tiny", str(root), **point)
    result, trained = json.load(open(path)), json.load(open(base))
    assert seconds > 0 and result["epochs_trained"] == 0 and result["evaluated_checkpoint"] == trained["checkpoint"]
    assert result["config"]["posthoc_beta"] == 1.0 and "PostHoc__posthoc_beta-1.0-seed2020" in path
    assert path.startswith(runs_root)  # archived like a trained run
    again, seconds = runs.run_one("PostHoc", 2020, "quick", work, 1, "tiny", str(root), **point)
    assert (again, seconds) == (path, 0.0)
    # a derived result never stands for a trained run of the same config, and the other way round
    folder = runs.run_dir(work, "PostHoc[posthoc_beta=1.0]", 2020)
    assert cache.finished(folder, result["config"], archive.archive_folder(folder, runs_root)) is None
    assert cache.finished(runs.run_dir(work, "LLM-SASRec", 2020), trained["config"], derived=True) is None


def test_bifair_posthoc_points_are_derived_from_bifairs_checkpoint(tmp_path, monkeypatch):
    root = _tiny_benchmark(tmp_path, monkeypatch)
    work = str(tmp_path / "work" / "fairness-tiny-quick")
    point = dict(extra={"posthoc_beta": -0.5}, label="BiFair-PostHoc[posthoc_beta=-0.5]")
    with pytest.raises(RuntimeError, match="run it first"):
        runs.run_one("BiFair-PostHoc", 2020, "quick", work, 1, "tiny", str(root), **point)
    base, _ = runs.run_one("BiFair", 2020, "quick", work, 1, "tiny", str(root))
    path, _ = runs.run_one("BiFair-PostHoc", 2020, "quick", work, 1, "tiny", str(root), **point)
    result, trained = json.load(open(path)), json.load(open(base))
    assert result["evaluated_checkpoint"] == trained["checkpoint"] and result["epochs_trained"] == 0
    assert result["config"]["posthoc_beta"] == -0.5 and trained["config"]["posthoc_beta"] == 0.0
    assert result["config"]["fair_method"] == "bifair" and "BiFair-PostHoc__posthoc_beta--0.5-seed2020" in path
    # at beta 0 the derived point is BiFair's own trained model, metric for metric
    zero, _ = runs.run_one("BiFair-PostHoc", 2020, "quick", work, 1, "tiny", str(root),
                           extra={"posthoc_beta": 0.0}, label="BiFair-PostHoc[posthoc_beta=0.0]")
    assert json.load(open(zero))["test_result"] == trained["test_result"]
    # BiFair-train-logits: the same checkpoint ranked with the learned offsets added back
    logits, _ = runs.run_one("BiFair-train-logits", 2020, "quick", work, 1, "tiny", str(root))
    logits = json.load(open(logits))
    assert logits["evaluated_checkpoint"] == trained["checkpoint"] and logits["config"]["rank_with_offsets"] is True
    assert trained["config"]["rank_with_offsets"] is False and logits["test_result"] != trained["test_result"]
    # a derived point on a training key is evaluated from the base's point of that key
    tau = dict(extra={"dro_tau": 3.0})
    with pytest.raises(RuntimeError, match="run it first"):
        runs.run_one("BiFair-train-logits", 2020, "quick", work, 1, "tiny", str(root), **tau,
                     label="BiFair-train-logits[dro_tau=3.0]")
    point_base, _ = runs.run_one("BiFair", 2020, "quick", work, 1, "tiny", str(root), **tau,
                                 label="BiFair[dro_tau=3.0]")
    point, _ = runs.run_one("BiFair-train-logits", 2020, "quick", work, 1, "tiny", str(root), **tau,
                            label="BiFair-train-logits[dro_tau=3.0]")
    point, point_base = json.load(open(point)), json.load(open(point_base))
    assert point["evaluated_checkpoint"] == point_base["checkpoint"] != trained["checkpoint"]
    assert point["config"]["dro_tau"] == 3.0 and point["config"]["rank_with_offsets"] is True


def test_a_renamed_base_folder_still_gives_its_checkpoint(tmp_path, monkeypatch):
    """A tuning candidate's folder renamed to the method's (it became the default): the base JSON
    names the checkpoint under the old folder; the derived run finds it under the new one."""
    root = _tiny_benchmark(tmp_path, monkeypatch)
    work = tmp_path / "work" / "fairness-tiny-quick"
    base, _ = runs.run_one("LLM-SASRec", 2020, "quick", str(work), 1, "tiny", str(root))
    result = json.load(open(base))
    old = str(work / "candidate-seed2020" / "saved" / os.path.basename(result["checkpoint"]))
    json.dump({**result, "checkpoint": old}, open(base, "w"))
    path, _ = runs.run_one("PostHoc", 2020, "quick", str(work), 1, "tiny", str(root))
    assert json.load(open(path))["evaluated_checkpoint"] == result["checkpoint"]


def test_seeds_other_than_the_profiles_make_their_own_table(monkeypatch, tmp_path):
    calls = []

    def fake_run_one(method, seed, *args, **kwargs):
        calls.append(seed)
        raise RuntimeError("stop")

    monkeypatch.setattr(runs, "run_one", fake_run_one)
    with pytest.raises(RuntimeError, match="stop"):
        fairness.main(["--profile=converge3", "--methods=SASRec", "--seeds=2022", "--jobs=1"])
    assert calls == [2022]


def test_a_key_newer_than_the_checkpoint_may_only_have_its_default(trained):
    """A checkpoint written before a plugin key existed (here: ``score`` removed from its config)
    evaluates under that key's default, which keeps the old behaviour, and under nothing else."""
    import torch as _torch

    from recbole_bifair.compat import load_checkpoint

    _, _, tmp_path, files, result = trained
    old = load_checkpoint(result["checkpoint"])
    del old["config"]["recorded"]["score"]
    older = str(tmp_path / "older.pth")
    _torch.save(old, older)
    again = evaluate_checkpoint(older, config_file_list=_config_files(tmp_path, files, "older"))
    assert again["test_result"] == result["test_result"]
    with pytest.raises(ConfigError, match=r"score: trained '<unset>', now 'cosine'"):
        evaluate_checkpoint(older, config_file_list=_config_files(tmp_path, files, "older2", score="cosine"))
