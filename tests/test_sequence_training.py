"""Sequence-level (all-position) training: windows, loader, and the proof that it is the same
objective as RecBole's prefix samples (equal gradients when histories fit in one window)."""

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_bifair.data.sequence import (
    TARGETS, SequenceTrainDataLoader, build_windows, head_targets, resolve_train_mode, training_histories,
)
from recbole_bifair.errors import ConfigError
from recbole_bifair.model.all_positions import all_position_output, sequence_loss
from recbole_bifair.quick_start import build_config, prepare_run, run_bifair
from recbole_bifair.utils import get_model
from tests.bifair_fixtures import bifair_config, bifair_setup
from tests.datagen import tiny_config


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


# ----- windows (pure functions) ----------------------------------------------------------------
@pytest.mark.parametrize("L,S", [(5, 1), (5, 2), (5, 5), (8, 3), (4, 4)])
def test_every_target_is_scored_once_with_the_documented_context(L, S):
    rng = np.random.default_rng(L * 10 + S)
    histories = [rng.integers(1, 1000, size=n) for n in [2, 3, L, L + 1, L + 2, 2 * L + 3, 5 * L + 1, 37]]
    inputs, targets, lengths, owner = build_windows(histories, L, S)
    seen = {}
    for w in range(len(inputs)):
        h = histories[owner[w]]
        n = lengths[w]
        assert (inputs[w, n:] == 0).all() and (targets[w, n:] == 0).all()
        # locate the window in its history: its inputs are a contiguous slice
        starts = [a for a in range(len(h) - n) if np.array_equal(h[a:a + n], inputs[w, :n])]
        assert starts, "window inputs are not a slice of the history"
        a = starts[0]
        for p in np.flatnonzero(targets[w]):
            t = a + p + 1
            assert targets[w, p] == h[t]
            key = (owner[w], t)
            assert key not in seen, f"target {key} scored twice"
            seen[key] = p + 1  # context length
            if t <= L:
                assert a == 0 and p + 1 == t  # exactly the prefix sample's context
            else:
                assert L - S + 1 <= p + 1 <= L
    expected = {(k, t) for k, h in enumerate(histories) for t in range(1, len(h))}
    assert set(seen) == expected


def test_window_count_shrinks_with_the_stride():
    histories = [np.arange(1, 202)]
    counts = [len(build_windows(histories, 50, s)[0]) for s in (1, 10, 25, 50)]
    assert counts == sorted(counts, reverse=True) and counts[-1] == 4 and counts[0] == 151


