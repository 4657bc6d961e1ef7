"""Variational inference: a Pyro SVI runner, NUTS references and conjugate VB helpers.

* :func:`fit_svi` -- stochastic variational inference for any Pyro model and guide
  (Trace, TraceEnum and TraceMeanField ELBOs, autoguides or the user's guide,
  ClippedAdam, smoothed stopping rule, seeded and isolated in its own parameter store).
* :func:`run_nuts` -- NUTS samples of a Pyro model with its discrete sites enumerated:
  the gold standard variational posteriors are compared against on small problems.
* :class:`ParamScope`, :func:`forked_rng` -- the isolation of Pyro's global state that
  lets several models live in one process.
* :class:`ConjugateFamily` -- the expectations that closed-form variational Bayes needs
  for each conjugate exponential family (used by the Bayesian mixtures and the
  variational HMM).

The estimators built on these are :class:`probkit.BayesianGaussianMixture`,
:class:`probkit.BayesianMixture` and :class:`probkit.VariationalHMM`.

Examples
--------
>>> from probkit.vi import fit_svi, ParamScope
>>> callable(fit_svi), ParamScope().names()
(True, [])
"""

from probkit.vi._pyro import ParamScope, forked_rng, torch_threads
from probkit.vi.conjugate import CONJUGATE_FAMILIES, ConjugateFamily
from probkit.vi.mcmc import run_nuts
from probkit.vi.svi import GUIDES, LOSSES, SVIResult, fit_svi, make_elbo, make_guide

__all__ = [
    "CONJUGATE_FAMILIES",
    "ConjugateFamily",
    "GUIDES",
    "LOSSES",
    "ParamScope",
    "SVIResult",
    "fit_svi",
    "forked_rng",
    "make_elbo",
    "make_guide",
    "run_nuts",
    "torch_threads",
]
