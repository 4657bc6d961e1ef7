"""probkit: probabilistic modeling with a scikit-learn API.

Exponential-family distributions, mixtures and hidden Markov models fitted by one EM
engine, variational inference with Pyro, and neural sequence models, all on a torch
compute core with numpy in and out.

Examples
--------
>>> import numpy as np
>>> from probkit import GaussianMixture
>>> X = np.random.RandomState(0).normal(size=(100, 2))
>>> GaussianMixture(n_components=1).fit(X).means_.shape
(1, 2)
"""

from probkit.hmm import GMMHMM, HMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM, VariationalHMM
from probkit.io import load
from probkit.mixture import BayesianGaussianMixture, BayesianMixture, GaussianMixture, MixtureModel
from probkit.ssm import LinearGaussianSSM
from probkit.utils.threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "BayesianGaussianMixture",
    "BayesianMixture",
    "CategoricalHMM",
    "GMMHMM",
    "GaussianHMM",
    "GaussianMixture",
    "HMM",
    "LinearGaussianSSM",
    "MixtureModel",
    "MultinomialHMM",
    "PoissonHMM",
    "VariationalHMM",
    "__version__",
    "get_num_threads",
    "load",
    "set_num_threads",
]
