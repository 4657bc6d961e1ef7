"""probkit: probabilistic modeling with a scikit-learn API.

Exponential-family distributions, mixtures and hidden Markov models fitted by one EM
engine, variational inference with Pyro, and neural sequence models, all on a torch
compute core with numpy in and out.

The names below are imported on first use, so ``import probkit`` is cheap and Pyro is
loaded only by the variational estimators.

Examples
--------
>>> import numpy as np
>>> from probkit import GaussianMixture
>>> X = np.random.RandomState(0).normal(size=(100, 2))
>>> GaussianMixture(n_components=1).fit(X).means_.shape
(1, 2)
"""

from probkit.utils._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ARHMM": "probkit.hmm",
    "BayesianGaussianMixture": "probkit.mixture",
    "BayesianMixture": "probkit.mixture",
    "CategoricalHMM": "probkit.hmm",
    "CollapsedGibbsLDA": "probkit.topics",
    "GMMHMM": "probkit.hmm",
    "GaussianHMM": "probkit.hmm",
    "GaussianMixture": "probkit.mixture",
    "GeneralizedLinearClassifier": "probkit.glm",
    "GeneralizedLinearModel": "probkit.glm",
    "HMM": "probkit.hmm",
    "HSMM": "probkit.hsmm",
    "InputDrivenHMM": "probkit.hmm",
    "LatentDirichletAllocation": "probkit.topics",
    "LinearGaussianSSM": "probkit.ssm",
    "MixtureModel": "probkit.mixture",
    "MultinomialHMM": "probkit.hmm",
    "NaiveBayes": "probkit.naive_bayes",
    "PoissonHMM": "probkit.hmm",
    "VariationalHMM": "probkit.hmm",
    "get_num_threads": "probkit.utils.threads",
    "load": "probkit.io",
    "set_num_threads": "probkit.utils.threads",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted([*_EXPORTS, "__version__"])