@pytest.mark.parametrize("L", [1, 3, 5])
def test_last_windows_hold_each_users_last_items_with_every_position_scored(L):
    rng = np.random.default_rng(L)
    histories = [rng.integers(1, 1000, size=n) for n in [2, 3, max(L, 2), L + 1, L + 2, 3 * L + 4, 40]]
    inputs, targets, lengths, owner = build_windows(histories, L, L, last_only=True)
    assert owner.tolist() == list(range(len(histories)))  # one window per history
    for w, h in enumerate(histories):
        tail = h[-(L + 1):]  # the published recipe's item_sequence[-L - 1:]
        n = len(tail) - 1
        assert lengths[w] == n
        assert inputs[w, :n].tolist() == tail[:-1].tolist() and targets[w, :n].tolist() == tail[1:].tolist()
        assert (inputs[w, n:] == 0).all() and (targets[w, n:] == 0).all()
    # histories that fit one window: the same window under both layouts
    short = [h for h in histories if len(h) <= L + 1]
    a, b = build_windows(short, L, L), build_windows(short, L, L, last_only=True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


# ----- the loader on a real RecBole split ------------------------------------------------------
def _brute_histories(root, dataset="tiny"):
    """Training histories straight from the .inter file: each user's items in time order, minus
    the validation and test items (RecBole's leave-one-out), users with >= 2 training items."""
    import pandas as pd

    df = pd.read_csv(f"{root}/{dataset}/{dataset}.inter", sep="\t")
    # RecBole sorts on its float32 copy of the timestamps (1e9 + k rounds to multiples of 64),
    # ties kept in file order
    df["t32"] = df["timestamp:float"].astype(np.float32)
    df = df.sort_values(["user_id:token", "t32"], kind="stable")
    out = {}
    for user, rows in df.groupby("user_id:token", sort=False):
        items = list(rows["item_id:token"])
        if len(items) >= 4:
            out[user] = items[:-2]
    return out


def test_training_histories_match_the_interaction_file(setup):
    root, emb = setup
    config = build_config(model="SASRec", config_dict=tiny_config(root))
    _, (train, _, _), _, _ = prepare_run(config)
    ds = train._dataset
    users, histories = training_histories(ds)
    got = {ds.id2token(ds.uid_field, u): list(ds.id2token(ds.iid_field, h)) for u, h in zip(users, histories)}
    assert got == _brute_histories(root)


def test_sequence_loader_covers_every_training_sample_once_per_epoch(setup):
    root, emb = setup
    config = build_config(model="SASRec", config_dict=tiny_config(root, MAX_ITEM_LIST_LENGTH=6, train_batch_size=40))
    _, (train, _, _), _, _ = prepare_run(config)
    assert isinstance(train, SequenceTrainDataLoader) and config["train_mode"] == "sequence"
    ds = train._dataset
    # every (user, target, context) of RecBole's prefix samples comes back from the windows
    prefix = {(int(u), int(i)) for u, i in zip(ds.inter_feat[ds.uid_field], ds.inter_feat[ds.iid_field])}
    pairs, n_targets = [], 0
    for batch in train:
        keep = batch[TARGETS] > 0
        n_targets += int(keep.sum())
        users = batch[ds.uid_field].unsqueeze(1).expand_as(keep)[keep]
        pairs += list(zip(users.tolist(), batch[TARGETS][keep].tolist()))
        assert len(batch[TARGETS]) <= train.step
    assert n_targets == len(ds)
    assert set(pairs) == prefix
    # about train_batch_size targets per batch
    assert abs(n_targets / len(train) - 40) < 40


def test_last_window_loader_scores_each_users_last_items(setup):
    root, emb = setup
    L = 4
    config = build_config(model="SASRec", config_dict=tiny_config(root, MAX_ITEM_LIST_LENGTH=L, seq_windows="last"))
    _, (train, _, _), _, _ = prepare_run(config)
    ds = train._dataset
    brute = _brute_histories(root)
    got = {}
    for batch in train:
        for u, inp, tgt, n in zip(batch[ds.uid_field], batch[train.dataset.item_id_list_field],
                                  batch[TARGETS], batch[ds.item_list_length_field]):
            got[ds.id2token(ds.uid_field, int(u))] = list(ds.id2token(ds.iid_field, np.r_[inp[:1], tgt[:n]]))
    assert got == {u: h[-(L + 1):] for u, h in brute.items()}
    assert train.n_targets == sum(min(len(h) - 1, L) for h in brute.values()) < len(ds)


def test_seq_windows_rejects_unknown_values(setup):
    root, emb = setup
    with pytest.raises(ConfigError, match="seq_windows"):
        build_config(model="SASRec", config_dict=tiny_config(root, seq_windows="first"))


def test_train_mode_resolution_and_errors(setup):
    root, emb = setup
    for model, expected in [("SASRec", "sequence"), ("GRU4Rec", "sequence"), ("BiFairSASRec", "sequence"),
                            ("BERT4Rec", "prefix"), ("BiFairBERT4Rec", "prefix")]:
        config = build_config(model=model, config_dict=bifair_config(root, emb))
        assert resolve_train_mode(config, get_model(model)) == expected, model
    config = build_config(model="SASRec", config_dict=tiny_config(root, loss_type="BPR",
                                                                   train_neg_sample_args={"distribution": "uniform", "sample_num": 1}))
    assert resolve_train_mode(config, get_model("SASRec")) == "prefix"
    with pytest.raises(ConfigError, match="loss_type"):
        config["train_mode"] = "sequence"
        resolve_train_mode(config, get_model("SASRec"))
    # asked for explicitly, an impossible mode stops the run when its config is built
    with pytest.raises(ConfigError, match="train_mode: prefix"):
        build_config(model="BERT4Rec", config_dict=tiny_config(root, train_mode="sequence"))
    with pytest.raises(ConfigError, match="train_mode: 'windows' is not allowed"):
        build_config(model="SASRec", config_dict=tiny_config(root, train_mode="windows"))
    assert build_config(model="SASRec", config_dict=tiny_config(root, train_mode="prefix"))["train_mode"] == "prefix"
    with pytest.raises(ConfigError, match="seq_window_stride"):
        build_config(model="SASRec", config_dict=tiny_config(root, seq_window_stride=11))
    # the window's stride is recorded as it will run: the default is the window length
    assert build_config(model="SASRec", config_dict=tiny_config(root))["seq_window_stride"] == 10
    assert build_config(model="SASRec", config_dict=tiny_config(root, seq_window_stride=4))["seq_window_stride"] == 4
    assert build_config(model="BERT4Rec", config_dict=tiny_config(root))["seq_window_stride"] is None


def test_head_targets_takes_whole_windows():
    targets = torch.tensor([[1, 2, 0], [3, 0, 0], [4, 5, 6], [7, 8, 0]])
    batch = Interaction({TARGETS: targets, "x": torch.arange(4)})
    assert head_targets(batch, 1)["x"].tolist() == [0]
    assert head_targets(batch, 3)["x"].tolist() == [0, 1]
    assert head_targets(batch, 4)["x"].tolist() == [0, 1, 2]
    assert head_targets(batch, 100)["x"].tolist() == [0, 1, 2, 3]


# ----- same objective: gradients ---------------------------------------------------------------
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attn_dropout_prob=0.0, dropout_prob=0.0, projector_dropout=0.0)


