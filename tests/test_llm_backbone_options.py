"""Options of the LLM-enhanced backbone: conditioning of E0, the projector's dropout
placement and output scale, the dual-view item table (ID view) and cosine scoring."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbole_bifair.compat import load_checkpoint
from recbole_bifair.data.sequence import TARGETS, SequenceTrainDataLoader
from recbole_bifair.embedding.feature_file import read_metadata
from recbole_bifair.errors import ConfigError
from recbole_bifair.model.all_positions import all_position_output
from recbole_bifair.model.llm_item_table import condition_llm_table, erase_popularity, pca_rows
from recbole_bifair.quick_start import build_config, load_data_and_model, prepare_run, run_bifair
from recbole_bifair.trainer.group_loop import _gram_by_autograd, group_means, shared_gram
from tests.bifair_fixtures import EMB_DIM, bifair_config, bifair_setup

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attn_dropout_prob=0.0, dropout_prob=0.0, projector_dropout=0.0)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def _build(setup, model="BiFairSASRec", **overrides):
    root, emb = setup
    config = build_config(model=model, config_dict=bifair_config(root, emb, **overrides))
    dataset, data, net, trainer = prepare_run(config)
    return config, dataset, data, net, trainer


def _raw_table(emb_file, dataset):
    """The embedding file's rows by internal item id, read with numpy (row 0 zero)."""
    rows = np.loadtxt(emb_file, skiprows=1, dtype=str)
    by_token = {r[0]: r[1:].astype(np.float64) for r in rows}
    tokens = dataset.field2id_token[dataset.iid_field]
    return np.stack([np.zeros(EMB_DIM)] + [by_token[t] for t in tokens[1:]])


def _table(n=31, d=EMB_DIM, seed=0):
    rng = np.random.default_rng(seed)
    # correlated, offset columns: a shared component as in the E0, unequal scales
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0
    X[0] = 5.0  # padding must come out zero whatever it held
    return X


# ----- conditioning of E0 (pure functions against numpy) -----------------------------------------
def test_center_and_standardize_match_numpy():
    X = _table()
    real = X[1:]
    centred = condition_llm_table(torch.tensor(X), "center").double().numpy()
    np.testing.assert_allclose(centred[1:], real - real.mean(0), atol=1e-5)
    np.testing.assert_allclose(centred[1:].mean(0), 0.0, atol=1e-5)
    std = condition_llm_table(torch.tensor(X), "standardize").double().numpy()
    np.testing.assert_allclose(std[1:], (real - real.mean(0)) / real.std(0), atol=1e-5)
    np.testing.assert_allclose(std[1:].std(0), 1.0, atol=1e-5)
    for out in (centred, std):
        assert (out[0] == 0).all()
    none = condition_llm_table(torch.tensor(X), "none").double().numpy()
    np.testing.assert_allclose(none[1:], real, rtol=1e-6)
    assert (none[0] == 0).all()


def test_whitening_gives_identity_covariance_and_keeps_the_dimensions():
    X = _table()
    W = condition_llm_table(torch.tensor(X), "whiten").double().numpy()
    assert W.shape == X.shape and (W[0] == 0).all()
    np.testing.assert_allclose(W[1:].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.cov(W[1:], rowvar=False, bias=True), np.eye(EMB_DIM), atol=1e-4)
    # a linear map of the centred rows (PCA whitening), not some other identity-covariance table
    real = X[1:] - X[1:].mean(0)
    A, *_ = np.linalg.lstsq(real, W[1:], rcond=None)
    np.testing.assert_allclose(real @ A, W[1:], atol=1e-4)


def test_whitening_a_rank_deficient_table_whitens_its_span_and_zeroes_the_rest():
    X = _table(n=7)  # 6 items in 12 dimensions: the centred rows span 5
    W = condition_llm_table(torch.tensor(X), "whiten").double().numpy()
    cov = np.cov(W[1:], rowvar=False, bias=True)
    expected = np.zeros((EMB_DIM, EMB_DIM))
    expected[:5, :5] = np.eye(5)
    np.testing.assert_allclose(cov, expected, atol=1e-4)
    assert np.isfinite(W).all()


def test_pca_rows_equal_numpys_svd_projection_up_to_sign():
    X = _table()
    got = pca_rows(torch.tensor(X), 5).double().numpy()
    real = X[1:] - X[1:].mean(0)
    _, _, Vt = np.linalg.svd(real, full_matrices=False)
    expected = real @ Vt[:5].T
    assert (got[0] == 0).all()
    for j in range(5):
        sign = np.sign(got[1:, j] @ expected[:, j])
        np.testing.assert_allclose(got[1:, j], sign * expected[:, j], atol=1e-4)
    with pytest.raises(ConfigError, match="id_init: pca"):
        pca_rows(torch.tensor(X), EMB_DIM + 1)


