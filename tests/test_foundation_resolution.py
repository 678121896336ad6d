"""Class resolution: plugin models and trainers first, RecBole's as the fallback."""

import importlib
import sys
import textwrap

import pytest
import recbole.trainer
from recbole.model.sequential_recommender import GRU4Rec, SASRec

import recbole_bifair.trainer
from recbole_bifair.config import BiFairConfig
from recbole_bifair.errors import ConfigError
from recbole_bifair.quick_start import run_bifair
from recbole_bifair.trainer.base import PluginTrainerMixin
from recbole_bifair.utils import ModelType, get_model, get_trainer
from tests.datagen import tiny_config

FAMILY = "recbole_bifair.model.sequential_recommender"


@pytest.fixture
def plugin_models(tmp_path, monkeypatch):
    """Add modules to the plugin's model package for one test: ``add(module_name, source)``."""
    package = importlib.import_module(FAMILY)
    folder = tmp_path / "plugin_models"
    folder.mkdir()
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    added = []

    def add(module_name, source):
        (folder / f"{module_name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        added.append(module_name)

    yield add
    for module_name in added:
        sys.modules.pop(f"{FAMILY}.{module_name}", None)
        if hasattr(package, module_name):
            delattr(package, module_name)


def test_stock_models_come_from_recbole():
    assert get_model("SASRec") is SASRec
    assert get_model("GRU4Rec") is GRU4Rec


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ConfigError) as err:
        get_model("NoSuchModel")
    message = str(err.value)
    assert "unknown model 'NoSuchModel'" in message
    assert "SASRec" in message and "GRU4Rec" in message
    assert "BiFairSASRec" in message  # the plugin's own models, which have no RecBole yaml


def test_unknown_model_through_the_config(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'sasrec'. Available models: .*SASRec"):
        BiFairConfig(model="sasrec", config_dict=tiny_config(tmp_path))


def test_plugin_model_shadows_recbole_and_names_its_trainer(plugin_models, tiny_data, monkeypatch):
    plugin_models("sasrec", """
        from recbole.model.sequential_recommender.sasrec import SASRec as RecBoleSASRec

        class SASRec(RecBoleSASRec):
            trainer_name = "ToyTrainer"
    """)
    fitted = []

    class ToyTrainer(get_trainer(ModelType.SEQUENTIAL, "GRU4Rec")):
        def fit(self, *args, **kwargs):
            fitted.append(type(self.model))
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(recbole_bifair.trainer, "ToyTrainer", ToyTrainer, raising=False)
    plugin_class = get_model("SASRec")
    assert plugin_class is not SASRec and issubclass(plugin_class, SASRec)
    assert plugin_class.__module__ == f"{FAMILY}.sasrec"
    assert BiFairConfig(model="SASRec", config_dict=tiny_config(tiny_data)).model_class is plugin_class
    assert get_trainer(ModelType.SEQUENTIAL, "SASRec") is ToyTrainer

    result = run_bifair(model="SASRec", config_dict=tiny_config(tiny_data))
    assert fitted == [plugin_class]
    assert result["test_result"]


def test_plugin_trainer_found_by_model_name(plugin_models, monkeypatch):
    plugin_models("toynet", """
        from recbole.model.sequential_recommender.sasrec import SASRec

        class ToyNet(SASRec):
            pass
    """)
    assert get_trainer(ModelType.SEQUENTIAL, "ToyNet").__bases__ == (PluginTrainerMixin, recbole.trainer.Trainer)

    class ToyNetTrainer(recbole.trainer.Trainer):
        pass

    monkeypatch.setattr(recbole_bifair.trainer, "ToyNetTrainer", ToyNetTrainer, raising=False)
    assert get_trainer(ModelType.SEQUENTIAL, "ToyNet") is ToyNetTrainer


def test_recbole_trainers_get_the_plugin_mixin():
    trainer = get_trainer(ModelType.SEQUENTIAL, "SASRec")
    # the mixin first, so that its methods come before RecBole's
    assert trainer.__bases__ == (PluginTrainerMixin, recbole.trainer.Trainer)
    assert get_trainer(ModelType.SEQUENTIAL, "SASRec") is trainer  # one class per RecBole trainer
