"""The representation at every position of a causal backbone, and the all-position loss.

RecBole's ``SASRec.forward`` and ``GRU4Rec.forward`` compute every position and then keep only
the last real one (``gather_indexes(output, item_seq_len - 1)``). Sequence-level training
(``recbole_bifair.data.sequence``) needs all of them, so ``all_position_output`` repeats those
forwards up to the gather (SASRec's in the layout of ``sasrec_norm``/``item_emb_scale``,
``model/sasrec_layout.py``); ``tests/test_sequence_training.py`` checks that its position
``len - 1`` equals RecBole's ``forward``, which keeps the copy from drifting.
"""

from recbole.model.sequential_recommender.gru4rec import GRU4Rec
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_bifair.data.sequence import TARGETS
from recbole_bifair.model.full_softmax import full_softmax_ce
from recbole_bifair.model.padding import trimmed_all_positions
from recbole_bifair.model.sasrec_layout import sasrec_hidden


def _gru4rec_all(model, item_seq):
    emb = model.emb_dropout(model.item_embedding(item_seq))
    output, _ = model.gru_layers(emb)
    return model.dense(output)


def all_position_output(model, item_seq):
    """``[B, L, d]``: position ``p`` of row ``b`` represents the prefix ``item_seq[b, :p + 1]``."""
    if isinstance(model, SASRec):
        return sasrec_hidden(model, item_seq)
    if isinstance(model, GRU4Rec):
        return _gru4rec_all(model, item_seq)
    raise TypeError(f"{type(model).__name__} has no all-position forward (only SASRec and GRU4Rec backbones)")


def scored_positions(model, interaction, trim=False):
    """``(S [N, d], targets [N])``: the representation and next item of every scored position of a
    window batch, windows in batch order and positions in time order within a window. ``trim``:
    without running the padding of short windows (``trim_padding``, model/padding.py)."""
    targets = interaction[TARGETS]
    keep = targets > 0
    item_seq = interaction[model.ITEM_SEQ]
    if trim:
        return trimmed_all_positions(lambda seq: all_position_output(model, seq), item_seq, keep), targets[keep]
    return all_position_output(model, item_seq)[keep], targets[keep]


def sequence_loss(model, interaction, trim=False):
    """Mean next-item CE over all scored positions (the loss of a stock RecBole backbone, whose
    scores are ``S @ item_embedding.weight^T`` as in its ``calculate_loss``; fused with that
    matmul, model/full_softmax.py); a plugin model
    (``target_losses``) follows its own ``trim_padding``."""
    if hasattr(model, "target_losses"):
        return model.target_losses(interaction).losses.mean()
    S, targets = scored_positions(model, interaction, trim)
    return full_softmax_ce(S, model.item_embedding.weight, targets).mean()
