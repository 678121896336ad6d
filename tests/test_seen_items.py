"""Seen items kept out of sequential full ranking (``eval_exclude_seen``, data/seen.py): which
runs exclude them, that the excluded items are exactly each user's history before the target
(read from the .inter file), and that the metrics equal a ranking computed by hand."""

import csv
import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader

from recbole_bifair.data.seen import SeenMaskedFullSortEvalDataLoader, has_repeats
from recbole_bifair.errors import ConfigError
from recbole_bifair.quick_start import build_config, prepare_run
from tests.datagen import make_dataset, tiny_config


def _prepare(root, **overrides):
    return prepare_run(build_config(model="SASRec", config_dict=tiny_config(root, **overrides)))


def _histories(root, name="tiny"):
    """user token -> item tokens in time order, from the .inter file. RecBole sorts on float32
    timestamps (1e9 + a few hundred seconds collapse to ties) and stably: ties keep file order."""
    rows = defaultdict(list)
    with open(root / name / f"{name}.inter") as f:
        for k, row in enumerate(csv.DictReader(f, delimiter="\t")):
            t = np.float32(row["timestamp:float"])
            rows[row["user_id:token"]].append((t, k, row["item_id:token"]))
    return {u: [item for _, _, item in sorted(r)] for u, r in rows.items()}


def _masked_rows(loader):
    """(user token, target token, set of masked item tokens) for every row of ``loader``."""
    ds = loader._dataset
    out = []
    for interaction, history_index, _, _ in loader:
        rows, items = history_index
        for r in range(len(interaction)):
            masked = set(ds.id2token(ds.iid_field, items[rows == r].numpy()).tolist()) if len(rows) else set()
            out.append((ds.id2token(ds.uid_field, int(interaction[ds.uid_field][r])),
                        ds.id2token(ds.iid_field, int(interaction[ds.iid_field][r])), masked))
    return out


@pytest.fixture
def distinct_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return make_dataset(tmp_path / "distinct", distinct=True)


def test_auto_excludes_seen_items_only_on_data_without_repeats(tiny_data, distinct_data):
    dataset, (_, valid, test), _, _ = _prepare(tiny_data)
    assert has_repeats(dataset)
    assert type(valid) is FullSortEvalDataLoader and type(test) is FullSortEvalDataLoader
    dataset, (_, valid, test), _, _ = _prepare(distinct_data)
    assert not has_repeats(dataset)
    assert isinstance(valid, SeenMaskedFullSortEvalDataLoader) and isinstance(test, SeenMaskedFullSortEvalDataLoader)
    _, (_, valid, _), _, _ = _prepare(distinct_data, eval_exclude_seen=False)
    assert type(valid) is FullSortEvalDataLoader


@pytest.mark.parametrize("window", [3, 10])
def test_the_excluded_items_are_the_history_before_the_target(distinct_data, window):
    # window 3: most histories are longer than the input, so the training items must come from
    # the training split, not only from the window
    histories = _histories(distinct_data)
    _, (_, valid, test), _, _ = _prepare(distinct_data, MAX_ITEM_LIST_LENGTH=window)
    for loader, offset in ((valid, 2), (test, 1)):
        rows = _masked_rows(loader)
        assert len(rows) == len(histories)
        for user, target, masked in rows:
            h = histories[user]
            assert target == h[-offset]
            assert masked == set(h[:-offset])


def test_true_excludes_seen_items_on_data_with_repeats(tiny_data):
    histories = _histories(tiny_data)
    _, (_, _, test), _, _ = _prepare(tiny_data, eval_exclude_seen=True)
    assert isinstance(test, SeenMaskedFullSortEvalDataLoader)
    rows = _masked_rows(test)
    assert all(masked == set(histories[user][:-1]) for user, _, masked in rows)
    # a target the user has seen before is excluded too (it cannot be hit): such rows exist here
    assert any(target in masked for _, target, masked in rows)


