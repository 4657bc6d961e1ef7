"""Neural sequence models for probkit (selective state spaces, RWKV, convolutions).

Names are imported on first use; :class:`DeepStateSpaceModel` needs Pyro, the rest do not.
"""

from probkit.utils._lazy import lazy_exports

_EXPORTS = {
    "KINDS": "probkit.neural.backbones",
    "Backbone": "probkit.neural.backbones",
    "build_backbone": "probkit.neural.backbones",
    "count_parameters": "probkit.neural.backbones",
    "d_model_for_budget": "probkit.neural.backbones",
    "map_state": "probkit.neural.backbones",
    # local Hugging Face checkpoints
    "PretrainedLM": "probkit.neural.pretrained",
    "load_pretrained": "probkit.neural.pretrained",
    # estimators and their training loop
    "DeepStateSpaceModel": "probkit.neural.estimators.deep_ssm",
    "MaskedSequenceModel": "probkit.neural.estimators.masked",
    "NeuralHMM": "probkit.neural.estimators.neural_hmm",
    "SequenceClassifier": "probkit.neural.estimators.classifier",
    "SequenceDensity": "probkit.neural.estimators.density",
    "SequenceRegressor": "probkit.neural.estimators.regressor",
    "SequenceVAE": "probkit.neural.estimators.sequence_vae",
    "TrainingHistory": "probkit.neural.estimators._training",
    "VAE": "probkit.neural.estimators.vae",
    "train_module": "probkit.neural.estimators._training",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
