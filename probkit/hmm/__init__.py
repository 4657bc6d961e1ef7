"""Hidden Markov models fitted by Baum-Welch EM, with hmmlearn's names.

``GaussianHMM``, ``GMMHMM``, ``CategoricalHMM``, ``MultinomialHMM``, ``PoissonHMM`` and
``HMM(emission=...)`` for any probkit family and ``ARHMM`` (switching linear
autoregressions) and ``InputDrivenHMM`` (GLM-HMM: covariate-driven transitions and emissions) share one base (:class:`BaseHMM`), one EM
engine and the forward-backward kernels of :mod:`probkit.inference`; ``VariationalHMM``
is their Bayesian counterpart (variational Bayes EM, Pyro SVI or NUTS).
"""

from probkit.hmm._base import BaseHMM, EmptyStateWarning
from probkit.hmm._streaming import HMMStreamFilter
from probkit.hmm.autoregressive import ARHMM
from probkit.hmm.discrete import CategoricalHMM, MultinomialHMM, PoissonHMM
from probkit.hmm.gaussian import GaussianHMM
from probkit.hmm.generic import HMM
from probkit.hmm.gmm import GMMHMM
from probkit.hmm.input_driven import InputDrivenHMM
from probkit.hmm.variational import VariationalHMM

__all__ = ["ARHMM", "BaseHMM", "CategoricalHMM", "EmptyStateWarning", "GMMHMM", "GaussianHMM", "HMM", "HMMStreamFilter",
           "InputDrivenHMM", "MultinomialHMM", "PoissonHMM", "VariationalHMM"]
