"""BiFairSASRec: BiFair on the LLM-enhanced SASRec (``LLMSASRec``).

The same model as ``LLMSASRec``; its property file (``properties/model/BiFairSASRec.yaml``) makes
``fair_method: bifair`` the default, so that ``--model=BiFairSASRec`` runs the method of Zhang et
al., "BiFair", arXiv 2507.04294 (docs/METHOD.md). Any other ``fair_method`` may be set on it.
"""

from recbole_bifair.model.sequential_recommender.llmsasrec import LLMSASRec


class BiFairSASRec(LLMSASRec):
    r"""``LLMSASRec`` trained with BiFair by default."""
