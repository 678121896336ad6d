"""Trainers resolved by name (``<Model>Trainer`` or a model's ``trainer_name``)."""

from recbole_bifair.trainer.base import PluginTrainerMixin

__all__ = ["PluginTrainerMixin"]
