"""Trainers resolved by name (``<Model>Trainer`` or a model's ``trainer_name``)."""

from recbole_bifair.trainer.base import PluginTrainerMixin
from recbole_bifair.trainer.fair_trainer import FairTrainer

__all__ = ["PluginTrainerMixin", "FairTrainer"]
