"""BiFairGRU4Rec: GRU4Rec on LLM item representations, trained with BiFair."""

from recbole.model.sequential_recommender.gru4rec import GRU4Rec

from recbole_bifair.model.bifair import BiFairModel


class BiFairGRU4Rec(BiFairModel, GRU4Rec):
    r"""GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
    ICLR 2016) whose item table is ``P(E)``, refined by BiFair (arXiv 2507.04294)."""

    backbone_name = "GRU4Rec"
