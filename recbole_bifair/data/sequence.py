"""Sequence-level (all-position) training data: each user's history once, a loss at every position.

RecBole trains sequential models on *prefix samples*: its data augmentation turns every training
interaction into its own sample (the up to ``MAX_ITEM_LIST_LENGTH`` items before it, and the item
as the target), so a user with 150 interactions goes through the backbone 150 times. A causal
backbone (SASRec's masked self-attention, GRU4Rec's recurrence) computes, in one pass over a
sequence, the representation of every prefix: position ``p`` sees items ``0..p`` only. Scoring the
next item at every position therefore gives the same (history, next item) pairs at a fraction of
the cost; this is how SASRec, LLM-ESR and most sequential-recommendation code train.

Windows. A user's training history ``h_0 .. h_{n-1}`` has targets ``h_1 .. h_{n-1}``. Histories
longer than the window ``L = MAX_ITEM_LIST_LENGTH`` are cut into windows of ``L`` inputs, laid
from the end of the history backwards with stride ``S`` (``seq_window_stride``, default ``L``):

- the last window holds the last ``L`` inputs and scores its last ``S`` positions; each earlier
  window ends ``S`` targets before the next one and also scores its last ``S`` positions, until
- the first window, which starts at ``h_0``, holds ``h_0 .. h_{L-1}`` (or the whole history when
  it is shorter than ``L + 1``) and scores every target not scored yet.

So every training target is scored exactly once. Targets ``h_t`` with ``t <= L`` see exactly the
context their prefix sample sees (``h_0 .. h_{t-1}`` at the same positions); later targets see
between ``L - S + 1`` and ``L`` items, where a prefix sample sees ``L``. Laying the windows from
the end gives the most recent interactions, those nearest to the validation and test targets, a
full window of context. ``S = L`` would halve the cost again but leave some targets one item of
context; ``S = 1`` is prefix training's context at prefix training's cost.

The default ``S = L`` was chosen on validation (``benchmarks/seq_accuracy.py``: SASRec on
ml-100k, ``L`` = 20, 3 seeds, validation NDCG@10 0.0717 for ``S = L``, 0.0715 for ``L / 2``,
0.0672 for ``L / 4``; test 0.0583, 0.0583, 0.0562): more context per target did not help, and
``S = L`` computes each position once. Targets after the first window then see 1 to ``L`` items.

Last window only (``seq_windows: last``; default ``all``). Each user's last ``L + 1`` training
items once, every position scored (the first one with one item of context); older interactions
are not trained on. This is how the published SASRec+ recipe trains (Klenitskiy & Vasilev,
RecSys 2023: the last 200 items of each user, 128 users per batch); candidate R3 of
docs/METHOD.md 3c. Histories of at most ``L + 1`` items give the same window under both.

Batches. ``train_batch_size`` keeps its meaning, the number of targets per optimiser step: a batch
holds ``round(train_batch_size / mean targets per window)`` windows, so an epoch has about as many
steps as under prefix training and learning rates carry over.
"""

from logging import getLogger

import numpy as np
import torch
from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
from recbole.data.interaction import Interaction

from recbole_bifair.data.prepare import seed_sampler
from recbole_bifair.errors import ConfigError

#: Interaction field of a window batch: the next item at every position, 0 where nothing is scored.
TARGETS = "seq_targets"
TRAIN_MODES = ("sequence", "prefix")
SEQ_WINDOWS = ("all", "last")


def is_sequence_batch(interaction):
    return TARGETS in interaction.interaction


def supports_sequence_training(model_class):
    """Causal backbones whose every position is a prefix representation."""
    from recbole.model.sequential_recommender.gru4rec import GRU4Rec
    from recbole.model.sequential_recommender.sasrec import SASRec

    return issubclass(model_class, (SASRec, GRU4Rec))


