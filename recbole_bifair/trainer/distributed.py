"""Training one model on several processes with ``torch.distributed``, RecBole's way.

Keys (RecBole's): ``nproc`` (processes on this machine), ``world_size`` (processes in all, on
every machine; default ``nproc``), ``offset`` (the global rank of this machine's first process),
``ip``/``port`` (the rank-0 machine's address, ``tcp://ip:port``), and ``backend`` (the plugin's:
``gloo`` on CPU, ``nccl`` on GPU, the default for each device). ``recbole_bifair.quick_start.run``
spawns the processes; ``recbole_bifair.compat.init_device`` joins each one to the group.

What runs where:

- Data. Training batches are sharded as RecBole's ``AbstractDataLoader`` shards them: a
  ``DistributedSampler`` gives each rank its own part of every epoch (padded with a few repeated
  samples so that every rank has the same number of batches) and a rank's batch is
  ``step // world_size``, so the *global* batch is ``train_batch_size`` (in windows' targets under
  sequence-level training). The shards are reshuffled every epoch from the run's ``seed``
  (``recbole_bifair.data.prepare``, which builds the loaders: RecBole's sampler would use seed 0
  whatever the run's seed; ``set_sampler_epoch`` here, for each epoch). The meta split is
  the same on every rank (drawn with ``seed``) and its batches (``meta_batch_size``) are sharded
  the same way: each rank draws its own share of the global meta batch, reshuffled every pass.
  ``hvp_batch_size`` counts the targets of a rank's batch. Evaluation is not sharded: every rank
  evaluates every user (``data.prepare.prepare_data``), so that metrics over the whole ranking
  (coverage, Gini, the per-group report) are exact and the early-stopping decision is the same on
  every rank.
- Parameters. Model initialisation is seeded with ``seed + local_rank``, as in RecBole; the
  starting parameters are then rank 0's, broadcast (DDP does it for RecBole's loop, ``broadcast_module``
  for the bi-level loop).
- The per-group loop (``FairTrainer``) does not use DDP: it takes its gradients with
  ``torch.autograd.grad``, which DDP's hooks never see. It keeps every piece of state the same on
  every rank by construction: the per-group losses that weight the levels are those of the global
  batch (``global_group_losses``, from all-reduced sums and counts), so the balancers (and their
  EMA state) get identical inputs; the inner gradients are summed over ranks before clipping and
  the optimiser step (exact: each rank's share of the global objective); the hypergradient of the
  outer variables is averaged over ranks before the outer step (an approximation, see
  ``mean_over_ranks_``).
- Approximate under several processes (exact in one): the hypergradient (above); the IPS
  baseline's weights are normalised by the mean weight of a rank's batch, not the global one; for
  losses without logits (BPR) the MGDA Gram is the mean of the ranks' Grams. Everything else in the
  bi-level step equals one process on the global batch up to float rounding
  (tests/test_distributed.py).
- Files: checkpoints, the result JSON and the end-of-run reports are written by rank 0 only; the
  other ranks receive the best checkpoint's parameters from rank 0 (no shared disk needed).
- Failures: a rank that stops (a NaN loss, an exception) leaves the others waiting in their next
  collective until the backend's timeout (``torch.distributed``'s default, 10 to 30 minutes).

Outside a process group every helper is a no-op, so single-process runs are unchanged.
"""

import dataclasses

import torch
import torch.distributed as dist


def active():
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    return dist.get_rank() if active() else 0


def world_size():
    return dist.get_world_size() if active() else 1


def is_main():
    """Rank 0 writes the files (checkpoints, results, reports); the others only train."""
    return rank() == 0


def barrier():
    if active():
        dist.barrier()


def sum_over_ranks_(tensors):
    """Sum each tensor over the ranks, in place (one collective for the whole list)."""
    if not active() or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return tensors


def mean_over_ranks_(tensors):
    """Average each tensor over the ranks, in place.

    Used for the hypergradient: each rank differentiates the meta loss of its own meta shard
    through the (global) inner step, with the Hessian-vector product on its own inner shard; the
    mean is the hypergradient of the mean of the ranks' outer objectives, which equals the one of
    the global meta batch only to first order (the group means, the vector ``v`` and, under
    ``finite_difference``, the step ``eps`` are per rank).
    """
    sum_over_ranks_(tensors)
    n = world_size()
    if n > 1:
        for t in tensors:
            t.div_(n)
    return tensors


def mean_dict_over_ranks_(named):
    """``mean_over_ranks_`` for a dict of tensors (the hypergradient of each outer variable)."""
    mean_over_ranks_([named[k] for k in sorted(named)])
    return named


def mean_rows_over_ranks(rows, values):
    """``(rows, values)`` of a row-sparse gradient (``values[i]`` belongs to row ``rows[i]``, rows
    sorted and unique) averaged over the ranks: the union of every rank's rows, each row's values
    summed over the ranks that touched it and divided by the number of ranks (absent = zero), the
    same on every rank. The sampled outer step's ranks touch different rows of E, so a dense
    all-reduce of their gradients would not line up; the exchange here is as large as the rows
    touched, not the catalog."""
    if not active():
        return rows, values
    parts = [None] * world_size()
    dist.all_gather_object(parts, (rows.cpu(), values.detach().cpu()))
    union = torch.unique(torch.cat([r for r, _ in parts]))
    total = torch.zeros((len(union),) + tuple(values.shape[1:]), dtype=values.dtype)
    for r, v in parts:
        total.index_add_(0, torch.searchsorted(union, r), v)
    return union.to(rows.device), (total / world_size()).to(values.device)


def global_group_losses(grouped):
    """The per-group mean losses of the *global* batch, carrying this rank's share of the gradient.

    ``grouped`` is a ``GroupedLosses`` of this rank's batch. The sums and counts of every group
    are all-reduced; the returned means have the global value on every rank, bit for bit (the
    balancers and their state see identical inputs), and their gradient is this rank's term of
    the global mean, ``sum_(i in g, on this rank) dl_i / n_g(global)``: summing the ranks'
    gradients (``sum_over_ranks_``) gives the gradient of the global batch's objective exactly.
    ``counts``/``present`` become the global ones, so that the Gram of ``shared_gram`` is built
    from this rank's rows scaled by the global counts (its parts are summed by ``sum_over_ranks_``).
    """
    if not active():
        return grouped
    local_sums = grouped.means * grouped.counts.clamp(min=1).to(grouped.means.dtype)
    totals = torch.cat([local_sums.detach(), grouped.counts.to(local_sums.dtype)])
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    K = grouped.counts.shape[0]
    sums, counts = totals[:K], totals[K:].round().to(grouped.counts.dtype)
    # (x - x.detach()) is exactly 0: the value is the global sum, the gradient this rank's part
    means = (sums + (local_sums - local_sums.detach())) / counts.clamp(min=1).to(sums.dtype)
    return dataclasses.replace(grouped, means=means, counts=counts, present=counts > 0)


def broadcast_module(module, src=0):
    """Give every rank ``src``'s parameters and buffers."""
    if not active():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=src)


def broadcast_object(obj, src=0):
    """``src``'s value of a picklable object, on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def set_sampler_epoch(loader, epoch):
    """Reshuffle a sharded loader for ``epoch`` (a ``DistributedSampler`` repeats its order otherwise)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, torch.utils.data.distributed.DistributedSampler) and getattr(loader, "shuffle", False):
        sampler.set_epoch(epoch)


def destroy():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
