"""Full-ranking evaluation without the padding of short histories (``eval_trim_padding``).

RecBole right-pads every history to ``MAX_ITEM_LIST_LENGTH`` and runs the backbone over every
position of it, then keeps the output at the last real one. On a sparse dataset most of that is
padding: Amazon Beauty's users have about 9 interactions against a length of 50, and profiling a
validation pass of LLM-SASRec there (1 thread) put 37 s of its 44 s in the transformer's forward
over the padded batch. A causal backbone's output at position ``p`` depends on positions ``<= p``
only (SASRec's causal attention mask, GRU4Rec's recurrence), with absolute position embeddings
counted from the start, so cutting the trailing columns that are padding for every row leaves the
kept outputs unchanged. ``trimmed_full_sort`` sorts a batch by history length, cuts each chunk of
``CHUNK`` rows to its longest history and scores it with the model's own ``full_sort_predict``;
the scores equal the padded batch's up to float rounding (tested against it, metrics included).
Bidirectional backbones (BERT4Rec) are left as they are.
"""

import torch
from recbole.model.sequential_recommender.gru4rec import GRU4Rec
from recbole.model.sequential_recommender.sasrec import SASRec

#: Rows per chunk: large enough that a chunk is one efficient batch, small enough that the
#: lengths inside a sorted chunk are close.
CHUNK = 512


def trims_padding(model):
    """Whether ``model``'s last-position output is unchanged by cutting trailing padding: causal
    backbones (SASRec, GRU4Rec and the plugin's wrappers of them)."""
    return isinstance(model, (SASRec, GRU4Rec))


def trimmed_full_sort(model, interaction, chunk=CHUNK):
    """``[B, n_items]`` ``model.full_sort_predict(interaction)``, computed chunk by chunk over the
    rows sorted by history length, each chunk cut to its longest history."""
    seq_field, len_field = model.ITEM_SEQ, model.ITEM_SEQ_LEN
    lengths = interaction[len_field]
    order = torch.argsort(lengths, stable=True)
    if len(order) == 0:
        return model.full_sort_predict(interaction)
    scores = None
    for start in range(0, len(order), chunk):
        rows = order[start:start + chunk]
        part = interaction[rows]
        width = max(int(lengths[rows].max()), 1)
        part[seq_field] = part[seq_field][:, :width]
        part_scores = model.full_sort_predict(part).view(len(rows), -1)
        if scores is None:
            scores = part_scores.new_empty((len(order), part_scores.shape[1]))
        scores[rows] = part_scores
    return scores