def resolve_train_mode(config, model_class):
    """``train_mode`` of the run: ``sequence`` or ``prefix``.

    Unset (``~``), it is ``sequence`` for the causal backbones with CE loss and ``prefix``
    (RecBole's own training) for every other model; asked for explicitly, ``sequence`` on a model
    that cannot do it is an error rather than a silent change of objective.
    """
    from recbole.utils import ModelType

    mode = config["train_mode"]
    sequential = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
    able = sequential and supports_sequence_training(model_class)
    if mode is None:
        return "sequence" if able and config["loss_type"] == "CE" else "prefix"
    if mode not in TRAIN_MODES:
        raise ConfigError(f"train_mode '{mode}' is unknown; use sequence, prefix or ~ (automatic)")
    if mode == "sequence":
        if not able:
            raise ConfigError(
                f"train_mode: sequence needs a causal sequential backbone (SASRec, GRU4Rec or their BiFair "
                f"wrappers); {config['model']} trains on prefix samples: set train_mode: prefix (or leave it ~)"
            )
        if config["loss_type"] != "CE":
            raise ConfigError(
                f"train_mode: sequence scores every position with the CE loss; loss_type is "
                f"{config['loss_type']}: set loss_type: CE, or train_mode: prefix for {config['loss_type']}"
            )
    return mode


def window_stride(config):
    L = config["MAX_ITEM_LIST_LENGTH"]
    stride = config["seq_window_stride"]
    if stride is None:
        return L
    if not isinstance(stride, int) or not 1 <= stride <= L:
        raise ConfigError(f"seq_window_stride must be an integer in [1, MAX_ITEM_LIST_LENGTH={L}], got {stride!r}")
    return stride


def seq_windows(config):
    value = config["seq_windows"] or "all"
    if value not in SEQ_WINDOWS:
        raise ConfigError(f"seq_windows '{value}' is unknown; use all (every target once) or last (each user's "
                          f"last MAX_ITEM_LIST_LENGTH + 1 items)")
    return value


def build_windows(sequences, max_len, stride, last_only=False):
    """Windows of the module docstring for a list of histories (1-D int arrays, time order);
    ``last_only``: each history's last window alone, every position scored.

    Returns ``inputs [W, L]`` (right-padded with 0, as RecBole pads ``item_id_list``),
    ``targets [W, L]`` (the next item at each scored position, else 0), ``lengths [W]`` and
    ``owner [W]`` (the index of the history each window comes from).
    """
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride must be in [1, {max_len}], got {stride}")
    inputs, targets, lengths, owner = [], [], [], []
    for k, h in enumerate(sequences):
        end = len(h) - 1  # index of the last target
        while end >= 1:
            start = max(0, end - max_len)
            inp = np.zeros(max_len, dtype=np.int64)
            tgt = np.zeros(max_len, dtype=np.int64)
            n = end - start
            inp[:n] = h[start:end]
            if last_only:
                tgt[:n] = h[start + 1:end + 1]
                nxt = 0
            elif start == 0:
                tgt[:n] = h[1:end + 1]  # the first window scores everything left
                nxt = 0
            else:
                nxt = max(end - stride, max_len)
                scored = end - nxt  # targets nxt+1 .. end, the last positions of the window
                tgt[n - scored:n] = h[nxt + 1:end + 1]
            inputs.append(inp)
            targets.append(tgt)
            lengths.append(n)
            owner.append(k)
            end = nxt
    if not inputs:
        return (np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64),
                np.zeros(0, np.int64), np.zeros(0, np.int64))
    return np.stack(inputs), np.stack(targets), np.asarray(lengths), np.asarray(owner)


