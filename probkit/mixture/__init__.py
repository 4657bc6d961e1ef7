"""Mixture models fitted by EM: GaussianMixture (scikit-learn's API) and MixtureModel (any family);
and their Bayesian counterparts fitted by variational inference: BayesianGaussianMixture and
BayesianMixture."""

from probkit.mixture.bayesian import BayesianGaussianMixture, BayesianMixture
from probkit.mixture.gaussian_mixture import GaussianMixture
from probkit.mixture.mixture_model import MixtureModel

__all__ = ["BayesianGaussianMixture", "BayesianMixture", "GaussianMixture", "MixtureModel"]
