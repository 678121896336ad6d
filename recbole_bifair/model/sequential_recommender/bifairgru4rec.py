"""BiFairGRU4Rec: BiFair on the LLM-enhanced GRU4Rec (``LLMGRU4Rec``).

The same model as ``LLMGRU4Rec``; its property file (``properties/model/BiFairGRU4Rec.yaml``) makes
``fair_method: bifair`` the default, so that ``--model=BiFairGRU4Rec`` runs the method of Zhang et
al., "BiFair", arXiv 2507.04294 (docs/METHOD.md). Any other ``fair_method`` may be set on it.
"""

from recbole_bifair.model.sequential_recommender.llmgru4rec import LLMGRU4Rec


class BiFairGRU4Rec(LLMGRU4Rec):
    r"""``LLMGRU4Rec`` trained with BiFair by default."""
