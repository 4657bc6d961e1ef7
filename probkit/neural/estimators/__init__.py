"""scikit-learn-style neural sequence estimators and the training loop they share.

:class:`SequenceClassifier`, :class:`SequenceRegressor`, :class:`SequenceDensity`,
:class:`NeuralHMM` and :class:`DeepStateSpaceModel` take sequences in any form of
probkit's sequence contract (a list of arrays, concatenated rows with ``lengths=``, or a
padded array with ``valid_lengths=``), train a network of :mod:`probkit.neural.networks`
with :func:`train_module`, and return numpy arrays. Only fitting a
:class:`DeepStateSpaceModel` needs Pyro.
"""

from probkit.utils._lazy import lazy_exports

_EXPORTS = {
    "DeepStateSpaceModel": "probkit.neural.estimators.deep_ssm",
    "MaskedSequenceModel": "probkit.neural.estimators.masked",
    "NeuralHMM": "probkit.neural.estimators.neural_hmm",
    "SequenceClassifier": "probkit.neural.estimators.classifier",
    "SequenceDensity": "probkit.neural.estimators.density",
    "SequenceRegressor": "probkit.neural.estimators.regressor",
    "SequenceVAE": "probkit.neural.estimators.sequence_vae",
    "TensorData": "probkit.neural.estimators._training",
    "TrainingHistory": "probkit.neural.estimators._training",
    "TrainingOptions": "probkit.neural.estimators._training",
    "VAE": "probkit.neural.estimators.vae",
    "evaluate_loss": "probkit.neural.estimators._training",
    "run_training": "probkit.neural.estimators._training",
    "seeded": "probkit.neural.estimators._training",
    "train_module": "probkit.neural.estimators._training",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