def _counts(n, seed=1):
    rng = np.random.default_rng(seed)
    counts = rng.geometric(0.05, size=n)  # skewed, as training popularity is
    counts[0] = 0
    return counts


def test_erasing_popularity_leaves_no_linear_information_on_it():
    X = _table()
    counts = _counts(X.shape[0])
    z = np.log1p(counts[1:].astype(float))
    before = X[1:] - X[1:].mean(0)
    # the table carries popularity: a least-squares fit of z on the rows explains part of it
    def r2(rows):
        A = np.c_[rows, np.ones(len(rows))]
        coef, *_ = np.linalg.lstsq(A, z, rcond=1e-6)  # not the float32 rounding left in the erased direction
        return 1 - ((z - A @ coef) ** 2).sum() / ((z - z.mean()) ** 2).sum()
    assert r2(X[1:]) > 0.3
    out = erase_popularity(torch.tensor(X), counts).double().numpy()
    assert (out[0] == 0).all() and out.shape == X.shape
    # no coordinate (so no linear function) of the rows covaries with z any more, and no fit explains it
    cov = (out[1:] - out[1:].mean(0)).T @ (z - z.mean()) / len(z)
    np.testing.assert_allclose(cov, 0.0, atol=1e-4 * np.abs(before.T @ (z - z.mean()) / len(z)).max())
    assert r2(out[1:]) < 1e-6
    # one direction removed: the change has rank 1 and lies along Cov(X, z)
    change = out[1:] - X[1:]
    s = np.linalg.svd(change, compute_uv=False)
    assert s[1] < 1e-4 * s[0]
    c = before.T @ (z - z.mean()) / len(z)
    _, _, vt = np.linalg.svd(change)
    assert abs(abs(vt[0] @ c) / np.linalg.norm(c) - 1) < 1e-4
    # the change is LEACE's: the smallest mean squared change among the erasers x -> x - c w^T (x - mean)
    # with Cov = 0; any other w with w^T Cov(X, z) = 1 moves the rows further
    S = before.T @ before / len(z)
    w = np.linalg.pinv(S) @ c / (c @ np.linalg.pinv(S) @ c)
    rng = np.random.default_rng(3)
    for _ in range(5):
        other = w + rng.normal(size=w.shape) * 0.1
        other = other / (other @ c) * (w @ c)
        assert (np.outer(before @ other, c) ** 2).sum() >= (np.outer(before @ w, c) ** 2).sum() - 1e-9
    np.testing.assert_allclose(change, -np.outer(before @ w, c), atol=1e-4)


def test_erasing_is_a_no_op_without_popularity_information_and_for_none():
    X = _table()
    flat = np.zeros(X.shape[0], dtype=np.int64)
    flat[1:] = 7  # every item as popular as the others: nothing to erase
    np.testing.assert_allclose(erase_popularity(torch.tensor(X), flat).double().numpy()[1:], X[1:], rtol=1e-6)
    counts = _counts(X.shape[0])
    np.testing.assert_allclose(erase_popularity(torch.tensor(X), counts, "none").double().numpy()[1:], X[1:],
                               rtol=1e-6)
    # fewer items than dimensions: the pseudo-inverse handles the rank-deficient covariance
    small = _table(n=7)
    out = erase_popularity(torch.tensor(small), _counts(7)).double().numpy()
    z = np.log1p(_counts(7)[1:].astype(float))
    assert np.isfinite(out).all()
    np.testing.assert_allclose((out[1:] - out[1:].mean(0)).T @ (z - z.mean()), 0.0, atol=1e-3)
    with pytest.raises(ConfigError, match="llm_emb_erase 'gender' is unknown"):
        erase_popularity(torch.tensor(X), counts, "gender")


def test_the_model_erases_popularity_from_the_training_counts(setup):
    from recbole_bifair.fairness.groups import item_train_counts

    _, dataset, data, net, _ = _build(setup, llm_emb_erase="popularity")
    counts = item_train_counts(data[0]._dataset)  # the training split's, as the model counts
    raw = _raw_table(setup[1], dataset)
    expected = erase_popularity(torch.tensor(raw), counts).double().numpy()
    table = net.item_table
    np.testing.assert_allclose(table.E0.double().numpy(), expected, atol=1e-5)
    z = np.log1p(counts[1:].astype(float))
    E0 = table.E0[1:].double().numpy()
    np.testing.assert_allclose((E0 - E0.mean(0)).T @ (z - z.mean()) / len(z), 0.0, atol=1e-5)
    _, _, _, plain, _ = _build(setup)
    assert not torch.allclose(plain.item_table.E0, table.E0)  # the fixture's table does carry popularity


