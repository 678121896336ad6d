"""How many torch threads a CPU encoding loop should use: the cores other processes leave idle.

Measured with all-MiniLM-L6-v2 on ml-100k's 1,682 texts on a 2-core machine (benchmarks/
embedding_speed.py): quiet, 2 threads encode about 1.8x faster than 1. With other jobs on the
machine (load average about 4) it turns over: 2 threads gave 57-65 items/s, 1 thread 123-180.
Every OpenMP parallel region of a forward pass (several per layer) ends in a barrier, and when
the OS has descheduled one of the two threads for another job, the other one spins and then
waits a whole scheduler slice for it. The project's earlier 32-46 items/s were measured that way
(2 threads, load average 7-8).

So the encoder asks ``CpuThreads`` before each batch: the number of cores the *other* processes
left idle over the last couple of seconds (from ``/proc/stat``: the busy time of the CPUs this
process may run on, minus this process's own CPU time), at least 1, at most the thread count torch had (``torch.
get_num_threads()``, which ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` set). Where
``/proc/stat`` does not exist (macOS, Windows), torch's setting is kept. The thread count does
not change the vectors beyond float rounding.
"""

import os
import time

import torch

PROC_STAT = "/proc/stat"


def _allowed_cpus():
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def _busy_seconds(cpus):
    """CPU seconds spent busy since boot on the given CPUs; None where /proc/stat is missing.

    Per-CPU lines, so that a process pinned to some CPUs of a bigger machine counts only those.
    """
    try:
        with open(PROC_STAT) as f:
            lines = [line.split() for line in f if line.startswith("cpu") and line[3:4].isdigit()]
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    busy = 0
    for fields in lines:
        if fields[0] in wanted:
            ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK") if lines else None


def threads_for(idle_cores, max_threads):
    """Threads to use when ``idle_cores`` cores are left by other processes.

    A thread gets a core only when that core is at least 0.7 idle: a thread that shares its core
    with a busy job stalls every barrier (above). The 0.7 is a judgement between the two measured
    ends (a free core: 2 threads win; a busy one: 1 thread wins), not a measured optimum.
    """
    return max(1, min(max_threads, int(idle_cores + 0.3)))


class CpuThreads:
    """Context manager that sets torch's thread count for an encoding loop and restores it after.

    ``fixed``: use exactly this many threads (``llm_emb_threads``); None: adapt as described above.
    ``update()`` (called after each batch) re-measures at most every ``interval`` seconds.
    ``used`` counts the batches run at each thread count (for benchmarks and the file's metadata).
    """

    def __init__(self, fixed=None, interval=2.0, first_sample=0.2):
        self.fixed = fixed
        self.max_threads = fixed or torch.get_num_threads()
        self.interval = interval
        self.first_sample = first_sample
        self.cpus = _allowed_cpus()
        self.used = {}
        self._previous = None
        self._mark = None
        self.threads = self.max_threads

    def __enter__(self):
        self._previous = torch.get_num_threads()
        self._mark = None if self.fixed else self._sample()
        if self._mark is not None and self.max_threads > 1:
            time.sleep(self.first_sample)  # this process idle: whatever runs now is someone else's
            self._choose()
        torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self._previous)
        return False

    def update(self):
        self.used[self.threads] = self.used.get(self.threads, 0) + 1
        if self._mark is None or self.max_threads == 1 or time.monotonic() - self._mark[0] < self.interval:
            return
        chosen = self._choose()
        if chosen != torch.get_num_threads():
            torch.set_num_threads(chosen)

    def _sample(self):
        busy = _busy_seconds(self.cpus)
        if busy is None:
            return None
        return time.monotonic(), busy, time.process_time()

    def _choose(self):
        now = self._sample()
        wall = now[0] - self._mark[0]
        others_busy = (now[1] - self._mark[1]) - (now[2] - self._mark[2])
        self._mark = now
        if wall > 0:
            idle_cores = len(self.cpus) - max(0.0, others_busy) / wall
            self.threads = threads_for(idle_cores, self.max_threads)
        return self.threads
