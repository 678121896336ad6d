"""The candidates of two searches, each a method with a few keys on top, run by the fairness
benchmark's ``runs.run_one`` under its ``converge`` budget: the LLM-enhanced backbone's
conditioning (``tune_backbone.py``) and SASRec's training recipe (``select_recipe.py``)."""

import json
import os

from benchmarks.lib import runs
from benchmarks.lib.paths import ARCHIVE

#: Item text without field names ("Toy Story (1995); Animation Children's Comedy"), ml-100k's fields.
PLAIN_TEMPLATE = {"ml-100k": "{movie_title}[ ({release_year})][; {class}]"}
#: E0 standardised, a wider projector, dropout kept off the scored item table.
CONDITIONED = {"llm_emb_transform": "standardize", "projector_hidden_size": 256, "projector_dropout_on": "input"}
#: The backbone's candidates on top of ``LLM-SASRec`` (``template``: the dataset's ``PLAIN_TEMPLATE``).
BACKBONE = {
    "A-defaults": {},
    "B-template": {"template": True},
    "C-standardize": {"template": True, "llm_emb_transform": "standardize"},
    "D-conditioned": {"template": True, **CONDITIONED},
    "E-id-sum": {"template": True, "id_fusion": "sum"},
    "F-conditioned-id-pca": {"template": True, **CONDITIONED, "id_fusion": "sum", "id_init": "pca"},
    "G-conditioned-cosine": {"template": True, **CONDITIONED, "score": "cosine", "score_temperature": 0.1},
    "H-conditioned-output-std": {"template": True, **CONDITIONED, "projector_output_std": 0.02},
}

#: The recipe rule's budget: patience 10 evaluations (one per epoch), at most 200 epochs.
RECIPE_BUDGET = {"epochs": 200, "stopping_step": 10}
#: The published recipe's model keys (Klenitskiy & Vasilev, RecSys 2023: SASRec+ on ml-1m).
PUBLISHED_MODEL = {"n_heads": 1, "hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1}
PUBLISHED_LAYOUT = {"sasrec_norm": "pre", "item_emb_scale": 8.0, "hidden_act": "relu", "inner_size": 64}
#: The recipes on top of ``SASRec`` (METHOD.md 3c).
RECIPES = {
    "R0": {},
    "R1": {"MAX_ITEM_LIST_LENGTH": 200, **PUBLISHED_MODEL},
    "R1-model": dict(PUBLISHED_MODEL),
    # R2 (METHOD.md 3c): R1 with the published code's block layout (pmixer's SASRec.pytorch, used by
    # SASRec+): pre-norm blocks, a final LayerNorm, input item vectors scaled by sqrt(64) = 8, a
    # ReLU feed-forward of the hidden width
    "R2": {"MAX_ITEM_LIST_LENGTH": 200, **PUBLISHED_MODEL, **PUBLISHED_LAYOUT},
    # R3 (METHOD.md 3c): R1 trained as SASRec+ is: each user's last 201 training items once, every
    # position scored, 128 users a step (ml-1m: 107.19 targets per user's window, so 13,720
    # targets = 128 windows; data/sequence.py rounds to whole windows)
    "R3": {"MAX_ITEM_LIST_LENGTH": 200, **PUBLISHED_MODEL, "seq_windows": "last", "train_batch_size": 13720},
    # R4 (METHOD.md 3c): the published recipe whole, R2's block layout on R3's data layout
    "R4": {"MAX_ITEM_LIST_LENGTH": 200, **PUBLISHED_MODEL, **PUBLISHED_LAYOUT, "seq_windows": "last",
           "train_batch_size": 13720},
}


def backbone_keys(name, dataset):
    """The keys a backbone candidate puts on top of ``LLM-SASRec``."""
    keys = dict(BACKBONE[name])
    if keys.pop("template", False):
        keys["llm_emb_template"] = PLAIN_TEMPLATE[dataset]
    return keys


def run_backbone(name, dataset, data_path, workdir, seed):
    """``(result JSON, seconds)`` of a backbone candidate, or of ``SASRec`` (the reference)."""
    if name == "SASRec":
        return runs.run_one("SASRec", seed, "converge", workdir, 1, dataset, data_path)
    keys = backbone_keys(name, dataset)
    # a template gives other item texts: their embedding file must not share the cache path
    keys["llm_emb_dir"] = os.path.join(workdir, "embeddings-" + ("plain" if "llm_emb_template" in keys else "default"))
    return runs.run_one("LLM-SASRec", seed, "converge", workdir, 1, dataset, data_path, extra=keys, label=name)


def backbone_row(name, dataset, path):
    with open(path) as f:
        r = json.load(f)
    v, t = r["best_valid_result"], r["test_result"]
    return {"name": name, "keys": json.dumps(backbone_keys(name, dataset)) if name != "SASRec" else "",
            "valid_ndcg@10": v["ndcg@10"], "valid_cv": v["ndcgcv@10"], "valid_min_mean": v["ndcgminmean@10"],
            "test_ndcg@10": t["ndcg@10"], "test_cv": t["ndcgcv@10"],
            "test_ndcg_pop5": t.get("groupndcg@10[pop5]", float("nan")),
            "epochs": r["epochs_trained"], "sec_per_epoch": r["seconds_per_epoch"]}


def run_recipe(name, dataset, data_path, seed, workdir, finished_only=False):
    """``(result JSON, seconds)`` of a recipe: ``SASRec`` with its keys and the rule's budget,
    archived under ``runs/select-recipe-<dataset>/``."""
    return runs.run_one("SASRec", seed, "converge", workdir, 1, dataset, data_path,
                        extra={**RECIPE_BUDGET, **RECIPES[name]}, label=name,
                        archive_root=ARCHIVE, finished_only=finished_only)


def recipe_row(name, path):
    with open(path) as f:
        r = json.load(f)
    v, t = r["best_valid_result"], r["test_result"]
    return {"name": name, "keys": json.dumps(RECIPES[name]),
            "valid_ndcg@10": v["ndcg@10"], "valid_recall@10": v["recall@10"], "valid_cv": v["ndcgcv@10"],
            "test_ndcg@10": t["ndcg@10"], "test_recall@10": t["recall@10"], "test_cv": t["ndcgcv@10"],
            "epochs": r["first_epoch"] + r["epochs_trained"], "sec_per_epoch": r["seconds_per_epoch"]}
