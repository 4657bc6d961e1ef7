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
from probkit.distributions.continuous import Beta, Exponential, LogNormal
from probkit.distributions.dirichlet import Dirichlet
from probkit.distributions.discrete import Bernoulli, Binomial, Geometric, Multinomial
from probkit.distributions.gamma import Gamma
from probkit.distributions.independent import Independent
from probkit.distributions.mvn import COVARIANCE_TYPES, MultivariateNormal
from probkit.distributions.laplace import Laplace
from probkit.distributions.negative_binomial import NegativeBinomial
from probkit.distributions.normal import Normal
from probkit.distributions.poisson import Poisson
from probkit.distributions.priors import NormalGamma, NormalWishart
from probkit.distributions.student_t import MultivariateStudentT, StudentT
from probkit.distributions.von_mises import VonMises
from probkit.distributions.wishart import InverseWishart, Wishart

__all__ = [
    "COVARIANCE_TYPES",
    "Bernoulli",
    "Beta",
    "Binomial",
    "Categorical",
    "Dirichlet",
    "Exponential",
    "ExponentialFamily",
    "Gamma",
    "Geometric",
    "Independent",
    "InverseWishart",
    "Laplace",
    "LogNormal",
    "Multinomial",
    "MultivariateNormal",
    "MultivariateStudentT",
    "NegativeBinomial",
    "Normal",
    "NormalGamma",
    "NormalWishart",
    "Poisson",
    "StudentT",
    "SufficientStats",
    "VonMises",
    "Wishart",
    "kl_divergence",
]
