"""BiFairSASRec: SASRec on LLM item representations, trained with BiFair."""

from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_bifair.model.bifair import BiFairModel


class BiFairSASRec(BiFairModel, SASRec):
    r"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018) whose item
    table is ``P(E)``: LLM item vectors ``E`` through a projector, refined by BiFair's outer level
    (Zhang et al., "BiFair", arXiv 2507.04294)."""

    backbone_name = "SASRec"
