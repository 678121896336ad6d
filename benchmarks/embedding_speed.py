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
import sys
import time

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import embedding_speed as speed  # noqa: E402
from benchmarks.lib.paths import DEFAULT_DATA_PATH, REPO, RESULTS  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=DEFAULT_DATA_PATH)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--encode_threads", default="auto", help="comma-separated: auto and/or thread counts")
    parser.add_argument("--suffix", default="", help="appended to the result file names (e.g. quiet)")
    args = parser.parse_args()
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch_threads_at_start = torch.get_num_threads()
    load_before = [round(v, 2) for v in os.getloadavg()]

    from recbole_bifair.config import BiFairConfig
    from recbole_bifair.embedding import ensure_item_embeddings
    from recbole_bifair.embedding.feature_file import read_metadata
    from recbole_bifair.embedding.item_text import build_item_texts
    from recbole_bifair.embedding.options import EmbeddingOptions

    shutil.rmtree(speed.WORK, ignore_errors=True)
    settings = {"data_path": args.data_path, "llm_emb_dir": speed.WORK, "llm_emb_batch_size": args.batch_size,
                "llm_emb_device": args.device, "state": "WARNING", "show_progress": False}
    config = BiFairConfig(model="SASRec", dataset=args.dataset, config_dict=settings)
    with speed.Meter() as generate:
        path = ensure_item_embeddings(config)
    metadata = read_metadata(path)
    with speed.Meter() as cached:
        assert ensure_item_embeddings(config) == path
    assert read_metadata(path)["created"] == metadata["created"], "the cached call encoded again"
    command = speed.cached_rerun_command(args)
    fresh_cached_s = speed.fresh_process_seconds(command)
    assert read_metadata(path)["created"] == metadata["created"], "the cached re-run encoded again"

    options = EmbeddingOptions.from_config(config)
    texts = build_item_texts(config, options.fields, options.template).texts
    encodes = speed.encode_timings(texts, args)

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
        f.write(speed.markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
