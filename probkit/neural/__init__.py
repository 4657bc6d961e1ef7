"""Neural sequence models for probkit (selective state spaces, RWKV, convolutions)."""

from .backbones import KINDS, Backbone, build_backbone, count_parameters, d_model_for_budget, map_state
from .estimators import DeepStateSpaceModel, NeuralHMM
from .estimators import (SequenceClassifier, SequenceDensity, SequenceRegressor, TrainingHistory,
                         train_module)

__all__ = [
    "KINDS",
    "Backbone",
    "build_backbone",
    "count_parameters",
    "d_model_for_budget",
    "map_state",
    # estimators and their training loop
    "DeepStateSpaceModel",
    "NeuralHMM",
    "SequenceClassifier",
    "SequenceDensity",
    "SequenceRegressor",
    "TrainingHistory",
    "train_module",
]
