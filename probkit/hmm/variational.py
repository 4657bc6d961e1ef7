"""VariationalHMM: Bayesian HMMs fitted by variational Bayes EM or Pyro SVI, or sampled by NUTS."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

from probkit.base import StrOptions, constraints_without, non_negative_int, positive_int, positive_real
from probkit.distributions import Dirichlet, Gamma, NormalGamma, NormalWishart, Wishart
from probkit.distributions._sampling import standard_gamma
from probkit.distributions.dirichlet import dirichlet_expected_log
from probkit.distributions.mvn import n_covariance_parameters
from probkit.distributions.wishart import wishart_bartlett
from probkit.em.engine import EStepResult, fit_sequence_em
from probkit.hmm._base import BaseHMM
from probkit.hmm._docs import HMM_DOCS
from probkit.hmm._emissions import CountEmission, GaussianEmission
from probkit.inference import forward_backward, forward_filter, pad_sequences
from probkit.utils._array import to_numpy
from probkit.utils._linalg import cholesky
from probkit.utils.random import check_random_state, torch_generator
from probkit.utils.sequences import check_y_slot
from probkit.utils.validation import check_stochastic
from probkit.utils.threads import torch_threads
from probkit.vi._options import HMM_FORMULATIONS
from probkit.vi.conjugate import ConjugateFamily

__all__ = ["VariationalHMM", "gaussian_conjugate"]

EMISSIONS = ("gaussian", "categorical", "poisson")
INFERENCE_METHODS = ("vem", "svi", "nuts")
GAUSSIAN_COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")
# the Pyro models (SVI, NUTS) have one precision per state (full) or per state and feature (diag)
_PYRO_COVARIANCE_TYPES = ("full", "diag")


def _dirichlet_kl(alpha, alpha0):
    """``KL(Dir(alpha) || Dir(alpha0))`` over the rows, summed (0 for a single category)."""
    if alpha.shape[-1] < 2:
        return 0.0
    return float(Dirichlet(concentration=alpha).kl_divergence(Dirichlet(concentration=alpha0.expand_as(alpha))).sum())


def _as_dirichlet(alpha):
    """A Dirichlet over the rows of ``alpha``; ``None`` for a single state (probability one, no density)."""
    return Dirichlet(concentration=alpha) if alpha.shape[-1] >= 2 else None


def _t64(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _broadcast(value, shape, name):
    try:
        arr = np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), shape))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must broadcast to shape {shape}, got shape {np.shape(value)}") from exc
    return arr


def _positive_array(value, shape, name, default):
    arr = _broadcast(default if value is None else value, shape, name)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be positive and finite (a concentration, precision or scale), got {value!r}")
    return arr


def _spd_matrices(value, shape, name):
    """``value`` broadcast to ``shape`` (..., d, d), checked to hold symmetric positive-definite matrices."""
    arr = _broadcast(value, shape, name)
    if not np.all(np.isfinite(arr)) or not np.allclose(arr, np.swapaxes(arr, -1, -2)) or \
            np.any(np.linalg.eigvalsh(arr) <= 0):
        raise ValueError(f"{name} must hold symmetric positive-definite matrices of shape {shape}")
    return arr


def _exact_array(value, shape, name, positive=False):
    """``value`` as a float64 array of exactly ``shape`` (a hand-set posterior: no broadcasting)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)):
        raise ValueError(f"{name} must hold {'positive ' if positive else ''}finite values, got {value!r}")
    return arr


def gaussian_conjugate(covariance_type, means, beta, dof, scale):
    """The Normal-Wishart / Normal-Gamma distribution of the Gaussian emissions from hmmlearn-named arrays.

    ``full``: NormalWishart with batch (K,). ``tied``: the same with the (scalar) ``dof`` and
    the ``(d, d)`` ``scale`` repeated for every state (see :class:`_SharedPrecisionFamily`).
    ``diag``: NormalGamma with batch (K, d), ``tau ~ Gamma(dof / 2, scale / 2)`` per feature.
    ``spherical``: NormalGamma with batch (K, d) and ``tau_k ~ Gamma(d dof_k / 2, d scale_k / 2)``
    repeated over the features: with this parameterisation a state's ``dof`` grows by one per
    (weighted) observation and ``scale`` by the mean over the features of its squared
    deviations, as hmmlearn counts them, and ``E[tau_k] = dof_k / scale_k``; for one
    feature it is the diagonal model.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    means : array-like of shape (n_components, n_features)
        Mean of each state's emission mean.
    beta : array-like of shape (n_components,)
        Precision scale of each state's mean (a pseudo-count).
    dof : array-like of shape (n_components,), or float for ``tied``
        Degrees of freedom of the precision.
    scale : array-like
        Scale of the precision: ``(K, d, d)`` full, ``(d, d)`` tied, ``(K, d)`` diag,
        ``(K,)`` spherical.

    Returns
    -------
    NormalWishart or NormalGamma

    Examples
    --------
    >>> import numpy as np
    >>> prior = gaussian_conjugate("diag", np.zeros((2, 3)), np.ones(2), np.full(2, 5.0), np.ones((2, 3)))
    >>> type(prior).__name__, tuple(prior.batch_shape)
    ('NormalGamma', (2, 3))
    """
    means = np.asarray(means, dtype=np.float64)
    beta, dof, scale = (np.asarray(v, dtype=np.float64) for v in (beta, dof, scale))
    k, d = means.shape
    if covariance_type == "full":
        return NormalWishart(loc=means, mean_precision=beta, degrees_of_freedom=dof, covariance=scale)
    if covariance_type == "tied":
        return NormalWishart(loc=means, mean_precision=beta, degrees_of_freedom=np.full(k, float(dof)),
                             covariance=np.repeat(scale[None], k, 0))

    def per_feature(v):
        return np.repeat(v[:, None], d, 1) if v.ndim == 1 else v

    if covariance_type == "spherical":
        dof, scale = d * dof, per_feature(d * scale)
    return NormalGamma(loc=means, mean_precision=per_feature(beta), concentration=0.5 * per_feature(dof),
                       rate=0.5 * scale)


