"""Conjugate priors of the Gaussian families: Normal-Gamma and Normal-Wishart.

Both are distributions over *pairs* (a mean and a precision), so they do not fit the
sufficient-statistics machinery of :class:`~probkit.distributions.base.ExponentialFamily`
(whose samples are single arrays). They share its conventions otherwise: float64 tensor
parameters with an optional leading batch shape, numpy read access (``prior.loc``),
``torch_params()`` for the live tensors, and ``_require_params``.

They serve three callers: the conjugate updates of :class:`Normal`, :class:`LogNormal`
and :class:`MultivariateNormal` (``_update``, ``_mode``, ``_log_normalizer``), and
variational Bayes, which needs the expectations of the precision under the posterior.
"""

from __future__ import annotations

import numpy as np
import torch

from probkit.distributions._sampling import standard_gamma
from probkit.distributions.base import LOG_2PI, ExponentialFamily, _check_positive, _last_axis_size, kl_divergence
from probkit.distributions.wishart import wishart_bartlett, wishart_expected_log_det, wishart_log_normaliser
from probkit.utils._array import is_tensor, to_numpy
from probkit.utils.random import torch_generator
from probkit.utils._linalg import cholesky
from probkit.utils.validation import check_int

__all__ = ["NormalGamma", "NormalWishart"]


class _ParameterisedPrior:
    """Parameter handling borrowed from :class:`ExponentialFamily` (same rules, same errors)."""

    param_names: tuple = ()
    _param_event_ndims: dict = {}

    _set_params = ExponentialFamily._set_params
    is_fitted = ExponentialFamily.is_fitted
    _require_params = ExponentialFamily._require_params
    batch_shape = ExponentialFamily.batch_shape
    params = ExponentialFamily.params
    torch_params = ExponentialFamily.torch_params
    dtype = ExponentialFamily.dtype
    device = ExponentialFamily.device
    __getattr__ = ExponentialFamily.__getattr__
    __getstate__ = ExponentialFamily.__getstate__
    __repr__ = ExponentialFamily.__repr__

    def _options(self):
        return {}

    def _check_params(self):
        """Validate parameter values. Subclasses override."""

    def _as_value(self, value, name):
        """A numpy or tensor argument as a tensor of the parameters' dtype and device."""
        if is_tensor(value):
            t = value.to(dtype=self.dtype, device=self.device)
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
            t = torch.as_tensor(arr.astype(np.float64), dtype=self.dtype, device=self.device)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinity")
        return t

    def entropy(self):
        """Differential entropy in nats, with the batch shape.

        Examples
        --------
        >>> prior = NormalGamma(loc=0.0, mean_precision=1.0, concentration=1.0, rate=1.0)
        >>> round(float(prior.entropy()), 6)
        2.707546
        """
        self._require_params()
        return to_numpy(self._entropy())

    def kl_divergence(self, other):
        """``KL(self || other)`` for another prior of the same type (broadcast over batches).

        Examples
        --------
        >>> p = NormalGamma(loc=0.0, mean_precision=1.0, concentration=2.0, rate=1.0)
        >>> q = NormalGamma(loc=1.0, mean_precision=1.0, concentration=2.0, rate=1.0)
        >>> float(p.kl_divergence(q))  # (kappa / 2) E[tau] (m_p - m_q)**2
        1.0
        """
        return kl_divergence(self, other)

    def _sampling_setup(self, n_samples, random_state):
        """``(shape, generator)`` of a draw of ``n_samples``: shape ``(n_samples, *batch_shape)``."""
        self._require_params()
        return (check_int(n_samples, "n_samples"), *self._batch_shape), torch_generator(random_state, device=self.device)


def _safe_div(num, den):
    return num / torch.where(den > 0, den, torch.ones_like(den))


