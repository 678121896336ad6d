"""Write a model's (refined) LLM item table as a RecBole item feature file, reusable as input."""

from recbole_bifair.embedding.feature_file import write_feature_file


def export_item_table(model, dataset, path, source=None):
    """Rows of ``E`` by item token (padding dropped) in the format ``llm_emb_file`` reads.

    ``E`` lives in the space ``llm_emb_transform`` conditioned the loaded table into (and
    ``llm_emb_erase`` erased); the metadata names both, since a run reading the file applies its own
    on top (load such a file with ``llm_emb_transform: none`` and ``llm_emb_erase: none`` to start
    where the exporting run ended)."""
    tokens = dataset.field2id_token[dataset.iid_field][1:]
    matrix = model.item_table.E.detach().cpu().numpy()[1:]
    metadata = {"kind": "bifair-refined", "source_file": source or model.llm_emb_file,
                "model": type(model).__name__, "llm_emb_transform": model.llm_emb_transform,
                "llm_emb_erase": model.llm_emb_erase}
    return write_feature_file(path, tokens, matrix, metadata)
