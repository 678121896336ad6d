"""SASRec's block layout and input scale as config keys (``sasrec_norm``, ``item_emb_scale``).

RecBole's SASRec is post-norm: a LayerNorm on item + position embeddings, then each sublayer
computes ``LN(x + dropout(sublayer(x)))``. The SASRec of Klenitskiy & Vasilev (RecSys 2023;
pmixer's SASRec.pytorch) is pre-norm: no LayerNorm on the input, each sublayer computes
``x + dropout(sublayer(LN(x)))``, one LayerNorm after the last block, and the item vectors are
scaled by ``sqrt(d)`` before the position embedding is added. ``sasrec_norm: pre`` and
``item_emb_scale`` give that layout on RecBole's modules, without new parameters, so checkpoints
keep RecBole's keys:

- the first LayerNorm of a block is its attention's ``LayerNorm``, the second its feed-forward's;
- ``model.LayerNorm`` (RecBole's input LayerNorm) is the final LayerNorm;
- attention and feed-forward use their own weights, activation and dropouts.

``item_emb_scale`` scales only the input vectors: scores use the item table as it is.

``sasrec_hidden`` is the one place that computes the layout, for every position (sequence-level
training, ``model/all_positions.py``) and, through ``apply_layout``'s ``forward``, for the last
(RecBole's prefix training, ``predict`` and ``full_sort_predict``). With the defaults (``post``,
1.0) ``apply_layout`` leaves the model as RecBole built it.
"""

import functools
from dataclasses import dataclass

import torch
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_bifair.errors import ConfigError

NORMS = ("post", "pre")


@dataclass(frozen=True)
class Layout:
    norm: str = "post"
    item_emb_scale: float = 1.0


DEFAULT = Layout()


def read_layout(config, model_class):
    """The ``Layout`` of ``config`` for ``model_class``; ConfigError naming the key when a value
    other than the default is set for a model that is not SASRec-based."""
    # unset (a config whose properties predate the keys, e.g. a checkpoint's): RecBole's layout
    norm, scale = config["sasrec_norm"], config["item_emb_scale"]
    layout = Layout(DEFAULT.norm if norm is None else norm,
                    DEFAULT.item_emb_scale if scale is None else float(scale))
    is_sasrec = isinstance(model_class, type) and issubclass(model_class, SASRec)
    if not is_sasrec:
        for key, value, default in (("sasrec_norm", layout.norm, DEFAULT.norm),
                                    ("item_emb_scale", layout.item_emb_scale, DEFAULT.item_emb_scale)):
            if value != default:
                raise ConfigError(f"{key}: {value!r} changes SASRec's layout and {model_class.__name__} is not "
                                  f"SASRec-based: use SASRec or BiFairSASRec, or set {key}: {default}")
    return layout


def layout_of(model):
    """The layout ``model`` runs (``apply_layout``'s, else RecBole's)."""
    return getattr(model, "sasrec_layout", DEFAULT)


def _attention(mha, x, mask):
    """RecBole's ``MultiHeadAttention`` up to its output projection: no residual, no LayerNorm."""
    def heads(t):
        return mha.transpose_for_scores(t).permute(0, 2, 1, 3)

    scores = heads(mha.query(x)) @ heads(mha.key(x)).transpose(-1, -2) / mha.sqrt_attention_head_size
    probs = mha.attn_dropout(mha.softmax(scores + mask))
    context = (probs @ heads(mha.value(x))).permute(0, 2, 1, 3).contiguous()
    return mha.dense(context.view(*context.shape[:-2], mha.all_head_size))


def _feed_forward(ff, x):
    """RecBole's ``FeedForward`` up to its second linear layer: no residual, no LayerNorm."""
    return ff.dense_2(ff.intermediate_act_fn(ff.dense_1(x)))


def pre_norm_block(layer, x, mask):
    """One RecBole ``TransformerLayer`` in pre-norm order."""
    mha, ff = layer.multi_head_attention, layer.feed_forward
    x = x + mha.out_dropout(_attention(mha, mha.LayerNorm(x), mask))
    return x + ff.dropout(_feed_forward(ff, ff.LayerNorm(x)))


def sasrec_hidden(model, item_seq):
    """``[B, L, d]``: the SASRec output at every position of ``item_seq``, in ``model``'s layout."""
    layout = layout_of(model)
    position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
    position_ids = position_ids.unsqueeze(0).expand_as(item_seq)
    item_emb = model.item_embedding(item_seq)
    if layout.item_emb_scale != 1.0:
        item_emb = item_emb * layout.item_emb_scale
    input_emb = item_emb + model.position_embedding(position_ids)
    mask = model.get_attention_mask(item_seq)
    if layout.norm == "post":
        input_emb = model.dropout(model.LayerNorm(input_emb))
        return model.trm_encoder(input_emb, mask, output_all_encoded_layers=True)[-1]
    hidden = model.dropout(input_emb)
    for layer in model.trm_encoder.layer:
        hidden = pre_norm_block(layer, hidden, mask)
    return model.LayerNorm(hidden)


def _layout_forward(self, item_seq, item_seq_len):
    """SASRec's ``forward`` (the output at the last real position) in the model's layout."""
    return self.gather_indexes(sasrec_hidden(self, item_seq), item_seq_len - 1)


@functools.cache
def _with_layout_forward(cls):
    # a subclass of the model's own class, under its name: isinstance checks, the trainer's lookup
    # and the logs see the same model, and only this instance's forward changes
    return type(cls.__name__, (cls,), {"forward": _layout_forward, "__module__": __name__,
                                       "__doc__": cls.__doc__})


def apply_layout(config, model):
    """``model`` running the layout of ``config`` in ``forward`` (and so in ``calculate_loss``,
    ``predict`` and ``full_sort_predict``); unchanged under the defaults. Returns ``model``."""
    layout = read_layout(config, type(model))
    if layout != DEFAULT:
        model.sasrec_layout = layout
        model.__class__ = _with_layout_forward(type(model))
    return model
