"""Mixture models fitted by EM: GaussianMixture (scikit-learn's API) and MixtureModel (any family)."""

from probkit.mixture.gaussian_mixture import GaussianMixture
from probkit.mixture.mixture_model import MixtureModel

__all__ = ["GaussianMixture", "MixtureModel"]
