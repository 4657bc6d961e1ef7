"""Student's t distributions, univariate and multivariate, fitted by EM as Gaussian scale mixtures.

A t variable is a normal whose precision is scaled by a latent ``u ~ Gamma(df/2, rate=df/2)``:
``x | u ~ N(loc, scale**2 / u)``. Given ``x`` the scale is again Gamma distributed, with

    E[u | x]     = (df + p) / (df + delta),
    E[log u | x] = digamma((df + p) / 2) - log((df + delta) / 2),

where ``delta`` is the squared (Mahalanobis) distance of ``x`` from ``loc`` and ``p`` the
dimension. The t families are therefore not exponential families, but their *complete-data*
model is: the statistics that :meth:`summarize` returns are the weighted sums of the
expected complete-data statistics under the distribution's *current* parameters, and
:meth:`from_stats` is the M-step of EM (the ECM algorithm of Liu and Rubin for ``df``).
That is exactly what a mixture or HMM E-step needs: ``MixtureModel(family="student_t")``
and ``HMM(emission="student_t")`` run one EM in which every component is reweighted by its
latent scales, so outliers get small ``E[u | x]`` and barely move the fit. :meth:`fit`
iterates the same EM on weighted data until the parameters stop changing.

Statistics summarised by a distribution without parameters (the first step of EM) take
``u = 1``: the fit from them is the Gaussian fit of location and scale, with ``df`` set to
``initial_df`` (or ``fixed_df``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize, special
from sklearn.exceptions import ConvergenceWarning

from probkit.distributions._latent import ExpectedStatisticsMixin
from probkit.distributions._sampling import standard_gamma
from probkit.distributions.base import (ExponentialFamily, _check_fixed, _check_positive, _last_axis_size,
                                        _optional_positive)
from probkit.distributions.gamma import _inverse_digamma_gap
from probkit.distributions.mvn import precision_cholesky
from probkit.utils._array import to_numpy
from probkit.utils._warnings import warn_user
from probkit.utils.validation import check_int

__all__ = ["MultivariateStudentT", "StudentT"]

# Range of the estimated degrees of freedom: below it the density is a spike, above it the
# fit is a normal for every practical purpose (and df -> infinity when the data are normal).
DF_BOUNDS = (1e-2, 1e6)


def _df_m_step(mean_log_u_minus_u):
    """ECM update of ``df``: solve ``log(df/2) - digamma(df/2) = -1 - mean(E[log u] - E[u])``.

    The right-hand side is non-negative (``log u <= u - 1``); it is the Gamma shape equation,
    solved by the same Newton iteration as :class:`~probkit.distributions.Gamma`'s MLE.
    """
    low, high = DF_BOUNDS
    # log a - digamma(a) ~ 1 / (2a) for large a: this floor keeps df at most `high`.
    gap = torch.clamp(-1.0 - mean_log_u_minus_u, min=1.0 / high)
    return torch.clamp(2.0 * _inverse_digamma_gap(gap), min=low, max=high)


def _df_observed_mle(delta, weight, p):
    """The ``df`` maximising ``sum_i w_i log t_df(x_i)`` for fixed location and scale (the ECME step).

    ``delta`` are the squared (Mahalanobis) distances of the samples. The score in ``df`` is
    ``sum_i w_i [digamma((df+p)/2) - digamma(df/2) - p/df - log(1 + delta_i/df)
    + (df+p) delta_i / (df (df + delta_i))] / 2``; its root is found by Brent's method on
    ``log df`` within ``DF_BOUNDS`` (the upper bound when the score is still positive there).
    """
    delta = np.asarray(delta, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)

    def score(log_df):
        df = math.exp(log_df)
        terms = (special.digamma(0.5 * (df + p)) - special.digamma(0.5 * df) - p / df
                 - np.log1p(delta / df) + (df + p) * delta / (df * (df + delta)))
        return float(np.sum(weight * terms))  # elementwise: no BLAS thread pool between torch calls

    low, high = (math.log(b) for b in DF_BOUNDS)
    if score(high) >= 0:
        return DF_BOUNDS[1]
    if score(low) <= 0:
        return DF_BOUNDS[0]
    return math.exp(optimize.brentq(score, low, high, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500))


def _t_entropy(df, p, half_log_det):
    """Entropy of a ``p``-variate t with shape matrix of log-determinant ``2 * half_log_det``."""
    return (torch.lgamma(0.5 * df) - torch.lgamma(0.5 * (df + p)) + 0.5 * p * torch.log(df * math.pi)
            + half_log_det + 0.5 * (df + p) * (torch.digamma(0.5 * (df + p)) - torch.digamma(0.5 * df)))


def _t_log_normalizer(df, p):
    """``log Gamma((df + p)/2) - log Gamma(df/2) - p/2 log(df pi)``."""
    return torch.lgamma(0.5 * (df + p)) - torch.lgamma(0.5 * df) - 0.5 * p * torch.log(df * math.pi)


class _ScaleMixtureT(ExpectedStatisticsMixin, ExponentialFamily):
    """What the univariate and multivariate t share: the latent scales, the EM fit and ``df``.

    Subclasses define ``_dimension``, ``_centred_maha(x) -> (x - loc, delta)`` for ``x``
    broadcast against the batch, ``_weighted_moments``, ``_location_scale`` (the M-step of
    location and scale from the statistics), ``_params_close`` and ``_floor_name``, the
    non-negative option that floors the fitted scale (``min_scale``, ``reg_covar``).
    """

    support_description = "the real line"
    conjugate_prior_family = None

    def _init_options(self, fixed_df, initial_df, floor, tol, max_iter):
        """Check and store the fitting options; ``floor`` is the subclass's ``_floor_name`` option."""
        if not floor >= 0:
            raise ValueError(f"{self._floor_name} must be non-negative, got {floor!r}")
        setattr(self, self._floor_name, float(floor))
        self.fixed_df = _optional_positive(fixed_df, "fixed_df")
        if not (np.isfinite(initial_df) and initial_df > 0):
            raise ValueError(f"initial_df must be a positive number, got {initial_df!r}")
        if not (tol > 0):
            raise ValueError(f"tol must be positive, got {tol!r}")
        check_int(max_iter, "max_iter")
        self.initial_df = float(initial_df)
        self.tol = float(tol)
        self.max_iter = int(max_iter)

    def _options(self):
        return {"fixed_df": self.fixed_df, "initial_df": self.initial_df,
                self._floor_name: getattr(self, self._floor_name), "tol": self.tol, "max_iter": self.max_iter}

    def _check_df(self):
        df = self._params["df"]
        _check_positive(df, "df", type(self).__name__)
        _check_fixed(df, self.fixed_df, "df", type(self).__name__)

    # ------------------------------------------------------------------ not an exponential family
    def _not_exponential_family(self, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} is a Gaussian scale mixture, not an exponential family: it has no "
            "natural parameters, log-partition or mean parameters (its EM statistics are those of the "
            "complete-data model, see summarize)")

    _natural_parameters = _log_partition = _mean_parameters = _log_base_measure = _not_exponential_family

    @classmethod
    def _params_from_natural(cls, eta, options):
        raise NotImplementedError(f"{cls.__name__} is not an exponential family: it has no natural parameters")

    def _params_from_mean(self, mean, stats=None):
        raise AssertionError(f"{type(self).__name__} fits through _mle_params")

    def _kl(self, other):
        raise NotImplementedError(
            f"the KL divergence between two {type(self).__name__} distributions has no closed form; estimate "
            "it by Monte Carlo: mean(p.log_prob(x) - q.log_prob(x)) over x = p.sample(n)")

    # ------------------------------------------------------------------ latent scales
    def _latent(self, x):
        """``(x - loc, E[u | x], E[log u | x])`` for ``x`` broadcast against the batch."""
        df = self._params["df"]
        p = self._dimension()
        diff, delta = self._centred_maha(x)
        u = (df + p) / (df + delta)
        e_log_u = torch.digamma(0.5 * (df + p)) - torch.log(0.5 * (df + delta))
        return diff, u, e_log_u

    def _sufficient_statistics(self, x):
        """Per-sample complete-data statistics.

        Without parameters: ``u = 1`` (``{"u": 1, "ux": x, "uxx": x x^T, "log_u_minus_u": -1}``).
        With parameters: the expectations given ``x`` (already broadcast against the batch),
        centred on ``loc`` (``"ux" = E[u] (x - loc)``, ...).
        """
        if not self.is_fitted:
            one = torch.ones(x.shape[: x.ndim - self.event_ndim], dtype=x.dtype, device=x.device)
            return {"u": one, "ux": x, "uxx": self._outer(x), "log_u_minus_u": -one}
        diff, u, e_log_u = self._latent(x)
        return {"u": u, "ux": u.reshape(u.shape + (1,) * self.event_ndim) * diff,
                "uxx": self._outer(diff, u), "log_u_minus_u": e_log_u - u}

    def _stats_meta(self):
        if not self.is_fitted:
            return {"shift": None}
        loc = self._params["loc"]
        return {"shift": loc.expand(torch.Size((*self._batch_shape, *loc.shape[loc.ndim - self.event_ndim:])))}

    def _mle_params(self, stats):
        count = stats["count"]
        params = self._location_scale(stats)
        shift = stats.meta.get("shift")
        if shift is not None:
            params["loc"] = params["loc"] + shift.to(params["loc"].dtype)
        if self.fixed_df is not None:
            df = torch.full_like(count, self.fixed_df)
        elif shift is None:
            # No latent information yet (the Gaussian start of EM).
            df = torch.full_like(count, self.initial_df)
        else:
            df = _df_m_step(stats["log_u_minus_u"] / count)
        return {"df": df, **params}

    def fit(self, X, sample_weight=None, prior=None):
        """Fit by EM on (weighted) data: maximum likelihood of location, scale and ``df``.

        Starts from the Gaussian fit with ``df = initial_df`` (or ``fixed_df``) and alternates
        :meth:`summarize` (expected latent scales) and the location and scale update of
        :meth:`from_stats` until the relative change of every parameter is below ``tol`` (a
        ``ConvergenceWarning`` after ``max_iter`` iterations otherwise). With the data at hand,
        an estimated ``df`` is updated by maximising the observed likelihood in ``df`` (Liu and
        Rubin's ECME), which converges much faster than the expected complete-data step that
        :meth:`from_stats` takes; both have the MLE as fixed point. Weighted data give the fit
        of the data with rows repeated.

        Parameters
        ----------
        X : array-like of shape (n_samples, *event_shape)
        sample_weight : array-like of shape (n_samples,), optional
        prior : None
            The t families have no conjugate prior; anything else is a ``TypeError``.

        Returns
        -------
        self
        """
        x, w = self._direct_fit_data(X, sample_weight, prior)
        w = torch.as_tensor(w, dtype=x.dtype, device=x.device)
        start = self._new()
        current = start.from_stats(start._summarize(x, w))
        p = self._dimension_of(x)
        for _ in range(self.max_iter):
            new = current.from_stats(current._summarize(x, w))
            if self.fixed_df is None:
                _, delta = new._centred_maha(x)
                df = _df_observed_mle(delta.detach().cpu().numpy(), w.detach().cpu().numpy(), p)
                new = new._new(**{**new._params, "df": torch.tensor(df, dtype=x.dtype, device=x.device)})
            done = self._params_close(current, new)
            current = new
            if done:
                break
        else:
            warn_user(f"{type(self).__name__}.fit: EM did not reach tol={self.tol} in max_iter={self.max_iter} "
                      "iterations", ConvergenceWarning)
        self._params = current._params
        self._batch_shape = current._batch_shape
        self._cache = current._cache
        return self

    def _n_free_parameters(self):
        return self._n_location_scale_parameters() + (self.fixed_df is None)

    @staticmethod
    def _relative_change(old, new, scale):
        return float(((new - old).abs() / scale).max())


