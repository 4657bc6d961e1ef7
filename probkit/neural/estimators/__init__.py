"""scikit-learn-style neural sequence estimators and the training loop they share.

:class:`SequenceClassifier`, :class:`SequenceRegressor` and :class:`SequenceDensity`
take variable-length sequences (a list of arrays, or a padded array with ``lengths=``),
train a backbone of :func:`probkit.neural.build_backbone` with :func:`train_module`, and
return numpy arrays.
"""

from ._training import TensorData, TrainingHistory, evaluate_loss, seeded, train_module
from .classifier import SequenceClassifier
from .deep_ssm import DeepStateSpaceModel
from .density import SequenceDensity
from .neural_hmm import NeuralHMM
from .regressor import SequenceRegressor

__all__ = [
    "DeepStateSpaceModel",
    "NeuralHMM",
    "SequenceClassifier",
    "SequenceDensity",
    "SequenceRegressor",
    "TensorData",
    "TrainingHistory",
    "evaluate_loss",
    "seeded",
    "train_module",
]
