"""Items per second of the default item encoder (bundled all-MiniLM-L6-v2) on ml-100k, and the
time of a cached re-run.

    python benchmarks/embedding_speed.py [--batch_size 64] [--device cpu]

Three timings, in one process:
- ``generate``: ``ensure_item_embeddings`` with an empty cache: read the 1,682 item texts through
  RecBole, load the encoder, encode, write the feature file and its metadata;
- ``cached``: the same call again: texts are re-read and hashed, the file is reused;
- ``encode``: the encoder's ``encode`` alone on the same texts (model already loaded): items/s,
  with the CPU seconds and the load average beside it (other jobs on the machine slow it down).
The embedding files go to ``benchmarks/work/dataset_embeddings`` (removed first).
"""

import argparse
import json
import os
import shutil
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(REPO, "benchmarks", "work", "dataset_embeddings")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from recbole_bifair.config import BiFairConfig
    from recbole_bifair.embedding import ensure_item_embeddings
    from recbole_bifair.embedding.encoder import TextEncoder, resolve_encoder
    from recbole_bifair.embedding.item_text import build_item_texts

    shutil.rmtree(WORK, ignore_errors=True)
    config = BiFairConfig(model="SASRec", dataset="ml-100k", config_dict={
        "llm_emb_dir": WORK, "llm_emb_batch_size": args.batch_size, "llm_emb_device": args.device, "state": "WARNING",
    })
    started = time.perf_counter()
    path = ensure_item_embeddings(config)
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    assert ensure_item_embeddings(config) == path
    cached_s = time.perf_counter() - started

    texts = build_item_texts(config).texts
    encoder = TextEncoder(resolve_encoder(None), device=args.device)
    started, cpu_started = time.perf_counter(), time.process_time()
    encoder.encode(texts, batch_size=args.batch_size, progress=False)
    encode_s, encode_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    print(json.dumps({
        "dataset": "ml-100k", "items": len(texts), "encoder": "all-MiniLM-L6-v2 (bundled)",
        "device": args.device, "torch_threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "generate_seconds": round(generate_s, 2), "cached_rerun_seconds": round(cached_s, 3),
        "encode_seconds": round(encode_s, 2), "encode_items_per_second": round(len(texts) / encode_s, 1),
        # CPU seconds of this process: on a machine shared with other jobs, wall time alone overstates the cost
        "encode_cpu_seconds": round(encode_cpu_s, 2), "load_average_1min": round(os.getloadavg()[0], 2),
        "file": os.path.relpath(path, REPO),
    }, indent=2))


if __name__ == "__main__":
    main()
