"""``LLMModel``: turns a RecBole sequential backbone into an LLM-enhanced one (METHOD.md section 3).

A model is the mixin plus the backbone (``model/sequential_recommender/``)::

    class LLMSASRec(LLMModel, SASRec):
        backbone_name = "SASRec"

After the backbone is built, its ``item_embedding`` (an ``nn.Embedding``) is replaced by a
``ProjectedItemTable`` holding ``E`` (the outer level's parameter) and the projector ``P``. The
backbone's ``forward``/``calculate_loss``/``predict``/``full_sort_predict`` then run on
``V = P(E)`` unchanged. ``target_losses`` gives the per-target losses the per-group trainer needs;
backbones that do not predict the last item (BERT4Rec) override it.

Nothing here is about fairness: the model builds the run's fairness method (``fair_method``,
``recbole_bifair.methods``) and asks it for training-only logit shifts and ranking-time score
shifts (``logit_shift``, ``ranking_shift``); ``posthoc_beta`` re-ranks any of them
(``methods/posthoc.py``). Both read the training count of every item (``item_train_count``, a
non-persistent buffer counted by ``recbole_bifair.fairness.groups.item_train_counts``, the rule the
item groups use).
"""

import contextlib
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from recbole_bifair.data.sequence import TARGETS, is_sequence_batch
from recbole_bifair.embedding import ensure_item_embeddings, load_item_embeddings
from recbole_bifair.errors import ConfigError
from recbole_bifair.fairness.groups import item_train_counts
from recbole_bifair.methods.catalog import build_method
from recbole_bifair.methods.posthoc import PostHoc
from recbole_bifair.model.all_positions import scored_positions
from recbole_bifair.model.full_softmax import full_softmax_ce
from recbole_bifair.model.padding import resolve_trim
from recbole_bifair.model.llm_item_table import (
    ProjectedItemTable, build_projector, condition_llm_table, erase_popularity, pca_rows, rescale_output,
)

SCORES = ("dot", "cosine")
ID_INITS = ("normal", "pca")
SOFTMAXES = ("full", "sampled")


def positive_int(config, key):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")
    return value


@dataclass
class TargetLosses:
    """Per-target losses of a batch and what the balancer differentiates them against."""

    losses: torch.Tensor  # [N] one loss per predicted target
    targets: torch.Tensor  # [N] internal item id of each target
    # (S [N, d], V [rows, d]): the scoring layer's inputs, shared by all groups' losses, with
    # logits = S V[:n_items]^T (+ bias). Dot scoring: the target representations and the item
    # table; cosine: both rows L2-normalised, S also divided by the temperature.
    shared: tuple
    # [N, n_items] the logits the CE is taken of (with the method's training shift), else None
    logits: Optional[torch.Tensor] = None


def no_id_view_error(half):
    """``id_count_half`` set beside ``id_fusion: none``: the error naming both keys (raised when the
    config is built, config.resolve_id_count_half, and by ``id_gate`` for a direct caller)."""
    return ConfigError(f"id_count_half ({half}) weights the ID view, and id_fusion: none has none: "
                       f"set id_fusion: sum (the default) or id_count_half: 0")


def id_gate(train_counts, half, id_fusion):
    """Each item's weight of its ID view, ``n / (n + half)`` for ``n`` training interactions
    (``id_count_half``: an item with ``half`` interactions gets half its ID vector, so items with
    few lean on the text view); None when ``half`` is 0 (every item's ID view whole)."""
    if half < 0:
        raise ConfigError(f"id_count_half must be >= 0 (0 = off), got {half}")
    if half == 0:
        return None
    if id_fusion == "none":
        raise no_id_view_error(half)
    n = train_counts.double()
    return (n / (n + half)).float()


def finite_number(config, key):
    """``config[key]`` as a float (``~``: 0.0, off); ConfigError naming the key otherwise."""
    value = config[key]
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number (0 = off), got {value!r}: write e.g. {key}: 0.5")
    return float(value)


