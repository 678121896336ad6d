"""SASRec's layout keys (``sasrec_norm``, ``item_emb_scale``; model/sasrec_layout.py): ``pre`` is
torch's own pre-norm transformer on RecBole's weights, the defaults are RecBole's SASRec bit for
bit, and training and evaluation run the same layout."""

import copy

import numpy as np
import pytest
import torch
from recbole.model.sequential_recommender.sasrec import SASRec
from torch import nn

from recbole_bifair.errors import ConfigError
from recbole_bifair.model.all_positions import all_position_output
from recbole_bifair.model.padding import trimmed_full_sort
from recbole_bifair.model.sasrec_layout import DEFAULT, Layout, _layout_forward, layout_of, sasrec_hidden
from recbole_bifair.quick_start import build_config, load_data_and_model, prepare_run, run_bifair
from tests.bifair_fixtures import bifair_config, bifair_setup
from tests.datagen import tiny_config

SMALL = dict(n_layers=2, n_heads=2, hidden_size=8, inner_size=16, MAX_ITEM_LIST_LENGTH=12)
PRE = dict(sasrec_norm="pre", item_emb_scale=8.0)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def _model(setup, model="SASRec", **overrides):
    root, emb = setup
    values = dict(SMALL, **overrides)
    config_dict = bifair_config(root, emb, **values) if model.startswith("BiFair") else tiny_config(root, **values)
    _, (train, valid, _), net, _ = prepare_run(build_config(model=model, config_dict=config_dict))
    net.eval()
    return net, train, valid


def _randomise(model, seed=0):
    """Every parameter random: RecBole's init leaves biases at 0 and LayerNorms at (1, 0), which
    would hide a bias or a LayerNorm applied in the wrong place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def _padded_sequences(n_items, batch=6, width=12, seed=1):
    """Right-padded item sequences of lengths 1..width (each length at least once where it fits)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([1, width, 3, 7, 2, 11][:batch])
    seq = torch.randint(1, n_items, (batch, width), generator=gen)
    seq[torch.arange(width).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return seq, lengths


def _torch_reference(model, seq, activation):
    """``[B, L, d]``: torch's ``TransformerEncoderLayer`` (``norm_first``) stacked, with RecBole's
    weights, plus the final LayerNorm: the published pre-norm SASRec written independently."""
    d, eps = model.hidden_size, model.layer_norm_eps
    layers = []
    for layer in model.trm_encoder.layer:
        mha, ff = layer.multi_head_attention, layer.feed_forward
        ref = nn.TransformerEncoderLayer(d, model.n_heads, model.inner_size, dropout=0.0, activation=activation,
                                         layer_norm_eps=eps, batch_first=True, norm_first=True)
        with torch.no_grad():
            ref.self_attn.in_proj_weight.copy_(torch.cat([mha.query.weight, mha.key.weight, mha.value.weight]))
            ref.self_attn.in_proj_bias.copy_(torch.cat([mha.query.bias, mha.key.bias, mha.value.bias]))
            for mine, theirs in [(ref.self_attn.out_proj, mha.dense), (ref.linear1, ff.dense_1),
                                 (ref.linear2, ff.dense_2), (ref.norm1, mha.LayerNorm), (ref.norm2, ff.LayerNorm)]:
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
        layers.append(ref.eval())
    final = nn.LayerNorm(d, eps=eps)
    final.load_state_dict(model.LayerNorm.state_dict())
    width = seq.shape[1]
    x = model.item_embedding.weight[seq] * layout_of(model).item_emb_scale + model.position_embedding.weight[:width]
    causal = torch.triu(torch.ones(width, width, dtype=torch.bool), diagonal=1)
    for ref in layers:
        x = ref(x, src_mask=causal)
    return final(x)


# ----- the layout itself --------------------------------------------------------------------------
@pytest.mark.parametrize("act,scale", [("gelu", 1.0), ("relu", 8.0)])
def test_pre_norm_is_torchs_pre_norm_transformer_on_recboles_weights(setup, act, scale):
    model, _, _ = _model(setup, sasrec_norm="pre", item_emb_scale=scale, hidden_act=act)
    assert layout_of(model) == Layout("pre", scale)
    _randomise(model)
    seq, _ = _padded_sequences(model.n_items)
    real = seq > 0
    with torch.no_grad():
        ours = sasrec_hidden(model, seq)
        reference = _torch_reference(model, seq, act)
        post_model = copy.deepcopy(model)
        post_model.sasrec_layout = DEFAULT
        post = sasrec_hidden(post_model, seq)
    torch.testing.assert_close(ours[real], reference[real], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours[real], post[real], atol=1e-3)


def test_pre_norm_keeps_recboles_parameters(setup):
    stock, _, _ = _model(setup)
    pre, _, _ = _model(setup, **PRE)
    assert pre.state_dict().keys() == stock.state_dict().keys()
    for key, value in stock.state_dict().items():
        assert torch.equal(pre.state_dict()[key], value), key  # same seed, same initialisation


@pytest.mark.parametrize("model_name", ["SASRec", "BiFairSASRec"])
def test_defaults_are_recboles_sasrec_bit_for_bit(setup, model_name):
    model, _, _ = _model(setup, model_name)
    assert type(model).__name__ == model_name and type(model).forward is SASRec.forward
    assert layout_of(model) == DEFAULT and "sasrec_layout" not in vars(model)
    _randomise(model)
    seq, lengths = _padded_sequences(model.n_items)
    with torch.no_grad():
        expected = SASRec.forward(model, seq, lengths)
        assert torch.equal(_layout_forward(model, seq, lengths), expected)
        assert torch.equal(all_position_output(model, seq)[torch.arange(len(seq)), lengths - 1], expected)


class Times8(nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, items):
        return self.table(items) * 8.0


@pytest.mark.parametrize("model_name", ["SASRec", "BiFairSASRec"])
def test_item_emb_scale_scales_the_input_only(setup, model_name):
    model, _, valid = _model(setup, model_name, **PRE)
    _randomise(model)
    # the same model fed a table 8 times larger, with the scale off: the same outputs
    scaled_table = copy.deepcopy(model)
    scaled_table.sasrec_layout = Layout("pre", 1.0)
    interaction = next(iter(valid))[0]
    seq, lengths = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]
    scaled_table.item_embedding = Times8(scaled_table.item_embedding)
    with torch.no_grad():
        out = model.forward(seq, lengths)
        torch.testing.assert_close(out, scaled_table.forward(seq, lengths), rtol=1e-6, atol=1e-6)
        # scores: the output against the table as it is
        table = model.item_embedding.weight[: model.n_items]
        torch.testing.assert_close(model.full_sort_predict(interaction).view(len(seq), -1), out @ table.T)