class StudentT(_ScaleMixtureT):
    """Student's t distribution with ``df`` degrees of freedom, location ``loc`` and scale ``scale``.

    Density ``Gamma((df+1)/2) / (Gamma(df/2) sqrt(df pi) scale) (1 + z**2 / df)**(-(df+1)/2)``
    with ``z = (x - loc) / scale`` (``scipy.stats.t(df, loc, scale)``). A Gaussian scale
    mixture, fitted by EM; see the module documentation for the statistics. In a mixture
    (``MixtureModel(family="student_t")``) every component downweights its outliers.

    Parameters
    ----------
    df : float or array-like, optional
        Degrees of freedom (positive). Omit all three parameters for an unfitted distribution.
    loc : float or array-like, optional
    scale : float or array-like, optional
        Positive scale (the standard deviation is ``scale * sqrt(df / (df - 2))`` for ``df > 2``).
    fixed_df : float, optional
        Keep ``df`` at this value in fits instead of estimating it.
    initial_df : float, default=5.0
        ``df`` of the first EM step (when estimated).
    min_scale : float, default=0.0
        Lower bound on the fitted scale.
    tol : float, default=1e-10
        :meth:`fit` stops when no parameter changes by more than ``tol`` (relative).
    max_iter : int, default=5000
        Maximum EM iterations of :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> d = StudentT(df=3.0, loc=0.0, scale=2.0)
    >>> round(float(d.log_prob(np.array([1.0]))[0]), 6)
    -1.854121
    >>> x = np.r_[np.random.RandomState(0).standard_t(4.0, 2000), 1e4]   # one gross outlier
    >>> fit = StudentT().fit(x)
    >>> round(float(fit.loc), 2), round(float(fit.df), 1)
    (-0.01, 3.5)
    >>> StudentT(fixed_df=1.0).fit(np.array([-1.0, 0.0, 1.0])).scale   # Cauchy: the MLE of the scale
    array(0.57735027)
    """

    param_names = ("df", "loc", "scale")
    _floor_name = "min_scale"
    _param_event_ndims = {"df": 0, "loc": 0, "scale": 0}
    event_ndim = 0

    def __init__(self, df=None, loc=None, scale=None, *, fixed_df=None, initial_df=5.0, min_scale=0.0,
                 tol=1e-10, max_iter=5000):
        self._init_options(fixed_df, initial_df, min_scale, tol, max_iter)
        self._set_params(df=df, loc=loc, scale=scale)

    def _check_params(self):
        self._check_df()
        _check_positive(self._params["scale"], "scale", "StudentT")

    def _dimension(self):
        return 1

    @staticmethod
    def _dimension_of(x):
        return 1

    @staticmethod
    def _outer(x, weight=None):
        return x * x if weight is None else weight * x * x

    def _centred_maha(self, x):
        diff = x - self._params["loc"]
        z = diff / self._params["scale"]
        return diff, z * z

    def _log_prob(self, x):
        df, scale = self._params["df"], self._params["scale"]
        _, delta = self._centred_maha(x)
        return _t_log_normalizer(df, 1) - torch.log(scale) - 0.5 * (df + 1) * torch.log1p(delta / df)

    def _location_scale(self, stats):
        count, u, ux, uxx = stats["count"], stats["u"], stats["ux"], stats["uxx"]
        m = ux / u
        var = torch.clamp((uxx - ux * m) / count, min=0.0)
        scale = torch.clamp(torch.sqrt(var), min=self.min_scale)
        if bool((scale <= 0).any()):
            raise ValueError("StudentT: the data have zero spread; set min_scale > 0 to fit a degenerate sample")
        return {"loc": m, "scale": scale}

    def _params_close(self, old, new):
        po, pn = old._params, new._params
        scale = pn["scale"]
        return max(self._relative_change(po["loc"], pn["loc"], scale),
                   self._relative_change(po["scale"], pn["scale"], scale),
                   self._relative_change(po["df"], pn["df"], pn["df"])) <= self.tol

    def _n_location_scale_parameters(self):
        return 2

    def _sample(self, shape, gen):
        df, loc, scale = self._params["df"], self._params["loc"], self._params["scale"]
        full = (*shape, *self._batch_shape)
        z = torch.randn(full, dtype=loc.dtype, device=loc.device, generator=gen)
        # x = loc + scale z / sqrt(u) with u ~ Gamma(df/2, rate df/2) = 2 G / df, G ~ Gamma(df/2, 1).
        g = standard_gamma((0.5 * df).expand(full).contiguous(), gen)
        return loc + scale * z * torch.sqrt(0.5 * df / g)

    def _entropy(self):
        df, scale = self._params["df"], self._params["scale"]
        return _t_entropy(df, 1, torch.log(scale)).expand(self._batch_shape)


