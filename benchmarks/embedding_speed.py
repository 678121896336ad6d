"""Items per second of the default item encoder (bundled all-MiniLM-L6-v2) on a dataset's item
texts, and the time of a cached re-run.

    python benchmarks/embedding_speed.py [--dataset=ml-100k] [--data_path=../shared/datasets]
        [--batch_size=64] [--device=cpu] [--encode_threads=auto,1,2] [--suffix=quiet]

The item texts are the run's (the dataset's properties file: fields and template). Timings:
- ``generate``: ``ensure_item_embeddings`` with an empty cache, in this process: read the item
  texts through RecBole, load the encoder, encode, write the feature file and its metadata;
- ``cached_rerun``: ``python -m recbole_bifair.embed`` with the same settings in a fresh process
  (imports, config, texts re-read and hashed, the file reused), and the same call in-process;
- ``encode``: the encoder's ``encode`` alone on the same texts (model loaded), once per entry of
  ``--encode_threads`` (``auto``: the thread count follows the idle cores; a number: fixed).
Beside each: CPU seconds of this process, the load average, and the cores that *other*
processes kept busy meanwhile (from /proc/stat), since the 2-core machine may be shared.
The embedding files go to ``benchmarks/work/dataset_embeddings`` (removed first). The result is
written to ``benchmarks/results/embedding-speed-<dataset>[-<suffix>].json`` and ``.md``.
``--data_path`` defaults to ../shared/datasets beside the repository (ignored for ml-100k, which
RecBole reads from its wheel).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(REPO, "benchmarks", "work", "dataset_embeddings")
RESULTS = os.path.join(REPO, "benchmarks", "results")
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "datasets"))


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=SHARED_DATA)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--encode_threads", default="auto", help="comma-separated: auto and/or thread counts")
    parser.add_argument("--suffix", default="", help="appended to the result file names (e.g. quiet)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch_threads_at_start = torch.get_num_threads()
    load_before = [round(v, 2) for v in os.getloadavg()]

    from recbole_bifair.config import BiFairConfig
    from recbole_bifair.embedding import ensure_item_embeddings
    from recbole_bifair.embedding.encoder import TextEncoder, resolve_encoder
    from recbole_bifair.embedding.feature_file import read_metadata
    from recbole_bifair.embedding.item_text import build_item_texts
    from recbole_bifair.embedding.options import EmbeddingOptions

    shutil.rmtree(WORK, ignore_errors=True)
    settings = {"data_path": args.data_path, "llm_emb_dir": WORK, "llm_emb_batch_size": args.batch_size,
                "llm_emb_device": args.device, "state": "WARNING", "show_progress": False}
    config = BiFairConfig(model="SASRec", dataset=args.dataset, config_dict=settings)
    with Meter() as generate:
        path = ensure_item_embeddings(config)
    metadata = read_metadata(path)
    with Meter() as cached:
        assert ensure_item_embeddings(config) == path
    assert read_metadata(path)["created"] == metadata["created"], "the cached call encoded again"
    command = [sys.executable, "-m", "recbole_bifair.embed", f"--dataset={args.dataset}",
               f"--data_path={args.data_path}", f"--llm_emb_dir={WORK}", f"--batch_size={args.batch_size}",
               f"--device={args.device}", "--state=WARNING", "--show_progress=false"]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, capture_output=True)
    fresh_cached_s = time.perf_counter() - started
    assert read_metadata(path)["created"] == metadata["created"], "the cached re-run encoded again"

    options = EmbeddingOptions.from_config(config)
    texts = build_item_texts(config, options.fields, options.template).texts
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

    result = {
        "dataset": args.dataset, "data_path": None if args.dataset == "ml-100k" else args.data_path,
        "items": len(texts), "example_text": texts[0], "template": metadata["template"],
        "encoder": "all-MiniLM-L6-v2 (bundled)", "device": args.device, "batch_size": args.batch_size,
        "cpu_cores": len(os.sched_getaffinity(0)), "torch_threads_at_start": torch_threads_at_start,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_before": load_before, "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "generate": {"seconds": round(generate.wall, 2), "items_per_second": round(len(texts) / generate.wall, 1),
                     "encode_items_per_second_in_metadata": metadata["items_per_second"],
                     "batches_per_thread_count": metadata.get("threads"),
                     "other_processes_busy_cores": generate.others},
        "cached_rerun_seconds": {"fresh_process": round(fresh_cached_s, 2), "in_process": round(cached.wall, 3)},
        "cached_rerun_command": " ".join(command[1:]),
        "encode": encodes,
        "file": os.path.relpath(path, REPO),
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, f"embedding-speed-{args.dataset}{'-' + args.suffix if args.suffix else ''}")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(stem + ".md", "w") as f:
        f.write(markdown(result))
    print(json.dumps(result, indent=2))


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


if __name__ == "__main__":
    main()
