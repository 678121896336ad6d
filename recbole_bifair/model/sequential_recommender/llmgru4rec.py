"""LLMGRU4Rec: GRU4Rec on LLM item representations (the item table is ``P(E)``); no fairness method of its own."""

from recbole.model.sequential_recommender.gru4rec import GRU4Rec

from recbole_bifair.model.llm import LLMModel


class LLMGRU4Rec(LLMModel, GRU4Rec):
    r"""GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
    ICLR 2016) whose item table is ``P(E)``."""

    backbone_name = "GRU4Rec"
