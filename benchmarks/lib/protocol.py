"""The fairness benchmark's protocol (docs/benchmarks.md, the protocol), training budgets, profiles,
and the names of its work folders and tables."""

import os

TOPK = 10
GROUPS = 5
#: The protocol every method shares; the profiles only set seeds and budgets.
PROTOCOL = {
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "metrics": ["NDCG", "Recall", "GroupNDCG", "NDCGGap", "NDCGCV", "NDCGMinMean",
                "GroupExposure", "ExposureDisparity", "ItemExposureDisparity"],
    "topk": [TOPK],
    "valid_metric": f"NDCG@{TOPK}",
    "item_groups": "popularity",
    "n_item_groups": GROUPS,
    "group_split": "interactions",
    "save_rankings": True,
    "show_progress": False,
    "state": "INFO",
}
#: Per-dataset settings the plugin's properties/dataset files do not give (ml-100k has none:
#: RecBole ships its files and their field names).
DATASETS = {
    "ml-100k": {"llm_emb_fields": "movie_title,release_year,class"},
}
#: RecBole's SASRec settings (its SASRec.yaml and window), the backbone of every benchmark made
#: before the recipe of METHOD.md 3c became the plugin's default (properties/model/SASRec.yaml,
#: properties/dataset/ml-1m.yaml): the budgets below pin it, so their plans stay the runs they
#: archived. Keys a model does not read are not recorded, and so not compared.
RECBOLE_SASREC = {"MAX_ITEM_LIST_LENGTH": 50, "n_heads": 2, "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5}
#: The LLM-enhanced backbone of the same benchmarks: the fusion was a per-dataset setting (ml-1m and
#: Beauty: the ID view by sum, from their dataset files; elsewhere the text view alone) before
#: METHOD.md 3d chose one default for every dataset; the budgets below pin it, as RECBOLE_SASREC.
LEGACY_FUSION = {"ml-1m": "sum", "amazon-beauty-5core": "sum"}
LEGACY_BUDGETS = ("quick", "full", "converge")


def legacy_keys(dataset, budget):
    """The keys that keep a legacy budget's plans the runs it archived (nothing for other budgets)."""
    if budget not in LEGACY_BUDGETS:
        return {}
    return {"id_fusion": LEGACY_FUSION.get(dataset, "none"), "id_count_half": 0.0}


#: Training budgets; runs of the same budget share a work folder, whatever the profile.
BUDGETS = {
    # Chosen so that one seed of the first 12 methods took 37 min on 2 cores (README); the large-batch
    # ablation adds about 20 min.
    "quick": {"epochs": 6, "stopping_step": 2, **RECBOLE_SASREC, "MAX_ITEM_LIST_LENGTH": 20, "hidden_size": 32,
              "inner_size": 64, "train_batch_size": 512},
    # RecBole's SASRec settings (length 50, hidden 64, batch 2048), 50 epochs at most.
    "full": {"epochs": 50, "stopping_step": 5, **RECBOLE_SASREC},
    # RecBole's SASRec settings trained to early stopping (sequence-level training makes it
    # affordable: a ml-1m SASRec epoch is about 74 s here, 3,100 s with prefix samples).
    "converge": {"epochs": 300, "stopping_step": 5, **RECBOLE_SASREC},
    # The plugin's defaults (the recipe of METHOD.md 3c: window 200 on ml-1m, 1 head, dropout 0.1)
    # with the recipe rule's budget: at most 200 epochs, patience 10 evaluations (the plugin's default
    # patience is 20 since METHOD.md 3e; this profile keeps what its runs were made with).
    "recipe": {"epochs": 200, "stopping_step": 10},
}
PROFILES = {
    "quick": {"seeds": [2020], "budget": "quick"},
    "quick3": {"seeds": [2020, 2021, 2022], "budget": "quick"},
    "full": {"seeds": [2020, 2021, 2022], "budget": "full"},
    "converge": {"seeds": [2020], "budget": "converge"},
    "converge3": {"seeds": [2020, 2021, 2022], "budget": "converge"},
    "recipe": {"seeds": [2020], "budget": "recipe"},
    "recipe3": {"seeds": [2020, 2021, 2022], "budget": "recipe"},
}


def run_protocol(dataset, data_path, profile, seed, folder, workdir, extra=None):
    """The config of one run in ``folder`` besides its method file: the protocol, the dataset's
    settings, the profile's budget, the seed, where it writes, and ``extra`` keys on top."""
    where = {} if dataset == "ml-100k" else {"data_path": data_path}
    budget = PROFILES[profile]["budget"]
    return {**PROTOCOL, "dataset": dataset, **where, **DATASETS.get(dataset, {}), **legacy_keys(dataset, budget),
            **BUDGETS[budget], "seed": seed, "results_dir": folder,
            "checkpoint_dir": os.path.join(folder, "saved"),
            "llm_emb_dir": os.path.join(workdir, "embeddings"),  # encoded once, shared by all runs
            **(extra or {})}


def work_folder(workdir, dataset, profile):
    """The work folder of a profile's runs: one per dataset and budget (ml-100k's quick and full
    runs keep their historical folders)."""
    budget = PROFILES[profile]["budget"]
    return os.path.join(workdir, f"fairness-{budget}" if dataset == "ml-100k" and budget != "converge"
                        else f"fairness-{dataset}-{budget}")


def output_name(dataset, profile):
    """``fairness-<dataset>`` for the three-seed converged benchmark (the name the issues read),
    ml-100k's quick profiles under their historical names."""
    if dataset == "ml-100k" and profile in ("quick", "quick3", "full"):
        return f"fairness-{profile}"
    return f"fairness-{dataset}" + ("" if profile == "converge3" else f"-{profile}")


def seeds_suffix(seeds, profile):
    """The table name's suffix: seeds other than the profile's make a table of their own, never the
    profile's."""
    return "" if seeds == PROFILES[profile]["seeds"] else "-seeds" + "-".join(map(str, seeds))