class LLMModel:
    """Mixin for ``class LLM<Backbone>(LLMModel, <Backbone>)``."""

    backbone_name = None
    trainer_name = "FairTrainer"
    #: whether ``score: cosine`` applies (BERT4Rec's scores carry an output bias)
    cosine_scoring = True
    #: trainable rows appended to the item table after the items (BERT4Rec's mask token)
    extra_item_rows = 0

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if config["loss_type"] not in ("CE", "BPR"):
            raise ConfigError(f"loss_type '{config['loss_type']}' is not supported; use CE or BPR")
        self._read_scoring(config)
        out_dim = self.item_embedding.embedding_dim
        # The backbone's own init scale: initializer_range (SASRec, BERT4Rec); GRU4Rec has none and
        # initialises its embedding with xavier_normal_, of about the same size, so 0.02.
        init_std = config["initializer_range"] or 0.02
        self.method = build_method(config)
        raw = self._load_llm_table(config, dataset)
        train_counts = torch.as_tensor(item_train_counts(dataset), dtype=torch.long)
        E0 = condition_llm_table(raw, self.llm_emb_transform)
        E0 = erase_popularity(E0, train_counts, self.llm_emb_erase)
        dropout = config["projector_dropout"] or 0.0
        dropout_on = config["projector_dropout_on"] or "hidden"
        projector = self._projector(config, E0, out_dim, dropout, dropout_on)
        id_fusion = config["id_fusion"] or "none"
        id_weight = self._id_view(config, raw, out_dim, init_std) if id_fusion != "none" else None
        self.item_embedding = ProjectedItemTable(
            E0, projector, out_dim, extra_rows=self.extra_item_rows,
            id_fusion=id_fusion, train_E=self.method.refines_table, id_weight=id_weight,
            input_dropout=dropout if dropout_on == "input" else 0.0,
            text_scale_init=finite_number(config, "text_scale_init"),
            id_gate=id_gate(train_counts, finite_number(config, "id_count_half"), id_fusion),
        )
        if self.item_embedding.extra is not None:
            nn.init.normal_(self.item_embedding.extra, std=init_std)
        self.posthoc = PostHoc(finite_number(config, "posthoc_beta"))
        # Training interactions per item. `dataset` is the training split: the plugin's quick start
        # (prepare_run, load_data_and_model) builds the model with `train_data._dataset`, as RecBole's
        # own quick start does (recbole/quick_start/quick_start.py), and the trainer counts the item
        # groups on the same object. Not persistent: recomputed here, so checkpoints written before
        # these baselines existed load unchanged, and it is no parameter, so it is never trained.
        self.register_buffer("item_train_count", train_counts, persistent=False)
        self.group_offset = None  # the outer level's group score offsets, if the method adds them
        self.method.attach(self, dataset)
        # training windows and full ranking without the padding of short histories (model/padding.py)
        self.trim_padding = resolve_trim(config, self)
        self.train_softmax = config["train_softmax"] or "full"
        if self.train_softmax not in SOFTMAXES:
            raise ConfigError(f"train_softmax '{self.train_softmax}' is unknown; use one of {', '.join(SOFTMAXES)}")
        self.train_negatives = positive_int(config, "train_negatives")
        if self.train_softmax == "sampled" and (self.loss_type != "CE" or self.extra_item_rows):
            raise ConfigError(f"train_softmax: sampled replaces the full cross-entropy of SASRec/GRU4Rec backbones; "
                              f"{type(self).__name__} with loss_type {self.loss_type} has none: set train_softmax: full")
        # The backbone's calculate_loss scores with dot products, does not shift logits and, under
        # BPR, reads the target rows through the lookup that input dropout now applies to: those
        # cases use target_losses.
        self._backbone_loss = (self.score == "dot" and self.item_embedding.input_dropout == 0
                               and not self.method.shifts_logits and self.train_softmax == "full")

    def _read_scoring(self, config):
        self.score = config["score"] or "dot"
        if self.score not in SCORES:
            raise ConfigError(f"score '{self.score}' is unknown; use one of {', '.join(SCORES)}")
        if self.score == "cosine" and not self.cosine_scoring:
            raise ConfigError(f"score: cosine is not supported by {type(self).__name__}; use score: dot")
        self.score_temperature = config["score_temperature"]
        if self.score == "cosine" and not (isinstance(self.score_temperature, (int, float))
                                           and self.score_temperature > 0):
            raise ConfigError(f"score_temperature must be a positive number, got {self.score_temperature!r}")

    def _load_llm_table(self, config, dataset):
        """The LLM table as loaded (one row per item id), checked against the dataset."""
        self.llm_emb_file = ensure_item_embeddings(config)
        raw = load_item_embeddings(config, dataset, path=self.llm_emb_file)
        if raw.shape[0] != self.n_items:
            raise ConfigError(
                f"llm_emb_file gives {raw.shape[0]} rows for {self.n_items} items of dataset '{config['dataset']}'"
            )
        self.llm_emb_transform = config["llm_emb_transform"] or "none"
        self.llm_emb_erase = config["llm_emb_erase"] or "none"
        return raw

    def _projector(self, config, E0, out_dim, dropout, dropout_on):
        projector = build_projector(
            E0.shape[1], out_dim,
            n_layers=config["projector_layers"],
            hidden_size=config["projector_hidden_size"],
            activation=config["projector_activation"],
            dropout=dropout,
            dropout_on=dropout_on,
            layernorm=bool(config["projector_layernorm"]),
        )
        # SASRec/BERT4Rec: N(0, initializer_range) weights, zero biases, LayerNorm (1, 0). GRU4Rec's
        # _init_weights touches only embeddings and the GRU: its projector keeps PyTorch's defaults.
        projector.apply(self._init_weights)
        if config["projector_output_std"] is not None:
            rescale_output(projector, E0, config["projector_output_std"])
        return projector

    def _id_view(self, config, raw, out_dim, init_std):
        """The initial ID table of ``id_fusion`` (``id_init``)."""
        id_init = config["id_init"] or "normal"
        if id_init not in ID_INITS:
            raise ConfigError(f"id_init '{id_init}' is unknown; use one of {', '.join(ID_INITS)}")
        if id_init == "normal":
            return torch.randn(self.n_items, out_dim) * init_std
        # PCA of the table as loaded: whitening (llm_emb_transform) would leave it no preferred
        # axes. Scaled as a whole, so the components keep their relative variance.
        id_weight = pca_rows(raw, out_dim)
        return id_weight * (init_std / id_weight[1:].std(unbiased=False).clamp(min=1e-12))

    @property
    def item_table(self) -> ProjectedItemTable:
        return self.item_embedding

    def load_state_dict(self, state_dict, strict=True, assign=False):
        saved = state_dict.get("item_embedding.E")
        if saved is not None and saved.shape != self.item_table.E.shape:
            raise ConfigError(
                f"the checkpoint's LLM item table is {tuple(saved.shape)} but llm_emb_file "
                f"({self.llm_emb_file}) gives {tuple(self.item_table.E.shape)}: load the checkpoint with "
                f"the embedding file (and dataset) it was trained with"
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def inner_parameters(self):
        """Projector and backbone: everything but the outer variables ``E`` and the group offsets
        (METHOD.md: theta)."""
        return [p for n, p in self.named_parameters() if n not in ("item_embedding.E", "group_offset")]

    def scoring_inputs(self, seq_output, V):
        """``(S, V)`` whose product is the logits: as they are (dot), or L2-normalised rows with S
        divided by ``score_temperature`` (cosine, AlphaRec's: the item vector's norm, a popularity
        channel of dot scores, no longer counts). Padding's zero row stays zero."""
        if self.score == "dot":
            # V as a node of its own: gradients w.r.t. the scored table are then those of the
            # scoring layer alone, not also through the input sequence that reads V, as in the
            # trainer's closed-form Gram (its autograd fallback differentiates w.r.t. these tensors)
            return seq_output, V.view_as(V)
        return F.normalize(seq_output, dim=-1) / self.score_temperature, F.normalize(V, dim=-1)

    def logit_shift(self, items, dtype=torch.float32):
        """``[len(items)]`` training-only logit shift of ``items`` (the method's), or None."""
        return self.method.train_logit_shift(self, items, dtype)

    def adjust_logits(self, logits):
        """Full training logits (columns = item ids 0..) plus ``logit_shift``; as they are otherwise."""
        shift = self.logit_shift(torch.arange(logits.shape[-1], device=logits.device), logits.dtype)
        return logits if shift is None else logits + shift

    def ranking_shift(self, dtype=torch.float32):
        """``[n_items]`` ranking-time shift of every item's score, 0 for padding; None when there is
        none: ``posthoc_beta``'s re-ranking plus the method's own shift."""
        shift = self.posthoc.ranking_shift(self.item_train_count, dtype)
        own = self.method.ranking_shift(self, dtype)
        if own is not None:
            shift = own if shift is None else shift + own
        return shift

    def debias_scores(self, scores, items=None):
        """Ranking scores plus ``ranking_shift`` (of ``items``, or of columns 0.. for full sort)."""
        shift = self.ranking_shift(scores.dtype)
        if shift is None:
            return scores
        return scores + (shift[items] if items is not None else shift[: scores.shape[-1]])

    def calculate_loss(self, interaction):
        if is_sequence_batch(interaction) or not self._backbone_loss:
            return self.target_losses(interaction).losses.mean()
        with self.item_embedding.scope():
            return super().calculate_loss(interaction)

    def target_losses(self, interaction, softmax=None, negatives=None, rows=None, E_rows=None,
                      keep_logits=None) -> TargetLosses:
        """Loss of every predicted target (the backbone's CE over all items, or BPR): one per
        prefix sample, or one per scored position of a window batch (sequence-level training).
        ``softmax`` (default ``train_softmax``): ``sampled`` takes the CE over the target and the
        item ids ``negatives`` (default: ``train_negatives`` drawn uniformly), see ``sampled_losses``.
        ``keep_logits`` (default: when the method has BiFair's group loop, which differentiates
        against them) returns the full CE's logits; otherwise that CE is fused with its matmul."""
        if keep_logits is None:
            keep_logits = self.method.group_loop
        if (softmax or self.train_softmax) == "sampled":
            return self.sampled_losses(interaction, negatives, rows, E_rows)
        with self.item_embedding.scope() as V:
            if is_sequence_batch(interaction):
                seq_output, targets = scored_positions(self, interaction, self.trim_padding)
            else:
                targets = interaction[self.POS_ITEM_ID]
                seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            S, V = self.scoring_inputs(seq_output, V)
            logits = None
            if self.loss_type == "CE" and not keep_logits:
                # nothing differentiates against the logits: the CE fused with its matmul
                shift = self.logit_shift(torch.arange(self.n_items, device=S.device), S.dtype)
                losses = full_softmax_ce(S, V[: self.n_items], targets, shift)
            elif self.loss_type == "CE":
                logits = self.adjust_logits(S @ V[: self.n_items].T)
                losses = F.cross_entropy(logits, targets, reduction="none")
            else:
                neg = interaction[self.NEG_ITEM_ID]
                diff = (S * (V[targets] - V[neg])).sum(-1)
                losses = -F.logsigmoid(diff)
        return TargetLosses(losses, targets, (S, V), logits)

    def sample_negatives(self, n, device=None):
        """``n`` item ids drawn uniformly, with replacement, from the real items ``1 .. n_items - 1``."""
        return torch.randint(1, self.n_items, (n,), device=device)

    def batch_rows(self, interaction, negatives):
        """Sorted unique item ids a sampled step touches: the input sequences, the targets, the
        negatives (and padding)."""
        targets = interaction[TARGETS] if is_sequence_batch(interaction) else interaction[self.POS_ITEM_ID]
        seq = interaction[self.ITEM_SEQ]
        return torch.unique(torch.cat([seq.flatten(), targets.flatten(), negatives.flatten(),
                                       seq.new_zeros(1)]))

    def sampled_losses(self, interaction, negatives=None, rows=None, E_rows=None) -> TargetLosses:
        r"""Sampled-softmax CE (METHOD.md 3b): for a target ``y`` and negatives ``S`` drawn uniformly
        (``q = 1 / (n_items - 1)`` each, ``M = |S|``),

            loss = log(exp(z_y) + sum_{s in S, s != y} exp(z_s - log(M q))) - z_y,

        the importance-sampled estimate of the full softmax's normaliser (Jean et al. 2015); logit
        shifts (logit adjustment, group offsets) apply to ``z`` as in the full CE. Only the rows the
        batch touches are projected (``row_scope``): ``rows`` (sorted unique ids covering the batch
        and the negatives; default: the batch's own) with ``E_rows`` standing in for ``E[rows]``
        (the trainer's sampled outer step differentiates w.r.t. those rows), or the row scope the
        caller has opened. The scoring inputs are ``(S, V_rows)``; there are no full logits, so
        MGDA's Gram takes its autograd path."""
        table_owner = self.item_embedding
        device = interaction[self.ITEM_SEQ].device
        if negatives is None:
            negatives = self.sample_negatives(self.train_negatives, device)
        if table_owner.row_table is not None and rows is None:
            scope = contextlib.nullcontext(table_owner.row_table)
        else:
            scope = table_owner.row_scope(rows if rows is not None else self.batch_rows(interaction, negatives), E_rows)
        with scope as table:
            if is_sequence_batch(interaction):
                seq_output, targets = scored_positions(self, interaction, self.trim_padding)
            else:
                targets = interaction[self.POS_ITEM_ID]
                seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            S, V = self.scoring_inputs(seq_output, table.V)
            positive = (S * V[table.index(targets)]).sum(-1)
            negative = S @ V[table.index(negatives)].T
            shift_pos, shift_neg = self.logit_shift(targets, S.dtype), self.logit_shift(negatives, S.dtype)
            if shift_pos is not None:
                positive, negative = positive + shift_pos, negative + shift_neg
            negative = negative - math.log(len(negatives) / (self.n_items - 1))
            negative = negative.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
            losses = torch.logsumexp(torch.cat([positive.unsqueeze(1), negative], dim=1), dim=1) - positive
        return TargetLosses(losses, targets, (S, V), None)

    def predict(self, interaction):
        return self.debias_scores(self._predict(interaction), interaction[self.ITEM_ID])

    def full_sort_predict(self, interaction):
        return self.debias_scores(self._full_sort_predict(interaction))

    def _predict(self, interaction):
        if self.score == "dot":
            return super().predict(interaction)
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        S, V = self.scoring_inputs(seq_output, self.item_embedding.weight)
        return (S * V[interaction[self.ITEM_ID]]).sum(-1)

    def _full_sort_predict(self, interaction):
        if self.score == "dot":
            return super().full_sort_predict(interaction)
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        S, V = self.scoring_inputs(seq_output, self.item_embedding.weight)
        return S @ V[: self.n_items].T


class LossCall(nn.Module):
    """Module whose ``forward`` is the model's ``target_losses``: ``torch.func.functional_call``
    calls ``forward``, and this lets it evaluate the losses at other parameter values."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, interaction, **kwargs):
        return self.model.target_losses(interaction, **kwargs)