class MultivariateStudentT(_ScaleMixtureT):
    """Multivariate t distribution with ``df`` degrees of freedom, location ``loc`` and shape matrix.

    ``x = loc + z / sqrt(u)`` with ``z ~ N(0, scale_matrix)`` and ``u ~ Gamma(df/2, rate=df/2)``
    (``scipy.stats.multivariate_t(loc, shape=scale_matrix, df=df)``); the covariance is
    ``df / (df - 2) * scale_matrix`` for ``df > 2``. Fitted by EM (see the module
    documentation); ``MixtureModel(family="multivariate_t")`` gives robust mixtures of
    t components (McLachlan and Peel's t-mixtures).

    Parameters
    ----------
    df : float or array-like, optional
        Degrees of freedom, one per batch member.
    loc : array-like of shape (..., d), optional
    scale_matrix : array-like of shape (..., d, d), optional
        Symmetric positive definite shape matrices.
    fixed_df : float, optional
        Keep ``df`` at this value in fits instead of estimating it.
    initial_df : float, default=5.0
        ``df`` of the first EM step (when estimated).
    reg_covar : float, default=0.0
        Added to the diagonal of fitted shape matrices.
    tol : float, default=1e-10
        :meth:`fit` stops when no parameter changes by more than ``tol`` (relative).
    max_iter : int, default=5000
        Maximum EM iterations of :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> d = MultivariateStudentT(df=4.0, loc=[0.0, 0.0], scale_matrix=np.eye(2))
    >>> round(float(d.log_prob(np.zeros((1, 2)))[0]), 6)
    -1.837877
    >>> fit = MultivariateStudentT(fixed_df=4.0).fit(d.sample(5000, random_state=0))
    >>> bool(np.abs(fit.scale_matrix - np.eye(2)).max() < 0.06)
    True
    """

    param_names = ("df", "loc", "scale_matrix")
    _floor_name = "reg_covar"
    _param_event_ndims = {"df": 0, "loc": 1, "scale_matrix": 2}
    event_ndim = 1

    def __init__(self, df=None, loc=None, scale_matrix=None, *, fixed_df=None, initial_df=5.0, reg_covar=0.0,
                 tol=1e-10, max_iter=5000):
        self._init_options(fixed_df, initial_df, reg_covar, tol, max_iter)
        self._set_params(df=df, loc=loc, scale_matrix=scale_matrix)

    n_features = _last_axis_size("loc", "Dimension ``d`` of a sample.")

    @property
    def mean(self):
        """``loc`` where ``df > 1``; NaN where the mean does not exist (as ``torch.distributions.StudentT``).

        Examples
        --------
        >>> MultivariateStudentT(df=[0.5, 3.0], loc=[[1.0, 2.0], [3.0, 4.0]], scale_matrix=np.eye(2)).mean
        array([[nan, nan],
               [ 3.,  4.]])
        """
        self._require_params()
        loc, df = self._params["loc"], self._params["df"]
        return to_numpy(torch.where((df > 1).unsqueeze(-1), loc, torch.full_like(loc, math.nan)))

    @property
    def variance(self):
        """Marginal variances ``df / (df - 2) * diag(scale_matrix)``; infinite for ``1 < df <= 2``, NaN for ``df <= 1``.

        Examples
        --------
        >>> MultivariateStudentT(df=4.0, loc=[0.0, 0.0], scale_matrix=[[1.0, 0.5], [0.5, 3.0]]).variance
        array([2., 6.])
        """
        self._require_params()
        df = self._params["df"].unsqueeze(-1)
        scale = torch.diagonal(self._params["scale_matrix"], dim1=-2, dim2=-1)
        var = torch.where(df > 2, df / (df - 2).clamp_min(1e-300) * scale, torch.full_like(scale, math.inf))
        return to_numpy(torch.where(df > 1, var, torch.full_like(scale, math.nan)))

    def _check_params(self):
        self._check_df()
        loc, shape = self._params["loc"], self._params["scale_matrix"]
        d = loc.shape[-1]
        if shape.shape[-2:] != (d, d):
            raise ValueError(f"scale_matrix must have trailing shape ({d}, {d}), got {tuple(shape.shape)}")
        if not bool(torch.allclose(shape, shape.mT, rtol=1e-8, atol=1e-10)):
            raise ValueError("MultivariateStudentT: scale_matrix must be symmetric")
        self._cache["prec_chol"] = precision_cholesky(shape, "full")

    def _validate_support(self, x, name="X"):
        if self.is_fitted and x.shape[-1] != self.n_features:
            raise ValueError(f"{name} has {x.shape[-1]} features but this MultivariateStudentT has {self.n_features}")

    def _prec_chol(self):
        P = self._cache.get("prec_chol")
        if P is None:
            P = precision_cholesky(self._params["scale_matrix"], "full")
            self._cache["prec_chol"] = P
        return P

    def _half_log_det_precision(self):
        return torch.log(torch.diagonal(self._prec_chol(), dim1=-2, dim2=-1)).sum(-1)

    def _dimension(self):
        return self._params["loc"].shape[-1]

    @staticmethod
    def _dimension_of(x):
        return x.shape[-1]

    @staticmethod
    def _outer(x, weight=None):
        outer = x.unsqueeze(-1) * x.unsqueeze(-2)
        return outer if weight is None else weight[..., None, None] * outer

    def _centred_maha(self, x):
        diff = x - self._params["loc"]
        y = (diff.unsqueeze(-2) @ self._prec_chol()).squeeze(-2)
        return diff, (y * y).sum(-1)

    def _log_prob(self, x):
        df = self._params["df"]
        d = self._dimension()
        _, delta = self._centred_maha(x)
        return (_t_log_normalizer(df, d) + self._half_log_det_precision()
                - 0.5 * (df + d) * torch.log1p(delta / df))

    def _location_scale(self, stats):
        count, u, ux, uxx = stats["count"], stats["u"], stats["ux"], stats["uxx"]
        m = ux / u.unsqueeze(-1)
        shape = (uxx - m.unsqueeze(-1) * ux.unsqueeze(-2)) / count[..., None, None]
        shape = 0.5 * (shape + shape.mT)
        shape = shape + self.reg_covar * torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
        return {"loc": m, "scale_matrix": shape}

    def _params_close(self, old, new):
        po, pn = old._params, new._params
        sd = torch.sqrt(torch.diagonal(pn["scale_matrix"], dim1=-2, dim2=-1))
        outer = sd.unsqueeze(-1) * sd.unsqueeze(-2)
        return max(self._relative_change(po["loc"], pn["loc"], sd),
                   self._relative_change(po["scale_matrix"], pn["scale_matrix"], outer),
                   self._relative_change(po["df"], pn["df"], pn["df"])) <= self.tol

    def _n_location_scale_parameters(self):
        d = self._dimension()
        return d + d * (d + 1) // 2

    def _sample(self, shape, gen):
        df, loc = self._params["df"], self._params["loc"]
        d = loc.shape[-1]
        full = (*shape, *self._batch_shape)
        z = torch.randn(*full, d, dtype=loc.dtype, device=loc.device, generator=gen)
        L = torch.linalg.cholesky(self._params["scale_matrix"])
        g = standard_gamma((0.5 * df).expand(full).contiguous(), gen)
        return loc + (L @ z.unsqueeze(-1)).squeeze(-1) * torch.sqrt(0.5 * df / g).unsqueeze(-1)

    def _entropy(self):
        df = self._params["df"]
        d = self._dimension()
        return _t_entropy(df, d, -self._half_log_det_precision()).expand(self._batch_shape)
