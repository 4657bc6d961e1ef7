"""scikit-learn-style neural sequence estimators and the training loop they share.

:class:`SequenceClassifier`, :class:`SequenceRegressor` and :class:`SequenceDensity`
take variable-length sequences (a list of arrays, or a padded array with ``lengths=``),
train a backbone of :func:`probkit.neural.build_backbone` with :func:`train_module`, and
return numpy arrays. :class:`DeepStateSpaceModel` (the only one that needs Pyro) is
imported on first use.
"""

from probkit.utils._lazy import lazy_exports

_EXPORTS = {
    "DeepStateSpaceModel": "probkit.neural.estimators.deep_ssm",
    "MaskedSequenceModel": "probkit.neural.estimators.masked",
    "NeuralHMM": "probkit.neural.estimators.neural_hmm",
    "SequenceClassifier": "probkit.neural.estimators.classifier",
    "SequenceDensity": "probkit.neural.estimators.density",
    "SequenceRegressor": "probkit.neural.estimators.regressor",
    "TensorData": "probkit.neural.estimators._training",
    "TrainingHistory": "probkit.neural.estimators._training",
    "evaluate_loss": "probkit.neural.estimators._training",
    "seeded": "probkit.neural.estimators._training",
    "train_module": "probkit.neural.estimators._training",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
