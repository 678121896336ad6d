"""Popularity baselines of the issue "BiFair that closes the group gap": post-hoc debiasing at
ranking time (posthoc_beta), logit-adjusted cross-entropy (logit_adjust_tau, Menon et al. 2021),
and the fairness benchmark's sweep points and cv_paired_hi column."""

import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recbole_bifair.config import properties_dir
from recbole_bifair.data.sequence import SequenceTrainDataLoader
from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness.bootstrap import figures, paired_difference
from recbole_bifair.trainer.bifair_trainer import _gram_by_autograd, group_means, shared_gram
from tests.bifair_fixtures import bifair_config, bifair_setup, build_bifair, load_fairness_script

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attn_dropout_prob=0.0, dropout_prob=0.0, projector_dropout=0.0)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    root, emb = bifair_setup(tmp_path, monkeypatch)
    # The generated timestamps are 1e9 + k: RecBole holds float fields as float32, where neighbours
    # tie, so its time order is not the file's. Shifted to k (exact in float32), same order, so that
    # the split can be redone by hand.
    path = os.path.join(root, "tiny", "tiny.inter")
    inter = pd.read_csv(path, sep="\t", dtype=str)
    inter["timestamp:float"] = (inter["timestamp:float"].astype(np.int64) - 10**9 + 1).astype(str)
    inter.to_csv(path, sep="\t", index=False)
    return root, emb


@pytest.fixture(scope="module")
def fairness_script():
    return load_fairness_script()


_build = build_bifair


def _pair(setup, key, value, **overrides):
    """(model at key 0, model at key ``value``) with the same parameters, and the training data."""
    _, (train, _, _), base, _ = _build(setup, **{key: 0.0}, **overrides)
    _, _, other, _ = _build(setup, **{key: value}, **overrides)
    other.load_state_dict(base.state_dict())  # the count buffer is not in the state dict
    base.eval()
    other.eval()
    return train, base, other


