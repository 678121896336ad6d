"""What a BiFair run leaves behind: prior probe, exported table, checkpoint checks, missing input."""

import math
import os

import numpy as np
import pytest
import torch

from recbole_bifair.compat import load_checkpoint
from recbole_bifair.errors import BiFairError, ConfigError
from recbole_bifair.prior_probe import probe_item_table
from recbole_bifair.quick_start import build_config, prepare_run, run_bifair
from tests.bifair_fixtures import bifair_config, bifair_setup, write_random_embeddings


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def test_prior_probe_ndcg_matches_a_hand_computation(setup):
    root, emb = setup
    config = build_config(model="BiFairSASRec", config_dict=bifair_config(root, emb, metrics=["NDCG"]))
    dataset, (train, valid, test), model, trainer = prepare_run(config)
    table = model.item_table.E0
    _, result = probe_item_table(config, train, test, table)

    # Independent computation with numpy over the same test sequences.
    T = table.numpy().astype(np.float64)
    norms = np.linalg.norm(T, axis=1, keepdims=True)
    T = np.divide(T, norms, out=np.zeros_like(T), where=norms > 0)
    ndcgs = []
    for batch in test:
        interaction, history_index, positive_u, positive_i = batch
        seqs = interaction["item_id_list"].numpy()
        for row, target in zip(positive_u.numpy(), positive_i.numpy()):
            hist = seqs[row][seqs[row] > 0]
            user = T[hist].mean(0)
            user = user / max(np.linalg.norm(user), 1e-12)
            scores = T @ user
            scores[0] = -np.inf
            rank = int((scores > scores[target]).sum())
            ndcgs.append(1.0 / math.log2(rank + 2) if rank < 10 else 0.0)
    assert result["ndcg@10"] == pytest.approx(np.mean(ndcgs), abs=1e-4)


def test_run_reports_prior_probe_and_training_log_and_exports_a_reusable_table(setup):
    root, emb = setup
    first = run_bifair(model="BiFairSASRec",
                       config_dict=bifair_config(root, emb, prior_probe=True, export_llm_emb=True, epochs=2))
    assert set(first["prior_probe"]) == {"E0", "E"}
    assert "ndcg@10" in first["prior_probe"]["E0"]
    log = first["training_log"]
    assert [r["epoch"] for r in log] == [0, 1]
    assert all(abs(sum(r["inner_weights"]) - 1) < 1e-5 and abs(sum(r["outer_weights"]) - 1) < 1e-5 for r in log)
    assert log[-1]["E_drift"] > 0
    exported = first["llm_emb_export"]
    assert os.path.isfile(exported)
    refined = load_checkpoint(first["checkpoint"])["state_dict"]["item_embedding.E"]

    config = build_config(model="BiFairSASRec", config_dict=bifair_config(root, exported))
    _, _, model, _ = prepare_run(config)
    torch.testing.assert_close(model.item_table.E0, refined, rtol=0, atol=1e-6)  # %.9g round trip


def test_checkpoint_with_another_embedding_dimension_is_refused(setup, tmp_path):
    root, emb = setup
    result = run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb))
    other = tmp_path / "wide.llmemb"
    write_random_embeddings(other, dim=20)
    config = build_config(model="BiFairSASRec", config_dict=bifair_config(root, other))
    _, _, model, trainer = prepare_run(config)
    with pytest.raises(ConfigError, match="llm_emb_file"):
        trainer.resume_checkpoint(result["checkpoint"])


def test_bifair_model_without_embeddings_or_item_text_fails_clearly(tmp_path, monkeypatch):
    from tests.datagen import make_dataset, tiny_config

    monkeypatch.chdir(tmp_path)
    root = make_dataset(tmp_path / "data", with_item=False)
    with pytest.raises(BiFairError) as err:
        run_bifair(model="BiFairSASRec", config_dict=tiny_config(root, n_item_groups=3))
    message = str(err.value)
    assert "tiny.item" in message or ".item" in message
    assert not os.path.exists(tmp_path / "results")
