"""hmmlearn 0.3.3's API on probkit's HMMs: change one import, keep the program.

``from probkit.compat.hmmlearn import hmm, vhmm`` replaces ``from hmmlearn import hmm, vhmm``:

* :mod:`probkit.compat.hmmlearn.hmm`: ``GaussianHMM``, ``GMMHMM``, ``CategoricalHMM``,
  ``MultinomialHMM``, ``PoissonHMM``;
* :mod:`probkit.compat.hmmlearn.vhmm`: ``VariationalGaussianHMM``, ``VariationalCategoricalHMM``;
* :mod:`probkit.compat.hmmlearn.base`: ``ConvergenceMonitor`` and ``BaseHMM`` (for
  subclasses that define their own emission log-likelihoods).

Each class is a thin subclass of the probkit estimator (:mod:`probkit.hmm`) with hmmlearn's
constructor signature, defaults and calling conventions; the algorithms are probkit's.
The differences that remain, and why, are listed in the documentation ("Coming from
hmmlearn").

Examples
--------
>>> import numpy as np
>>> from probkit.compat.hmmlearn import hmm
>>> model = hmm.GaussianHMM(n_components=2, n_iter=20, random_state=0)
>>> X = np.r_[np.random.RandomState(0).normal(0, 1, (100, 1)), np.random.RandomState(1).normal(5, 1, (100, 1))]
>>> model = model.fit(X, [100, 100])
>>> log_prob, posteriors = model.score_samples(X, [100, 100])
>>> model.monitor_.converged, posteriors.shape
(True, (200, 2))
"""

from probkit.compat.hmmlearn import base, hmm, vhmm

__all__ = ["base", "hmm", "vhmm"]
