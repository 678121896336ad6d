"""Causal backbones run without the padding of short histories (``trim_padding``).

RecBole right-pads every history to ``MAX_ITEM_LIST_LENGTH`` and runs the backbone over every
position, padding included. On a sparse dataset that is most of the work: Amazon Beauty's users
have about 7 items in a history of 50 positions, and profiling a validation pass of LLM-SASRec
there (1 thread) put 37 s of its 44 s in the transformer's forward over the padded batch. A causal
backbone's output at position ``p`` depends on positions ``<= p`` only (SASRec's causal attention
mask, GRU4Rec's recurrence), and position embeddings count from the start, so cutting trailing
columns that are padding for every row of a batch leaves the outputs at the real positions
unchanged. Both functions sort the rows by history length, cut each chunk of rows to its longest
history and run the model's own code on it:

- ``trimmed_full_sort``: full-ranking scores (``full_sort_predict``) of an evaluation batch;
- ``trimmed_all_positions``: the all-position output of a batch of training windows
  (sequence-level training), the rows and positions in the batch's order.

Results equal the padded batch's up to float rounding (tests/test_padding.py). In training,
dropout draws its masks per chunk, so a run is not the same random draw as a padded one.
Bidirectional backbones (BERT4Rec) are left as they are.
"""

import torch
from recbole.model.sequential_recommender.gru4rec import GRU4Rec
from recbole.model.sequential_recommender.sasrec import SASRec

#: Rows per chunk of an evaluation batch (thousands of users) and of a training batch (windows
#: carrying about train_batch_size targets: hundreds of short windows on a sparse dataset).
EVAL_CHUNK = 512
TRAIN_CHUNK = 64


def trims_padding(model):
    """Whether ``model``'s outputs at real positions are unchanged by cutting trailing padding:
    causal backbones (SASRec, GRU4Rec and the plugin's wrappers of them)."""
    return isinstance(model, (SASRec, GRU4Rec))


def resolve_trim(config, model):
    """``trim_padding`` of ``config`` (unset in configs older than the key: its default, on) for
    ``model``: off for backbones it does not apply to."""
    trim = config["trim_padding"]
    return (True if trim is None else bool(trim)) and trims_padding(model)


def _chunks(lengths, chunk):
    """``(rows, width)`` per chunk of ``chunk`` rows of the rows sorted by ``lengths``."""
    order = torch.argsort(lengths, stable=True)
    for start in range(0, len(order), chunk):
        rows = order[start:start + chunk]
        yield rows, max(int(lengths[rows].max()), 1)


def trimmed_full_sort(model, interaction, chunk=EVAL_CHUNK):
    """``[B, n_items]`` ``model.full_sort_predict(interaction)``, computed chunk by chunk over the
    rows sorted by history length, each chunk cut to its longest history."""
    seq_field, len_field = model.ITEM_SEQ, model.ITEM_SEQ_LEN
    lengths = interaction[len_field]
    if len(lengths) == 0:
        return model.full_sort_predict(interaction)
    scores = None
    for rows, width in _chunks(lengths, chunk):
        part = interaction[rows]
        part[seq_field] = part[seq_field][:, :width]
        part_scores = model.full_sort_predict(part).view(len(rows), -1)
        if scores is None:
            scores = part_scores.new_empty((len(lengths), part_scores.shape[1]))
        scores[rows] = part_scores
    return scores


def trimmed_all_positions(all_positions, item_seq, keep, chunk=None):
    """``[keep.sum(), d]``: ``all_positions(item_seq)[keep]`` (``all_positions``: the backbone's
    ``[B, L] -> [B, L, d]`` forward), computed chunk by chunk (``chunk`` rows, default
    ``TRAIN_CHUNK``) over the rows sorted by length, each chunk cut to its longest row. ``keep`` marks real positions (right padding: a row's kept
    positions come before its padding); rows come out in batch order, positions in time order."""
    lengths = (item_seq > 0).sum(1)
    width_all = item_seq.shape[1]
    chunks = list(_chunks(lengths, chunk or TRAIN_CHUNK))
    if all(width == width_all for _, width in chunks):
        return all_positions(item_seq)[keep]  # nothing to cut
    flat_index, outputs = [], []
    positions = torch.arange(width_all, device=item_seq.device)
    for rows, width in chunks:
        part_keep = keep[rows, :width]
        outputs.append(all_positions(item_seq[rows, :width])[part_keep])
        flat_index.append((rows.unsqueeze(1) * width_all + positions[:width])[part_keep])
    # back to the batch's order: rows in order, positions in time order within a row
    flat_index = torch.cat(flat_index)
    if len(flat_index) != int(keep.sum()):
        raise ValueError("trimmed_all_positions: a kept position lies in a row's padding (rows must be right-padded)")
    return torch.cat(outputs)[torch.argsort(flat_index)]
