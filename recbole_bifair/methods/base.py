"""``FairMethod``: what a fairness method may change, in one interface.

An LLM-enhanced model (``recbole_bifair.model.llm.LLMModel``) builds its method from the config
key ``fair_method`` when it is built, and asks it at four points; the trainer
(``recbole_bifair.trainer.fair_trainer``) asks at three more. Every hook has a neutral default,
so a method overrides only what it changes:

model side
    ``attach(model, dataset)``: once, after the model is built: add parameters or buffers to
    the model (they are then saved in checkpoints with it), read the training data.
    ``train_logit_shift(model, items, dtype)``: added to the training logits of ``items`` (CE
    only; the ranking scores are not shifted).
    ``ranking_shift(model, dtype)``: ``[n_items]`` added to every ranking score.

trainer side (only when ``group_loop`` is True; otherwise RecBole's own training loop runs)
    ``inner_balance``: how the per-group mean losses ``L_g`` of a batch are weighted: ``none``
    (their sample shares: the plain mean loss), ``mgda``, ``dro``, ``uniform`` or ``groupdro``
    (``recbole_bifair.trainer.group_loop.Balancer``).
    ``target_weights(item_groups, device)``: ``[n_items]`` weight of a target item (normalised
    to mean 1 over each batch), or None.
    ``loss_term(L_g, present)``: a term added to the weighted group loss, or None.
    ``outer_level``: True runs BiFair's outer level (the trainer's ``OuterLevel``).

``state_dict`` / ``load_state_dict`` hold what the method keeps between steps (saved with the
trainer's checkpoints). ``keys`` names the config keys the method reads; their defaults live
in ``properties/method/<name>.yaml``.
"""

from recbole_bifair.errors import ConfigError


class FairMethod:
    """The neutral method: the LLM-enhanced model trained and ranked as its backbone is."""

    #: the value of ``fair_method`` (registry key)
    name = None
    #: config keys of this method (``properties/method/<name>.yaml`` holds their defaults)
    keys = ()
    #: train with the per-group loop (group losses, group weights); False: RecBole's loop
    group_loop = False
    #: weighting of the group losses in the per-group loop
    inner_balance = "none"
    #: run BiFair's outer level (E and the group offsets refined by a hypergradient)
    outer_level = False
    #: the LLM table E is a trainable (outer) variable
    refines_table = False
    #: ``train_logit_shift`` returns something: the backbone's own loss cannot be used
    shifts_logits = False

    def __init__(self, config):
        self.config = config

    def attach(self, model, dataset):
        """Called once by the model's constructor, after its item table exists."""

    def train_logit_shift(self, model, items, dtype):
        return None

    def ranking_shift(self, model, dtype):
        return None

    def target_weights(self, item_groups, device):
        return None

    def loss_term(self, L_g, present):
        return None

    def adds_loss_term(self):
        """Whether the method overrides ``loss_term`` (the trainer's fused gradient needs none)."""
        return type(self).loss_term is not FairMethod.loss_term

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    # ----- helpers for subclasses --------------------------------------------------------
    def number(self, key, positive=False):
        """``config[key]`` as a float, ConfigError naming the key and the method otherwise."""
        value = self.config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                or value in (float("inf"), float("-inf")) or (positive and value <= 0):
            need = "a positive number" if positive else "a finite number"
            raise ConfigError(f"{key} must be {need} for fair_method: {self.name}, got {value!r}")
        return float(value)

    def need_ce(self, model, what):
        if model.loss_type != "CE":
            raise ConfigError(f"fair_method: {self.name} {what}, and loss_type is {model.loss_type}: "
                              f"set loss_type: CE or choose another fair_method")
