"""Neural sequence models for probkit (selective state spaces, RWKV, convolutions).

Names are imported on first use; :class:`DeepStateSpaceModel` needs Pyro, the rest do not.
"""

from probkit.utils._lazy import lazy_package

__getattr__, __dir__, __all__ = lazy_package(
    __name__,
    {
        ".backbones": [
            "KINDS",
            "Backbone",
            "build_backbone",
            "count_parameters",
            "d_model_for_budget",
            "map_state",
        ],
        # local Hugging Face checkpoints
        ".pretrained": ["PretrainedLM", "load_pretrained"],
        # estimators and their training loop
        ".estimators.deep_ssm": ["DeepStateSpaceModel"],
        ".estimators.masked": ["MaskedSequenceModel"],
        ".estimators.neural_hmm": ["NeuralHMM"],
        ".estimators.classifier": ["SequenceClassifier"],
        ".estimators.density": ["SequenceDensity"],
        ".estimators.regressor": ["SequenceRegressor"],
        ".estimators.sequence_vae": ["SequenceVAE"],
        ".estimators._training": ["TrainingHistory", "train_module"],
        ".estimators.vae": ["VAE"],
    },
)
