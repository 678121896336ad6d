"""Popularity baselines of the issue "BiFair that closes the group gap": post-hoc debiasing at
ranking time (posthoc_beta), logit-adjusted cross-entropy (logit_adjust_tau, Menon et al. 2021).
The fairness benchmark's sweep points and paired columns are tested in tests/test_benchmark_*.py."""

import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recbole_bifair.config import properties_dir
from recbole_bifair.data.sequence import SequenceTrainDataLoader
from recbole_bifair.errors import ConfigError
from recbole_bifair.methods.logit_adjust import log_prior
from recbole_bifair.trainer.group_loop import _gram_by_autograd, group_means, shared_gram
from tests.bifair_fixtures import bifair_config, bifair_setup, build_bifair

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


_build = build_bifair


def _pair(setup, key, value, **overrides):
    """(model at key 0, model at key ``value``) with the same parameters, and the training data."""
    if key == "logit_adjust_tau":
        overrides = dict(overrides, fair_method="logit_adjust")
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
        # the fused CE (logits not kept, what training runs) and autograd's CE of the kept logits
        fused = net.target_losses(batch)
        plain, adjusted = base.target_losses(batch, keep_logits=True), net.target_losses(batch, keep_logits=True)
        assert fused.logits is None
        torch.testing.assert_close(fused.losses, adjusted.losses, rtol=1e-5, atol=1e-6)
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
        # calculate_loss (RecBole's trainer, which trains fair_method: logit_adjust) goes through the adjusted losses
        torch.testing.assert_close(net.calculate_loss(batch), adjusted.losses.mean())
        # tau 0: the plain CE (the backbone's own on prefix batches)
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
    torch.testing.assert_close(adjusted.logits, plain.logits + tau * log_prior(net.item_train_count))
    torch.testing.assert_close(adjusted.losses, F.cross_entropy(adjusted.logits, plain.targets, reduction="none"))


def test_the_closed_form_gram_holds_for_adjusted_logits(setup):
    _, (train, _, _), net, _ = _build(setup, fair_method="logit_adjust", logit_adjust_tau=1.0, **NO_DROPOUT)
    net.train()
    out = net.target_losses(train.collate_fn(np.arange(min(8, train.n_windows))), keep_logits=True)
    group_ids = out.targets % 3
    _, present, counts = group_means(out.losses, group_ids, 3)
    closed = shared_gram(out, out.losses, group_ids, present, counts)
    torch.testing.assert_close(closed, _gram_by_autograd(out, out.losses, group_ids, present, counts),
                               rtol=1e-4, atol=1e-9)


def test_logit_adjustment_with_bpr_is_a_config_error(setup):
    with pytest.raises(ConfigError, match="fair_method: logit_adjust adjusts the logits") as err:
        _build(setup, loss_type="BPR", train_mode="prefix", fair_method="logit_adjust", logit_adjust_tau=1.0)
    assert "loss_type: CE" in str(err.value)
    _build(setup, loss_type="BPR", train_mode="prefix", fair_method="none")  # no adjustment: fine


@pytest.mark.parametrize("key", ["posthoc_beta", "logit_adjust_tau"])
@pytest.mark.parametrize("value", ["strong", float("inf"), float("nan"), True, [1.0]])
def test_bad_values_name_the_key(setup, key, value):
    method = {"fair_method": "logit_adjust"} if key == "logit_adjust_tau" else {}
    with pytest.raises(ConfigError, match=f"^{key}: .*; expected a number$"):
        _build(setup, **{key: value}, **method)


def test_method_files_and_defaults():
    from recbole_bifair.config import load_yaml_file

    assert load_yaml_file(properties_dir() / "model" / "llm.yaml")["posthoc_beta"] == 0.0  # off
    assert load_yaml_file(properties_dir() / "method" / "logit_adjust.yaml") == {"logit_adjust_tau": 1.0}
    for method, keys in (("PostHoc", {"model": "LLMSASRec", "posthoc_beta": 0.5}),
                         ("LogitAdjust", {"model": "LLMSASRec", "fair_method": "logit_adjust", "logit_adjust_tau": 1.0})):
        path = properties_dir() / "methods" / f"{method}.yaml"
        assert path.read_text().startswith("# ")
        assert load_yaml_file(path) == keys


def test_bifair_trains_under_posthoc_ranking_and_records_it(setup):
    """posthoc_beta composes with BiFair (BiFair-PostHoc); a run records the keys of its own method
    only (no logit_adjust_tau under fair_method: bifair)."""
    from recbole_bifair.quick_start import run_bifair

    root, emb = setup
    result = run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, posthoc_beta=0.5, hvp_batch_size=16))
    assert result["config"]["posthoc_beta"] == 0.5 and "logit_adjust_tau" not in result["config"]
    assert result["training_log"][-1]["E_drift"] > 0
    assert np.isfinite(result["test_result"]["ndcg@10"])