# ----- the model: E0 conditioned, projector, ID view -------------------------------------------------
def test_model_holds_the_conditioned_table_as_E_and_E0(setup):
    config, dataset, data, net, _ = _build(setup, llm_emb_transform="standardize")
    raw = _raw_table(setup[1], dataset)
    expected = (raw[1:] - raw[1:].mean(0)) / raw[1:].std(0)
    table = net.item_table
    np.testing.assert_allclose(table.E0[1:].double().numpy(), expected, atol=1e-4)
    torch.testing.assert_close(table.E.detach(), table.E0)
    assert (table.E0[0] == 0).all()


def test_projector_init_matches_sasrec_and_output_std_rescales_it(setup):
    config, dataset, data, net, _ = _build(setup, projector_layers=3, projector_hidden_size=16)
    linears = [m for m in net.item_table.projector if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(EMB_DIM, 16), (16, 16), (16, 8)]
    # SASRec's _init_weights: N(0, initializer_range) weights, zero biases
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert abs(weights.std().item() - config["initializer_range"]) < 0.005
    assert all((m.bias == 0).all() for m in linears)
    for layernorm in (False, True):
        _, _, _, net, _ = _build(setup, projector_output_std=0.02, projector_layernorm=layernorm,
                                 projector_dropout=0.3)
        table = net.item_table
        table.projector.eval()  # the scale is set without dropout
        with torch.no_grad():
            std = table.projector(table.E[1:]).std().item()
        assert std == pytest.approx(0.02, rel=1e-4)
        assert isinstance(table.projector[-1], torch.nn.LayerNorm) == layernorm


def test_input_dropout_spares_the_scored_table(setup):
    _, _, _, net, _ = _build(setup, projector_dropout=0.5, projector_dropout_on="input")
    table = net.item_table
    assert not any(isinstance(m, torch.nn.Dropout) for m in table.projector)
    net.train()
    ids = torch.arange(1, net.n_items).repeat(4, 1)
    with torch.no_grad():
        torch.testing.assert_close(table.weight, table.weight)  # no dropout inside P
        looked_up = table(ids)
        assert (looked_up == 0).float().mean() > 0.3  # the input side is dropped
        kept = looked_up != 0
        torch.testing.assert_close(looked_up[kept], (table.weight[ids] * 2)[kept])
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(table(ids), table.weight[ids])
    # the default (hidden) keeps today's behaviour: dropout inside P, on the scored table too
    _, _, _, net, _ = _build(setup, projector_dropout=0.5)
    net.train()
    with torch.no_grad():
        assert not torch.equal(net.item_table.weight, net.item_table.weight)


@pytest.mark.parametrize("fusion", ["sum", "concat"])
def test_id_view_at_the_backbones_scale_in_the_inner_parameters(setup, fusion):
    config, _, _, net, _ = _build(setup, id_fusion=fusion, id_count_half=0.0)  # every ID vector whole
    table = net.item_table
    ids = table.id_embedding.weight
    assert (ids[0] == 0).all()
    # the backbone's initializer_range, not nn.Embedding's N(0, 1)
    assert abs(ids[1:].std().item() - config["initializer_range"]) < 0.005
    inner = {id(p) for p in net.inner_parameters()}
    assert id(ids) in inner and id(table.E) not in inner
    net.eval()
    with torch.no_grad():
        # concat's fuse starts as the sum of the two views
        torch.testing.assert_close(table.weight[1:], table.projector(table.E[1:]) + ids[1:])


def test_residual_fusion_starts_as_the_id_model_and_learns_the_text_scale(setup):
    """``id_fusion: residual``: V = ID + s P(E) with s a learned scalar; at s = 0 (the default start)
    the scored table and the scores are the ID view's alone, and one optimiser step moves s."""
    config, _, data, net, _ = _build(setup, id_fusion="residual", id_count_half=0.0, **NO_DROPOUT)
    table = net.item_table
    assert table.text_scale.item() == 0.0 and config["text_scale_init"] == 0.0
    assert id(table.text_scale) in {id(p) for p in net.inner_parameters()}
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(table.weight, table.id_embedding.weight)
        table.text_scale.fill_(0.25)
        torch.testing.assert_close(table.weight[1:], table.id_embedding.weight[1:] + 0.25 * table.projector(table.E[1:]))
        table.text_scale.fill_(0.0)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = next(iter(data[0]))
    net.calculate_loss(batch).backward()
    assert table.text_scale.grad is not None and table.text_scale.grad.abs().item() > 0
    optimizer.step()
    assert table.text_scale.item() != 0.0


