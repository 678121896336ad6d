"""Fairness methods: each one a small class in its own file, chosen by the config key ``fair_method``.

A method changes how an LLM-enhanced model (``recbole_bifair.model.llm``) is trained and ranked
through one interface (``base.FairMethod``): per-target weights, a loss term, group weights of the
per-group loss, training-only logit shifts, ranking-time score shifts, state for checkpoints.
The built-in ones (``catalog``): ``none`` (the LLM-enhanced baseline), ``ips``, ``groupdro``,
``varreg``, ``logit_adjust`` and ``bifair``; the post-hoc re-ranking ``posthoc_beta`` composes with
any of them (``posthoc``). A method of your own registers with ``registry.register_method`` and
is then chosen like the built-in ones (docs/extending.md).
"""
