"""Class resolution: the plugin's models and trainers first, RecBole's as the fallback."""

import importlib
import importlib.util
import os
import pkgutil
from functools import lru_cache

from recbole.utils import ModelType
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_bifair import trainer as plugin_trainers
from recbole_bifair.compat import RECBOLE_PROPERTIES
from recbole_bifair.errors import ConfigError
from recbole_bifair.trainer.base import PluginTrainerMixin

MODEL_FAMILIES = ["sequential_recommender"]


def get_model(model_name):
    """``recbole_bifair.model.<family>.<name.lower()>.<name>``, else RecBole's model of that name."""
    module_name = model_name.lower()
    for family in MODEL_FAMILIES:
        path = f"recbole_bifair.model.{family}.{module_name}"
        if importlib.util.find_spec(path) is not None:
            model_class = getattr(importlib.import_module(path), model_name, None)
            if model_class is None:
                raise ConfigError(f"unknown model '{model_name}'. Available models: {', '.join(available_models())}")
            return model_class
    try:
        return recbole_get_model(model_name)
    # RecBole raises ValueError for an unknown name, AttributeError for a wrong case ("sasrec"),
    # and ModuleNotFoundError once its search reaches recbole.model.exlib_recommender, whose
    # package imports xgboost and lightgbm: without them, for every unknown name.
    except (ValueError, AttributeError, ImportError) as err:
        if isinstance(err, ImportError) and model_name in available_models():
            raise ConfigError(f"model '{model_name}' needs a package that is not installed ({err})") from None
        raise ConfigError(
            f"unknown model '{model_name}'. Available models: {', '.join(available_models())}"
        ) from None


def available_models():
    """Plugin models (found in their modules), then RecBole's (named by their yaml files)."""
    plugin = []
    for family in MODEL_FAMILIES:
        package = importlib.import_module(f"recbole_bifair.model.{family}")
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            plugin += [name for name in vars(module) if name.lower() == info.name]
    stock = sorted(f[:-5] for f in os.listdir(RECBOLE_PROPERTIES / "model") if f.endswith(".yaml"))
    return sorted(plugin) + [m for m in stock if m not in plugin]


def get_trainer(model_type, model_name):
    """The plugin's ``<Model>Trainer`` (or the trainer a model names in ``trainer_name``),
    else RecBole's trainer for that model made to load checkpoints under torch 2.13."""
    model_class = get_model(model_name)
    own = getattr(model_class, "trainer_name", None) or f"{model_name}Trainer"
    if hasattr(plugin_trainers, own):
        return getattr(plugin_trainers, own)
    return _compatible(recbole_get_trainer(model_type, model_name))


@lru_cache(maxsize=None)
def _compatible(trainer_class):
    return type(trainer_class.__name__, (PluginTrainerMixin, trainer_class), {"__module__": __name__})


__all__ = ["get_model", "get_trainer", "available_models", "ModelType"]
