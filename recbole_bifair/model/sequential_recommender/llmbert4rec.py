"""LLMBERT4Rec: BERT4Rec on LLM item representations (the item table is ``P(E)``); no fairness method of its own."""

import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.bert4rec import BERT4Rec

from recbole_bifair.model.llm import LLMModel, TargetLosses


class LLMBERT4Rec(LLMModel, BERT4Rec):
    r"""BERT4Rec (Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
    Representations from Transformer", CIKM 2019) whose item table is ``P(E)`` plus a trainable
    mask-token row."""

    backbone_name = "BERT4Rec"
    extra_item_rows = 1  # BERT4Rec's mask token, id n_items
    # BERT4Rec adds a per-item output bias to its logits (a popularity channel cosine scoring is
    # meant to remove) and scores through its own mask-token predict paths: cosine is not offered
    cosine_scoring = False

    def target_losses(self, interaction):
        """One loss per masked position (BERT4Rec's cloze objective), padding positions dropped."""
        masked_item_seq = interaction[self.MASK_ITEM_SEQ]
        pos_items = interaction[self.POS_ITEMS]
        masked_index = interaction[self.MASK_INDEX]
        with self.item_embedding.scope() as V:
            seq_output = self.forward(masked_item_seq)
            index_map = self.multi_hot_embed(masked_index, masked_item_seq.size(-1))
            index_map = index_map.view(masked_index.size(0), masked_index.size(1), -1)
            masked_output = torch.bmm(index_map, seq_output)  # [B mask_len H]
            keep = (masked_index > 0).view(-1)
            out = masked_output.view(-1, masked_output.size(-1))[keep]
            targets = pos_items.view(-1)[keep]
            out, V = self.scoring_inputs(out, V)
            logits = None
            if self.loss_type == "CE":
                logits = self.adjust_logits(out @ V[: self.n_items].T + self.output_bias)
                losses = F.cross_entropy(logits, targets, reduction="none")
            else:
                neg = interaction[self.NEG_ITEMS].view(-1)[keep]
                diff = (out * (V[targets] - V[neg])).sum(-1) + self.output_bias[targets] - self.output_bias[neg]
                losses = -torch.log(1e-14 + torch.sigmoid(diff))
        return TargetLosses(losses, targets, (out, V), logits)
