"""LLM item representations: item text -> vectors -> a matrix indexed by RecBole item ids.

    ensure_item_embeddings(config) -> path   # the run's embedding file, generated if missing
    load_item_embeddings(config, dataset)    # FloatTensor [dataset.item_num, d], row 0 = 0

Modules: ``item_text`` (texts from the ``.item`` file), ``encoder`` (transformers), ``feature_file``
(the RecBole atomic feature file + metadata), ``generate`` (cache), ``loading`` (id alignment),
``importers`` (.npy/.pt matrices, LLM-ESR pickles), ``options`` (the ``llm_*`` config keys).
"""

from recbole_bifair.embedding.generate import default_embedding_path, ensure_item_embeddings, generate_item_embeddings
from recbole_bifair.embedding.importers import import_llmesr, import_matrix
from recbole_bifair.embedding.loading import load_item_embeddings

__all__ = [
    "default_embedding_path", "ensure_item_embeddings", "generate_item_embeddings",
    "import_llmesr", "import_matrix", "load_item_embeddings",
]