class _SharedPrecisionFamily:
    """Variational Bayes for Gaussian emissions whose precision is shared.

    ``tied``: one Wishart precision ``L`` for all states, ``mu_k | L ~ N(m_k, (beta_k L)^-1)``.
    ``spherical``: one Gamma precision ``tau_k`` per state for all features,
    ``mu_k | tau_k ~ N(m_k, (beta_k tau_k)^-1 I)``.

    The posterior is kept in the unshared family of :class:`~probkit.vi.conjugate.ConjugateFamily`
    -- a NormalWishart with batch (K,) (tied) or a NormalGamma with batch (K, d)
    (spherical) -- whose precision parameters are equal across the states (tied) or the
    features (spherical). That family's expected log-densities are then exactly those of
    the shared model. Its update, done per state (per feature), adds each member's own
    statistics to the precision's prior; the shared posterior adds all of them once:
    ``nu = nu_0 + sum (nu_k - nu_0)`` and likewise for the scale matrix (tied) or the
    Gamma's shape and rate (spherical). Its KL counts the precision's KL once per member;
    the shared KL counts it once.
    """

    def __init__(self, covariance_type):
        self.covariance_type = covariance_type
        self.base = ConjugateFamily("gaussian" if covariance_type == "tied" else "normal")

    def center_on(self, x):
        self.base.center_on(x)
        return self

    def summarize(self, x, resp):
        return self.base.summarize(x, resp)

    def expected_log_likelihood(self, post, x):
        return self.base.expected_log_likelihood(post, x)

    def posterior(self, stats, prior):
        unshared = self.base.posterior(stats, prior)
        p, p0 = unshared.torch_params(), prior.torch_params()
        if self.covariance_type == "tied":
            k = p["loc"].shape[0]
            nu0, cov0 = p0["degrees_of_freedom"].expand(k), p0["covariance"].expand_as(p["covariance"])
            nu = nu0[0] + (p["degrees_of_freedom"] - nu0).sum()
            cov = cov0[0] + (p["covariance"] - cov0).sum(0)
            cov = 0.5 * (cov + cov.mT)
            return NormalWishart(loc=p["loc"], mean_precision=p["mean_precision"], degrees_of_freedom=nu.expand(k),
                                 covariance=cov.expand(k, *cov.shape))
        shape = p["loc"].shape  # (K, d)
        a0, b0 = p0["concentration"].expand(shape), p0["rate"].expand(shape)
        a = a0[:, 0] + (p["concentration"] - a0).sum(1)
        b = b0[:, 0] + (p["rate"] - b0).sum(1)
        return NormalGamma(loc=p["loc"], mean_precision=p["mean_precision"], concentration=a[:, None].expand(shape),
                           rate=b[:, None].expand(shape))

    def shared_precision_kl(self, post, prior):
        """KL of the shared precision's posterior from its prior: a scalar (tied), one per state (spherical)."""
        p, p0 = post.torch_params(), prior.torch_params()
        if self.covariance_type == "tied":
            k = p["loc"].shape[0]
            q_w = Wishart(df=p["degrees_of_freedom"].expand(k)[0], scale_matrix=post._scale_matrix()[0])
            p_w = Wishart(df=p0["degrees_of_freedom"].expand(k)[0], scale_matrix=prior._scale_matrix().expand(
                k, *p["covariance"].shape[1:])[0])
            return q_w._kl(p_w)
        shape = p["loc"].shape
        return Gamma(concentration=p["concentration"][:, 0], rate=p["rate"][:, 0])._kl(
            Gamma(concentration=p0["concentration"].expand(shape)[:, 0], rate=p0["rate"].expand(shape)[:, 0]))

    def kl(self, post, prior):
        """``KL(q || p)`` as one value per state, shape (K,) (the tied precision's share split evenly)."""
        unshared = self.base.kl(post, prior)
        k, d = post.torch_params()["loc"].shape
        repeats = (k - 1) / k if self.covariance_type == "tied" else d - 1
        return unshared - repeats * self.shared_precision_kl(post, prior)


