"""Exponential-family distributions: log-densities, sufficient statistics, MLE/MAP from
weighted statistics, conjugate priors, entropy and KL divergence.

Examples
--------
>>> import numpy as np
>>> from probkit.distributions import Poisson
>>> Poisson().fit(np.array([2, 4])).rate
array(3.)
"""

from probkit.distributions.base import ExponentialFamily, SufficientStats, kl_divergence
from probkit.distributions.categorical import Categorical
from probkit.distributions.gamma import Gamma
from probkit.distributions.mvn import COVARIANCE_TYPES, MultivariateNormal
from probkit.distributions.normal import Normal
from probkit.distributions.poisson import Poisson

__all__ = [
    "COVARIANCE_TYPES",
    "Categorical",
    "ExponentialFamily",
    "Gamma",
    "MultivariateNormal",
    "Normal",
    "Poisson",
    "SufficientStats",
    "kl_divergence",
]