def _brute_force(model, loader, histories, exclude, k=10):
    """NDCG@k and Hit@k of ``model`` on ``loader`` computed by hand: scores from the model,
    item 0 and (``exclude``) the user's earlier items from the .inter file set to -inf."""
    ds = loader._dataset
    ndcg = hit = n = 0
    model.eval()
    for interaction, *_ in loader:
        with torch.no_grad():
            scores = model.full_sort_predict(interaction).view(len(interaction), -1).clone()
        scores[:, 0] = -math.inf
        for r in range(len(interaction)):
            user = ds.id2token(ds.uid_field, int(interaction[ds.uid_field][r]))
            target = int(interaction[ds.iid_field][r])
            if exclude:
                h = histories[user]
                earlier = h[:h.index(ds.id2token(ds.iid_field, target))]
                scores[r, torch.as_tensor(ds.token2id(ds.iid_field, earlier))] = -math.inf
            rank = int((scores[r] > scores[r, target]).sum())
            n += 1
            if rank < k:
                hit += 1
                ndcg += 1 / np.log2(rank + 2)
    return ndcg / n, hit / n


@pytest.mark.parametrize("exclude", [True, False])
def test_metrics_equal_a_ranking_computed_by_hand(distinct_data, exclude):
    histories = _histories(distinct_data)
    _, (train, valid, test), model, trainer = _prepare(
        distinct_data, epochs=3, metrics=["NDCG", "Hit"], topk=[10], eval_exclude_seen=exclude)
    trainer.fit(train, valid, saved=False)
    result = trainer.evaluate(test, load_best_model=False)
    ndcg, hit = _brute_force(model, test, histories, exclude)
    assert result["ndcg@10"] == pytest.approx(ndcg, abs=1e-4)
    assert result["hit@10"] == pytest.approx(hit, abs=1e-4)


def test_excluding_seen_items_raises_the_metrics_of_a_trained_model(distinct_data):
    # the same trained weights, ranked both ways: excluding items that cannot be the target only
    # moves the target up
    _, (train, valid, test), model, trainer = _prepare(distinct_data, epochs=3, metrics=["NDCG"], topk=[10])
    trainer.fit(train, valid, saved=False)
    masked = trainer.evaluate(test, load_best_model=False)["ndcg@10"]
    plain = FullSortEvalDataLoader(trainer.config, test._dataset, test._sampler)
    unmasked = trainer.evaluate(plain, load_best_model=False)["ndcg@10"]
    assert masked > unmasked


@pytest.mark.parametrize("value", ["maybe", 1, "yes"])
def test_a_bad_value_names_the_key(tiny_data, value):
    with pytest.raises(ConfigError, match="eval_exclude_seen"):
        _prepare(tiny_data, eval_exclude_seen=value)


def test_a_command_line_string_is_read_as_a_boolean(tiny_data):
    _, (_, valid, _), _, _ = _prepare(tiny_data, eval_exclude_seen="true")
    assert isinstance(valid, SeenMaskedFullSortEvalDataLoader)


def test_the_reference_script_trains_and_ranks_unseen_items(distinct_data, tmp_path):
    # benchmarks/reference_sasrec.py, the independent loop of METHOD.md 3c, on generated data:
    # its own evaluation with seen items excluded is at least the one without, for the same weights
    import json

    from benchmarks.reference_sasrec import ReferenceSASRec, evaluate, main

    out = tmp_path / "ref.json"
    assert main([f"--data_path={distinct_data}", "--dataset=tiny", "--epochs=2", "--window=10", f"--out={out}"]) == 0
    record = json.loads(out.read_text())
    assert [line["epoch"] for line in record["epochs"]] == [0, 1]
    assert 0 <= record["best"]["test_ndcg@10"] <= record["best"]["test_hr@10"] <= 1
    torch.manual_seed(0)
    model = ReferenceSASRec(30, d=8, window=10)
    sequences = [np.array(s) for s in ([1, 2, 3, 4, 5], [6, 7, 8, 9], [2, 4, 6, 8, 10, 12])]
    masked, plain = evaluate(model, sequences, "test", 10, True), evaluate(model, sequences, "test", 10, False)
    assert masked[0] >= plain[0] and masked[1] >= plain[1]
