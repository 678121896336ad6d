"""Seconds per training epoch against the compute floor (``benchmarks/epoch_floor.py``).

The floor of a step is the time its matrix products take on their own: every ``mm``, ``addmm``,
``bmm`` and ``baddbmm`` one training step dispatches (forward and backward, recorded with their
shapes by a ``TorchDispatchMode``) is replayed on fresh tensors of the same shapes and timed. Its
FLOP divided by that time is the matmul rate this machine attains on exactly those shapes;
``floor / measured`` is the share of the epoch the matmuls would need at that rate, the rest being
element-wise work (softmax, dropout, LayerNorm, GELU), the optimiser and Python. The epoch is
timed as ``run_recbole_bifair.py`` runs it (``trainer._train_epoch`` over the first batches,
scaled to the epoch's batch count), and a profile of the same steps names where the rest goes.
"""

import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode


aten = torch.ops.aten
MATMULS = {aten.mm.default: "mm", aten.addmm.default: "addmm", aten.bmm.default: "bmm",
           aten.baddbmm.default: "baddbmm"}


class Batches:
    """Fixed batches with the rest of a loader's interface (``_train_epoch`` may ask for it)."""

    def __init__(self, loader, batches):
        self.loader, self.batches = loader, batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def matmul_flop(name, shapes):
    """FLOP (2 per multiply-add) of one product from its operands' shapes."""
    a, b = (shapes[1], shapes[2]) if name in ("addmm", "baddbmm") else (shapes[0], shapes[1])
    if name in ("mm", "addmm"):
        return 2 * a[0] * a[1] * b[1]
    return 2 * a[0] * a[1] * a[2] * b[2]


class MatmulRecorder(TorchDispatchMode):
    """Records ``(name, operand shapes)`` of every matrix product dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            self.calls.append((MATMULS[func], tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))))
        return func(*args, **(kwargs or {}))


def replay_seconds(calls, repeats=3):
    """``(seconds, FLOP)`` of the recorded products run on their own (best of ``repeats``)."""
    ops = Counter(calls)
    tensors = [(name, [torch.randn(s) for s in shapes], n) for (name, shapes), n in ops.items()]
    fns = {"mm": torch.mm, "addmm": torch.addmm, "bmm": torch.bmm, "baddbmm": torch.baddbmm}
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for name, operands, n in tensors:
            for _ in range(n):
                fns[name](*operands)
        best = min(best, time.perf_counter() - t)
    return best, sum(matmul_flop(name, shapes) * n for (name, shapes), n in ops.items())


def top_ops(run, batches, rows=8):
    """``[(op, seconds)]``: the ops with the most self CPU time over ``run(batches)``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(batches)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / 1e6) for e in events[:rows]]


def epoch_runner(trainer, train):
    """``(loader, run)``: the loader an epoch iterates and ``run(batches)``, an epoch over those
    batches only. A trainer with BiFair's group loop iterates its inner loader (``_setup`` splits
    off the meta batches first), whatever ``_train_epoch`` is given."""
    if not getattr(trainer, "group_loop", False):
        return train, lambda batches: trainer._train_epoch(Batches(train, batches), 0)
    trainer._setup(train)
    inner = trainer._inner_data

    def run(batches):
        trainer._inner_data = Batches(inner, batches)
        try:
            trainer._train_epoch(train, 0)
        finally:
            trainer._inner_data = inner

    return inner, run


def measure(trainer, train, batches=20, warmup=2):
    """Seconds per epoch (measured and floor), FLOP per epoch and the matmul rate, from the first
    ``batches`` training batches after ``warmup`` untimed ones (the same batches for each part)."""
    loader, run = epoch_runner(trainer, train)
    epoch_batches = len(loader)
    first = [b for _, b in zip(range(warmup + batches), loader)]
    timed = first[warmup:]
    run(first[:warmup])
    t = time.perf_counter()
    run(timed)
    step = (time.perf_counter() - t) / len(timed)
    recorder = MatmulRecorder()
    with recorder:
        run(timed)
    floor, flop = replay_seconds(recorder.calls)
    return {
        "epoch_batches": epoch_batches, "timed_batches": len(timed),
        "seconds_per_epoch": step * epoch_batches,
        "floor_seconds_per_epoch": floor / len(timed) * epoch_batches,
        "tflop_per_epoch": flop / len(timed) * epoch_batches / 1e12,
        "matmul_gflops": flop / floor / 1e9,
        "share_of_floor": floor / len(timed) / step,
        "top_ops": top_ops(run, timed),
    }