# ----- training and evaluation run the same layout --------------------------------------------------
@pytest.mark.parametrize("model_name", ["SASRec", "BiFairSASRec"])
def test_all_positions_agree_with_forward_and_with_shorter_prefixes(setup, model_name):
    model, train, valid = _model(setup, model_name, **PRE)
    assert type(model).__name__ == model_name and isinstance(model, SASRec) and type(model).forward is not SASRec.forward
    _randomise(model)
    batch = train._dataset[np.arange(30)]
    seq, lengths = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        full = all_position_output(model, seq)
        torch.testing.assert_close(full[torch.arange(len(seq)), lengths - 1], model.forward(seq, lengths))
        # causal: a position's output is that of its prefix alone, padded
        for row in range(0, 30, 7):
            for p in range(int(lengths[row])):
                prefix = torch.zeros_like(seq[row:row + 1])
                prefix[0, : p + 1] = seq[row, : p + 1]
                single = model.forward(prefix, torch.tensor([p + 1]))
                torch.testing.assert_close(full[row, p], single[0], rtol=1e-5, atol=1e-5)
        interaction = next(iter(valid))[0]
        padded = model.full_sort_predict(interaction).view(len(interaction), -1)
        torch.testing.assert_close(trimmed_full_sort(model, interaction, chunk=4), padded, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_name", ["SASRec", "BiFairSASRec"])
def test_a_run_with_the_published_layout_records_it_and_reloads_it(setup, model_name):
    root, emb = setup
    config_dict = dict(SMALL, hidden_act="relu", **PRE)
    config_dict = bifair_config(root, emb, **config_dict) if model_name.startswith("BiFair") else tiny_config(root, **config_dict)
    result = run_bifair(model=model_name, config_dict=config_dict)
    assert result["config"]["sasrec_norm"] == "pre" and result["config"]["item_emb_scale"] == 8.0
    assert result["epochs_trained"] == 1 and np.isfinite(result["test_result"]["ndcg@10"])
    config, model, _, _, _, test = load_data_and_model(result["checkpoint"])
    assert layout_of(model) == Layout("pre", 8.0) and type(model).__name__ == model_name
    model.eval()
    interaction = next(iter(test))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
        seq, lengths = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]
        post = SASRec.forward(model, seq, lengths)
        assert torch.isfinite(scores).all() and not torch.allclose(model.forward(seq, lengths), post)


# ----- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name,key,value", [("GRU4Rec", "sasrec_norm", "pre"),
                                                  ("BERT4Rec", "item_emb_scale", 8.0),
                                                  ("BiFairGRU4Rec", "sasrec_norm", "pre")])
def test_another_backbone_with_a_layout_key_is_a_config_error(setup, model_name, key, value):
    root, emb = setup
    with pytest.raises(ConfigError, match=rf"^{key}: .* {model_name} is not SASRec-based: .* set {key}: "):
        build_config(model=model_name, config_dict=bifair_config(root, emb, **{key: value}))


@pytest.mark.parametrize("key,value,message", [("sasrec_norm", "mid", "'mid' is not allowed"),
                                               ("item_emb_scale", 0, "0 is out of range"),
                                               ("item_emb_scale", "8", "'8' is not a number")])
def test_bad_layout_values_name_their_key(setup, key, value, message):
    root, _ = setup
    with pytest.raises(ConfigError, match=rf"^{key}: {message}"):
        build_config(model="SASRec", config_dict=tiny_config(root, **{key: value}))
