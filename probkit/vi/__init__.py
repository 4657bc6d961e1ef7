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
* MCMC beyond NUTS, without Pyro: Gibbs samplers of the conjugate models
  (:func:`gibbs_mixture`, :func:`gibbs_hmm`, :func:`gibbs_lda`), adaptive random-walk
  Metropolis for small custom models (:func:`random_walk_metropolis`), their common
  :class:`MCMCResult` and the diagnostics :func:`rhat`, :func:`ess`, :func:`mcse`
  (rank-normalised split R-hat and effective sample sizes of Vehtari et al. 2021).

The estimators built on these are :class:`probkit.BayesianGaussianMixture`,
:class:`probkit.BayesianMixture` and :class:`probkit.VariationalHMM`.

Examples
--------
>>> from probkit.vi import fit_svi, ParamScope
>>> callable(fit_svi), ParamScope().names()
(True, [])
"""

from probkit.utils._lazy import lazy_package

# Pyro is imported by the first use of a name that needs it, so the classical estimators
# (which use only the conjugate helpers) work where Pyro is not installed.
__getattr__, __dir__, __all__ = lazy_package(
    __name__,
    {
        ".conjugate": ["CONJUGATE_FAMILIES", "ConjugateFamily"],
        ".svi": ["GUIDES", "LOSSES", "SVIResult", "fit_svi", "make_elbo", "make_guide"],
        ".mcmc_result": ["MCMCResult"],
        "._pyro": ["ParamScope"],
        ".diagnostics": ["ess", "mcse", "rhat"],
        "probkit.utils.random": ["forked_rng"],
        ".gibbs": ["gibbs_hmm", "gibbs_lda", "gibbs_mixture"],
        ".mh": ["random_walk_metropolis"],
        ".mcmc": ["run_nuts"],
        "probkit.utils.threads": ["torch_threads"],
    },
)
