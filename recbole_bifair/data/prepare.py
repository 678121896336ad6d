"""The run's data loaders: RecBole's ``data_preparation``, ready for one or several processes.

Under several processes (trainer/distributed.py says what runs where) the training loader is
sharded as RecBole's ``AbstractDataLoader`` shards it, a ``DistributedSampler`` per rank, and the
evaluation loaders are not: every rank evaluates every user, so that metrics over the whole
ranking (coverage, Gini, the per-group report) are exact and the early-stopping decision is the
same on every rank.
"""

import contextlib

import torch
from recbole.data import data_preparation
from recbole.data.utils import get_dataloader
from recbole.utils import ModelType

from recbole_bifair.data.seen import exclude_seen
from recbole_bifair.errors import ConfigError


def seed_sampler(loader, seed):
    """Make a sharded loader's order depend on the run's seed (RecBole's ``DistributedSampler``
    keeps its default seed 0, so that every seed would train on the same order)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, torch.utils.data.distributed.DistributedSampler):
        sampler.seed = seed
    return loader


@contextlib.contextmanager
def single_process_view(config):
    """Loaders built inside read ``single_spec: True``: they are not sharded (evaluation)."""
    final = config.final_config_dict
    saved = final.get("single_spec", True)
    final["single_spec"] = True
    try:
        yield config
    finally:
        final["single_spec"] = saved


def prepare_data(config, dataset):
    """RecBole's ``data_preparation``; under several processes, evaluation loaders that every rank
    reads in full and a sharded training loader, reshuffled from the run's seed; a sequential
    model's evaluation loaders exclude the items each user has seen (``eval_exclude_seen``,
    data/seen.py)."""
    if config["single_spec"]:
        train_data, valid_data, test_data = data_preparation(config, dataset)
        return (train_data, *exclude_seen(config, dataset, train_data, (valid_data, test_data)))
    if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        raise ConfigError("several processes (nproc/world_size) are not supported for knowledge-aware models")
    with single_process_view(config):
        train_data, valid_data, test_data = data_preparation(config, dataset)
    train_data = get_dataloader(config, "train")(
        config, train_data._dataset, train_data._sampler, shuffle=config["shuffle"])
    valid_data, test_data = exclude_seen(config, dataset, train_data, (valid_data, test_data))
    return seed_sampler(train_data, config["seed"]), valid_data, test_data