def hand_train_counts(root, dataset, name="tiny"):
    """Training interactions per internal item id, counted from the fixture's .inter file by the
    split the fixture uses (RecBole's sequential augmentation, then leave-one-out by user, TO order:
    a user's first interaction is no target; of the remaining ones the last is the test target and
    the one before the validation target, as far as there are any)."""
    inter = pd.read_csv(os.path.join(root, name, f"{name}.inter"), sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    counts = {}
    for _, rows in inter.sort_values("timestamp", kind="stable").groupby("user_id", sort=False):
        targets = list(rows["item_id"])[1:]
        held_out = min(2, len(targets) - 1) if targets else 0
        for item in targets[: len(targets) - held_out]:
            counts[item] = counts.get(item, 0) + 1
    tokens = dataset.field2id_token[dataset.iid_field]
    return np.array([0] + [counts.get(t, 0) for t in tokens[1:]], dtype=np.int64)


def _prefix_batch(train, n=25):
    return train._dataset[np.arange(n)]


# ----- counts ------------------------------------------------------------------------------------------
def test_the_models_counts_are_the_training_interactions_counted_by_hand(setup):
    root, _ = setup
    _, (train, _, _), net, trainer = _build(setup, train_mode="prefix")
    expected = hand_train_counts(root, train._dataset)
    assert expected.sum() == len(train._dataset)
    np.testing.assert_array_equal(net.item_train_count.cpu().numpy(), expected)
    assert "item_train_count" not in net.state_dict()  # a non-persistent buffer, never a parameter
    assert all(name != "item_train_count" for name, _ in net.named_parameters())


# ----- post-hoc debiasing ------------------------------------------------------------------------------
@pytest.mark.parametrize("score", ["dot", "cosine"])
def test_posthoc_scores_are_the_plain_scores_minus_beta_log_count(setup, score):
    root, _ = setup
    beta = 0.7
    train, base, net = _pair(setup, "posthoc_beta", beta, score=score, train_mode="prefix", **NO_DROPOUT)
    counts = hand_train_counts(root, train._dataset)  # independent of the model's own counting
    batch = _prefix_batch(train)
    with torch.no_grad():
        plain, debiased = base.full_sort_predict(batch), net.full_sort_predict(batch)
        expected = plain.double().numpy() - beta * np.log(counts + 1.0)[None, :]
        expected[:, 0] = plain[:, 0].double().numpy()  # padding keeps the backbone's score
        np.testing.assert_allclose(debiased.double().numpy(), expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(debiased[:, 0], plain[:, 0])
        # predict agrees with full_sort_predict on the same items (targets, then arbitrary items)
        rows = torch.arange(len(batch))
        torch.testing.assert_close(net.predict(batch), debiased[rows, batch[net.ITEM_ID]])
        other = torch.randint(1, net.n_items, (len(batch),), generator=torch.Generator().manual_seed(0))
        batch.interaction[net.ITEM_ID] = other
        torch.testing.assert_close(net.predict(batch), debiased[rows, other])
        torch.testing.assert_close(base.predict(batch), plain[rows, other])


def test_posthoc_leaves_training_unchanged(setup):
    train, base, net = _pair(setup, "posthoc_beta", 2.0, **NO_DROPOUT)
    assert isinstance(train, SequenceTrainDataLoader)
    windows = train.collate_fn(np.arange(min(6, train.n_windows)))
    prefix = _prefix_batch(train)
    for batch in (windows, prefix):
        a, b = base.target_losses(batch), net.target_losses(batch)
        torch.testing.assert_close(a.losses, b.losses, rtol=0, atol=0)
        torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
        torch.testing.assert_close(base.calculate_loss(batch), net.calculate_loss(batch), rtol=0, atol=0)


def test_posthoc_applies_to_bert4rec(setup):
    root, _ = setup
    train, base, net = _pair(setup, "posthoc_beta", 0.5, model="BiFairBERT4Rec", **NO_DROPOUT)
    counts = hand_train_counts(root, train._dataset)
    batch = _prefix_batch(train)
    with torch.no_grad():
        plain, debiased = base.full_sort_predict(batch), net.full_sort_predict(batch)
    offset = 0.5 * np.log(counts + 1.0)
    offset[0] = 0.0
    np.testing.assert_allclose(debiased.double().numpy(), plain.double().numpy() - offset, rtol=1e-5, atol=1e-5)


# ----- logit adjustment --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["prefix", "sequence"])
def test_logit_adjusted_ce_is_the_hand_computation(setup, mode):
    root, _ = setup
    tau = 0.8
    train, base, net = _pair(setup, "logit_adjust_tau", tau, train_mode=mode, **NO_DROPOUT)
    counts = hand_train_counts(root, train._dataset)
    clamped = np.maximum(counts, 1).astype(np.float64)  # zero counts (padding, unseen items) count as 1
    log_p = np.log(clamped / clamped.sum())
    batch = train.collate_fn(np.arange(min(6, train.n_windows))) if mode == "sequence" else _prefix_batch(train)
    with torch.no_grad():
        plain, adjusted = base.target_losses(batch), net.target_losses(batch)
        z = plain.logits.double().numpy()  # unadjusted logits (tau 0)
        y = plain.targets.numpy()
        shifted = z + tau * log_p[None, :]
        top = shifted.max(1, keepdims=True)
        logsumexp = (top + np.log(np.exp(shifted - top).sum(1, keepdims=True)))[:, 0]
        expected = logsumexp - (z[np.arange(len(y)), y] + tau * log_p[y])
        np.testing.assert_allclose(adjusted.losses.double().numpy(), expected, rtol=1e-5, atol=1e-5)
        # the logits field is what the CE is taken of: the adjusted logits
        np.testing.assert_allclose(adjusted.logits.double().numpy(), shifted, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(adjusted.losses, F.cross_entropy(adjusted.logits, adjusted.targets, reduction="none"))
        # calculate_loss (RecBole's trainer, bifair: False) goes through the adjusted losses
        torch.testing.assert_close(net.calculate_loss(batch), adjusted.losses.mean())
        # tau 0: the old path (the backbone's own CE on prefix batches)
        torch.testing.assert_close(plain.losses, F.cross_entropy(plain.logits, plain.targets, reduction="none"))
        torch.testing.assert_close(base.calculate_loss(batch), plain.losses.mean(), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(plain.losses, adjusted.losses)


def test_logit_adjustment_leaves_ranking_scores_unchanged(setup):
    train, base, net = _pair(setup, "logit_adjust_tau", 1.5, train_mode="prefix", **NO_DROPOUT)
    batch = _prefix_batch(train)
    with torch.no_grad():
        assert torch.equal(base.full_sort_predict(batch), net.full_sort_predict(batch))
        assert torch.equal(base.predict(batch), net.predict(batch))


def test_logit_adjustment_in_bert4rec_losses(setup):
    tau = 0.5
    train, base, net = _pair(setup, "logit_adjust_tau", tau, model="BiFairBERT4Rec", **NO_DROPOUT)
    torch.manual_seed(0)
    batch = next(iter(train))
    with torch.no_grad():
        plain, adjusted = base.target_losses(batch), net.target_losses(batch)
    torch.testing.assert_close(adjusted.logits, plain.logits + tau * net.log_prior())
    torch.testing.assert_close(adjusted.losses, F.cross_entropy(adjusted.logits, plain.targets, reduction="none"))


def test_the_closed_form_gram_holds_for_adjusted_logits(setup):
    _, (train, _, _), net, _ = _build(setup, logit_adjust_tau=1.0, **NO_DROPOUT)
    net.train()
    out = net.target_losses(train.collate_fn(np.arange(min(8, train.n_windows))))
    group_ids = out.targets % 3
    _, present, counts = group_means(out.losses, group_ids, 3)
    closed = shared_gram(out, out.losses, group_ids, present, counts)
    torch.testing.assert_close(closed, _gram_by_autograd(out, out.losses, group_ids, present, counts),
                               rtol=1e-4, atol=1e-9)


def test_logit_adjustment_with_bpr_is_a_config_error(setup):
    with pytest.raises(ConfigError, match="logit_adjust_tau") as err:
        _build(setup, loss_type="BPR", train_mode="prefix", logit_adjust_tau=1.0)
    assert "loss_type: CE" in str(err.value)
    _build(setup, loss_type="BPR", train_mode="prefix", logit_adjust_tau=0.0)  # off: fine


@pytest.mark.parametrize("key", ["posthoc_beta", "logit_adjust_tau"])
@pytest.mark.parametrize("value", ["strong", float("inf"), float("nan"), True, [1.0]])
def test_bad_values_name_the_key(setup, key, value):
    with pytest.raises(ConfigError, match=f"^{key}: .*; expected a number$"):
        _build(setup, **{key: value})


def test_method_files_and_defaults():
    from recbole_bifair.config import load_yaml_file

    overall = load_yaml_file(properties_dir() / "overall.yaml")
    assert overall["posthoc_beta"] == 0.0 and overall["logit_adjust_tau"] == 0.0
    for method, key, value in (("PostHoc", "posthoc_beta", 0.5), ("LogitAdjust", "logit_adjust_tau", 1.0)):
        path = properties_dir() / "methods" / f"{method}.yaml"
        assert path.read_text().startswith("# ")
        keys = load_yaml_file(path)
        assert keys == {"model": "BiFairSASRec", "bifair": False, key: value}


# ----- benchmark: sweep points -------------------------------------------------------------------------
def test_sweep_points_parse(fairness_script):
    parse = fairness_script.parse_method
    assert parse("VarReg[group_variance_weight=0.5]") == ("VarReg", {"group_variance_weight": 0.5})
    assert parse("PostHoc[posthoc_beta=1]") == ("PostHoc", {"posthoc_beta": 1})
    assert parse("GroupDRO[groupdro_eta=1e-3]") == ("GroupDRO", {"groupdro_eta": 0.001})
    assert parse("BiFair[balance=dro]") == ("BiFair", {"balance": "dro"})
    assert parse("LLM-SASRec") == ("LLM-SASRec", {})
    assert {"PostHoc", "LogitAdjust"} <= set(fairness_script.METHODS)
    for point in fairness_script.sweep_points():
        method, extra = parse(point)
        key, values = fairness_script.SWEEPS[method]
        assert list(extra) == [key] and extra[key] in values and isinstance(extra[key], float)
    assert len(fairness_script.sweep_points()) == 3 + 4 + 3 + 4 + 4


@pytest.mark.parametrize("bad,why", [
    ("VarReg[group_variance_weight]", "<Method>\\[<key>=<value>\\]"),
    ("VarReg[=0.5]", "<Method>\\[<key>=<value>\\]"),
    ("VarReg(group_variance_weight=0.5)", "<Method>\\[<key>=<value>\\]"),
    ("VarReg[a=1][b=2]", "<Method>\\[<key>=<value>\\]"),
    ("Nope[posthoc_beta=1.0]", "unknown method 'Nope'"),
    ("Nope", "unknown method 'Nope'"),
])
def test_bad_sweep_points_are_clear_errors(fairness_script, bad, why):
    with pytest.raises(ValueError, match=why):
        fairness_script.parse_method(bad)
    with pytest.raises(SystemExit):
        fairness_script.main(["--methods", f"LLM-SASRec,{bad}"])


def test_sweep_folders_are_safe_and_method_folders_unchanged(fairness_script, tmp_path):
    name = "VarReg[group_variance_weight=0.5]"
    folder = fairness_script.run_dir(str(tmp_path), name, 2020)
    assert os.path.basename(folder) == "VarReg__group_variance_weight-0.5-seed2020"
    for point in fairness_script.sweep_points() + ["X[k=a/b c]"]:
        base = fairness_script.folder_name(point)
        assert all(c.isalnum() or c in "._-" for c in base), base
    for method in fairness_script.METHODS:
        assert os.path.basename(fairness_script.run_dir(str(tmp_path), method, 1)) == f"{method}-seed1"


def test_a_sweep_point_runs_with_its_key_under_its_name(fairness_script, monkeypatch):
    calls = []

    def fake_run_one(method, seed, *args, extra=None, label=None, archive_root=None, finished_only=False):
        calls.append((method, seed, extra, label))
        assert archive_root == fairness_script.ARCHIVE  # finished runs are kept (committed) by default
        raise RuntimeError("stop here")

    monkeypatch.setattr(fairness_script, "run_one", fake_run_one)
    with pytest.raises(RuntimeError, match="stop here"):
        fairness_script.main(["--methods", "PostHoc[posthoc_beta=1.0]", "--jobs", "1"])
    assert calls[0] == ("PostHoc", 2020, {"posthoc_beta": 1.0}, "PostHoc[posthoc_beta=1.0]")


# ----- benchmark: cv_paired_hi --------------------------------------------------------------------------
N_ITEMS, N_USERS = 40, 60


def _fake_run(folder, seed, quality):
    """A result JSON with saved test rankings: users hit their target with probability ``quality``."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    items = [f"i{i}" for i in range(1, N_ITEMS + 1)]
    counts = np.arange(N_ITEMS, 0, -1) * 3
    groups = [f"pop{1 + i * 5 // N_ITEMS}" for i in range(N_ITEMS)]
    pd.DataFrame({"item": items, "group": groups, "train_count": counts}).to_csv(
        os.path.join(folder, "run.item_groups.csv"), index=False)
    rows = []
    for u in range(N_USERS):
        target = items[(u * 7 + 3) % N_ITEMS]
        ranked = list(rng.permutation(items)[:10])
        if rng.random() < quality and target not in ranked:
            ranked[int(rng.integers(0, 10))] = target
        rows.append({"user": f"u{u}", "target": target, "topk": " ".join(ranked)})
    pd.DataFrame(rows).to_csv(os.path.join(folder, "run.rankings.csv"), index=False)
    test = {"ndcg@10": 0.1, "recall@10": 0.2, "ndcgcv@10": 0.5, "ndcgminmean@10": 0.3, "ndcggap@10": 0.1,
            "exposuredisparity@10": 0.4, "itemexposuredisparity@10": 0.6}
    test.update({f"groupndcg@10[pop{g}]": 0.1 * g for g in range(1, 6)})
    path = os.path.join(folder, "run.json")
    with open(path, "w") as f:
        json.dump({"test_result": test, "epochs_trained": 3, "seconds_per_epoch": 1.0, "total_seconds": 3.0}, f)
    return path


def test_cv_paired_hi_is_the_highest_upper_end_over_seeds(fairness_script, tmp_path, monkeypatch):
    monkeypatch.setattr(fairness_script, "N_BOOT", 60)
    seeds = [2020, 2021]
    quality = {"LLM-SASRec": 0.3, "BiFair": 0.6, "BiFair[outer_mu=0.5]": 0.5, "IPS": 0.4}
    files = {m: [_fake_run(str(tmp_path / f"{fairness_script.folder_name(m)}-{s}"), s * 10 + i, q)
                 for s in seeds] for i, (m, q) in enumerate(quality.items())}
    paired = fairness_script.paired_by_method(files, seeds)
    assert set(paired) == {"BiFair", "BiFair[outer_mu=0.5]"}
    table = fairness_script.add_cv_paired_hi(fairness_script.summarise(files), paired)
    for method in ("BiFair", "BiFair[outer_mu=0.5]"):
        by_hand = max(paired_difference(fairness_script.test_rankings(ours), fairness_script.test_rankings(base),
                                        10, 60, seed=seed)["cv"]["high"]
                      for seed, ours, base in zip(seeds, files[method], files["LLM-SASRec"]))
        got = table.set_index("method").loc[method, "cv_paired_hi"]
        assert math.isfinite(got) and got == pytest.approx(by_hand, abs=1e-12)
    assert table.set_index("method")[["cv_paired_hi"]].loc[["LLM-SASRec", "IPS"]].isna().all().all()
    # the .md lines read the same numbers
    lines = fairness_script.paired_lines(paired["BiFair"], "BiFair")
    assert len(lines) == 2 and f"{paired['BiFair'][1][1]['cv']['high']:+.3f}]" in lines[1]
    # without LLM-SASRec: no paired numbers, the column is NaN
    alone = {m: f for m, f in files.items() if m != "LLM-SASRec"}
    assert fairness_script.paired_by_method(alone, seeds) == {}
    # the CSV carries the columns the issues read
    # --compare A:B: any two rows, A minus B (here one BiFair setting against another)
    versus = fairness_script.paired_differences(files, seeds, "BiFair[outer_mu=0.5]", "BiFair")
    versus_lines = fairness_script.paired_lines(versus, "BiFair[outer_mu=0.5]")
    by_hand = paired_difference(fairness_script.test_rankings(files["BiFair[outer_mu=0.5]"][0]),
                                fairness_script.test_rankings(files["BiFair"][0]), 10, 60, seed=seeds[0])
    assert f"NDCG@10 {by_hand['ndcg']['estimate']:+.4f} [{by_hand['ndcg']['low']:+.4f}" in versus_lines[0]
    stem = fairness_script.write_outputs(table, "quick3", str(tmp_path / "out"), "header",
                                         [("BiFair", "LLM-SASRec", lines),
                                          ("BiFair[outer_mu=0.5]", "BiFair", versus_lines)], dataset="tiny")
    md = open(stem + ".md").read()
    assert "BiFair minus LLM-SASRec on the same test users" in md and lines[1] in md
    assert "BiFair[outer_mu=0.5] minus BiFair on the same test users" in md and versus_lines[0] in md
    with pytest.raises(SystemExit):  # a pair naming a row that is not in --methods
        fairness_script.main(["--methods=LLM-SASRec,BiFair", "--compare=BiFair:IPS", f"--out_dir={tmp_path}"])
    csv = pd.read_csv(stem + ".csv")
    required = ["method", "ndcg@10", "recall@10", "cv", "min_mean", *[f"ndcg_pop{g}" for g in range(1, 6)],
                "seeds", "cv_paired_hi"]
    assert set(required) <= set(csv.columns)
    assert list(csv["method"]) == list(quality)
    assert csv.set_index("method").loc["BiFair", "cv_paired_hi"] == pytest.approx(
        table.set_index("method").loc["BiFair", "cv_paired_hi"], abs=1e-5)
    assert "cv_paired_hi" in open(stem + ".md").read()


def test_bifair_trains_with_both_keys_and_records_them(setup):
    """The bi-level trainer (outer step, Hessian-vector products) runs on the adjusted losses."""
    from recbole_bifair.quick_start import run_bifair

    root, emb = setup
    result = run_bifair(model="BiFairSASRec", config_dict=bifair_config(
        root, emb, logit_adjust_tau=1.0, posthoc_beta=0.5, hvp_batch_size=16))
    assert result["config"]["logit_adjust_tau"] == 1.0 and result["config"]["posthoc_beta"] == 0.5
    assert result["training_log"][-1]["E_drift"] > 0
    assert np.isfinite(result["test_result"]["ndcg@10"])


# ----- benchmark: the Pareto check (dominated_by) -------------------------------------------------------
def _with_true_figures(path, fairness_script):
    """Give a fake run's JSON the NDCG@10 and CV of its own saved rankings (public bootstrap.figures)."""
    groups, topk, positives, _ = fairness_script.test_rankings(path)
    point = figures(groups, topk, positives, 10)
    with open(path) as f:
        record = json.load(f)
    record["test_result"].update({"ndcg@10": point["ndcg"], "ndcgcv@10": point["cv"]})
    with open(path, "w") as f:
        json.dump(record, f)
    return path


def test_dominated_by_lists_the_baselines_better_in_both_and_beyond_noise_in_one(fairness_script, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setattr(fairness_script, "N_BOOT", 60)
    seeds = [2020, 2021]
    quality = {"LLM-SASRec": 0.3, "BiFair": 0.4, "PostHoc": 1.0, "VarReg": 0.05}
    files = {m: [_with_true_figures(_fake_run(str(tmp_path / f"{m}-{s}"), s * 10 + i, q), fairness_script)
                 for s in seeds] for i, (m, q) in enumerate(quality.items())}
    # IPS ranks exactly as BiFair: a tie in both figures, never beyond the noise
    files["IPS"] = []
    for s, bifair_file in zip(seeds, files["BiFair"]):
        folder = tmp_path / f"IPS-{s}"
        shutil.copytree(os.path.dirname(bifair_file), folder)
        files["IPS"].append(str(folder / "run.json"))
    table = fairness_script.add_dominance(fairness_script.summarise(files), files, seeds)
    rows = table.set_index("method")
    # by hand, from the definition: means over seeds, then the per-seed paired intervals
    expect_point, expect = [], []
    for base in ("LLM-SASRec", "PostHoc", "VarReg", "IPS"):
        if rows.loc[base, "ndcg@10"] >= rows.loc["BiFair", "ndcg@10"] and rows.loc[base, "cv"] <= rows.loc["BiFair", "cv"]:
            expect_point.append(base)
            diffs = [paired_difference(fairness_script.test_rankings(b), fairness_script.test_rankings(o), 10, 60,
                                       seed=seed) for seed, b, o in zip(seeds, files[base], files["BiFair"])]
            if all(d["ndcg"]["low"] > 0 for d in diffs) or all(d["cv"]["high"] < 0 for d in diffs):
                expect.append(base)
    order = list(table["method"])
    assert rows.loc["BiFair", "dominated_by_point"] == "; ".join(sorted(expect_point, key=order.index))
    assert rows.loc["BiFair", "dominated_by"] == "; ".join(sorted(expect, key=order.index))
    assert "IPS" in rows.loc["BiFair", "dominated_by_point"] and "IPS" not in rows.loc["BiFair", "dominated_by"]
    assert "PostHoc" in rows.loc["BiFair", "dominated_by"]  # hits every target: far more accurate
    assert "VarReg" not in rows.loc["BiFair", "dominated_by_point"]
    assert (rows.drop("BiFair")[["dominated_by", "dominated_by_point"]] == "").all().all()
    stem = fairness_script.write_outputs(table, "quick3", str(tmp_path / "out"), "header", [], dataset="tiny")
    assert "- BiFair: dominated by " + rows.loc["BiFair", "dominated_by"] in open(stem + ".md").read()


def test_a_resumed_run_counts_its_epochs_from_the_start(fairness_script, tmp_path):
    # a run resumed at epoch 15 that trained 12 more in its last process trained 27 in all; a result
    # file written before first_epoch was recorded counts what its process trained (3 here)
    resumed = _fake_run(str(tmp_path / "resumed"), 1, 0.5)
    with open(resumed) as f:
        record = json.load(f)
    record.update(first_epoch=15, epochs_trained=12)
    with open(resumed, "w") as f:
        json.dump(record, f)
    old = _fake_run(str(tmp_path / "old"), 2, 0.5)
    table = fairness_script.summarise({"LLM-SASRec": [resumed, old], "SASRec": [resumed]}).set_index("method")
    assert table.loc["SASRec", "epochs"] == 27 and table.loc["LLM-SASRec", "epochs"] == (27 + 3) / 2


# ----- benchmark: the post-hoc curve (cv_minus_posthoc_curve) and tables of finished runs ---------------
def test_curve_cv_interpolates_the_lower_envelope(fairness_script):
    # (NDCG@10, CV); (0.07, 0.25) is beaten by (0.09, 0.20): not on the envelope
    points = [(0.10, 0.30), (0.09, 0.20), (0.07, 0.25), (0.05, 0.10), (0.09, 0.20)]
    curve = fairness_script.curve_cv
    assert curve(points, 0.095) == pytest.approx(0.25)          # halfway between 0.09 and 0.10
    assert curve(points, 0.07) == pytest.approx(0.15)           # halfway between 0.05 and 0.09, not 0.25
    assert curve(points, 0.10) == pytest.approx(0.30)
    assert curve(points, 0.04) == pytest.approx(0.10)           # the least accurate point is as accurate, fairer
    assert curve(points, 0.11) is None                          # nothing on the curve is as accurate
    assert curve([(0.1, 0.3)], 0.05) == pytest.approx(0.3)


def _point_run(folder, ndcg, cv):
    """A result JSON holding only the test NDCG@10 and CV (what the curve gap reads)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "run.json")
    with open(path, "w") as f:
        json.dump({"test_result": {"ndcg@10": ndcg, "ndcgcv@10": cv}}, f)
    return path


def test_cv_minus_posthoc_curve_by_hand_per_seed(fairness_script, tmp_path):
    figures_by_seed = {  # LLM-SASRec, PostHoc[posthoc_beta=0.5], BiFair, BiFair-x (more accurate than the curve)
        2020: [(0.10, 0.40), (0.08, 0.20), (0.09, 0.25), (0.12, 0.30)],
        2021: [(0.10, 0.40), (0.08, 0.20), (0.085, 0.26), (0.12, 0.30)],
    }
    names = ["LLM-SASRec", "PostHoc[posthoc_beta=0.5]", "BiFair", "BiFair-x", "IPS"]
    files = {m: [_point_run(str(tmp_path / f"{i}-{s}"), *(figures_by_seed[s] + [(0.05, 0.1)])[i])
                 for s in (2020, 2021)] for i, m in enumerate(names)}
    table = pd.DataFrame({"method": names})
    got = fairness_script.add_posthoc_curve_gap(table, files, [2020, 2021]).set_index("method")
    # seed 2020: curve at 0.09 is 0.30, gap -0.05; seed 2021: curve at 0.085 is 0.25, gap +0.01
    assert got.loc["BiFair", "cv_minus_posthoc_curve"] == pytest.approx((-0.05 + 0.01) / 2)
    assert math.isnan(got.loc["BiFair-x", "cv_minus_posthoc_curve"])
    assert got.loc[["LLM-SASRec", "IPS"], "cv_minus_posthoc_curve"].isna().all()  # IPS is not on the curve
    assert got.loc["BiFair", "cv_minus_posthoc_curve_per_seed"] == "2020:-0.050 2021:+0.010"
    assert got.loc["BiFair-x", "cv_minus_posthoc_curve_per_seed"] == "2020:above 2021:above"
    assert got.loc["IPS", "cv_minus_posthoc_curve_per_seed"] == ""
    # a seed whose curve has one point (no PostHoc run of it) gives no gap, and says so
    lone = {m: (paths if m != "PostHoc[posthoc_beta=0.5]" else paths[:1]) for m, paths in files.items()}
    got = fairness_script.add_posthoc_curve_gap(table, lone, [2020, 2021]).set_index("method")
    assert got.loc["BiFair", "cv_minus_posthoc_curve_per_seed"] == "2020:-0.050 2021:no curve"
    assert math.isnan(got.loc["BiFair", "cv_minus_posthoc_curve"])
    # rows with their own seeds: BiFair has 2021 only, so only that seed's curve counts
    seeds = {m: [2020, 2021] for m in names}
    seeds["BiFair"] = [2021]
    files["BiFair"] = files["BiFair"][1:]
    got = fairness_script.add_posthoc_curve_gap(table, files, seeds).set_index("method")
    assert got.loc["BiFair", "cv_minus_posthoc_curve"] == pytest.approx(0.01)


def test_finished_only_makes_the_table_of_what_finished(fairness_script, tmp_path, monkeypatch):
    """--finished_only starts nothing; a row keeps its own seeds, and its paired figures, Pareto
    check and headline compare it with the other rows on those seeds only."""
    monkeypatch.setattr(fairness_script, "N_BOOT", 40)
    quality = {"LLM-SASRec": 0.3, "PostHoc[posthoc_beta=0.5]": 0.35, "BiFair": 0.5}
    made = {(m, s): _with_true_figures(_fake_run(str(tmp_path / f"{fairness_script.folder_name(m)}-{s}"),
                                                 s * 10 + i, q), fairness_script)
            for i, (m, q) in enumerate(quality.items()) for s in (2020, 2021, 2022)}
    for path in made.values():  # the header reads the recorded config
        record = json.load(open(path))
        json.dump({**record, "config": {"train_mode": "sequence"}}, open(path, "w"))
    calls = []

    def fake_run_one(method, seed, *args, extra=None, label=None, finished_only=False, **kwargs):
        calls.append(finished_only)
        name = label or method
        if name == "BiFair" and seed != 2021 or name == "IPS":
            raise fairness_script.NotFinished(f"{name} seed {seed}")
        return made[(name, seed)], 0.0

    monkeypatch.setattr(fairness_script, "run_one", fake_run_one)
    out = tmp_path / "out"
    fairness_script.main(["--profile=quick3", "--methods=LLM-SASRec,PostHoc[posthoc_beta=0.5],BiFair,IPS",
                          "--finished_only", "--jobs=1", f"--out_dir={out}"])
    assert calls and all(calls)
    csv = pd.read_csv(out / "fairness-quick3.csv").set_index("method")
    assert list(csv.index) == ["LLM-SASRec", "PostHoc[posthoc_beta=0.5]", "BiFair"]  # IPS: nothing finished
    assert csv.loc["BiFair", "seeds"] == 1 and csv.loc["LLM-SASRec", "seeds"] == 3
    by_hand = paired_difference(fairness_script.test_rankings(made[("BiFair", 2021)]),
                                fairness_script.test_rankings(made[("LLM-SASRec", 2021)]), 10, 40, seed=2021)
    assert csv.loc["BiFair", "cv_paired_hi"] == pytest.approx(by_hand["cv"]["high"], abs=1e-5)
    md = open(out / "fairness-quick3.md").read()
    assert "Finished runs only" in md and md.split("\n")[2].split("|")[2].strip() == "seeds"  # a column here
    # headline: BiFair against LLM-SASRec's seed 2021 only
    ours, base = fairness_script._test_point(made[("BiFair", 2021)]), fairness_script._test_point(
        made[("LLM-SASRec", 2021)])
    assert f"**BiFair vs LLM-SASRec** (its seeds only): CV of group NDCG@10 {(ours[1] - base[1]) / base[1] * 100:+.1f}%" in md
    # without --finished_only an unfinished run is an error, not a smaller table
    with pytest.raises(fairness_script.NotFinished):
        fairness_script.main(["--profile=quick3", "--methods=LLM-SASRec,BiFair", "--jobs=1", f"--out_dir={out}"])