@HMM_DOCS.fill
class VariationalHMM(BaseHMM):
    """Bayesian hidden Markov model: Dirichlet priors on the start and transition rows,
    conjugate priors on the emissions, fitted by variational Bayes.

    ``inference="vem"`` is variational Bayes EM (as hmmlearn's ``VariationalGaussianHMM``
    and ``VariationalCategoricalHMM``): the posterior ``q(states) q(start) q(transitions)
    q(emissions)`` is updated in closed form. The E-step is the forward-backward kernel of
    :mod:`probkit.inference` run on sub-normalised parameters -- ``exp(E[log startprob])``,
    ``exp(E[log transmat])`` and ``exp(E[log p(x | state)])`` -- whose log-likelihood ``log Z``
    gives the exact evidence lower bound ``log Z - KL(q(start)||p) - sum KL(q(rows)||p) -
    sum KL(q(emissions)||p)``; the M-step adds the expected counts to the priors. It runs on
    the EM engine (``n_iter``, ``tol``, ``n_init`` as in :class:`~probkit.GaussianHMM`).

    ``inference="svi"`` maximises the ELBO of the same model with Pyro: the guide keeps the
    conjugate families, the state paths are summed out exactly (``hmm_formulation``),
    sequences can be subsampled (``batch_size``); it starts from the same initial posterior
    as VB-EM. ``inference="nuts"`` samples the exact posterior with NUTS (paths summed out),
    started at a VB-EM posterior mean; for small data, as a reference.

    Parameters
    ----------
    %(n_components)s
    emission : {"gaussian", "categorical", "poisson"}, default="gaussian"
    covariance_type : {"full", "diag", "tied", "spherical"}, default="full"
        Gaussian emissions: ``full`` has Normal-Wishart priors (hmmlearn's model);
        ``tied`` one Wishart precision shared by the states, with a Normal prior on each
        state's mean given it (hmmlearn's model); ``diag`` has independent Normal-Gamma
        priors per feature (a proper diagonal model; hmmlearn's ``diag`` instead uses the
        log-determinant expectation of a full Wishart); ``spherical`` one Gamma precision
        per state shared by the features, ``tau_k ~ Gamma(d dof_k / 2, d scale_k / 2)``
        (hmmlearn's updates of ``dof`` and ``scale``; its expected log-densities for one
        feature). ``tied`` and ``spherical`` need ``inference="vem"``.
    inference : {"vem", "svi", "nuts"}, default="vem"
    startprob_prior, transmat_prior : float or array-like, optional
        Dirichlet concentrations; ``1 / n_components`` by default (hmmlearn's).
    means_prior, beta_prior, dof_prior, scale_prior : optional
        Gaussian priors with hmmlearn's names, defaults and shapes: prior means (data mean),
        their precision scale ``beta`` (1), the degrees of freedom (``n_features``; one
        number for ``tied``, one per state otherwise) and the Wishart inverse scale
        (``1e-3 I``, ``(d, d)`` for ``tied``; per-feature ``1e-3`` for ``diag``, a
        Gamma(dof/2, scale/2) on each precision; one ``1e-3`` per state for ``spherical``).
    emissionprob_prior : float or array-like, optional
        Categorical: Dirichlet concentration of each emission row (``1 / n_symbols``).
    n_features : int, optional
        Categorical: number of symbols (inferred from the data).
    lambdas_prior, lambdas_weight : float or array-like, optional
        Poisson: shape and rate of the Gamma prior of each rate (1 and ``1 / mean(X)``).
    %(em_options)s
    params, init_params : str, default="ste"
        Posteriors updated / initialised: ``s`` start, ``t`` transitions, ``e`` emissions.
        Posteriors not initialised are read from the fitted attributes (e.g. set by hand).
    num_steps, learning_rate, batch_size, num_particles, svi_tol
        SVI: maximum steps, ClippedAdam learning rate (decayed tenfold over ``num_steps``),
        sequences per step (all by default), guide samples per step, and the relative
        change of the mean ELBO over windows of 100 steps that stops the fit. (``n_iter``,
        ``tol`` and ``n_init`` are VB-EM's, whose objective is the total lower bound; the
        defaults ``n_iter=100``, ``tol=1e-6`` are hmmlearn's variational models'.)
    hmm_formulation : {"discrete_hmm", "markov", "probkit"}, default="discrete_hmm"
        SVI: how Pyro sums out the state paths (see :class:`probkit.vi.models.HMMSVI`);
        ``discrete_hmm`` was the fastest in ``benchmarks/bench_vi.py``.
    num_samples, warmup_steps
        NUTS draws kept and adaptation steps.
    n_predictive_samples : int, default=100
        Posterior draws averaged by :meth:`score`.
    %(compute_options)s

    Attributes
    ----------
    posterior_ : dict
        ``"startprob"``: :class:`~probkit.distributions.Dirichlet`; ``"transmat"``: a
        Dirichlet with batch (K,) (one per row) -- ``None`` for a single state, whose
        probabilities are one; ``"emission"``: NormalWishart (full), NormalGamma (diag,
        batch (K, d)), Dirichlet (categorical, batch (K, 1)) or Gamma (poisson, batch (K, d)).
        ``tied``: a NormalWishart with batch (K,) whose degrees of freedom and covariance
        are equal across the states (they describe the one shared Wishart); ``spherical``:
        a NormalGamma with batch (K, d) whose shape and rate are equal across the features.
    prior_ : dict
        The priors: Dirichlet concentrations (tensors) of the start and the rows, and the
        emission prior distribution.
    startprob_posterior_, transmat_posterior_ : ndarray
        Dirichlet concentrations (hmmlearn's names); likewise ``means_posterior_``,
        ``beta_posterior_``, ``dof_posterior_``, ``scale_posterior_`` (Gaussian),
        ``emissionprob_posterior_`` (categorical), and the ``*_prior_`` arrays.
    startprob_, transmat_ : ndarray
        Posterior means (used by :meth:`decode`, :meth:`predict`, :meth:`sample`).
    means_, covars_ (Gaussian), emissionprob_ (categorical), lambdas_ (Poisson)
        Emission parameters at the posterior means (``covars_ = scale / dof``, as hmmlearn;
        the compact shapes of :class:`~probkit.GaussianHMM`: ``(d, d)`` for tied, ``(K,)``
        for spherical).
    elbo_history_ : ndarray
        The lower bound after each VB-EM iteration, or the ELBO estimate of each SVI step.
    lower_bound_ : float
        Final lower bound (VB-EM), or mean ELBO over the last 50 SVI steps.
    posterior_samples_ : dict of ndarray
        NUTS only: ``startprob`` (S, K), ``transmat`` (S, K, K) and the emission parameters.
    %(fit_attrs)s
        ``monitor_``, ``n_iter_`` and ``converged_`` are VB-EM's.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import GaussianHMM, VariationalHMM
    >>> gen = GaussianHMM(2, covariance_type="diag")
    >>> gen.startprob_ = np.array([0.5, 0.5])
    >>> gen.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> gen.means_ = np.array([[0.0], [4.0]])
    >>> gen.covars_ = np.array([[1.0], [1.0]])
    >>> X, Z = gen.sample(400, random_state=0)
    >>> vh = VariationalHMM(n_components=2, random_state=0).fit(X, lengths=[200, 200])
    >>> np.round(np.sort(vh.means_[:, 0]), 1)
    array([-0.2,  4. ])
    >>> bool(np.all(np.diff(vh.elbo_history_) > -1e-8))   # the bound never decreases
    True
    >>> vh.posterior_["transmat"].batch_shape
    torch.Size([2])
    """

    _emission_letters = "e"

    def __init__(self, n_components=1, emission="gaussian", *, covariance_type="full", inference="vem",
                 startprob_prior=None, transmat_prior=None, means_prior=None, beta_prior=None, dof_prior=None,
                 scale_prior=None, emissionprob_prior=None, n_features=None, lambdas_prior=None, lambdas_weight=None,
                 algorithm="viterbi", random_state=None, n_iter=100, tol=1e-6, n_init=1, verbose=False,
                 params="ste", init_params="ste", implementation="log", num_steps=1000, learning_rate=0.05,
                 batch_size=None, num_particles=1, svi_tol=1e-4, hmm_formulation="discrete_hmm", num_samples=200,
                 warmup_steps=None, n_predictive_samples=100, device=None, dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior, transmat_prior=transmat_prior,
                         algorithm=algorithm, random_state=random_state, n_iter=n_iter, tol=tol, n_init=n_init,
                         verbose=verbose, params=params, init_params=init_params, implementation=implementation,
                         device=device, dtype=dtype)
        self.emission = emission
        self.covariance_type = covariance_type
        self.inference = inference
        self.means_prior = means_prior
        self.beta_prior = beta_prior
        self.dof_prior = dof_prior
        self.scale_prior = scale_prior
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight
        self.num_steps = num_steps
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.num_particles = num_particles
        self.svi_tol = svi_tol
        self.hmm_formulation = hmm_formulation
        self.num_samples = num_samples
        self.warmup_steps = warmup_steps
        self.n_predictive_samples = n_predictive_samples

    # ------------------------------------------------------------------ options and data
    _parameter_constraints = {
        **constraints_without(BaseHMM._parameter_constraints, "missing"),
        "emission": [StrOptions(set(EMISSIONS))],
        "covariance_type": [StrOptions(set(GAUSSIAN_COVARIANCE_TYPES))],
        "inference": [StrOptions(set(INFERENCE_METHODS))],
        **{name: [None, "array-like", Real] for name in (
            "startprob_prior", "transmat_prior", "means_prior", "beta_prior", "dof_prior", "scale_prior",
            "emissionprob_prior", "lambdas_prior", "lambdas_weight")},
        "n_features": [None, *positive_int],
        "num_steps": positive_int,
        "learning_rate": positive_real,
        "batch_size": [None, *positive_int],
        "num_particles": positive_int,
        "svi_tol": [None, Real],
        "hmm_formulation": [StrOptions(set(HMM_FORMULATIONS))],
        "num_samples": positive_int,
        "warmup_steps": [None, *non_negative_int],
        "n_predictive_samples": positive_int,
    }

    def _check_options(self):
        if self.missing != "error":
            raise ValueError("VariationalHMM does not marginalise missing values (missing='error' only)")
        if self.emission == "gaussian" and self.inference != "vem" and \
                self.covariance_type not in _PYRO_COVARIANCE_TYPES:
            raise ValueError(f"covariance_type={self.covariance_type!r} needs inference='vem': the Pyro models of "
                             f"inference={self.inference!r} have covariance types {_PYRO_COVARIANCE_TYPES}")
        super()._check_options()

    @property
    def _kind(self):
        if self.emission == "gaussian":
            return f"gaussian_{self.covariance_type}"
        return self.emission

    def _family(self):
        if self._kind in ("gaussian_tied", "gaussian_spherical"):
            return _SharedPrecisionFamily(self.covariance_type)
        return ConjugateFamily({"gaussian_full": "gaussian", "gaussian_diag": "normal", "categorical": "categorical",
                                "poisson": "poisson"}[self._kind])

    def _validate_emission_X(self, X, reset, allow_nan):
        if self.emission == "gaussian":
            return self._validate_X(X, reset=reset)
        X = self._validate_counts_X(X, reset)
        if self.emission == "categorical":
            if X.shape[1] != 1:
                raise ValueError(f"X must have shape (n_samples, 1) of symbols for categorical emissions, got {X.shape}")
            m = self.n_features if reset else self._n_symbols()
            if m is not None and X.max() >= m:
                raise ValueError(f"X holds symbol {int(X.max())} but the model emits symbols 0 .. {m - 1}")
        return X

    def _n_symbols(self):
        if hasattr(self, "emissionprob_posterior_"):
            return np.asarray(self.emissionprob_posterior_).shape[1]
        return self.n_features

    # ------------------------------------------------------------------ priors
    def _resolve_priors(self, data):
        """The priors as probkit distributions (and their hmmlearn-named arrays)."""
        k = self.n_components
        X = data.X
        n, d = X.shape
        start = _positive_array(self.startprob_prior, (k,), "startprob_prior", 1.0 / k)
        trans = _positive_array(self.transmat_prior, (k, k), "transmat_prior", 1.0 / k)
        self.startprob_prior_, self.transmat_prior_ = start, trans
        kind = self._kind
        if kind.startswith("gaussian"):
            means = _broadcast(X.mean(0) if self.means_prior is None else self.means_prior, (k, d), "means_prior")
            if not np.all(np.isfinite(means)):
                raise ValueError("means_prior contains NaN or infinity")
            beta = _positive_array(self.beta_prior, (k,), "beta_prior", 1.0)
            dof = _broadcast(float(d) if self.dof_prior is None else self.dof_prior,
                             () if kind == "gaussian_tied" else (k,), "dof_prior")
            if kind == "gaussian_tied":
                if not (np.isfinite(dof) and dof > d - 1):
                    raise ValueError(f"dof_prior must be greater than n_features - 1 = {d - 1}, got {self.dof_prior!r}")
                scale = _spd_matrices(1e-3 * np.eye(d) if self.scale_prior is None else self.scale_prior, (d, d),
                                      "scale_prior")
                dof = float(dof)
            elif kind == "gaussian_spherical":
                if not np.all(np.isfinite(dof) & (dof > 0)):
                    raise ValueError(f"dof_prior must be positive for covariance_type='spherical', got {self.dof_prior!r}")
                scale = _positive_array(self.scale_prior, (k,), "scale_prior", 1e-3)
            elif kind == "gaussian_full":
                if not np.all(dof > d - 1):
                    raise ValueError(f"dof_prior must be greater than n_features - 1 = {d - 1}, got {self.dof_prior!r}")
                scale = _spd_matrices(1e-3 * np.eye(d) if self.scale_prior is None else self.scale_prior, (k, d, d),
                                      "scale_prior")
            else:
                if not np.all(dof > 0):
                    raise ValueError(f"dof_prior must be positive for covariance_type='diag', got {self.dof_prior!r}")
                scale = _positive_array(self.scale_prior, (k, d), "scale_prior", 1e-3)
            emission = gaussian_conjugate(self.covariance_type, means, beta, dof, scale)
            self.means_prior_, self.beta_prior_, self.dof_prior_, self.scale_prior_ = means, beta, dof, scale
        elif kind == "categorical":
            if self.n_features is not None:
                m = int(self.n_features)
            elif hasattr(self, "emissionprob_posterior_") and "e" not in self.init_params:
                m = np.asarray(self.emissionprob_posterior_).shape[1]
            else:
                m = int(X.max()) + 1
            if m < int(X.max()) + 1:
                raise ValueError(f"X holds symbol {int(X.max())} but the model has {m} symbols")
            alpha = _positive_array(self.emissionprob_prior, (k, m), "emissionprob_prior", 1.0 / m)
            self.emissionprob_prior_ = alpha
            self.n_symbols_ = m
            emission = Dirichlet(concentration=alpha[:, None, :])
        else:
            mean = np.maximum(X.mean(0), 1e-3)
            shape = _positive_array(self.lambdas_prior, (k, d), "lambdas_prior", 1.0)
            rate = _positive_array(self.lambdas_weight, (k, d), "lambdas_weight", 1.0 / mean)
            self.lambdas_prior_, self.lambdas_weight_ = shape, rate
            emission = Gamma(concentration=shape, rate=rate)
        return {"startprob": _t64(start), "transmat": _t64(trans), "emission": emission}

    # ------------------------------------------------------------------ posterior <-> attributes
    def _emission_posterior_from_attributes(self):
        kind = self._kind
        if kind in ("gaussian_full", "gaussian_diag"):
            return gaussian_conjugate(self.covariance_type, self.means_posterior_, self.beta_posterior_,
                                       self.dof_posterior_, self.scale_posterior_)
        if kind in ("gaussian_tied", "gaussian_spherical"):
            means = np.asarray(self.means_posterior_, dtype=np.float64)
            if means.ndim != 2:
                raise ValueError(f"means_posterior_ must have shape (n_components, n_features), got {means.shape}")
            k, d = means.shape
            means = _exact_array(means, (self.n_components, d), "means_posterior_")
            beta = _exact_array(self.beta_posterior_, (k,), "beta_posterior_", positive=True)
            if kind == "gaussian_tied":
                dof = _exact_array(self.dof_posterior_, (), "dof_posterior_")
                if not dof > d - 1:
                    raise ValueError(f"dof_posterior_ must be greater than n_features - 1 = {d - 1}, "
                                     f"got {self.dof_posterior_!r}")
                scale = _spd_matrices(_exact_array(self.scale_posterior_, (d, d), "scale_posterior_"), (d, d),
                                      "scale_posterior_")
            else:
                dof = _exact_array(self.dof_posterior_, (k,), "dof_posterior_", positive=True)
                scale = _exact_array(self.scale_posterior_, (k,), "scale_posterior_", positive=True)
            return gaussian_conjugate(self.covariance_type, means, beta, dof, scale)
        if kind == "categorical":
            return Dirichlet(concentration=np.asarray(self.emissionprob_posterior_, dtype=np.float64)[:, None, :])
        return Gamma(concentration=self.lambdas_posterior_[0], rate=self.lambdas_posterior_[1])

    def _set_posterior_attributes(self, post):
        start, trans, em = post["startprob"], post["transmat"], post["emission"]
        self.posterior_ = {"startprob": _as_dirichlet(start), "transmat": _as_dirichlet(trans), "emission": em}
        self.startprob_posterior_ = to_numpy(start).astype(np.float64)
        self.transmat_posterior_ = to_numpy(trans).astype(np.float64)
        self.startprob_ = self.startprob_posterior_ / self.startprob_posterior_.sum()
        self.transmat_ = self.transmat_posterior_ / self.transmat_posterior_.sum(1, keepdims=True)
        kind = self._kind
        if kind == "gaussian_full":
            self.means_posterior_ = em.loc
            self.beta_posterior_ = em.mean_precision
            self.dof_posterior_ = em.degrees_of_freedom
            self.scale_posterior_ = em.covariance
            self.means_ = em.loc
            self.covars_ = em.covariance / em.degrees_of_freedom[:, None, None]
        elif kind == "gaussian_diag":
            self.means_posterior_ = em.loc
            self.beta_posterior_ = em.mean_precision
            self.dof_posterior_ = 2.0 * em.concentration
            self.scale_posterior_ = 2.0 * em.rate
            self.means_ = em.loc
            self.covars_ = em.rate / em.concentration
        elif kind == "gaussian_tied":
            self.means_posterior_ = em.loc
            self.beta_posterior_ = em.mean_precision
            self.dof_posterior_ = float(em.degrees_of_freedom[0])
            self.scale_posterior_ = em.covariance[0]
            self.means_ = em.loc
            self.covars_ = self.scale_posterior_ / self.dof_posterior_
        elif kind == "gaussian_spherical":
            d = em.loc.shape[1]
            self.means_posterior_ = em.loc
            self.beta_posterior_ = em.mean_precision[:, 0]
            self.dof_posterior_ = 2.0 * em.concentration[:, 0] / d
            self.scale_posterior_ = 2.0 * em.rate[:, 0] / d
            self.means_ = em.loc
            self.covars_ = em.rate[:, 0] / em.concentration[:, 0]
        elif kind == "categorical":
            alpha = em.concentration[:, 0, :]
            self.emissionprob_posterior_ = alpha
            self.emissionprob_ = alpha / alpha.sum(1, keepdims=True)
            self.n_symbols_ = alpha.shape[1]
        else:
            self.lambdas_posterior_ = (em.concentration, em.rate)
            self.lambdas_ = em.concentration / em.rate

    # ------------------------------------------------------------------ plug-in emission model (decode, sample)
    def _check_emission(self):
        kind = self._kind
        needed = {"categorical": ("emissionprob_",), "poisson": ("lambdas_",)}.get(kind, ("means_", "covars_"))
        for name in needed:
            if not hasattr(self, name):
                raise ValueError(f"VariationalHMM({self.emission}) needs {name} (fit first)")
        from probkit.distributions.mvn import MultivariateNormal
        from probkit.utils.validation import check_stochastic

        k = self.n_components
        name = {"categorical": "emissionprob_", "poisson": "lambdas_"}.get(kind, "means_")
        values = np.asarray(getattr(self, name), dtype=np.float64)
        if values.ndim != 2 or values.shape[0] != k:
            raise ValueError(f"{name} must have shape ({k}, n_features), got {values.shape}")
        if kind == "categorical":
            check_stochastic(values, name)
        elif kind == "poisson":
            if not np.all(np.isfinite(values)) or np.any(values <= 0):
                raise ValueError("lambdas_ must be positive and finite")
        elif not np.all(np.isfinite(values)):
            raise ValueError("means_ must be finite")
        else:
            try:  # the distribution checks the covariances' shape, finiteness, symmetry and positive definiteness
                MultivariateNormal(mean=values, covariance=np.asarray(self.covars_, dtype=np.float64),
                                   covariance_type=self.covariance_type)
            except ValueError as exc:
                raise ValueError(f"covars_ are not valid covariances: {exc}") from None

    def _io_check_state(self):
        """Also check the posterior attributes (used to continue fitting) of a model restored by probkit.load."""
        super()._io_check_state()
        if not hasattr(self, "startprob_posterior_"):
            return
        k = self.n_components
        for name, shape in (("startprob_posterior_", (k,)), ("transmat_posterior_", (k, k))):
            alpha = np.asarray(getattr(self, name), dtype=np.float64)
            if alpha.shape != shape or not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
                raise ValueError(f"{name} must hold positive finite concentrations of shape {shape}")
        try:
            self._emission_posterior_from_attributes()
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            names = [n for n in vars(self) if n.endswith("_posterior_") and not n.startswith(("startprob", "transmat"))]
            raise ValueError(f"the emission posterior ({', '.join(names)}) is invalid: {exc}") from None

    def _emission_model(self, like):
        kind = self._kind
        if kind.startswith("gaussian"):
            means = self._as_like(self.means_, like)
            return GaussianEmission(means, self._as_like(self.covars_, like), self.covariance_type,
                                    self._as_like(np.zeros(means.shape[1]), like))
        if kind == "categorical":
            return CountEmission("categorical", self._as_like(self.emissionprob_, like))
        return CountEmission("poisson", self._as_like(self.lambdas_, like))

    def _sample_emissions(self, states, rng):
        kind = self._kind
        if kind == "gaussian_full":
            chol = np.linalg.cholesky(np.asarray(self.covars_))
            eps = rng.standard_normal((len(states), chol.shape[1]))
            return np.asarray(self.means_)[states] + np.einsum("nij,nj->ni", chol[states], eps)
        if kind == "gaussian_tied":
            chol = np.linalg.cholesky(np.asarray(self.covars_))
            eps = rng.standard_normal((len(states), chol.shape[0]))
            return np.asarray(self.means_)[states] + eps @ chol.T
        if kind in ("gaussian_diag", "gaussian_spherical"):
            means = np.asarray(self.means_)
            sd = np.sqrt(np.asarray(self.covars_))
            sd = sd[:, None] if sd.ndim == 1 else sd
            return means[states] + sd[states] * rng.standard_normal((len(states), means.shape[1]))
        if kind == "categorical":
            cdf = np.cumsum(np.asarray(self.emissionprob_), axis=1)
            return (cdf[states] > rng.rand(len(states))[:, None]).argmax(1).reshape(-1, 1)
        return rng.poisson(np.asarray(self.lambdas_)[states]).astype(np.float64)

    def _emission_n_parameters(self):
        k = self.n_components
        kind = self._kind
        d = np.asarray(getattr(self, "means_", np.zeros((k, 1)))).shape[1] if kind.startswith("gaussian") else 0
        if kind.startswith("gaussian"):
            return {"e": k * d + n_covariance_parameters(self.covariance_type, k, d)}
        return {"e": {"categorical": k * (getattr(self, "n_symbols_", 1) - 1),
                      "poisson": k * np.asarray(getattr(self, "lambdas_", np.zeros((k, 1)))).shape[1]}[kind]}

    # ------------------------------------------------------------------ VB-EM hooks
    def _init_posteriors(self, data, random_state):
        """Initial posteriors: the priors plus uniform expected counts for the start (one per
        sequence) and transitions (``n / K`` per row); emissions from a k-means clustering
        (Gaussian, Poisson) or random ``Dirichlet(1)`` rows scaled by ``n / K`` (categorical).

        hmmlearn draws the start and transition counts from sparse ``Dirichlet(1/K)``
        distributions scaled by ``n / K``; with k-means emissions that can lock VB-EM into a
        spurious solution in which two states alternate (seen on three well-separated Gaussian
        clusters), so probkit starts from uniform counts and lets the emissions break the symmetry.
        """
        k = self.n_components
        fam, priors = self._fam, self._priors
        x = data.x
        n = x.shape[0]
        post = {}
        n_seq = len(data.lengths)
        post["startprob"] = self._initial_dirichlet("s", "startprob", self.startprob_prior_ + n_seq / k, (k,))
        post["transmat"] = self._initial_dirichlet("t", "transmat", self.transmat_prior_ + (n - n_seq) / k ** 2,
                                                   (k, k))
        kind = self._kind
        e_attr = {"categorical": "emissionprob_posterior_", "poisson": "lambdas_posterior_"}.get(kind,
                                                                                                 "means_posterior_")
        if not self._needs_init("e", e_attr):
            post["emission"] = self._emission_posterior_from_attributes()
        elif kind == "categorical":
            m = self.n_symbols_
            draw = random_state.dirichlet(np.ones(m), size=k) * n / k
            post["emission"] = Dirichlet(concentration=np.maximum(draw, 1e-10)[:, None, :])
        else:
            from sklearn.cluster import KMeans  # slow to import; needed at fit time only
            labels = KMeans(n_clusters=k, random_state=random_state, n_init=10).fit(data.X).labels_
            resp = torch.zeros(n, k, dtype=torch.float64)
            resp[torch.arange(n), torch.as_tensor(labels)] = 1.0
            xd = x.to(torch.float64).cpu()
            post["emission"] = fam.posterior(fam.summarize(xd, resp), priors["emission"])
        return post

    def _initial_dirichlet(self, letter, name, default, shape):
        """Initial Dirichlet concentrations of ``startprob``/``transmat`` (rows of ``shape``).

        With ``letter`` in ``init_params`` (or nothing set), ``default``. Otherwise the
        fitted posterior ``<name>_posterior_``, unless the point estimate ``<name>_`` was
        set by hand since (it differs from the posterior's mean): then the hand-set values,
        validated as GaussianHMM validates them, become the posterior's mean with the same
        total concentration per row.
        """
        if letter in self.init_params:
            return _t64(default)
        point = getattr(self, f"{name}_", None)
        posterior = getattr(self, f"{name}_posterior_", None)
        if posterior is not None:
            posterior = np.asarray(posterior, dtype=np.float64)
            if posterior.shape != shape:
                raise ValueError(f"{name}_posterior_ must have shape {shape}, got {posterior.shape}")
            mean = posterior / posterior.sum(-1, keepdims=True)
            if point is None or np.array_equal(np.asarray(point, dtype=np.float64), mean):
                return _t64(posterior)
            strength = posterior.sum(-1, keepdims=True)
        elif point is None:
            return _t64(default)
        else:
            strength = np.asarray(default, dtype=np.float64).sum(-1, keepdims=True)
        point = np.asarray(point, dtype=np.float64)
        if point.shape != shape:
            raise ValueError(f"{name}_ must have shape {shape}, got {point.shape}")
        check_stochastic(point, f"{name}_")
        # a zero probability stays (numerically) impossible: Dirichlet concentrations must be positive
        return _t64(np.maximum(point * strength, 1e-300))

    def _em_initialize(self, data, random_state):
        self._post = self._init_posteriors(data, random_state)

    def _em_expectation(self, data):
        post, priors, fam = self._post, self._priors, self._fam
        x = data.x
        dtype, device = x.dtype, x.device
        xd = x.to(torch.float64).cpu()
        log_start = dirichlet_expected_log(post["startprob"])
        log_trans = dirichlet_expected_log(post["transmat"])
        log_emis = fam.expected_log_likelihood(post["emission"], xd)
        fb = forward_backward(log_start.to(dtype=dtype, device=device), log_trans.to(dtype=dtype, device=device),
                              log_emis.to(dtype=dtype, device=device), data.lengths,
                              implementation="scaling" if self.implementation == "scaling" else "log")
        kl = (_dirichlet_kl(post["startprob"], priors["startprob"]) + _dirichlet_kl(post["transmat"], priors["transmat"])
              + float(fam.kl(post["emission"], priors["emission"]).sum()))
        bound = float(fb.log_likelihood.sum()) - kl
        stats = {"start": fb.expected_start.to(torch.float64).cpu(),
                 "trans": fb.expected_transitions.to(torch.float64).cpu(),
                 "emission": fam.summarize(xd, fb.posteriors.to(torch.float64).cpu())}
        return EStepResult(log_likelihood=bound, n_samples=float(x.shape[0]), stats=stats)

    def _em_maximization(self, stats):
        post, priors = dict(self._post), self._priors
        if "s" in self.params:
            post["startprob"] = priors["startprob"] + stats["start"]
        if "t" in self.params:
            post["transmat"] = priors["transmat"] + stats["trans"]
        if "e" in self.params:
            post["emission"] = self._fam.posterior(stats["emission"], priors["emission"])
        self._post = post

    def _em_get_state(self):
        return dict(self._post)

    def _em_set_state(self, state):
        self._post = state

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, lengths=None):
        """Fit the variational posterior (VB-EM or SVI) or sample the posterior (NUTS).

        %(sequences_to_self)s
        """
        data = self._training_sequences(X, y, lengths)
        self._priors = self._resolve_priors(data)
        self.prior_ = self._priors
        self._fam = self._family().center_on(data.x)
        if self.emission == "categorical":
            from probkit.distributions import Categorical

            self._fam.template = Categorical(n_categories=self.n_symbols_)
        random_state = check_random_state(self.random_state)
        try:
            if self.inference == "vem":
                self._fit_vem(data, random_state)
            elif self.inference == "svi":
                self._fit_svi(data, random_state)
            else:
                self._fit_nuts(data, random_state)
        finally:
            for name in ("_post", "_priors", "_fam"):
                self.__dict__.pop(name, None)
        return self

    def _fit_vem(self, data, random_state):
        # Every torch operation of VB-EM is small (K x K, K x d x d); on one thread they avoid the
        # OpenMP start-up that made a batched 2 x 2 Cholesky take 13 ms instead of 2 us on a busy
        # two-core machine. The forward-backward kernel (numba) keeps its own threads.
        with torch.no_grad(), torch_threads(1):
            result = fit_sequence_em(self, data, random_state)
        self._set_posterior_attributes(self._post)
        self.lower_bound_ = result.objective
        self.elbo_history_ = np.asarray(result.history, dtype=np.float64)

    def _padded(self, data):
        x = torch.as_tensor(data.X, dtype=torch.float64)
        if self.emission == "categorical":
            x = x[:, 0]
        padded, mask = pad_sequences(x, data.lengths)
        return padded, torch.as_tensor(np.asarray(data.lengths)), mask

    def _spec(self):
        from probkit.vi.models import HMMSVI

        priors = self._priors
        em = priors["emission"].torch_params()
        k = self.n_components
        if self._kind == "gaussian_full":
            em = {name: v.expand(k, *v.shape[1:]) if v.shape[:1] == (k,) else v for name, v in em.items()}
        elif self._kind == "categorical":
            em = {"concentration": em["concentration"][:, 0, :]}
        return HMMSVI(self._kind, priors["startprob"], priors["transmat"], em, formulation=self.hmm_formulation)

    @staticmethod
    def _emission_params(post_em, kind):
        p = post_em.torch_params()
        if kind == "categorical":
            return {"concentration": p["concentration"][:, 0, :]}
        return dict(p)

    def _posterior_from_spec(self, start, trans, em):
        kind = self._kind
        if kind == "gaussian_full":
            emission = NormalWishart(**em)
        elif kind == "gaussian_diag":
            emission = NormalGamma(**em)
        elif kind == "categorical":
            emission = Dirichlet(concentration=em["concentration"][:, None, :])
        else:
            emission = Gamma(**em)
        return {"startprob": start, "transmat": trans, "emission": emission}

    def _fit_svi(self, data, random_state):
        init = self._init_posteriors(data, random_state)
        spec = self._spec()
        guide_init = spec.guide_init(init["startprob"], init["transmat"],
                                     self._emission_params(init["emission"], self._kind))
        x, lengths, mask = self._padded(data)
        batch = None if self.batch_size is None else min(int(self.batch_size), x.shape[0])
        result = spec.fit(x, lengths, mask, guide_init, num_steps=int(self.num_steps), lr=float(self.learning_rate),
                          batch_size=batch, num_particles=int(self.num_particles), tol=self.svi_tol,
                          random_state=random_state, verbose=self.verbose)
        start, trans, em = spec.posterior_params(result.params)
        self._set_posterior_attributes(self._posterior_from_spec(start, trans, em))
        self.svi_result_ = result
        self.elbo_history_ = result.elbo_history
        self.lower_bound_ = result.elbo
        self.n_iter_ = result.n_steps
        self.converged_ = result.converged

    def _fit_nuts(self, data, random_state):
        self._fit_vem(data, random_state)
        spec = self._spec()
        post = self.posterior_
        init_values = spec.nuts_init(_t64(self.startprob_posterior_), _t64(self.transmat_posterior_),
                                     self._emission_params(post["emission"], self._kind))
        x, lengths, mask = self._padded(data)
        samples = spec.sample_posterior(x, lengths, mask, init_values, num_samples=int(self.num_samples),
                                        warmup_steps=self.warmup_steps, random_state=random_state,
                                        verbose=self.verbose)
        self.posterior_samples_ = samples
        self.startprob_ = samples["startprob"].mean(0)
        self.transmat_ = samples["transmat"].mean(0)
        kind = self._kind
        if kind == "gaussian_full":
            self.means_ = samples["mean"].mean(0)
            cov = np.linalg.inv(samples["precision"].mean(0))
            self.covars_ = 0.5 * (cov + np.transpose(cov, (0, 2, 1)))
        elif kind == "gaussian_diag":
            self.means_ = samples["mean"].mean(0)
            self.covars_ = 1.0 / samples["precision"].mean(0)
        elif kind == "categorical":
            self.emissionprob_ = samples["emissionprob"].mean(0)
        else:
            self.lambdas_ = samples["rate"].mean(0)

    # ------------------------------------------------------------------ posterior predictive
    def _parameter_draws(self, n_draws, rng):
        """``n_draws`` parameter sets from the posterior (NUTS draws, or samples of ``q``)."""
        kind = self._kind
        if hasattr(self, "posterior_samples_") and self.inference == "nuts":
            s = self.posterior_samples_
            idx = np.arange(len(s["startprob"]))
            draws = []
            for i in idx[np.linspace(0, len(idx) - 1, min(n_draws, len(idx))).astype(int)]:
                draws.append({name: v[i] for name, v in s.items()})
            return draws
        post = self.posterior_
        gen = torch_generator(rng)
        def dirichlet_draws(alpha):
            g = rng.gamma(np.broadcast_to(alpha, (n_draws, *alpha.shape)))
            return g / g.sum(-1, keepdims=True)

        start = dirichlet_draws(np.asarray(self.startprob_posterior_, dtype=np.float64))
        trans = dirichlet_draws(np.asarray(self.transmat_posterior_, dtype=np.float64))
        em = post["emission"]
        if kind == "gaussian_full":
            mean, prec = em.sample(n_draws, gen)
            ems = [{"mean": mean[i], "precision": prec[i]} for i in range(n_draws)]
        elif kind == "gaussian_diag":
            mean, tau = em.sample(n_draws, gen)
            ems = [{"mean": mean[i], "precision": tau[i]} for i in range(n_draws)]
        elif kind in ("gaussian_tied", "gaussian_spherical"):
            mean, prec = self._shared_precision_draws(em, n_draws, gen)
            ems = [{"mean": mean[i], "precision": prec[i]} for i in range(n_draws)]
        elif kind == "categorical":
            probs = em.sample(n_draws, gen)[:, :, 0, :]
            ems = [{"emissionprob": probs[i]} for i in range(n_draws)]
        else:
            rate = em.sample(n_draws, gen)
            ems = [{"rate": rate[i]} for i in range(n_draws)]
        return [dict(startprob=start[i], transmat=trans[i], **ems[i]) for i in range(n_draws)]

    @staticmethod
    def _shared_precision_draws(em, n_draws, gen):
        """Draws of the K means and the shared precision: one Wishart matrix (d, d) per draw
        (tied), or one Gamma precision per state (spherical), then the means given it."""
        p = em.torch_params()
        m, kappa = p["loc"], p["mean_precision"]
        if "degrees_of_freedom" in p:  # tied: NormalWishart whose precision parameters are shared
            scale_tril = cholesky(em._scale_matrix()[0], "the Wishart scale of the tied posterior")
            prec = wishart_bartlett(p["degrees_of_freedom"][0], scale_tril, (n_draws,), gen)
            chol = cholesky(prec, "a precision drawn from the tied posterior")  # (S, d, d)
            z = torch.randn(n_draws, *m.shape, 1, dtype=m.dtype, generator=gen)
            # mean_k = m_k + (kappa_k L)^{-1/2} z with L = C C^T: solve C^T y = z
            y = torch.linalg.solve_triangular(chol.mT.unsqueeze(1), z, upper=True).squeeze(-1)
            return to_numpy(m + y * torch.rsqrt(kappa).unsqueeze(-1)), to_numpy(prec)
        tau = standard_gamma(p["concentration"][:, 0].expand(n_draws, m.shape[0]).contiguous(), gen) / p["rate"][:, 0]
        z = torch.randn(n_draws, *m.shape, dtype=m.dtype, generator=gen)
        return to_numpy(m + z * torch.rsqrt(kappa * tau.unsqueeze(-1))), to_numpy(tau)

    def _log_emission_for(self, draw, x):
        kind = self._kind
        xt = torch.as_tensor(x, dtype=torch.float64)
        if kind == "gaussian_tied":
            prec = torch.as_tensor(draw["precision"])
            d = torch.distributions.MultivariateNormal(torch.as_tensor(draw["mean"]), precision_matrix=prec)
            return d.log_prob(xt.unsqueeze(1))
        if kind == "gaussian_spherical":
            scale = torch.as_tensor(draw["precision"]).unsqueeze(-1) ** -0.5
            return torch.distributions.Normal(torch.as_tensor(draw["mean"]), scale).log_prob(xt.unsqueeze(1)).sum(-1)
        if kind == "gaussian_full":
            cov = np.linalg.inv(draw["precision"])
            d = torch.distributions.MultivariateNormal(torch.as_tensor(draw["mean"]),
                                                       covariance_matrix=torch.as_tensor(0.5 * (cov + cov.swapaxes(-1, -2))))
            return d.log_prob(xt.unsqueeze(1))
        if kind == "gaussian_diag":
            d = torch.distributions.Normal(torch.as_tensor(draw["mean"]), torch.as_tensor(draw["precision"]) ** -0.5)
            return d.log_prob(xt.unsqueeze(1)).sum(-1)
        if kind == "categorical":
            return torch.log(torch.as_tensor(draw["emissionprob"]))[:, xt[:, 0].long()].T
        d = torch.distributions.Poisson(torch.as_tensor(draw["rate"]))
        return d.log_prob(xt.unsqueeze(1)).sum(-1)

    def score(self, X, y=None, *, lengths=None):
        """Posterior-predictive log-likelihood of the sequences: ``log E_posterior[p(X | theta)]``.

        A Monte Carlo average over ``n_predictive_samples`` parameter draws (from ``q``, or
        from the NUTS draws), each scored exactly by the forward algorithm:
        ``logsumexp_s log p(X | theta_s) - log S``. The draws are seeded by ``random_state``.
        (:meth:`score_samples` and :meth:`decode` use the posterior-mean parameters.)

        %(sequences_to_log_likelihood)s
        """
        check_y_slot(self, "score", X, y)
        data = self._prepare_predict(X, lengths)
        self._validate_params()
        n_draws = self.n_predictive_samples
        rng = check_random_state(self.random_state)
        values = []
        with torch.no_grad():
            for draw in self._parameter_draws(int(n_draws), rng):
                with np.errstate(divide="ignore"):
                    log_start = np.log(np.asarray(draw["startprob"], dtype=np.float64))
                    log_trans = np.log(np.asarray(draw["transmat"], dtype=np.float64))
                log_emis = self._log_emission_for(draw, data.X)
                res = forward_filter(log_start, log_trans, log_emis, data.lengths)
                values.append(float(res.log_likelihood.sum()))
        v = np.asarray(values)
        return float(np.logaddexp.reduce(v) - math.log(len(v)))