@pytest.mark.parametrize("fusion", ["sum", "residual"])
def test_id_count_half_weights_each_id_vector_by_its_training_count(setup, fusion):
    """V_i = P(E_i) (times the text scale) + n_i / (n_i + h) ID_i, n_i counted here from the training
    split's interactions; h = 0 leaves every ID vector whole."""
    _, dataset, data, net, _ = _build(setup, id_fusion=fusion, id_count_half=5.0, text_scale_init=1.0, **NO_DROPOUT)
    train = data[0].dataset
    n = np.bincount(train.inter_feat[train.iid_field].numpy(), minlength=dataset.item_num).astype(np.float64)
    table = net.item_table
    net.eval()
    with torch.no_grad():
        expected = table.projector(table.E[1:]).double() + torch.tensor(n[1:] / (n[1:] + 5.0)).unsqueeze(1) \
            * table.id_embedding.weight[1:].double()
        torch.testing.assert_close(table.weight[1:].double(), expected, rtol=1e-5, atol=1e-6)
        rows = torch.tensor([0, 1, 4, 9])
        torch.testing.assert_close(table.compute_rows(rows), table.weight[rows])
    assert n[1:].min() < n[1:].max()  # the weights differ between items
    with pytest.raises(ConfigError, match="id_count_half"):
        _build(setup, id_fusion=fusion, id_count_half=-1.0)
    # without an ID view the key would change nothing: set, an error, not a silent no-op; the
    # default is recorded as what the run does, 0
    with pytest.raises(ConfigError, match="id_count_half .* id_fusion: none"):
        _build(setup, id_fusion="none", id_count_half=5.0)
    config, *_ = _build(setup, id_fusion="none")
    assert config["id_count_half"] == 0.0
    assert _build(setup, id_fusion=fusion)[0]["id_count_half"] == 100.0


def test_id_view_pca_init_is_the_raw_tables_pca_at_the_init_scale(setup):
    # whitening conditions E0 but the ID view's PCA is of the table as loaded
    config, dataset, _, net, _ = _build(setup, id_fusion="sum", id_init="pca", llm_emb_transform="whiten")
    got = net.item_table.id_embedding.weight.detach().double().numpy()
    raw = _raw_table(setup[1], dataset)[1:]
    real = raw - raw.mean(0)
    _, _, Vt = np.linalg.svd(real, full_matrices=False)
    d = got.shape[1]
    expected = real @ Vt[:d].T
    expected *= config["initializer_range"] / expected.std()
    for j in range(d):
        sign = np.sign(got[1:, j] @ expected[:, j])
        np.testing.assert_allclose(got[1:, j], sign * expected[:, j], atol=1e-4)
    assert (got[0] == 0).all()


@pytest.mark.parametrize("key,value,allowed", [
    ("llm_emb_transform", "pca", "none, center, standardize, whiten"),
    ("projector_dropout_on", "output", "hidden, input"),
    ("id_fusion", "gate", "none, sum, concat, residual"),
    ("id_init", "xavier", "normal, pca"),
    ("score", "l2", "dot, cosine"),
    ("score_temperature", 0, "positive"),
    ("projector_output_std", -1.0, "positive"),
])
def test_bad_values_name_the_key_and_the_allowed_values(setup, key, value, allowed):
    overrides = {key: value, "score": "cosine"} if key == "score_temperature" else {key: value}
    if key == "id_init":
        overrides["id_fusion"] = "sum"
    with pytest.raises(ConfigError, match=key) as err:
        _build(setup, **overrides)
    assert allowed in str(err.value)


def test_bert4rec_refuses_cosine_scoring(setup):
    with pytest.raises(ConfigError, match="score: cosine is not supported by BiFairBERT4Rec"):
        _build(setup, model="BiFairBERT4Rec", score="cosine")


# ----- cosine scoring --------------------------------------------------------------------------------
def _hand_cosine_logits(S, V, T):
    S, V = S.double().numpy(), V.double().numpy()
    out = np.zeros((len(S), len(V)))
    for i in range(len(S)):
        for j in range(len(V)):
            norm = np.linalg.norm(S[i]) * np.linalg.norm(V[j])
            out[i, j] = S[i] @ V[j] / norm / T if norm > 0 else 0.0
    return out