def training_histories(dataset):
    """Each user's training history from RecBole's augmented training split.

    The split holds one row per target, in time order within a user (RecBole sorts by user and
    time before augmenting and splits each user's rows in order): the history is the first row's
    one-item input followed by every row's target. Returns ``(user ids, [arrays])``.
    """
    uid = dataset.inter_feat[dataset.uid_field].numpy()
    iid = dataset.inter_feat[dataset.iid_field].numpy()
    seq = dataset.inter_feat[dataset.item_id_list_field].numpy()
    seq_len = dataset.inter_feat[dataset.item_list_length_field].numpy()
    if len(uid) == 0:
        return np.zeros(0, np.int64), []
    starts = np.flatnonzero(np.r_[True, uid[1:] != uid[:-1]])
    if len(np.unique(uid[starts])) != len(starts):
        raise ValueError("the training split does not hold each user's rows together")
    # Consistency with time order: a row's input ends with the previous row's target.
    same_user = np.r_[False, uid[1:] == uid[:-1]]
    last_input = seq[np.arange(len(seq)), np.maximum(seq_len - 1, 0)]
    if not np.array_equal(last_input[1:][same_user[1:]], iid[:-1][same_user[1:]]) or (seq_len[starts] != 1).any():
        raise ValueError("the training split's rows are not the consecutive prefixes of each user's history")
    bounds = np.r_[starts, len(uid)]
    histories = [np.r_[seq[a, 0], iid[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
    return uid[starts], histories


class SequenceTrainDataLoader(AbstractDataLoader):
    """Training loader over the windows of the training histories (one batch: an ``Interaction``
    with the item sequence, its length, the user and ``seq_targets``).

    ``_dataset`` stays RecBole's training split, so whatever reads the training data through the
    loader (item groups, the evaluator's item counts, the model's dataset statistics) sees the
    same data as under prefix training.
    """

    def __init__(self, config, dataset, sampler=None, shuffle=True, batch_targets=None, windows=None):
        self.logger = getLogger()
        self.L = config["MAX_ITEM_LIST_LENGTH"]
        self.stride = window_stride(config)
        self.last_only = seq_windows(config) == "last"
        expected = None  # targets the windows must score (a subset's windows are checked already)
        if windows is None:
            users, histories = training_histories(dataset)
            expected = sum(min(len(h) - 1, self.L) if self.last_only else len(h) - 1 for h in histories)
            inputs, targets, lengths, owner = build_windows(histories, self.L, self.stride, self.last_only)
            windows = {
                dataset.item_id_list_field: torch.from_numpy(inputs),
                dataset.item_list_length_field: torch.from_numpy(lengths),
                TARGETS: torch.from_numpy(targets),
                dataset.uid_field: torch.from_numpy(users[owner]),
            }
        self.windows = windows
        self.n_windows = len(windows[TARGETS])
        self.n_targets = int((windows[TARGETS] > 0).sum())
        self.expected_targets = self.n_targets if expected is None else expected
        if self.n_windows == 0:
            raise ConfigError("the training split has no user with two training interactions: nothing to train on")
        self.batch_targets = batch_targets or config["train_batch_size"]
        self.sample_size = self.n_windows
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        seed_sampler(self, config["seed"])

    def _init_batch_size_and_step(self):
        per_window = self.n_targets / self.n_windows
        self.step = max(1, int(round(self.batch_targets / per_window)))
        self.set_batch_size(self.step)

    def collate_fn(self, index):
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return Interaction({k: v[index] for k, v in self.windows.items()})

    def subset(self, index, batch_targets=None, shuffle=True):
        """A loader over the windows ``index`` (the meta split), ``batch_targets`` per batch."""
        index = torch.as_tensor(index, dtype=torch.long)
        return SequenceTrainDataLoader(
            self.config, self._dataset, self._sampler, shuffle=shuffle,
            batch_targets=batch_targets or self.batch_targets,
            windows={k: v[index] for k, v in self.windows.items()},
        )


def head_targets(interaction, n_targets):
    """The leading part of a batch holding about ``n_targets`` targets (the Hessian-vector
    products' batch): whole windows of a window batch, rows of a prefix batch."""
    if not is_sequence_batch(interaction):
        return interaction[:n_targets]
    cumulative = (interaction[TARGETS] > 0).sum(1).cumsum(0)
    n_windows = int(torch.searchsorted(cumulative, torch.tensor(n_targets, device=cumulative.device)).item()) + 1
    return interaction[: min(n_windows, len(cumulative))]


def sequence_training_data(config, train_data, model_class):
    """The run's training loader: RecBole's prefix samples, or the windows of this module."""
    mode = resolve_train_mode(config, model_class)
    if mode == "prefix":
        return train_data
    try:
        loader = SequenceTrainDataLoader(config, train_data._dataset, train_data._sampler, shuffle=True)
    except (ValueError, KeyError) as err:
        # e.g. benchmark_filename splits, whose training rows are not RecBole's own augmentation
        raise ConfigError(
            f"train_mode: sequence rebuilds each user's history from RecBole's training split, and this "
            f"split does not allow it ({err}): set train_mode: prefix"
        ) from None
    layout = "each user's last window" if loader.last_only else f"stride {loader.stride}"
    getLogger().info(
        f"train_mode sequence: {loader.n_targets} training targets ({len(train_data._dataset)} prefix samples) "
        f"in {loader.n_windows} windows of {loader.L} ({layout}), {loader.step} windows per batch"
    )
    if loader.n_targets != loader.expected_targets:
        raise RuntimeError(
            f"windows score {loader.n_targets} targets where {loader.expected_targets} were expected "
            f"({len(train_data._dataset)} training samples)"
        )
    return loader
