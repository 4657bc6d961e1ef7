"""Bayesian mixtures fitted by variational inference (CAVI or Pyro SVI) or sampled by NUTS.

* :class:`BayesianGaussianMixture` -- scikit-learn's constructor and fitted attributes.
  ``inference="cavi"`` runs closed-form coordinate ascent on the EM engine and reaches
  scikit-learn's parameters from the same start; ``inference="svi"`` fits the same model
  (full covariances) with Pyro, assignments summed out exactly; ``inference="nuts"``
  samples its posterior.
* :class:`BayesianMixture` -- the same weight priors over components of any conjugate
  exponential family (Poisson, categorical, Bernoulli, normal, ...), fitted by CAVI.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

from probkit.base import (COMPUTE_CONSTRAINTS, ProbkitEstimator, StrOptions, non_negative_int, non_negative_real,
                          positive_int, positive_real)
from probkit.distributions.base import LOG_2PI
from probkit.distributions.mvn import COVARIANCE_TYPES, MultivariateNormal, covariance_shape, precision_cholesky
from probkit.distributions.wishart import wishart_log_normaliser
from probkit.em.engine import EStepResult, run_em
from probkit.em.init import initial_responsibilities
from probkit.mixture._base import MIXTURE_LOOP_CONSTRAINTS, MixtureDensityMixin
from probkit.components import add_stats
from probkit.utils._array import to_numpy
from probkit.utils._docstrings import COMMON_DOCS
from probkit.utils.monitor import mixture_monitor_factory
from probkit.utils.random import check_random_state
from probkit.utils.threads import torch_threads
from probkit.utils._linalg import cholesky
from probkit.utils.validation import check_shape, check_stochastic
from probkit.vi._weights import (
    WEIGHT_PRIOR_TYPES,
    check_weight_prior,
    expected_log_weights,
    log_weight_normaliser,
    prior_log_normaliser,
    weight_kl,
    weight_posterior,
    weights_from_concentration,
)

__all__ = ["BayesianGaussianMixture", "BayesianMixture"]

INFERENCE_METHODS = ("cavi", "svi", "nuts")
CHUNK_SIZE = 8192
_EPS10 = 10 * np.finfo(np.float64).eps  # added to the expected counts, as scikit-learn does

#: Options shared by both Bayesian mixtures: every mixture's loop options and the weight prior.
_SHARED_CONSTRAINTS = {
    **MIXTURE_LOOP_CONSTRAINTS,
    "weight_concentration_prior_type": [StrOptions(set(WEIGHT_PRIOR_TYPES))],
    "weight_concentration_prior": [None, *positive_real],
}


def _as_tensor_conc(conc, dtype, device):
    if isinstance(conc, tuple):
        return tuple(torch.as_tensor(np.asarray(c, dtype=np.float64), dtype=dtype, device=device) for c in conc)
    return torch.as_tensor(np.asarray(conc, dtype=np.float64), dtype=dtype, device=device)


def _conc_to_numpy(conc):
    if isinstance(conc, tuple):
        return tuple(to_numpy(c).astype(np.float64) for c in conc)
    return to_numpy(conc).astype(np.float64)


def _check_fitted_weights(est, k):
    """``weight_concentration_`` positive with ``k`` entries (per part), ``weights_`` a probability vector."""
    if hasattr(est, "weight_concentration_"):
        conc = est.weight_concentration_
        for part in conc if isinstance(conc, tuple) else (conc,):
            part = np.asarray(part, dtype=np.float64)
            if part.shape != (k,) or not np.all(np.isfinite(part)) or np.any(part <= 0):
                raise ValueError(f"weight_concentration_ must hold positive finite values of shape ({k},)")
    weights = np.asarray(est.weights_, dtype=np.float64)
    if weights.shape != (k,):
        raise ValueError(f"weights_ must have shape ({k},), got {weights.shape}")
    check_stochastic(weights, "weights_", atol=1e-6)


@COMMON_DOCS.fill
class BayesianGaussianMixture(MixtureDensityMixin, ProbkitEstimator):
    """Variational Bayesian Gaussian mixture with scikit-learn's API, plus Pyro SVI and NUTS.

    The model: mixture weights from a (truncated) Dirichlet process or a Dirichlet
    distribution, and for each component a Normal-Wishart prior on its mean and
    precision (``mean ~ N(mean_prior, (mean_precision_prior * precision)^-1)``,
    ``precision ~ Wishart(degrees_of_freedom_prior, inv(covariance_prior))``).

    ``inference="cavi"`` is coordinate-ascent variational inference: the mean-field
    posterior ``q(z) q(weights) prod_k q(mean_k, precision_k)`` keeps the conjugate
    families, and each update is closed form (the Normal-Wishart updates of
    :class:`~probkit.distributions.NormalWishart`). It runs on the EM engine, so
    ``n_init``, ``warm_start``, ``tol`` and ``max_iter`` behave as in scikit-learn, and
    from the same initial responsibilities it reaches scikit-learn's parameters. For the
    ``tied``, ``diag`` and ``spherical`` covariance types the updates are scikit-learn's
    (a Wishart whose scale is restricted to that form).

    ``inference="svi"`` (``covariance_type="full"``) maximises the ELBO of the same
    model with Pyro: the guide has the same conjugate families (Dirichlet or Beta
    sticks, Wishart and normal), the assignments are summed out exactly
    (``TraceEnum_ELBO``), rows can be subsampled (``batch_size``). It starts from the
    same initial posterior as CAVI. Because the assignments are marginalised instead of
    given a factorised ``q(z)``, its bound is at least CAVI's for the same ``q(theta)``.

    ``inference="nuts"`` (``covariance_type="full"``) samples the exact posterior of the
    continuous parameters with NUTS (assignments enumerated), started at the CAVI
    posterior mean so that component labels match the variational fit; meant for small
    data as the reference VI is judged against.

    Parameters
    ----------
    n_components : int, default=1
        Upper bound on the number of components (the truncation level).
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        CAVI: convergence threshold on the change of the lower bound (total over the data).
    reg_covar : float, default=1e-6
        Added to the diagonal of each component's weighted scatter / count, as in
        scikit-learn. With ``reg_covar=0`` and full covariances ``lower_bound_`` is the
        exact ELBO of the model.
    max_iter : int, default=100
        CAVI iterations.
    n_init : int, default=1
        CAVI initialisations; the best lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, default="dirichlet_process"
    weight_concentration_prior : float, optional
        ``gamma`` (process) or ``alpha0`` (distribution), positive; ``1 / n_components`` by default.
    mean_precision_prior : float, optional
        ``kappa0 > 0``; 1 by default.
    mean_prior : array-like of shape (n_features,), optional
        The data mean by default.
    degrees_of_freedom_prior : float, optional
        ``nu0 > n_features - 1``; ``n_features`` by default.
    covariance_prior : float or array-like, optional
        The Wishart's inverse scale (``(d, d)`` for full/tied, ``(d,)`` for diag, a float
        for spherical); the data covariance by default.
    random_state : int, RandomState or None, default=None
        Drives the initialisation, Pyro's sampling (SVI, NUTS) and :meth:`sample`.
    warm_start : bool, default=False
        Continue from the previous fit's posterior (CAVI iterations or SVI steps); an SVI fit
        can so start from a CAVI one (``set_params(inference="svi")``).
    verbose : int, default=0
        CAVI: scikit-learn's progress lines on standard error (1: ``Initialization k``,
        ``Iteration n`` every ``verbose_interval`` iterations, the outcome; 2: with time
        lapses, lower-bound changes and a progress bar). SVI and NUTS: a progress bar.
    verbose_interval : int, default=10
        Iterations between two progress lines.
    inference : {"cavi", "svi", "nuts"}, default="cavi"
    num_steps : int, default=2000
        SVI: maximum optimisation steps.
    learning_rate : float, default=0.02
        SVI: ClippedAdam learning rate.
    batch_size : int, optional
        SVI: rows per step (subsampling); all rows by default.
    num_particles : int, default=1
        SVI: guide samples per step (vectorised).
    svi_tol : float, default=1e-4
        SVI: stop when the relative change of the mean ELBO over two windows of 100 steps is below this.
    num_samples : int, default=300
        NUTS: posterior draws kept.
    warmup_steps : int, optional
        NUTS: adaptation steps (``num_samples`` by default).
    device, dtype
        Compute device and precision of CAVI (CPU float64 by default).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Posterior-mean weights (normalised).
    weight_concentration_prior_ : float
    weight_concentration_ : ndarray of shape (n_components,) or tuple of two
        Dirichlet concentrations, or the Beta parameters ``(a, b)`` of the sticks.
    mean_precision_prior_ : float
    mean_precision_ : ndarray of shape (n_components,)
    mean_prior_ : ndarray of shape (n_features,)
    means_ : ndarray of shape (n_components, n_features)
    degrees_of_freedom_prior_ : float
    degrees_of_freedom_ : ndarray of shape (n_components,) (a float for tied)
    covariance_prior_ : float or ndarray
    covariances_ : ndarray
        ``inv(E[precision])`` (the Wishart inverse scale divided by the degrees of freedom).
    precisions_, precisions_cholesky_ : ndarray
    converged_ : bool
    n_iter_ : int
        CAVI iterations or SVI steps.
    lower_bound_ : float
        CAVI: the evidence lower bound after the last iteration (a total over the data; it
        differs from scikit-learn's ``lower_bound_`` by a constant, the terms scikit-learn
        drops). SVI: the mean ELBO estimate over the last 50 steps. NUTS: not set.
    lower_bounds_ : list of float
        The bound after each CAVI iteration, or the ELBO estimate of each SVI step.
    elbo_history_ : ndarray
        Same values as ``lower_bounds_`` (CAVI and SVI).
    posterior_samples_ : dict of ndarray
        NUTS only: ``weights`` (S, K), ``means`` (S, K, d), ``precisions`` (S, K, d, d).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import BayesianGaussianMixture
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(-3, 0.5, (60, 2)), rng.normal(3, 0.5, (40, 2))])
    >>> bgm = BayesianGaussianMixture(n_components=5, init_params="k-means++", random_state=0).fit(X)
    >>> np.round(bgm.weights_, 3)          # the process leaves the spare components empty
    array([0.603, 0.395, 0.002, 0.   , 0.   ])
    >>> bgm.predict(X[:3]), bgm.converged_
    (array([0, 0, 0]), True)

    A single k-means start can end in a poorer local optimum that splits a cluster; the
    best of several starts (by ``lower_bound_``) is the usual remedy:

    >>> one = BayesianGaussianMixture(n_components=5, random_state=0).fit(X)
    >>> five = BayesianGaussianMixture(n_components=5, n_init=5, random_state=0).fit(X)
    >>> int((one.weights_ > 0.05).sum()), int((five.weights_ > 0.05).sum()), bool(five.lower_bound_ > one.lower_bound_)
    (3, 2, True)
    """

    _parameter_constraints = {
        **_SHARED_CONSTRAINTS,
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "reg_covar": non_negative_real,
        "mean_precision_prior": [None, *positive_real],
        "mean_prior": [None, "array-like"],
        # > n_features - 1 is checked with the data
        "degrees_of_freedom_prior": [None, *positive_real],
        # a positive float (spherical) or an array (full, tied, diag), checked against covariance_type
        "covariance_prior": [None, "array-like", *positive_real],
        "verbose_interval": positive_int,
        "inference": [StrOptions(set(INFERENCE_METHODS))],
        "num_steps": positive_int,
        "learning_rate": positive_real,
        "batch_size": [None, *positive_int],
        "num_particles": positive_int,
        "svi_tol": [None, *non_negative_real],
        "num_samples": positive_int,
        "warmup_steps": [None, *non_negative_int],
        **COMPUTE_CONSTRAINTS,
    }

    def __init__(self, *, n_components=1, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100, n_init=1,
                 init_params="kmeans", weight_concentration_prior_type="dirichlet_process",
                 weight_concentration_prior=None, mean_precision_prior=None, mean_prior=None,
                 degrees_of_freedom_prior=None, covariance_prior=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, inference="cavi", num_steps=2000, learning_rate=0.02,
                 batch_size=None, num_particles=1, svi_tol=1e-4, num_samples=300, warmup_steps=None, device=None,
                 dtype=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.inference = inference
        self.num_steps = num_steps
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.num_particles = num_particles
        self.svi_tol = svi_tol
        self.num_samples = num_samples
        self.warmup_steps = warmup_steps
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ validation
    def _check_parameters(self, X):
        """What ``_parameter_constraints`` cannot say: the options against each other and the data."""
        n, d = X.shape
        k = self.n_components
        if n < k:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {n}")
        if self.inference in ("svi", "nuts") and self.covariance_type != "full":
            raise ValueError(f"inference={self.inference!r} needs covariance_type='full' (the Normal-Wishart model); "
                             f"got {self.covariance_type!r}")
        self.weight_concentration_prior_ = check_weight_prior(self.weight_concentration_prior_type,
                                                              self.weight_concentration_prior, k)
        kappa = self.mean_precision_prior
        self.mean_precision_prior_ = 1.0 if kappa is None else float(kappa)
        if self.mean_prior is None:
            self.mean_prior_ = X.mean(axis=0)
        else:
            mp = np.asarray(self.mean_prior, dtype=np.float64)
            if mp.shape != (d,):
                raise ValueError(f"mean_prior must have shape ({d},), got {mp.shape}")
            if not np.all(np.isfinite(mp)):
                raise ValueError("mean_prior contains NaN or infinity")
            self.mean_prior_ = mp
        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = float(d)
        else:
            dof = self.degrees_of_freedom_prior
            if dof <= d - 1.0:
                # scikit-learn's wording first (its users match it)
                raise ValueError(f"The parameter 'degrees_of_freedom_prior' should be greater than {d - 1}, but got "
                                 f"{dof:.3f}: it must be greater than n_features - 1")
            self.degrees_of_freedom_prior_ = float(dof)
        self.covariance_prior_ = self._check_covariance_prior(X)

    def _default_covariance_prior(self, X):
        """The data covariance (scikit-learn's default), with ``reg_covar`` added where it is singular.

        A constant column, collinear columns, duplicated rows or fewer rows than features
        make the data covariance singular; the Wishart prior built on it would be improper
        (its normaliser, part of ``lower_bound_``, infinite). scikit-learn regularises the
        component covariances with ``reg_covar``; the prior gets the same treatment, and
        only when needed, so that regular data give scikit-learn's posteriors exactly.
        """
        ct = self.covariance_type
        reg = float(self.reg_covar)
        if ct in ("full", "tied"):
            cov = np.atleast_2d(np.cov(X.T))
            if np.linalg.eigvalsh(cov).min() <= 0:
                if reg <= 0:
                    raise ValueError("the data covariance is singular (a constant column, collinear columns or "
                                     "too few distinct rows); set reg_covar > 0 or pass a covariance_prior")
                cov = cov + reg * np.eye(cov.shape[0])
            return cov
        var = np.var(X, axis=0, ddof=1)
        if np.any(var <= 0):
            if reg <= 0:
                raise ValueError("some column of X is constant; set reg_covar > 0 or pass a covariance_prior")
            var = np.where(var > 0, var, reg)
        return var if ct == "diag" else float(var.mean())

    def _check_covariance_prior(self, X):
        d = X.shape[1]
        ct = self.covariance_type
        cp = self.covariance_prior
        if cp is None:
            if X.shape[0] < 2:
                raise ValueError("the default covariance_prior (the data covariance) needs at least 2 samples")
            return self._default_covariance_prior(X)
        if ct == "spherical":
            # the constraints leave a positive number or an array; spherical takes the number
            if not isinstance(cp, Real):
                raise ValueError(f"covariance_prior must be a positive number for covariance_type='spherical', "
                                 f"got {cp!r}")
            return float(cp)
        arr = np.asarray(cp, dtype=np.float64)
        shape = (d, d) if ct in ("full", "tied") else (d,)
        if arr.shape != shape:
            raise ValueError(f"covariance_prior must have shape {shape} for covariance_type={ct!r}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("covariance_prior contains NaN or infinity")
        if ct in ("full", "tied"):
            if not np.allclose(arr, arr.T) or np.any(np.linalg.eigvalsh(arr) <= 0):
                raise ValueError(f"'{ct} covariance_prior' should be symmetric, positive-definite")
        elif np.any(arr <= 0):
            raise ValueError(f"'{ct} covariance_prior' should be positive")
        return arr

    # ------------------------------------------------------------------ model pieces (torch)
    def _t(self, a):
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=self._dtype, device=self._device)

    def _log_det_psi(self, nu, cov):
        """``log|Psi|`` of the Wishart inverse scale ``Psi = nu * cov`` for the covariance type."""
        ct = self.covariance_type
        d = self._d
        if ct in ("full", "tied"):
            L = cholesky(cov, "a covariance of BayesianGaussianMixture")
            return 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1) + d * torch.log(nu)
        if ct == "diag":
            return torch.log(cov).sum(-1) + d * torch.log(nu)
        return d * torch.log(cov * nu)

    def _prior_constant(self):
        """Terms of the bound that depend only on the priors: ``-K log Z_NW(prior) - log B(prior)``."""
        k, d = self.n_components, self._d
        nu0 = torch.as_tensor(self.degrees_of_freedom_prior_, dtype=self._dtype, device=self._device)
        ct = self.covariance_type
        cp = self.covariance_prior_
        cov0 = self._t(cp) / nu0 if ct != "spherical" else torch.as_tensor(cp, dtype=self._dtype) / nu0
        logz0 = wishart_log_normaliser(nu0, -self._log_det_psi(nu0, cov0), d)
        return (-k * (float(logz0) - 0.5 * d * math.log(self.mean_precision_prior_))
                - prior_log_normaliser(self.weight_concentration_prior_, k, self.weight_concentration_prior_type))

    def _mstep(self, stats):
        """The closed-form update of ``q(weights) q(means, precisions)`` from the expected statistics."""
        ct = self.covariance_type
        k, d = self.n_components, self._d
        shift = self._shift
        nk = stats["count"] + _EPS10
        xk_s = stats["x"] / nk.unsqueeze(1)            # component means, shifted coordinates
        xk = xk_s + shift
        eye = torch.eye(d, dtype=nk.dtype, device=nk.device)
        reg = float(self.reg_covar)
        if ct == "full":
            sk = stats["xx"] / nk[:, None, None] - xk_s.unsqueeze(2) * xk_s.unsqueeze(1) + reg * eye
        elif ct == "tied":
            outer = (nk[:, None, None] * xk_s.unsqueeze(2) * xk_s.unsqueeze(1)).sum(0)
            sk = (stats["xx"] - outer) / nk.sum() + reg * eye
        elif ct == "diag":
            sk = stats["xx"] / nk.unsqueeze(1) - xk_s * xk_s + reg
        else:
            sk = (stats["xx"] / nk - (xk_s * xk_s).sum(1)) / d + reg
        conc = weight_posterior(nk, self.weight_concentration_prior_, self.weight_concentration_prior_type)
        kappa0 = self.mean_precision_prior_
        m0 = self._t(self.mean_prior_)
        kappa = kappa0 + nk
        means = (kappa0 * m0 + nk.unsqueeze(1) * xk) / kappa.unsqueeze(1)
        nu0 = self.degrees_of_freedom_prior_
        cp = self.covariance_prior_
        diff = xk - m0
        if ct == "full":
            nu = nu0 + nk
            psi = self._t(cp) + nk[:, None, None] * sk + (nk * kappa0 / kappa)[:, None, None] * (
                diff.unsqueeze(2) * diff.unsqueeze(1))
            cov = psi / nu[:, None, None]
            cov = 0.5 * (cov + cov.mT)
        elif ct == "tied":
            nu = torch.as_tensor(nu0, dtype=nk.dtype, device=nk.device) + nk.sum() / k
            psi = self._t(cp) + sk * nk.sum() / k + kappa0 / k * ((nk / kappa).unsqueeze(1) * diff).T @ diff
            cov = psi / nu
            cov = 0.5 * (cov + cov.T)
        elif ct == "diag":
            nu = nu0 + nk
            psi = self._t(cp) + nk.unsqueeze(1) * (sk + (kappa0 / kappa).unsqueeze(1) * diff * diff)
            cov = psi / nu.unsqueeze(1)
        else:
            nu = nu0 + nk
            psi = cp + nk * (sk + kappa0 / kappa * (diff * diff).mean(1))
            cov = psi / nu
        return {"conc": conc, "kappa": kappa, "means": means, "nu": nu, "cov": cov}

    def _expected_terms(self, post, d, shift=None):
        """The batched Gaussian at ``(means, cov)`` and the per-component constant of ``E[log pi N]``."""
        nu, kappa = post["nu"], post["kappa"]
        comps = MultivariateNormal(mean=post["means"], covariance=post["cov"], covariance_type=self.covariance_type,
                                   stats_shift=shift)
        offsets = torch.arange(d, dtype=nu.dtype, device=nu.device)
        log_lambda = d * math.log(2.0) + torch.digamma(0.5 * (nu.unsqueeze(-1) - offsets)).sum(-1)
        const = (expected_log_weights(post["conc"], self.weight_concentration_prior_type)
                 - 0.5 * d * torch.log(nu) + 0.5 * (log_lambda - d / kappa))
        return comps, const

    def _bound(self, post, sum_r_log_r, n):
        d, k = self._d, self.n_components
        log_det = self._log_det_psi(post["nu"], post["cov"])
        logz = wishart_log_normaliser(post["nu"], -log_det, d)
        logz_sum = k * logz if self.covariance_type == "tied" else logz.sum()
        value = (-sum_r_log_r + logz_sum - 0.5 * d * torch.log(post["kappa"]).sum()
                 + log_weight_normaliser(post["conc"], self.weight_concentration_prior_type))
        return float(value) + self._prior_constant() - 0.5 * n * d * LOG_2PI

    # ------------------------------------------------------------------ EM hooks
    def _summarize(self, x, resp):
        template = MultivariateNormal(covariance_type=self.covariance_type, stats_shift=self._shift_cpu)
        stats = None
        for s in range(0, x.shape[0], CHUNK_SIZE):
            stats = add_stats(stats, template._summarize(x[s:s + CHUNK_SIZE], resp[s:s + CHUNK_SIZE]))
        return stats

    def _em_initialize(self, data, random_state):
        X, x = data
        resp = initial_responsibilities(X, self.n_components, self.init_params, random_state)
        resp_t = torch.as_tensor(resp, dtype=x.dtype, device=x.device)
        self._post = self._mstep(self._summarize(x, resp_t))

    def _em_expectation(self, data):
        X, x = data
        comps, const = self._expected_terms(self._post, self._d, self._shift_cpu)
        stats = None
        sum_r_log_r = torch.zeros((), dtype=x.dtype, device=x.device)
        with torch.no_grad():
            for s in range(0, x.shape[0], CHUNK_SIZE):
                xb = x[s:s + CHUNK_SIZE]
                lp = comps._log_prob_pairs(xb) + const
                log_resp = lp - torch.logsumexp(lp, dim=1, keepdim=True)
                resp = torch.exp(log_resp)
                sum_r_log_r = sum_r_log_r + torch.where(resp > 0, resp * log_resp, torch.zeros_like(resp)).sum()
                stats = add_stats(stats, comps._summarize(xb, resp))
        new_post = self._mstep(stats)
        bound = self._bound(new_post, sum_r_log_r, x.shape[0])
        return EStepResult(log_likelihood=bound, n_samples=float(x.shape[0]), stats=new_post)

    def _em_maximization(self, stats):
        self._post = stats

    def _em_get_state(self):
        return dict(self._post)

    def _em_set_state(self, state):
        self._post = state

    # ------------------------------------------------------------------ attributes <-> posterior
    def _set_attributes(self, post):
        self.weight_concentration_ = _conc_to_numpy(post["conc"])
        self.weights_ = weights_from_concentration(self.weight_concentration_, self.weight_concentration_prior_type)
        self.mean_precision_ = to_numpy(post["kappa"]).astype(np.float64)
        self.means_ = to_numpy(post["means"]).astype(np.float64)
        nu = to_numpy(post["nu"]).astype(np.float64)
        self.degrees_of_freedom_ = float(nu) if self.covariance_type == "tied" else nu
        self.covariances_ = to_numpy(post["cov"]).astype(np.float64)
        self._set_precisions()

    def _set_precisions(self):
        ct = self.covariance_type
        P = to_numpy(precision_cholesky(torch.as_tensor(self.covariances_, dtype=torch.float64), ct))
        self.precisions_cholesky_ = P
        if ct == "full":
            self.precisions_ = P @ np.transpose(P, (0, 2, 1))
        elif ct == "tied":
            self.precisions_ = P @ P.T
        else:
            self.precisions_ = P ** 2

    def _posterior_from_attributes(self):
        device, dtype = self._compute_setup()
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype, device=device)  # noqa: E731
        return {"conc": _as_tensor_conc(self.weight_concentration_, dtype, device), "kappa": t(self.mean_precision_),
                "means": t(self.means_), "nu": t(self.degrees_of_freedom_), "cov": t(self.covariances_)}

    # ------------------------------------------------------------------ fit
    def _setup(self, X):
        self._device, self._dtype = self._compute_setup()
        self._d = X.shape[1]
        self._shift_cpu = torch.as_tensor(X.mean(0), dtype=torch.float64)
        self._shift = self._shift_cpu.to(dtype=self._dtype, device=self._device)
        return torch.as_tensor(X, dtype=self._dtype, device=self._device)

    def fit(self, X, y=None):
        """Fit the posterior (CAVI or SVI) or sample it (NUTS).

        %(unsupervised_fit)s
        """
        self.fit_predict(X, y)
        return self

    def fit_predict(self, X, y=None):
        """Fit and return the most probable component of each row (``fit(X).predict(X)``).

        Returns
        -------
        labels : numpy.ndarray of shape (n_samples,)
        """
        self._validate_params()
        X = self._validate_X(X, reset=True, ensure_min_samples=2)
        self._check_parameters(X)
        x = self._setup(X)
        random_state = check_random_state(self.random_state)
        if self.inference == "cavi":
            self._fit_cavi(X, x, random_state)
        elif self.inference == "svi":
            self._fit_svi(X, x, random_state)
        else:
            self._fit_nuts(X, x, random_state)
        for name in ("_post", "_shift", "_shift_cpu", "_device", "_dtype", "_d"):
            self.__dict__.pop(name, None)
        return self.predict(X)

    def _fit_cavi(self, X, x, random_state):
        warm = bool(self.warm_start and hasattr(self, "converged_") and hasattr(self, "mean_precision_"))
        if warm:
            self._post = self._posterior_from_attributes()
        # One torch thread: the row blocks are small (8192 x K x d) and the per-iteration algebra is
        # K x d x d; on the shared two-core development machine a 20-iteration fit on 100,000 rows
        # took 10.5 s with torch's two threads and 0.5 s with one (thread start-up on busy cores).
        with torch.no_grad(), torch_threads(1):
            result = run_em(self, (X, x), max_iter=self.max_iter, tol=self.tol, n_init=self.n_init,
                            random_state=random_state, warm_start=warm,
                            initial_objective=self.lower_bound_ if warm else -math.inf, objective="total",
                            verbose=self.verbose, desc=type(self).__name__,
                            monitor_factory=mixture_monitor_factory(self.verbose, self.verbose_interval))
        self._set_attributes(self._post)
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.objective
        self.lower_bounds_ = list(result.history)
        self.elbo_history_ = np.asarray(result.history, dtype=np.float64)

    def _initial_posterior(self, X, x, random_state):
        resp = initial_responsibilities(X, self.n_components, self.init_params, random_state)
        return self._mstep(self._summarize(x, torch.as_tensor(resp, dtype=x.dtype, device=x.device)))

    def _pyro_model(self):
        """The Pyro model of the SVI and NUTS fits, with the priors resolved by ``_check_parameters``."""
        from probkit.vi.models import GaussianMixtureSVI

        return GaussianMixtureSVI(
            n_components=self.n_components, weight_prior_type=self.weight_concentration_prior_type,
            weight_prior=self.weight_concentration_prior_, mean_prior=self.mean_prior_,
            mean_precision_prior=self.mean_precision_prior_, dof_prior=self.degrees_of_freedom_prior_,
            covariance_prior=self.covariance_prior_)

    def _fit_svi(self, X, x, random_state):
        warm = bool(self.warm_start and hasattr(self, "mean_precision_") and hasattr(self, "converged_")
                    and np.shape(self.means_) == (self.n_components, X.shape[1]))
        # warm start: continue from the current posterior (e.g. a CAVI fit), else the k-means start
        init = self._posterior_from_attributes() if warm else self._initial_posterior(X, x, random_state)
        spec = self._pyro_model()
        xt = torch.as_tensor(X, dtype=torch.float64)
        result = spec.fit(xt, init, num_steps=self.num_steps, lr=self.learning_rate, batch_size=self.batch_size,
                          num_particles=self.num_particles, tol=self.svi_tol, random_state=random_state,
                          verbose=self.verbose)
        post = spec.posterior(result)
        self._set_attributes(post)
        self.svi_result_ = result
        self.elbo_history_ = result.elbo_history
        self.lower_bounds_ = list(result.elbo_history)
        self.lower_bound_ = result.elbo
        self.n_iter_ = result.n_steps
        self.converged_ = result.converged

    def _fit_nuts(self, X, x, random_state):
        # Start the chain at the CAVI posterior mean (so its labels match a variational fit).
        self._fit_cavi(X, x, random_state)
        spec = self._pyro_model()
        samples = spec.sample_posterior(torch.as_tensor(X, dtype=torch.float64), self._posterior_from_attributes(),
                                        num_samples=self.num_samples, warmup_steps=self.warmup_steps,
                                        random_state=random_state, verbose=self.verbose)
        self.posterior_samples_ = samples
        self.weights_ = samples["weights"].mean(0) / samples["weights"].mean(0).sum()
        self.means_ = samples["means"].mean(0)
        prec = samples["precisions"].mean(0)
        cov = np.linalg.inv(prec)
        self.covariances_ = 0.5 * (cov + np.transpose(cov, (0, 2, 1)))
        self._set_precisions()
        for name in ("weight_concentration_", "mean_precision_", "degrees_of_freedom_", "lower_bound_",
                     "lower_bounds_", "elbo_history_"):
            self.__dict__.pop(name, None)
        self.n_iter_ = int(self.num_samples)
        self.converged_ = True

    # ------------------------------------------------------------------ prediction
    def _validate_predict(self, X):
        self._check_fitted(["weights_", "means_", "covariances_"])
        X = self._validate_X(X, reset=False)
        device, dtype = self._compute_setup()
        return torch.as_tensor(X, dtype=dtype, device=device)

    def _is_sampled(self):
        return hasattr(self, "posterior_samples_") and not hasattr(self, "mean_precision_")

    def _io_check_state(self):
        """Check fitted attributes restored by :func:`probkit.load`, as hand-set parameters are checked."""
        if not hasattr(self, "weights_"):  # fit sets it last; every use of the model needs it
            return
        k, ct = self.n_components, self.covariance_type
        means = np.asarray(self.means_, dtype=np.float64)
        d = getattr(self, "n_features_in_", means.shape[-1] if means.ndim == 2 else -1)
        check_shape(means, (k, d), "means_")
        for name in ("covariances_", "precisions_cholesky_", "precisions_"):
            check_shape(getattr(self, name), covariance_shape(ct, k, d), name)
        cov = np.asarray(self.covariances_, dtype=np.float64)
        if ct in ("full", "tied") and not np.allclose(cov, np.swapaxes(cov, -1, -2)):
            raise ValueError("covariances_ must be symmetric")
        try:
            precision_cholesky(torch.as_tensor(np.asarray(self.covariances_, dtype=np.float64)), ct)
        except ValueError as exc:
            raise ValueError(f"covariances_ must be positive definite: {exc}") from None
        _check_fitted_weights(self, k)
        if self._is_sampled():
            draws = self.posterior_samples_
            w = check_shape(draws["weights"], (len(draws["weights"]), k), "posterior_samples_['weights']")
            check_stochastic(w, "posterior_samples_['weights']", atol=1e-6)
            check_shape(draws["means"], (len(w), k, d), "posterior_samples_['means']")
            prec = check_shape(draws["precisions"], (len(w), k, d, d), "posterior_samples_['precisions']")
            if bool((torch.linalg.cholesky_ex(torch.as_tensor(prec)).info != 0).any()):
                raise ValueError("posterior_samples_['precisions'] must be positive definite")
            return
        kappa = check_shape(self.mean_precision_, (k,), "mean_precision_")
        dof = check_shape(self.degrees_of_freedom_, () if ct == "tied" else (k,), "degrees_of_freedom_")
        if np.any(kappa <= 0) or np.any(dof <= d - 1):
            raise ValueError(f"mean_precision_ must be positive and degrees_of_freedom_ greater than "
                             f"n_features - 1 = {d - 1}")

    def _estimate_weighted_log_prob(self, x):
        """``E_q[log pi_k + log N(x | mean_k, precision_k)]`` for every row and component (scikit-learn's)."""
        with torch.no_grad(), torch_threads(1):
            comps, const = self._expected_terms(self._posterior_from_attributes(), x.shape[1])
            return torch.cat([comps._log_prob_pairs(x[s:s + CHUNK_SIZE]) + const
                              for s in range(0, x.shape[0], CHUNK_SIZE)], 0)

    def _sample_log_probs(self, x):
        """``log pi_k^s + log N(x | theta_k^s)`` for every NUTS draw: (S, n, K)."""
        s = self.posterior_samples_
        w = torch.as_tensor(s["weights"], dtype=x.dtype)
        mu = torch.as_tensor(s["means"], dtype=x.dtype)
        prec = torch.as_tensor(s["precisions"], dtype=x.dtype)
        dist = torch.distributions.MultivariateNormal(mu.unsqueeze(1), precision_matrix=prec.unsqueeze(1))
        with torch.no_grad():
            return dist.log_prob(x[None, :, None, :]) + torch.log(w).unsqueeze(1)

    def _weighted_log_prob_draws(self, X):
        """CAVI/SVI: ``E_q[log pi_k + log N(x | theta_k)]`` (scikit-learn's; its logsumexp is a lower
        bound on the log posterior predictive density, see :meth:`predictive_log_prob`). NUTS: the
        exact ``log pi_k^s + log N(x | theta_k^s)`` of every draw (the predictive averages over them)."""
        x = self._validate_predict(X)
        if self._is_sampled():
            return self._sample_log_probs(x)
        return self._estimate_weighted_log_prob(x).unsqueeze(0)

    def predictive_log_prob(self, X):
        """Log posterior predictive density ``log p(x | training data)`` of each row.

        CAVI/SVI with full covariances: exact under the variational posterior, a mixture
        of multivariate Student-t densities (weights ``E[pi_k]``; ``nu_k - d + 1`` degrees of
        freedom, location ``means_k``, scale ``(kappa_k + 1) / (kappa_k (nu_k - d + 1)) Psi_k``).
        NUTS: the Monte Carlo average over draws (as :meth:`score_samples`).

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        x = self._validate_predict(X)
        if self._is_sampled():
            return self.score_samples(X)
        if self.covariance_type != "full":
            raise ValueError("predictive_log_prob needs covariance_type='full' (scikit-learn's tied/diag/spherical "
                             "variants restrict a Wishart scale and have no Student-t predictive)")
        d = x.shape[1]
        nu = torch.as_tensor(self.degrees_of_freedom_, dtype=x.dtype)
        kappa = torch.as_tensor(self.mean_precision_, dtype=x.dtype)
        psi = torch.as_tensor(self.covariances_, dtype=x.dtype) * nu[:, None, None]
        df = nu - d + 1
        scale = ((kappa + 1) / (kappa * df))[:, None, None] * psi
        L = cholesky(scale, "the scale of a Student-t predictive of BayesianGaussianMixture")
        diff = x.unsqueeze(1) - torch.as_tensor(self.means_, dtype=x.dtype)  # (n, K, d)
        y = torch.linalg.solve_triangular(L.unsqueeze(0).expand(x.shape[0], -1, -1, -1), diff.unsqueeze(-1),
                                          upper=False).squeeze(-1)
        maha = (y * y).sum(-1)
        log_det = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        log_t = (torch.lgamma(0.5 * (df + d)) - torch.lgamma(0.5 * df) - 0.5 * d * torch.log(df * math.pi)
                 - 0.5 * log_det - 0.5 * (df + d) * torch.log1p(maha / df))
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = (torch.as_tensor(c, dtype=x.dtype) for c in self.weight_concentration_)
            e_v = a / (a + b)
            e_w = e_v * torch.cat([torch.ones(1, dtype=x.dtype), torch.cumprod(b / (a + b), 0)[:-1]])
        else:
            alpha = torch.as_tensor(self.weight_concentration_, dtype=x.dtype)
            e_w = alpha / alpha.sum()
        return to_numpy(torch.logsumexp(log_t + torch.log(e_w), dim=1))

    def _sampling_parts(self):
        """Members at the posterior means (as scikit-learn's ``sample``)."""
        self._check_fitted(["weights_", "means_", "covariances_"])
        ct = self.covariance_type
        d = self.means_.shape[1]
        means = torch.as_tensor(self.means_, dtype=torch.float64)
        covs = torch.as_tensor(self.covariances_, dtype=torch.float64)

        def member(k, n, gen):
            if ct == "tied":
                dist = MultivariateNormal(mean=means[k], covariance=covs, covariance_type="full")
            elif ct == "spherical":
                dist = MultivariateNormal(mean=means[k], covariance=covs[k] * torch.ones(d, dtype=torch.float64),
                                          covariance_type="diag")
            else:
                dist = MultivariateNormal(mean=means[k], covariance=covs[k], covariance_type=ct)
            return dist._sample((n,), gen)

        return self.weights_, member, None


@COMMON_DOCS.fill
class BayesianMixture(MixtureDensityMixin, ProbkitEstimator):
    """Variational Bayesian mixture of any conjugate exponential family, fitted by CAVI.

    The components share one likelihood family (``family``: Poisson, categorical,
    Bernoulli, normal, multivariate normal, ...), each with the family's conjugate prior
    (``prior``, or a weak data-scaled default); the weights have a Dirichlet-process or
    Dirichlet prior as in :class:`BayesianGaussianMixture`. Coordinate ascent alternates
    ``q(z)`` with the conjugate updates of :class:`~probkit.vi.ConjugateFamily` on the EM
    engine; ``lower_bound_`` is the exact evidence lower bound, evaluated at each E-step:
    ``sum_n logsumexp_k rho_nk - KL(q(pi) || p(pi)) - sum_k KL(q(theta_k) || p(theta_k))``
    (it never decreases).

    Parameters
    ----------
    family : str, ExponentialFamily class or instance, default="normal"
        See :data:`~probkit.vi.CONJUGATE_FAMILIES`. A scalar family over several columns is
        a product over the columns.
    n_components : int, default=1
    prior : distribution, optional
        The conjugate prior of the family (``Gamma`` for Poisson, ``Dirichlet`` for
        categorical, ``Beta`` for Bernoulli, ``NormalGamma`` for normal, ``NormalWishart``
        for a full Gaussian), with a batch shape broadcasting to ``(n_components[, n_features])``.
    weight_concentration_prior_type, weight_concentration_prior
        As in :class:`BayesianGaussianMixture`.
    tol : float, default=1e-3
        Convergence threshold on the gain of the lower bound (total over the data).
    max_iter, n_init, init_params, random_state, warm_start, verbose
        As in :class:`BayesianGaussianMixture`.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    weight_concentration_ : ndarray or tuple
    posterior_ : distribution
        ``q(theta)`` of every component (the prior's type, batch ``(n_components[, n_features])``).
    prior_ : distribution
    components_ : list of distributions
        The likelihood family at each component's posterior mean.
    lower_bound_, lower_bounds_, converged_, n_iter_, n_features_in_

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import BayesianMixture
    >>> rng = np.random.RandomState(0)
    >>> X = np.r_[rng.poisson(2, 150), rng.poisson(20, 100)].reshape(-1, 1)
    >>> bm = BayesianMixture(family="poisson", n_components=4, random_state=0).fit(X)
    >>> np.round(bm.weights_, 3)
    array([0.601, 0.398, 0.001, 0.   ])
    >>> [round(float(c.rate[0]), 2) for c in bm.components_[:2]]
    [1.9, 19.98]
    """

    _parameter_constraints = {
        **_SHARED_CONSTRAINTS,
        # ConjugateFamily and its check_prior raise a clear error for a family without a
        # conjugate prior, or a prior of the wrong type or shape
        "family": "no_validation",
        "prior": "no_validation",
    }

    def __init__(self, family="normal", n_components=1, *, prior=None,
                 weight_concentration_prior_type="dirichlet_process", weight_concentration_prior=None, tol=1e-3,
                 max_iter=100, n_init=1, init_params="kmeans", random_state=None, warm_start=False, verbose=0):
        self.family = family
        self.n_components = n_components
        self.prior = prior
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    def _fitted_family(self):
        """The conjugate family of the fitted model (rebuilt from ``family``; not stored, so it need not be saved)."""
        from probkit.vi.conjugate import ConjugateFamily

        fam = ConjugateFamily(self.family)
        if fam.name == "Categorical":
            fam.template = type(fam.template)(n_categories=self.prior_.n_categories)
        return fam

    def _validate(self, X, reset):
        from probkit.vi.conjugate import ConjugateFamily

        X = self._validate_X(X, reset=reset, ensure_min_samples=2 if reset else 1)
        fam = ConjugateFamily(self.family) if reset else self._fitted_family()
        x = fam.as_data(X)
        return X, x, fam

    def _check_params(self, X, x, fam):
        """What ``_parameter_constraints`` cannot say: the data-dependent checks and the prior."""
        n, d = X.shape
        k = self.n_components
        if n < k:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {n}")
        self.weight_concentration_prior_ = check_weight_prior(self.weight_concentration_prior_type,
                                                              self.weight_concentration_prior, k)
        prior = fam.default_prior(x) if self.prior is None else self.prior
        self.prior_ = fam.check_prior(prior, k, d)

    def _em_initialize(self, data, random_state):
        X, x, fam = data
        resp = initial_responsibilities(X, self.n_components, self.init_params, random_state)
        # As MixtureModel: blend the hard initial assignments with a little uniform weight.
        resp = 0.9 * resp + 0.1 / self.n_components
        self._mstep(torch.as_tensor(resp, dtype=x.dtype), x, fam)

    def _mstep(self, resp_or_stats, x, fam):
        if isinstance(resp_or_stats, torch.Tensor):
            nk = resp_or_stats.sum(0)
            stats = fam.summarize(x, resp_or_stats)
        else:
            nk, stats = resp_or_stats
        self._conc = weight_posterior(nk, self.weight_concentration_prior_, self.weight_concentration_prior_type)
        self._posterior = fam.posterior(stats, self.prior_)

    def _rho(self, x, fam, conc, post):
        return fam.expected_log_likelihood(post, x) + expected_log_weights(conc, self.weight_concentration_prior_type)

    def _em_expectation(self, data):
        X, x, fam = data
        rho = self._rho(x, fam, self._conc, self._posterior)
        lse = torch.logsumexp(rho, dim=1, keepdim=True)
        resp = torch.exp(rho - lse)
        bound = (float(lse.sum()) - float(weight_kl(self._conc, self.weight_concentration_prior_,
                                                    self.weight_concentration_prior_type))
                 - float(fam.kl(self._posterior, self.prior_).sum()))
        stats = (resp.sum(0), fam.summarize(x, resp))
        return EStepResult(log_likelihood=bound, n_samples=float(x.shape[0]), stats=stats)

    def _em_maximization(self, stats):
        self._mstep(stats, self._data[1], self._data[2])

    def _em_get_state(self):
        return (self._conc, self._posterior)

    def _em_set_state(self, state):
        self._conc, self._posterior = state

    def fit(self, X, y=None):
        """Fit the variational posterior by coordinate ascent.

        %(unsupervised_fit)s
        """
        self._validate_params()
        X, x, fam = self._validate(X, reset=True)
        self._check_params(X, x, fam)
        random_state = check_random_state(self.random_state)
        warm = bool(self.warm_start and hasattr(self, "posterior_"))
        if warm:
            self._conc = _as_tensor_conc(self.weight_concentration_, torch.float64, None)
            self._posterior = self.posterior_
        self._data = (X, x, fam)
        try:
            with torch.no_grad():
                result = run_em(self, self._data, max_iter=self.max_iter, tol=self.tol, n_init=self.n_init,
                                random_state=random_state, warm_start=warm,
                                initial_objective=self.lower_bound_ if warm else -math.inf, objective="total",
                                verbose=self.verbose, desc=type(self).__name__,
                                monitor_factory=mixture_monitor_factory(self.verbose,
                                                                        getattr(self, "verbose_interval", 10)))
        finally:
            del self._data
        self.weight_concentration_ = _conc_to_numpy(self._conc)
        self.weights_ = weights_from_concentration(self.weight_concentration_, self.weight_concentration_prior_type)
        self.posterior_ = self._posterior
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.objective
        self.lower_bounds_ = list(result.history)
        del self._conc, self._posterior
        return self

    @property
    def components_(self):
        """The likelihood family at each component's posterior mean (one distribution per component)."""
        self._check_fitted(["posterior_"])
        point = self._fitted_family().point_estimate(self.posterior_)
        out = []
        for k in range(self.n_components):
            params = {name: v[k] for name, v in point.torch_params().items()}
            out.append(point._new(**params))
        return out

    def _io_check_state(self):
        """Check fitted attributes restored by :func:`probkit.load`, as hand-set parameters are checked.

        ``posterior_`` and ``prior_`` are distributions, which checked their parameters when rebuilt.
        """
        if not hasattr(self, "weights_"):  # fit sets it last; every use of the model needs it
            return
        k = self.n_components
        _check_fitted_weights(self, k)
        batch = tuple(self.posterior_.batch_shape)
        if not batch or batch[0] != k:
            raise ValueError(f"posterior_ must have batch shape ({k}, ...), got {batch}")

    def _weighted(self, X):
        self._check_fitted(["posterior_"])
        _, x, fam = self._validate(X, reset=False)
        conc = _as_tensor_conc(self.weight_concentration_, torch.float64, None)
        with torch.no_grad():
            return self._rho(x, fam, conc, self.posterior_)

    def _weighted_log_prob_draws(self, X):
        """``E_q[log pi_k + log p(x | theta_k)]`` (its logsumexp bounds the log predictive density below)."""
        return self._weighted(X).unsqueeze(0)

    def _sampling_parts(self):
        """Members at the posterior means of the weights and components."""
        self._check_fitted(["posterior_"])
        components = self.components_
        return self.weights_, lambda k, n, gen: components[k]._sample((n,), gen), None
