"""probkit: probabilistic modeling with a scikit-learn API.

Exponential-family distributions, mixtures and hidden Markov models fitted by one EM
engine, variational inference with Pyro, and neural sequence models, all on a torch
compute core with numpy in and out.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
