"""Items per second of the item encoder and the time of a cached re-run (``embedding_speed.py``),
each with the CPU it took and the cores other processes kept busy meanwhile."""

import os
import subprocess
import sys
import time

from benchmarks.lib.paths import REPO
from benchmarks.lib.paths import WORK as WORK_ROOT

WORK = os.path.join(WORK_ROOT, "dataset_embeddings")


class Meter:
    """Wall and CPU seconds of this process, and the cores other processes kept busy meanwhile."""

    def __init__(self):
        from recbole_bifair.embedding.threads import _allowed_cpus, _busy_seconds

        self._cpus = _allowed_cpus()
        self._busy = lambda: _busy_seconds(self._cpus)

    def __enter__(self):
        self.wall, self.cpu, self.busy = time.perf_counter(), time.process_time(), self._busy()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        busy = self._busy()
        self.others = None if busy is None else round(max(0.0, busy - self.busy - self.cpu) / self.wall, 2)
        return False


def cached_rerun_command(args):
    """``python -m recbole_bifair.embed`` with the measured settings."""
    return [sys.executable, "-m", "recbole_bifair.embed", f"--dataset={args.dataset}",
            f"--data_path={args.data_path}", f"--llm_emb_dir={WORK}", f"--batch_size={args.batch_size}",
            f"--device={args.device}", "--state=WARNING", "--show_progress=false"]


def fresh_process_seconds(command):
    """Wall seconds of ``command`` run from the repository root (a fresh process)."""
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, capture_output=True)
    return time.perf_counter() - started


def encode_timings(texts, args):
    """The encoder's ``encode`` alone on ``texts``, once per entry of ``--encode_threads``."""
    from recbole_bifair.embedding.encoder import TextEncoder, resolve_encoder

    encodes = []
    for setting in args.encode_threads.split(","):
        threads = None if setting == "auto" else int(setting)
        encoder = TextEncoder(resolve_encoder(None), device=args.device, threads=threads)
        with Meter() as encode:
            encoder.encode(texts, batch_size=args.batch_size, progress=False)
        encodes.append({
            "threads": setting, "batches_per_thread_count": {str(k): v for k, v in sorted(encoder.threads_used.items())},
            "seconds": round(encode.wall, 2), "items_per_second": round(len(texts) / encode.wall, 1),
            # CPU seconds of this process: on a shared machine wall time alone overstates the cost
            "cpu_seconds": round(encode.cpu, 2), "other_processes_busy_cores": encode.others,
            "load_average_1min_after": round(os.getloadavg()[0], 2),
        })
    return encodes


def markdown(r):
    lines = [
        f"# Embedding speed: {r['dataset']} ({r['items']:,} items)",
        "",
        f"`{r['command']}` on {r['date']}; encoder {r['encoder']}, {r['device']}, batch {r['batch_size']}, "
        f"{r['cpu_cores']} cores, torch threads at start {r['torch_threads_at_start']} "
        f"(interop {r['torch_interop_threads']}, OMP_NUM_THREADS={r['OMP_NUM_THREADS']}).",
        f"Load average (1, 5, 15 min) before: {r['load_average_before']}, after: {r['load_average_after']}.",
        f"Item text (template `{r['template']}`), e.g. `{r['example_text']}`.",
        "",
        "| timing | seconds | items/s | threads (batches) | other processes' busy cores |",
        "| --- | --- | --- | --- | --- |",
        f"| generate (read texts, load encoder, encode, write) | {r['generate']['seconds']} | "
        f"{r['generate']['items_per_second']} | {r['generate']['batches_per_thread_count']} | "
        f"{r['generate']['other_processes_busy_cores']} |",
    ]
    for e in r["encode"]:
        lines.append(f"| encode only, threads {e['threads']} | {e['seconds']} | {e['items_per_second']} | "
                     f"{e['batches_per_thread_count']} | {e['other_processes_busy_cores']} |")
    lines += [
        f"| cached re-run, fresh process (`{r['cached_rerun_command']}`) | {r['cached_rerun_seconds']['fresh_process']} | | | |",
        f"| cached re-run, in process | {r['cached_rerun_seconds']['in_process']} | | | |",
        "",
    ]
    return "\n".join(lines)
