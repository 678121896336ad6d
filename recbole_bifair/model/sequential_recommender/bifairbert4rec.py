"""BiFairBERT4Rec: BiFair on the LLM-enhanced BERT4Rec (``LLMBERT4Rec``).

The same model as ``LLMBERT4Rec``; its property file (``properties/model/BiFairBERT4Rec.yaml``) makes
``fair_method: bifair`` the default, so that ``--model=BiFairBERT4Rec`` runs the method of Zhang et
al., "BiFair", arXiv 2507.04294 (docs/METHOD.md). Any other ``fair_method`` may be set on it.
"""

from recbole_bifair.model.sequential_recommender.llmbert4rec import LLMBERT4Rec


class BiFairBERT4Rec(LLMBERT4Rec):
    r"""``LLMBERT4Rec`` trained with BiFair by default."""
