"""The meta split: training samples the inner level never sees, for the outer loss (METHOD.md 4)."""

import copy

import torch
from recbole.data.dataloader import TrainDataLoader

from recbole_bifair.data.prepare import seed_sampler
from recbole_bifair.data.sequence import SequenceTrainDataLoader
from recbole_bifair.errors import ConfigError
from recbole_bifair.trainer.distributed import set_sampler_epoch


def split_meta(config, train_data):
    """(inner loader, meta loader) for ``meta_split``.

    ``holdout``: a fixed random share ``meta_fraction`` of the training samples (drawn with the
    run's seed) goes to the meta loader and is removed from the inner one; under sequence-level
    training the share is of windows, and ``meta_batch_size`` counts targets. ``next_batch``: the
    meta batches are drawn from the training loader itself.
    """
    mode = config["meta_split"]
    windows = isinstance(train_data, SequenceTrainDataLoader)
    if mode == "next_batch":
        if windows:
            return train_data, train_data.subset(torch.arange(train_data.n_windows), config["meta_batch_size"])
        return train_data, _loader(config, train_data._dataset, train_data._sampler, config["meta_batch_size"])
    if mode != "holdout":
        raise ConfigError(f"meta_split '{mode}' is unknown; use holdout or next_batch")
    fraction = config["meta_fraction"]
    dataset = train_data._dataset
    n = train_data.n_windows if windows else len(dataset)
    n_meta = int(round(n * fraction)) if fraction is not None else 0
    if not 0 < fraction < 1 or n_meta < 1 or n - n_meta < 1:
        raise ConfigError(
            f"meta_fraction {fraction} leaves {n - n_meta} inner and {n_meta} meta samples out of {n} "
            f"training samples: choose 0 < meta_fraction < 1 so that both get at least one"
        )
    generator = torch.Generator().manual_seed(config["seed"])
    order = torch.randperm(n, generator=generator)
    meta_index, inner_index = order[:n_meta].sort().values, order[n_meta:].sort().values
    if windows:  # sequence-level training holds out whole windows; batch sizes count targets
        return (train_data.subset(inner_index, config["train_batch_size"]),
                train_data.subset(meta_index, config["meta_batch_size"]))
    inner = _loader(config, dataset.copy(dataset.inter_feat[inner_index]), train_data._sampler, config["train_batch_size"])
    meta = _loader(config, dataset.copy(dataset.inter_feat[meta_index]), train_data._sampler, config["meta_batch_size"])
    return inner, meta


def _loader(config, dataset, sampler, batch_size):
    # RecBole's loaders read their batch size from config["train_batch_size"] when built.
    loader_config = copy.copy(config)
    loader_config.final_config_dict = dict(config.final_config_dict, train_batch_size=batch_size)
    return seed_sampler(TrainDataLoader(loader_config, dataset, sampler, shuffle=True), config["seed"])


class Cycle:
    """Endless iteration over a loader, one epoch after another (the meta batches).

    A sharded loader (several processes) reshuffles only when told its epoch: pass ``p`` of
    training epoch ``e`` is numbered ``e * 2**20 + p``, so a run resumed at an epoch boundary
    draws the same meta batches."""

    def __init__(self, loader):
        self.loader = loader
        self._it = None
        self._epoch = self._passes = 0

    def restart(self, epoch=0):
        self._it = None
        self._epoch, self._passes = epoch, 0

    def _new_pass(self):
        set_sampler_epoch(self.loader, self._epoch * 2**20 + self._passes)
        self._passes += 1
        return iter(self.loader)

    def next(self):
        if self._it is None:
            self._it = self._new_pass()
        try:
            return next(self._it)
        except StopIteration:
            self._it = self._new_pass()
            return next(self._it)
