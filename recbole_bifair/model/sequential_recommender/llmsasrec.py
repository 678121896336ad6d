"""LLMSASRec: SASRec on LLM item representations (the item table is ``P(E)``); no fairness method of its own."""

from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_bifair.model.llm import LLMModel


class LLMSASRec(LLMModel, SASRec):
    r"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018) whose item
    table is ``P(E)``: LLM item vectors ``E`` through a projector, optionally fused with an ID
    view (``id_fusion``)."""

    backbone_name = "SASRec"
