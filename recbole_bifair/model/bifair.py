"""``BiFairModel``: turns a RecBole sequential backbone into an LLM-enhanced one (METHOD.md section 3).

A wrapper is the mixin plus the backbone::

    class BiFairSASRec(BiFairModel, SASRec):
        backbone_name = "SASRec"

After the backbone is built, its ``item_embedding`` (an ``nn.Embedding``) is replaced by a
``ProjectedItemTable`` holding ``E`` (the outer level's parameter) and the projector ``P``. The
backbone's ``forward``/``calculate_loss``/``predict``/``full_sort_predict`` then run on
``V = P(E)`` unchanged. ``target_losses`` gives the per-target losses the bi-level trainer needs;
backbones that do not predict the last item (BERT4Rec) override it.
"""

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from recbole_bifair.data.sequence import is_sequence_batch
from recbole_bifair.errors import ConfigError
from recbole_bifair.model.all_positions import scored_positions
from recbole_bifair.model.llm_item_table import ProjectedItemTable, build_projector


@dataclass
class TargetLosses:
    """Per-target losses of a batch and what the balancer differentiates them against."""

    losses: torch.Tensor  # [N] one loss per predicted target
    targets: torch.Tensor  # [N] internal item id of each target
    shared: tuple  # (S [N, d] target representations, V item table): shared by all groups' losses
    logits: Optional[torch.Tensor] = None  # [N, n_items] scores S V^T (+ bias) under CE, else None


class BiFairModel:
    """Mixin for ``class BiFair<Backbone>(BiFairModel, <Backbone>)``."""

    backbone_name = None
    trainer_name = "BiFairTrainer"
    #: trainable rows appended to the item table after the items (BERT4Rec's mask token)
    extra_item_rows = 0

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        from recbole_bifair.embedding import ensure_item_embeddings, load_item_embeddings

        if config["loss_type"] not in ("CE", "BPR"):
            raise ConfigError(f"loss_type '{config['loss_type']}' is not supported; use CE or BPR")
        out_dim = self.item_embedding.embedding_dim
        self.llm_emb_file = ensure_item_embeddings(config)
        E0 = load_item_embeddings(config, dataset, path=self.llm_emb_file)
        if E0.shape[0] != self.n_items:
            raise ConfigError(
                f"llm_emb_file gives {E0.shape[0]} rows for {self.n_items} items of dataset '{config['dataset']}'"
            )
        projector = build_projector(
            E0.shape[1], out_dim,
            n_layers=config["projector_layers"],
            hidden_size=config["projector_hidden_size"],
            activation=config["projector_activation"],
            dropout=config["projector_dropout"] or 0.0,
        )
        self.item_embedding = ProjectedItemTable(
            E0, projector, out_dim, extra_rows=self.extra_item_rows,
            id_fusion=config["id_fusion"] or "none", train_E=bool(config["bifair"]),
        )
        self.item_embedding.projector.apply(self._init_weights)
        if self.item_embedding.extra is not None:
            nn.init.normal_(self.item_embedding.extra, std=config["initializer_range"] or 0.02)

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
        """Projector and backbone: everything but ``E`` (METHOD.md: theta)."""
        return [p for n, p in self.named_parameters() if n != "item_embedding.E"]

    def calculate_loss(self, interaction):
        if is_sequence_batch(interaction):
            return self.target_losses(interaction).losses.mean()
        with self.item_embedding.scope():
            return super().calculate_loss(interaction)

    def target_losses(self, interaction) -> TargetLosses:
        """Loss of every predicted target (the backbone's CE over all items, or BPR): one per
        prefix sample, or one per scored position of a window batch (sequence-level training)."""
        with self.item_embedding.scope() as V:
            if is_sequence_batch(interaction):
                seq_output, targets = scored_positions(self, interaction)
            else:
                targets = interaction[self.POS_ITEM_ID]
                seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            logits = None
            if self.loss_type == "CE":
                logits = seq_output @ V[: self.n_items].T
                losses = F.cross_entropy(logits, targets, reduction="none")
            else:
                neg = interaction[self.NEG_ITEM_ID]
                diff = (seq_output * (V[targets] - V[neg])).sum(-1)
                losses = -F.logsigmoid(diff)
        return TargetLosses(losses, targets, (seq_output, V), logits)


class LossCall(nn.Module):
    """Module whose ``forward`` is the model's ``target_losses``: ``torch.func.functional_call``
    calls ``forward``, and this lets it evaluate the losses at other parameter values."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, interaction):
        return self.model.target_losses(interaction)
