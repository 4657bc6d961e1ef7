"""scikit-learn-style neural sequence estimators and the training loop they share.

:class:`SequenceClassifier`, :class:`SequenceRegressor`, :class:`SequenceDensity`,
:class:`NeuralHMM` and :class:`DeepStateSpaceModel` take sequences in any form of
probkit's sequence contract (a list of arrays, concatenated rows with ``lengths=``, or a
padded array with ``valid_lengths=``), train a network of :mod:`probkit.neural.networks`
with :func:`train_module`, and return numpy arrays. Only fitting a
:class:`DeepStateSpaceModel` needs Pyro.
"""

from probkit.utils._lazy import lazy_package

__getattr__, __dir__, __all__ = lazy_package(
    __name__,
    {
        ".deep_ssm": ["DeepStateSpaceModel"],
        ".masked": ["MaskedSequenceModel"],
        ".neural_hmm": ["NeuralHMM"],
        ".classifier": ["SequenceClassifier"],
        ".density": ["SequenceDensity"],
        ".regressor": ["SequenceRegressor"],
        ".sequence_vae": ["SequenceVAE"],
        "._training": [
            "TensorData",
            "TrainingHistory",
            "TrainingOptions",
            "evaluate_loss",
            "run_training",
            "seeded",
            "train_module",
        ],
        ".vae": ["VAE"],
    },
)
