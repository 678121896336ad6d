"""Helpers for the BiFair model/trainer tests: a tiny dataset with a random LLM table beside it."""

import os

import numpy as np

from tests.datagen import make_dataset, tiny_config

EMB_DIM = 12


def write_random_embeddings(path, n_items=30, dim=EMB_DIM, seed=0):
    """An atomic feature file ``iid:token  item_emb:float_seq`` for items ``i0..i{n-1}``."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(n_items, dim))
    with open(path, "w") as f:
        f.write("iid:token\titem_emb:float_seq\n")
        for i, row in enumerate(matrix):
            f.write(f"i{i}\t" + " ".join(f"{v:.6f}" for v in row) + "\n")
    return matrix


def bifair_setup(tmp_path, monkeypatch):
    """(data root, embedding file): cwd is tmp_path so logs, checkpoints and results land there."""
    monkeypatch.chdir(tmp_path)
    root = make_dataset(tmp_path / "data")
    emb_file = os.path.join(tmp_path, "tiny.llmemb")
    write_random_embeddings(emb_file)
    return root, emb_file


def bifair_config(root, emb_file, **overrides):
    """The tiny dataset's config for any model (only keys every LLM-enhanced model reads, so that
    one dict serves every method of a benchmark)."""
    base = dict(
        llm_emb_file=str(emb_file),
        n_item_groups=3,
        projector_dropout=0.0,
        prior_probe=False,
    )
    base.update(overrides)
    return tiny_config(root, **base)


def build_bifair(setup, model="BiFairSASRec", **overrides):
    """``prepare_run`` of ``model`` on the tiny dataset of ``setup`` (from ``bifair_setup``):
    (dataset, (train, valid, test), model, trainer)."""
    from recbole_bifair.quick_start import build_config, prepare_run

    root, emb = setup
    if model.startswith("BiFair") and overrides.get("fair_method", "bifair") == "bifair":
        overrides = {"meta_batch_size": 32, **overrides}  # BiFair's meta batch, small for the tiny data
    return prepare_run(build_config(model=model, config_dict=bifair_config(root, emb, **overrides)))