class NormalGamma(_ParameterisedPrior):
    """Normal-Gamma distribution over a normal mean ``mu`` and precision ``tau``.

    ``tau ~ Gamma(concentration, rate)`` and ``mu | tau ~ N(loc, 1 / (mean_precision * tau))``:
    the conjugate prior of :class:`Normal` (and of :class:`LogNormal` on ``log x``). The
    density is ``tau**(a - 1/2) exp(-b tau - kappa tau (mu - m)**2 / 2) / Z`` with
    ``log Z = lgamma(a) - a log b + log(2 pi / kappa) / 2``.

    Parameters
    ----------
    loc : float or array-like, optional
        Prior mean ``m`` of ``mu``.
    mean_precision : float or array-like, optional
        ``kappa > 0``: how many pseudo-observations the prior mean is worth.
    concentration : float or array-like, optional
        Shape ``a > 0`` of the precision's Gamma.
    rate : float or array-like, optional
        Rate ``b > 0`` of the precision's Gamma (``E[tau] = a / b``).

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.distributions import Normal
    >>> prior = NormalGamma(loc=0.0, mean_precision=1.0, concentration=2.0, rate=2.0)
    >>> post = Normal().posterior(np.array([1.0, 2.0, 3.0]), prior)
    >>> float(post.loc), float(post.mean_precision), float(post.concentration), float(post.rate)
    (1.5, 4.0, 3.5, 4.5)
    >>> float(post.expected_precision())
    0.7777777777777778
    """

    param_names = ("loc", "mean_precision", "concentration", "rate")
    _param_event_ndims = {"loc": 0, "mean_precision": 0, "concentration": 0, "rate": 0}

    def __init__(self, loc=None, mean_precision=None, concentration=None, rate=None):
        self._set_params(loc=loc, mean_precision=mean_precision, concentration=concentration, rate=rate)

    def _check_params(self):
        for name in ("mean_precision", "concentration", "rate"):
            _check_positive(self._params[name], name, "NormalGamma")

    def _unpack(self):
        p = self._params
        return p["loc"], p["mean_precision"], p["concentration"], p["rate"]

    # ------------------------------------------------------------------ conjugate machinery
    def _update(self, count, sum_x, sum_xx, shift=None):
        """Posterior after observations with weighted sums ``count``, ``sum x``, ``sum x**2``.

        ``rate_n = rate + (S + kappa n / (kappa + n) (xbar - m)**2) / 2`` with the scatter
        ``S = sum x**2 - n xbar**2`` (clamped at 0 against rounding), a sum of non-negative
        terms rather than the difference ``sum x**2 + kappa m**2 - kappa_n m_n**2``; batch
        members with ``count = 0`` keep the prior. With ``shift``, the sums are of
        ``x - shift`` (statistics accumulated about a point near the data), so that ``S``
        is computed from small numbers.
        """
        m, kappa, a, b = self._unpack()
        kappa_n = kappa + count
        centred = _safe_div(sum_x, count)
        scatter = torch.clamp(sum_xx - centred * sum_x, min=0.0)
        mean_x = centred if shift is None else centred + shift.to(centred)
        loc_n = (kappa * m + count * mean_x) / kappa_n
        shrink = kappa * count / kappa_n * (mean_x - m) ** 2
        return NormalGamma(loc=loc_n, mean_precision=kappa_n, concentration=a + 0.5 * count,
                           rate=b + 0.5 * (scatter + shrink))

    def _mode(self):
        """Joint mode ``(loc, precision)``: ``mu = loc``, ``tau = (concentration - 1/2) / rate``.

        At ``mu = loc`` the density in ``tau`` is ``tau**(a - 1/2) exp(-b tau)``; it has an
        interior maximum only for ``a > 1/2``.
        """
        self._require_params()
        m, kappa, a, b = self._unpack()
        if bool((a <= 0.5).any()):
            raise ValueError("NormalGamma: the joint mode needs concentration > 1/2 (the density peaks at tau = 0)")
        precision = (a - 0.5) / b
        shape = torch.broadcast_shapes(m.shape, precision.shape)
        return m.expand(shape), precision.expand(shape)

    def _log_normalizer(self):
        """``log Z = lgamma(a) - a log b + log(2 pi / kappa) / 2``, with the batch shape."""
        m, kappa, a, b = self._unpack()
        return (torch.lgamma(a) - a * torch.log(b) + 0.5 * (LOG_2PI - torch.log(kappa))).expand(self._batch_shape)

    # ------------------------------------------------------------------ densities
    def _log_prob(self, mu, tau):
        m, kappa, a, b = self._unpack()
        return ((a - 0.5) * torch.log(tau) - b * tau - 0.5 * kappa * tau * (mu - m) ** 2
                - self._log_normalizer())

    def log_prob(self, mu, tau):
        """Joint log-density of ``(mu, tau)``, broadcast against the batch shape.

        Parameters
        ----------
        mu : array-like
            Means, broadcastable with ``batch_shape`` (e.g. ``(n, *batch_shape)`` as from :meth:`sample`).
        tau : array-like
            Positive precisions, same shape rules as ``mu``.

        Returns
        -------
        numpy.ndarray (torch.Tensor for tensor input)

        Examples
        --------
        >>> prior = NormalGamma(loc=0.0, mean_precision=1.0, concentration=1.0, rate=1.0)
        >>> round(float(prior.log_prob(0.0, 1.0)), 6)
        -1.918939
        """
        self._require_params()
        mu_t, tau_t = self._as_value(mu, "mu"), self._as_value(tau, "tau")
        if bool((tau_t <= 0).any()):
            raise ValueError("tau must be strictly positive (a precision)")
        out = self._log_prob(mu_t, tau_t)
        return out if is_tensor(mu) else to_numpy(out)

    def sample(self, n_samples=1, random_state=None):
        """Draw ``(mu, tau)`` pairs: ``tau`` from the Gamma, then ``mu`` given ``tau``.

        Returns
        -------
        mu, tau : numpy.ndarray of shape (n_samples, *batch_shape)

        Examples
        --------
        >>> prior = NormalGamma(loc=0.0, mean_precision=1.0, concentration=3.0, rate=3.0)
        >>> mu, tau = prior.sample(20000, random_state=0)
        >>> bool(abs(tau.mean() - 1.0) < 0.03)
        True
        """
        shape, gen = self._sampling_setup(n_samples, random_state)
        m, kappa, a, b = self._unpack()
        with torch.no_grad():
            tau = standard_gamma(a.expand(shape).contiguous(), gen) / b
            eps = torch.randn(shape, dtype=m.dtype, device=m.device, generator=gen)
            mu = m + eps * torch.rsqrt(kappa * tau)
        return to_numpy(mu), to_numpy(tau)

    def _entropy(self):
        m, kappa, a, b = self._unpack()
        # E[log tau] = digamma(a) - log b, E[b tau] = a, E[kappa tau (mu - m)^2] = 1.
        return (-(a - 0.5) * (torch.digamma(a) - torch.log(b)) + a + 0.5 + self._log_normalizer())

    def _kl(self, other):
        m1, k1, a1, b1 = self._unpack()
        m2, k2, a2, b2 = other._unpack()
        e_log_tau = torch.digamma(a1) - torch.log(b1)
        e_tau = a1 / b1
        # E_1[tau (mu - m2)^2] = 1 / k1 + E[tau] (m1 - m2)^2
        return ((a1 - a2) * e_log_tau - (b1 - b2) * e_tau - 0.5
                + 0.5 * k2 * (1.0 / k1 + e_tau * (m1 - m2) ** 2)
                - self._log_normalizer() + other._log_normalizer())

    # ------------------------------------------------------------------ VB expectations
    def _expectation(self, formula):
        """``formula(loc, mean_precision, concentration, rate)`` with the batch shape, as numpy."""
        self._require_params()
        return to_numpy(formula(*self._unpack()).expand(self._batch_shape))

    def expected_precision(self):
        """``E[tau] = concentration / rate``.

        Examples
        --------
        >>> float(NormalGamma(loc=0.0, mean_precision=1.0, concentration=2.0, rate=4.0).expected_precision())
        0.5
        """
        return self._expectation(lambda m, kappa, a, b: a / b)

    def expected_log_precision(self):
        """``E[log tau] = digamma(concentration) - log(rate)``.

        Examples
        --------
        >>> round(float(NormalGamma(loc=0.0, mean_precision=1.0, concentration=1.0, rate=1.0).expected_log_precision()), 6)
        -0.577216
        """
        return self._expectation(lambda m, kappa, a, b: torch.digamma(a) - torch.log(b))

    def expected_precision_times_mean(self):
        """``E[tau mu] = loc * concentration / rate``.

        Examples
        --------
        >>> float(NormalGamma(loc=3.0, mean_precision=1.0, concentration=2.0, rate=4.0).expected_precision_times_mean())
        1.5
        """
        return self._expectation(lambda m, kappa, a, b: m * a / b)

    def expected_precision_times_mean_sq(self):
        """``E[tau mu**2] = 1 / mean_precision + loc**2 * concentration / rate``.

        Examples
        --------
        >>> float(NormalGamma(loc=2.0, mean_precision=4.0, concentration=2.0, rate=4.0).expected_precision_times_mean_sq())
        2.25
        """
        return self._expectation(lambda m, kappa, a, b: 1.0 / kappa + m * m * a / b)


