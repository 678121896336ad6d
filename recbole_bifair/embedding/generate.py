"""Make sure a run has its item embedding file: reuse it, or generate it from the item texts.

A generated file is reused when its metadata ``cache_key`` matches the current inputs: the item
texts (tokens included), the encoder's weights (fingerprint), pooling, normalisation, maximum
length and dtype. Anything else (batch size, threads, progress bar) does not change the vectors.
"""

import hashlib
import json
import os
import time
from logging import getLogger

from recbole_bifair.embedding.encoder import TextEncoder, resolve_device, resolve_dtype, resolve_encoder
from recbole_bifair.embedding.feature_file import check_header, read_metadata, write_feature_file
from recbole_bifair.embedding.item_text import build_item_texts
from recbole_bifair.embedding.options import (
    EmbeddingOptions, config_value, embedding_dir, generate_missing, show_progress, slug,
)
from recbole_bifair.errors import ConfigError
from recbole_bifair.logging_setup import CONSOLE

FORMAT_VERSION = 1


def default_embedding_path(config):
    """``<llm_emb_dir>/<dataset>/<dataset>.<encoder>.llmemb`` (never inside the dataset folder:
    RecBole always reads ml-100k from its own wheel, RECBOLE.md item 8)."""
    dataset = config["dataset"]
    spec = resolve_encoder(EmbeddingOptions.from_config(config).encoder)
    return os.path.join(embedding_dir(config), dataset, f"{dataset}.{slug(spec.name)}.llmemb")


def ensure_item_embeddings(config):
    """Path of the run's item embedding file.

    ``llm_emb_file`` naming an existing file: its header is checked and the file is used as it
    is (``load_item_embeddings`` validates every line). ``llm_emb_file`` naming a missing file: a
    ConfigError, unless ``llm_emb_generate`` is true; a typo must not silently become a new file
    holding the default encoder's vectors under a name the user chose for other ones. Without
    ``llm_emb_file``, the file at ``default_embedding_path(config)`` is generated (or reused from
    the cache).
    """
    path = config_value(config, "llm_emb_file")
    generate = generate_missing(config)
    if not path:
        return generate_item_embeddings(config, default_embedding_path(config))
    if os.path.exists(path):
        check_header(path)
        return path
    if generate:
        return generate_item_embeddings(config, path)
    raise ConfigError(_missing_file_message(config, path))


def check_embedding_file(config):
    """The missing-file check of ``ensure_item_embeddings``, for a config before any data is read
    (BiFairConfig makes it for LLM models: a typo should not cost the loading of a dataset)."""
    path = config_value(config, "llm_emb_file")
    if path and not generate_missing(config) and not os.path.exists(path):
        raise ConfigError(_missing_file_message(config, path))


def _missing_file_message(config, path):
    return (
        f"llm_emb_file '{path}' does not exist (read relative to {os.getcwd()}). Check the path; or make the "
        f"file with `{_embed_command(config, path)}`; or leave "
        f"llm_emb_file unset to use the default file {default_embedding_path(config)} (generated when missing); "
        f"or set llm_emb_generate: true (--llm_emb_generate=true) to generate it at this path"
    )


def _embed_command(config, output):
    """The ``recbole_bifair.embed`` command line that writes this run's file to ``output``."""
    words = ["python -m recbole_bifair.embed", f"--dataset={config['dataset']}"]
    if config["dataset"] != "ml-100k":  # RecBole reads ml-100k from its wheel whatever data_path says
        words.append(f"--data_path={os.path.dirname(os.path.normpath(config['data_path']))}")
    encoder = EmbeddingOptions.from_config(config).encoder
    if encoder:
        words.append(f"--encoder={encoder}")
    return " ".join(words + [f"--output={output}"])


def generate_item_embeddings(config, output):
    """Encode the items of the run's dataset into ``output``; reuse it when the cache key matches.

    The progress bar follows RecBole's ``show_progress``.
    """
    logger = getLogger()
    options = EmbeddingOptions.from_config(config)
    spec = resolve_encoder(options.encoder)
    items = build_item_texts(config, options.fields, options.template)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    key_inputs = {
        "format": FORMAT_VERSION,
        "texts": items.digest(),
        "encoder": spec.fingerprint(),
        "pooling": options.pooling,
        "normalize": options.normalize,
        "max_length": options.max_length,
        "dtype": str(dtype),
        "trust_remote_code": options.trust_remote_code,
    }
    cache_key = hashlib.sha256(json.dumps(key_inputs, sort_keys=True).encode()).hexdigest()
    metadata = read_metadata(output)
    if os.path.isfile(output) and metadata and metadata.get("cache_key") == cache_key:
        logger.info(f"Item embeddings: reusing {output} (same item texts and encoder settings)")
        return output

    logger.info(f"Item embeddings: encoding {len(items.texts)} items of {items.item_file} with {spec.name} into {output}",
                extra=CONSOLE)
    started = time.time()
    encoder = TextEncoder(spec, options.pooling, options.max_length, device, options.dtype, options.trust_remote_code,
                          threads=options.threads)
    vectors = encoder.encode(items.texts, options.batch_size, options.normalize, progress=show_progress(config))
    seconds = time.time() - started
    write_feature_file(output, items.tokens, vectors, {
        "format": FORMAT_VERSION,
        "dataset": config["dataset"],
        "item_file": os.path.abspath(items.item_file),
        "encoder": spec.name,
        "encoder_source": spec.source,
        "pooling": encoder.pooling,
        "normalize": options.normalize,
        "max_length": encoder.max_length,
        "dtype": str(encoder.dtype).replace("torch.", ""),
        "device": str(encoder.device),
        "fields": list(items.fields),
        "template": items.template,
        "text_hash": items.digest(),
        "cache_key": cache_key,
        "seconds": round(seconds, 3),
        "items_per_second": round(len(items.texts) / seconds, 1) if seconds > 0 else None,
        # CPU thread count -> batches encoded with it (it follows the cores other processes leave idle)
        "threads": {str(k): v for k, v in sorted(encoder.threads_used.items())},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    logger.info(f"Item embeddings: {len(items.texts)} x {vectors.shape[1]} written to {output} in {seconds:.1f} s",
                extra=CONSOLE)
    return output