@pytest.mark.parametrize("model", ["BiFairSASRec", "BiFairGRU4Rec"])
def test_cosine_logits_on_prefix_batches_match_predict_and_full_sort_predict(setup, model):
    _, _, (train, _, _), net, _ = _build(setup, model=model, score="cosine", score_temperature=0.2,
                                         train_mode="prefix", **NO_DROPOUT)
    net.eval()
    batch = train._dataset[np.arange(25)]
    with torch.no_grad():
        out = net.target_losses(batch)
        S = net.forward(batch[net.ITEM_SEQ], batch[net.ITEM_SEQ_LEN])
        V = net.item_table.weight[: net.n_items]
        expected = _hand_cosine_logits(S, V, 0.2)
        np.testing.assert_allclose(out.logits.double().numpy(), expected, atol=1e-4)
        torch.testing.assert_close(out.losses, F.cross_entropy(out.logits, batch[net.POS_ITEM_ID], reduction="none"))
        torch.testing.assert_close(net.calculate_loss(batch), out.losses.mean())
        torch.testing.assert_close(net.full_sort_predict(batch), out.logits)
        picked = out.logits[torch.arange(len(out.targets)), batch[net.ITEM_ID]]
        torch.testing.assert_close(net.predict(batch), picked)


@pytest.mark.parametrize("model", ["BiFairSASRec", "BiFairGRU4Rec"])
def test_cosine_logits_on_window_batches(setup, model):
    _, _, (train, _, _), net, _ = _build(setup, model=model, score="cosine", **NO_DROPOUT)
    assert isinstance(train, SequenceTrainDataLoader)
    net.eval()
    batch = train.collate_fn(np.arange(min(6, train.n_windows)))
    with torch.no_grad():
        out = net.target_losses(batch)
        keep = batch[TARGETS] > 0
        S = all_position_output(net, batch[net.ITEM_SEQ])[keep]
        expected = _hand_cosine_logits(S, net.item_table.weight[: net.n_items], 0.1)
        np.testing.assert_allclose(out.logits.double().numpy(), expected, atol=1e-4)
        torch.testing.assert_close(out.targets, batch[TARGETS][keep])
        torch.testing.assert_close(net.calculate_loss(batch), out.losses.mean())


@pytest.mark.parametrize("score", ["cosine", "dot"])
def test_the_trainers_closed_form_gram_equals_the_autograd_gram(setup, score):
    """The MGDA Gram's closed form reads TargetLosses.logits and .shared: with cosine scoring the
    logits must still be the product of the shared tensors, or the two disagree."""
    _, _, (train, _, _), net, _ = _build(setup, score=score, id_fusion="sum", **NO_DROPOUT)
    net.train()
    batch = train.collate_fn(np.arange(min(8, train.n_windows)))
    out = net.target_losses(batch)
    group_ids = out.targets % 3
    losses = out.losses * (1.0 + (out.targets % 2))  # IPS-like per-target weights
    _, present, counts = group_means(losses, group_ids, 3)
    closed = shared_gram(out, losses, group_ids, present, counts)
    reference = _gram_by_autograd(out, losses, group_ids, present, counts)
    torch.testing.assert_close(closed, reference, rtol=1e-4, atol=1e-9)
    assert closed.abs().max() > 0


# ----- everything on: one epoch of BiFair, E moves, the checkpoint reloads ---------------------------
ALL_ON = dict(
    llm_emb_transform="whiten", projector_layers=3, projector_hidden_size=16, projector_dropout=0.2,
    projector_dropout_on="input", projector_layernorm=True, projector_output_std=0.02,
    id_fusion="concat", id_init="pca", score="cosine", score_temperature=0.1,
)


def test_bifair_sasrec_with_every_option_trains_moves_E_and_reloads(setup):
    root, emb = setup
    result = run_bifair(model="BiFairSASRec", config_dict=bifair_config(
        root, emb, hvp_batch_size=16, export_llm_emb=True, prior_probe=True, **ALL_ON))
    assert result["epochs_trained"] == 1
    assert set(result["prior_probe"]) == {"E0", "E"}
    # the exported E lives in the whitened space, and its metadata says so
    assert read_metadata(result["llm_emb_export"])["llm_emb_transform"] == "whiten"
    assert read_metadata(result["llm_emb_export"])["llm_emb_erase"] == "none"
    assert result["training_log"][-1]["E_drift"] > 0
    assert np.isfinite(result["test_result"]["ndcg@10"])
    checkpoint = load_checkpoint(result["checkpoint"])
    assert not torch.equal(checkpoint["state_dict"]["item_embedding.E"], checkpoint["state_dict"]["item_embedding.E0"])
    config, model, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    for key, value in ALL_ON.items():
        assert config[key] == value
    for name, value in model.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][name]), name
    trainer = prepare_run(config)[3]
    trainer.model = model
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == result["test_result"]