class NormalWishart(_ParameterisedPrior):
    """Normal-Wishart distribution over a mean vector and a precision matrix ``Λ``.

    ``Λ ~ Wishart(scale W, degrees_of_freedom ν)`` with ``W = inv(covariance)`` and
    ``mean | Λ ~ N(loc, inv(mean_precision Λ))``: the conjugate prior of a full-covariance
    :class:`MultivariateNormal`, in the parameterisation of scikit-learn's
    ``BayesianGaussianMixture`` (``covariance`` plays the role of its ``covariance_prior``,
    the inverse Wishart scale; ``E[Λ] = ν W``).

    Parameters
    ----------
    loc : array-like of shape (..., d), optional
        Prior mean ``m``.
    mean_precision : float or array-like, optional
        ``κ > 0``, pseudo-observations behind ``loc``.
    degrees_of_freedom : float or array-like, optional
        ``ν > d - 1``.
    covariance : array-like of shape (..., d, d), optional
        Symmetric positive definite inverse scale ``W^{-1}``.

    Examples
    --------
    >>> import numpy as np
    >>> prior = NormalWishart(loc=np.zeros(2), mean_precision=1.0, degrees_of_freedom=3.0,
    ...                       covariance=np.eye(2))
    >>> prior.expected_precision()
    array([[3., 0.],
           [0., 3.]])
    >>> mean, precision = prior.sample(2, random_state=0)
    >>> mean.shape, precision.shape
    ((2, 2), (2, 2, 2))
    """

    param_names = ("loc", "mean_precision", "degrees_of_freedom", "covariance")
    _param_event_ndims = {"loc": 1, "mean_precision": 0, "degrees_of_freedom": 0, "covariance": 2}

    def __init__(self, loc=None, mean_precision=None, degrees_of_freedom=None, covariance=None):
        self._set_params(loc=loc, mean_precision=mean_precision, degrees_of_freedom=degrees_of_freedom,
                         covariance=covariance)

    n_features = _last_axis_size("loc", "Dimension ``d`` of the mean.")

    def _check_params(self):
        p = self._params
        d = p["loc"].shape[-1]
        cov = p["covariance"]
        if cov.shape[-2:] != (d, d):
            raise ValueError(f"NormalWishart: covariance must have trailing shape ({d}, {d}), got {tuple(cov.shape)}")
        _check_positive(p["mean_precision"], "mean_precision", "NormalWishart")
        if bool((p["degrees_of_freedom"] <= d - 1).any()):
            raise ValueError(f"NormalWishart: degrees_of_freedom must exceed n_features - 1 = {d - 1}")
        if not bool(torch.allclose(cov, cov.mT, rtol=1e-8, atol=1e-10)):
            raise ValueError("NormalWishart: covariance must be symmetric")
        chol, info = torch.linalg.cholesky_ex(cov)
        if bool((info != 0).any()):
            raise ValueError("NormalWishart: covariance must be positive definite")
        self._cache["cov_chol"] = chol

    def _unpack(self):
        p = self._params
        return p["loc"], p["mean_precision"], p["degrees_of_freedom"], p["covariance"]

    def _cov_chol(self):
        chol = self._cache.get("cov_chol")
        if chol is None:
            chol = cholesky(self._params["covariance"], f"the covariance of {type(self).__name__}")
            self._cache["cov_chol"] = chol
        return chol

    def _log_det_cov(self):
        return 2.0 * torch.log(torch.diagonal(self._cov_chol(), dim1=-2, dim2=-1)).sum(-1)

    def _scale_matrix(self):
        """The Wishart scale ``W = inv(covariance)``."""
        chol = self._cov_chol()
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device)
        return torch.cholesky_solve(eye.expand_as(chol), chol)

    def _quad_W(self, diff):
        """``diff^T W diff`` for ``diff`` of shape (..., d) broadcasting with the batch."""
        chol = self._cov_chol()
        y = torch.linalg.solve_triangular(chol, diff.unsqueeze(-1).expand(*torch.broadcast_shapes(
            diff.shape, chol.shape[:-1]), 1), upper=False)
        return (y.squeeze(-1) ** 2).sum(-1)

    # ------------------------------------------------------------------ conjugate machinery
    def _update(self, count, sum_x, sum_xx, shift=None):
        """Posterior after observations with weighted sums ``count``, ``sum x``, ``sum x x^T``.

        ``covariance_n = covariance + S + κ n / (κ + n) (xbar - m)(xbar - m)^T`` with the
        centred scatter ``S = sum x x^T - n xbar xbar^T``; batch members with ``count = 0``
        keep the prior. With ``shift``, the sums are of ``x - shift`` (statistics accumulated
        about a point near the data), so that ``S`` is computed from small numbers.
        """
        m, kappa, nu, cov = self._unpack()
        kappa_n = kappa + count
        centred = _safe_div(sum_x, count.unsqueeze(-1))
        scatter = sum_xx - centred.unsqueeze(-1) * sum_x.unsqueeze(-2)
        mean_x = centred if shift is None else centred + shift.to(centred)
        loc_n = (kappa.unsqueeze(-1) * m + count.unsqueeze(-1) * mean_x) / kappa_n.unsqueeze(-1)
        diff = mean_x - m
        shrink = (kappa * count / kappa_n)[..., None, None] * diff.unsqueeze(-1) * diff.unsqueeze(-2)
        cov_n = cov + scatter + shrink
        return NormalWishart(loc=loc_n, mean_precision=kappa_n, degrees_of_freedom=nu + count,
                             covariance=0.5 * (cov_n + cov_n.mT))

    def _mode(self):
        """Joint mode ``(mean, precision)`` = ``(loc, (ν - d) W)``.

        At ``mean = loc`` the density in ``Λ`` is ``|Λ|^{(ν - d)/2} exp(-tr(W^{-1} Λ)/2)``
        (the Wishart's ``|Λ|^{(ν-d-1)/2}`` times the ``|Λ|^{1/2}`` of the mean's normal);
        setting its gradient ``(ν - d) Λ^{-1} / 2 - W^{-1} / 2`` to zero gives
        ``Λ = (ν - d) W``, an interior maximum only for ``ν > d``.
        """
        self._require_params()
        m, kappa, nu, cov = self._unpack()
        d = m.shape[-1]
        if bool((nu <= d).any()):
            raise ValueError(f"NormalWishart: the joint mode needs degrees_of_freedom > n_features = {d}")
        precision = (nu - d)[..., None, None] * self._scale_matrix()
        batch = self._batch_shape
        return m.expand(*batch, d), precision.expand(*batch, d, d)

    def _log_normalizer(self):
        """``log Z = ν d/2 log 2 - ν/2 log|covariance| + log Γ_d(ν/2) + d/2 log(2π/κ)``."""
        m, kappa, nu, cov = self._unpack()
        d = m.shape[-1]
        return (wishart_log_normaliser(nu, -self._log_det_cov(), d)
                + 0.5 * d * (LOG_2PI - torch.log(kappa))).expand(self._batch_shape)

    # ------------------------------------------------------------------ densities
    def _log_prob(self, mean, precision):
        m, kappa, nu, cov = self._unpack()
        d = m.shape[-1]
        chol, info = torch.linalg.cholesky_ex(precision)
        if bool((info != 0).any()):
            raise ValueError("precision must hold symmetric positive definite matrices")
        log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        trace = (cov * precision).sum((-2, -1))
        diff = mean - m
        maha = (diff.unsqueeze(-2) @ precision @ diff.unsqueeze(-1)).squeeze(-1).squeeze(-1)
        return 0.5 * (nu - d) * log_det - 0.5 * trace - 0.5 * kappa * maha - self._log_normalizer()

    def log_prob(self, mean, precision):
        """Joint log-density of ``(mean, precision)``, broadcast against the batch shape.

        Parameters
        ----------
        mean : array-like of shape (..., d)
        precision : array-like of shape (..., d, d)
            Symmetric positive definite matrices.

        Returns
        -------
        numpy.ndarray (torch.Tensor for tensor input) of the broadcast leading shape.

        Examples
        --------
        >>> prior = NormalWishart(loc=[0.0], mean_precision=1.0, degrees_of_freedom=2.0, covariance=[[2.0]])
        >>> round(float(prior.log_prob([0.0], [[1.0]])), 6)
        -1.918939
        """
        self._require_params()
        mean_t = self._as_value(mean, "mean")
        prec_t = self._as_value(precision, "precision")
        d = self.n_features
        if mean_t.ndim < 1 or mean_t.shape[-1] != d:
            raise ValueError(f"mean must have trailing dimension {d}, got shape {tuple(mean_t.shape)}")
        if prec_t.ndim < 2 or prec_t.shape[-2:] != (d, d):
            raise ValueError(f"precision must have trailing shape ({d}, {d}), got shape {tuple(prec_t.shape)}")
        out = self._log_prob(mean_t, prec_t)
        return out if is_tensor(mean) else to_numpy(out)

    def sample(self, n_samples=1, random_state=None):
        """Draw ``(mean, precision)`` pairs: ``Λ`` by Bartlett's decomposition, then the mean.

        Bartlett: ``Λ = L A A^T L^T`` with ``W = L L^T`` and ``A`` lower triangular,
        ``A_ii = sqrt(chi2(ν - i))`` (``i = 0 .. d-1``) and standard normal entries below the diagonal.

        Returns
        -------
        mean : numpy.ndarray of shape (n_samples, *batch_shape, d)
        precision : numpy.ndarray of shape (n_samples, *batch_shape, d, d)

        Examples
        --------
        >>> prior = NormalWishart(loc=[0.0, 0.0], mean_precision=1.0, degrees_of_freedom=5.0,
        ...                       covariance=[[1.0, 0.0], [0.0, 1.0]])
        >>> mean, precision = prior.sample(20000, random_state=0)
        >>> bool(np.abs(precision.mean(0) - 5.0 * np.eye(2)).max() < 0.1)
        True
        """
        shape, gen = self._sampling_setup(n_samples, random_state)
        m, kappa, nu, cov = self._unpack()
        d = m.shape[-1]
        with torch.no_grad():
            precision = wishart_bartlett(nu, cholesky(self._scale_matrix(), f"the scale matrix of {type(self).__name__}"),
                                         shape, gen)
            # mean = m + (κΛ)^{-1/2} z: with Λ = C C^T, solve C^T y = z / sqrt(κ).
            C = cholesky(precision, f"a precision drawn from {type(self).__name__}")
            z = torch.randn(*shape, d, 1, dtype=m.dtype, device=m.device, generator=gen)
            y = torch.linalg.solve_triangular(C.mT, z, upper=True).squeeze(-1)
            mean = m + y * torch.rsqrt(kappa).unsqueeze(-1)
        return to_numpy(mean), to_numpy(precision)

    def _expected_log_det(self):
        m, kappa, nu, cov = self._unpack()
        d = m.shape[-1]
        return wishart_expected_log_det(nu, -self._log_det_cov(), d)

    def _entropy(self):
        m, kappa, nu, cov = self._unpack()
        d = m.shape[-1]
        # E[tr(W^{-1} Λ)] = ν d and E[κ (mean - m)^T Λ (mean - m)] = d.
        return (-0.5 * (nu - d) * self._expected_log_det() + 0.5 * nu * d + 0.5 * d
                + self._log_normalizer())

    def _kl(self, other):
        m1, k1, nu1, cov1 = self._unpack()
        m2, k2, nu2, cov2 = other._unpack()
        d = m1.shape[-1]
        if other.n_features != d:
            raise ValueError("KL divergence between NormalWisharts needs the same n_features")
        W1 = self._scale_matrix()
        trace = (cov2 * W1).sum((-2, -1))  # tr(W2^{-1} W1)
        diff = m1 - m2
        quad = (diff.unsqueeze(-2) @ W1 @ diff.unsqueeze(-1)).squeeze(-1).squeeze(-1)
        return (0.5 * (nu1 - nu2) * self._expected_log_det() - 0.5 * nu1 * d + 0.5 * nu1 * trace
                - 0.5 * d + 0.5 * k2 * (d / k1 + nu1 * quad)
                - self._log_normalizer() + other._log_normalizer())

    # ------------------------------------------------------------------ VB expectations
    def expected_precision(self):
        """``E[Λ] = ν W``, shape ``(*batch_shape, d, d)``.

        Examples
        --------
        >>> NormalWishart(loc=[0.0], mean_precision=1.0, degrees_of_freedom=4.0, covariance=[[2.0]]).expected_precision()
        array([[2.]])
        """
        self._require_params()
        nu = self._params["degrees_of_freedom"]
        d = self.n_features
        return to_numpy((nu[..., None, None] * self._scale_matrix()).expand(*self._batch_shape, d, d))

    def expected_log_det_precision(self):
        """``E[log|Λ|] = sum_i digamma((ν + 1 - i)/2) + d log 2 + log|W|``, with the batch shape.

        Examples
        --------
        >>> nw = NormalWishart(loc=[0.0], mean_precision=1.0, degrees_of_freedom=2.0, covariance=[[0.5]])
        >>> round(float(nw.expected_log_det_precision()), 6)
        0.809079
        """
        self._require_params()
        return to_numpy(self._expected_log_det().expand(self._batch_shape))

    def expected_mahalanobis(self, X):
        """``E[(x - mean)^T Λ (x - mean)] = d / κ + ν (x - m)^T W (x - m)`` for every row and batch member.

        Parameters
        ----------
        X : array-like of shape (n_samples, d)

        Returns
        -------
        numpy.ndarray of shape (n_samples, *batch_shape)

        Examples
        --------
        >>> nw = NormalWishart(loc=[0.0, 0.0], mean_precision=2.0, degrees_of_freedom=3.0, covariance=np.eye(2))
        >>> nw.expected_mahalanobis(np.array([[0.0, 0.0], [1.0, 0.0]]))
        array([1., 4.])
        """
        self._require_params()
        x = self._as_value(X, "X")
        d = self.n_features
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"X must have shape (n_samples, {d}), got {tuple(x.shape)}")
        m, kappa, nu, cov = self._unpack()
        batch = self._batch_shape
        xb = x.reshape(x.shape[0], *([1] * len(batch)), d)
        out = d / kappa + nu * self._quad_W(xb - m)
        out = out.expand(x.shape[0], *batch)
        return out if is_tensor(X) else to_numpy(out)