def _grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("model_name", ["SASRec", "GRU4Rec", "BiFairSASRec", "BiFairGRU4Rec"])
def test_all_position_gradient_equals_summed_prefix_gradient(setup, model_name):
    """Histories shorter than the window: one window per user, so the sum of the per-position
    losses is the sum of RecBole's prefix-sample losses, and so are their gradients."""
    root, emb = setup
    common = dict(MAX_ITEM_LIST_LENGTH=50, **NO_DROPOUT)
    cfg_seq = build_config(model=model_name, config_dict=bifair_config(root, emb, **common))
    _, (windows, _, _), model, _ = prepare_run(cfg_seq)
    cfg_pre = build_config(model=model_name, config_dict=bifair_config(root, emb, train_mode="prefix", **common))
    _, (prefix, _, _), _, _ = prepare_run(cfg_pre)
    assert isinstance(windows, SequenceTrainDataLoader) and not isinstance(prefix, SequenceTrainDataLoader)
    assert windows.stride == 50 and int(windows.windows[windows._dataset.item_list_length_field].max()) < 50

    model.train()  # dropout is off, so training mode is deterministic
    all_windows = windows.collate_fn(np.arange(windows.n_windows))
    all_samples = prefix._dataset[np.arange(len(prefix._dataset))]
    n = len(prefix._dataset)
    assert windows.n_targets == n
    g_seq = _grads(model, sequence_loss(model, all_windows) * n)
    g_pre = _grads(model, model.calculate_loss(all_samples) * n)
    compared = 0
    for a, b in zip(g_seq, g_pre):
        if a is None and b is None:
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        compared += 1
    assert compared >= 4


@pytest.mark.parametrize("model_name", ["SASRec", "GRU4Rec"])
def test_last_position_is_recboles_forward(setup, model_name):
    root, emb = setup
    config = build_config(model=model_name, config_dict=tiny_config(root, **NO_DROPOUT))
    _, (train, _, _), model, _ = prepare_run(config)
    model.eval()
    batch = train._dataset[np.arange(30)]
    seq, seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        full = all_position_output(model, seq)
        expected = model.forward(seq, seq_len)
    torch.testing.assert_close(full[torch.arange(len(seq)), seq_len - 1], expected)


def test_long_histories_differ_from_prefix_only_in_context(setup):
    """With windows shorter than the histories, the per-target losses are those of prefix
    samples whose context is cut to the window: checked target by target."""
    root, emb = setup
    config = build_config(model="SASRec", config_dict=tiny_config(root, MAX_ITEM_LIST_LENGTH=4, **NO_DROPOUT))
    _, (train, _, _), model, _ = prepare_run(config)
    model.eval()
    ds = train._dataset
    batch = train.collate_fn(np.arange(train.n_windows))
    with torch.no_grad():
        out = all_position_output(model, batch[model.ITEM_SEQ])
        for w in range(0, train.n_windows, 3):
            for p in torch.nonzero(batch[TARGETS][w] > 0).flatten().tolist():
                ctx = batch[model.ITEM_SEQ][w, : p + 1]
                seq = torch.zeros(1, 4, dtype=torch.long)
                seq[0, : p + 1] = ctx
                single = model.forward(seq, torch.tensor([p + 1]))
                torch.testing.assert_close(out[w, p], single[0], rtol=1e-5, atol=1e-5)
    assert ds.inter_feat[ds.item_list_length_field].max() == 4


@pytest.mark.parametrize("model_name", ["BiFairSASRec"])
def test_bifair_trains_on_windows_with_meta_split_and_records_the_mode(setup, model_name):
    root, emb = setup
    result = run_bifair(model=model_name, config_dict=bifair_config(root, emb, epochs=2, hvp_batch_size=16))
    assert result["config"]["train_mode"] == "sequence"
    assert len(result["training_log"]) == 2
    assert result["training_log"][-1]["E_drift"] > 0
    prefix = run_bifair(model=model_name, config_dict=bifair_config(root, emb, epochs=1, train_mode="prefix"))
    assert prefix["config"]["train_mode"] == "prefix"


def test_a_split_that_is_not_recboles_augmentation_is_a_clear_error(setup):
    root, emb = setup
    from recbole_bifair.data.sequence import sequence_training_data

    config = build_config(model="SASRec", config_dict=tiny_config(root, train_mode="prefix"))
    _, (train, _, _), _, _ = prepare_run(config)
    ds = train._dataset
    # shuffle the rows: they are no longer each user's consecutive prefixes
    ds.inter_feat = ds.inter_feat[torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))]
    config["train_mode"] = "sequence"
    with pytest.raises(ConfigError, match="set train_mode: prefix"):
        sequence_training_data(config, train, get_model("SASRec"))
