"""Continuous families on the positive reals and the unit interval: Exponential, Beta, LogNormal."""

from __future__ import annotations

import torch

from probkit.distributions._sampling import standard_gamma
from probkit.distributions.base import LOG_2PI, ExponentialFamily, _PositiveSupport
from probkit.distributions.gamma import _GammaConjugateRate
from probkit.distributions.normal import _GaussianOfTransform

__all__ = ["Beta", "Exponential", "LogNormal"]


def _check_positive_support(x, name, family):
    if bool((x <= 0).any()):
        raise ValueError(f"{name} must be strictly positive for {family} (found values <= 0)")


class Exponential(_PositiveSupport, _GammaConjugateRate):
    """Exponential distribution with density ``rate * exp(-rate * x)`` on ``x > 0``.

    ``T(x) = x``, natural parameter ``-rate``, log-partition ``-log(rate)``. Conjugate
    prior: :class:`Gamma` on ``rate`` (shape-rate form).

    Parameters
    ----------
    rate : float or array-like, optional
        Positive rate(s) (mean ``1 / rate``).

    Examples
    --------
    >>> import numpy as np
    >>> round(float(Exponential(rate=2.0).log_prob(np.array([1.0]))[0]), 6)
    -1.306853
    >>> float(Exponential().fit(np.array([0.5, 1.5])).rate)
    1.0
    """

    support_description = "positive reals"
    # Gamma(a, b) on the rate: a gains the count, b the sum of x.
    _concentration_stat = "count"
    _rate_stat = "x"

    def __init__(self, rate=None):
        self._set_params(rate=rate)

    def _validate_support(self, x, name="X"):
        _check_positive_support(x, name, "Exponential")

    def _log_prob(self, x):
        rate = self._params["rate"]
        return torch.log(rate) - rate * x

    def _natural_parameters(self):
        return {"x": (-self._params["rate"]).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"rate": -eta["x"]}

    def _log_partition(self):
        return (-torch.log(self._params["rate"])).expand(self._batch_shape)

    def _log_base_measure(self, x):
        return torch.zeros_like(x)

    def _mean_parameters(self):
        return {"x": (1.0 / self._params["rate"]).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        return {"rate": 1.0 / mean["x"]}

    def _sample(self, shape, gen):
        rate = self._params["rate"]
        # 1 - U lies in (0, 1], so the logarithm is finite.
        u = 1.0 - torch.rand(*shape, *self._batch_shape, dtype=rate.dtype, device=rate.device, generator=gen)
        return -torch.log(u) / rate

    def _entropy(self):
        return (1.0 - torch.log(self._params["rate"])).expand(self._batch_shape)

    def _kl(self, other):
        r1, r2 = self._params["rate"], other._params["rate"]
        return torch.log(r1 / r2) + r2 / r1 - 1.0


def _lbeta(a, b):
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def _beta_mle(mean_log_x, mean_log_1mx, tol=1e-13, max_iter=200):
    """Solve ``digamma(a) - digamma(a + b) = m1``, ``digamma(b) - digamma(a + b) = m0`` for ``a, b > 0``.

    Newton's method on the concave average log-likelihood ``(a-1) m1 + (b-1) m0 - lbeta(a, b)``,
    vectorised over the batch, with step halving wherever a full step would leave the
    positive quadrant. Started from ``digamma(a) ~ log(a - 1/2)``, which gives
    ``a = 1/2 + g1 / (2 (1 - g1 - g0))`` with the geometric means ``g = exp(m)``.
    """
    def objective(a, b):
        return (a - 1) * mean_log_x + (b - 1) * mean_log_1mx - _lbeta(a, b)

    # A relative tolerance below the dtype's resolution could never be met (float32 fits).
    tol = max(tol, 8 * torch.finfo(mean_log_x.dtype).eps)

    g1, g0 = torch.exp(mean_log_x), torch.exp(mean_log_1mx)
    gap = 1.0 - g1 - g0  # > 0 by Jensen unless the sample has no spread
    a = 0.5 + g1 / (2 * gap)
    b = 0.5 + g0 / (2 * gap)
    for _ in range(max_iter):
        dig_ab = torch.digamma(a + b)
        grad_a = mean_log_x - torch.digamma(a) + dig_ab
        grad_b = mean_log_1mx - torch.digamma(b) + dig_ab
        tri_ab = torch.polygamma(1, a + b)
        # Negative Hessian [[t_a - t, -t], [-t, t_b - t]] (positive definite); solve 2x2 directly.
        h_aa = torch.polygamma(1, a) - tri_ab
        h_bb = torch.polygamma(1, b) - tri_ab
        det = h_aa * h_bb - tri_ab * tri_ab
        step_a = (h_bb * grad_a + tri_ab * grad_b) / det
        step_b = (tri_ab * grad_a + h_aa * grad_b) / det
        # Halve the step wherever it leaves the quadrant or lowers the likelihood (concavity
        # guarantees a short enough step ascends).
        current = objective(a, b)
        scale = torch.ones_like(a)
        for _ in range(60):
            a_try, b_try = a + scale * step_a, b + scale * step_b
            inside = (a_try > 0) & (b_try > 0)
            safe_a = torch.where(inside, a_try, a)
            safe_b = torch.where(inside, b_try, b)
            bad = ~inside | (objective(safe_a, safe_b) < current - 1e-12 * current.abs())
            if not bool(bad.any()):
                break
            scale = torch.where(bad, 0.5 * scale, scale)
        a_new, b_new = a + scale * step_a, b + scale * step_b
        converged = bool(((a_new - a).abs() <= tol * a).all()) and bool(((b_new - b).abs() <= tol * b).all())
        a, b = a_new, b_new
        if converged:
            break
    return a, b


class Beta(ExponentialFamily):
    """Beta distribution on ``[0, 1]`` with density ``x**(c1 - 1) (1 - x)**(c0 - 1) / B(c1, c0)``.

    ``T(x) = (log x, log(1 - x))``, natural parameters ``(c1 - 1, c0 - 1)``, log-partition
    ``lbeta(c1, c0)``. The MLE solves the two digamma equations by Newton's method. Beta is
    the conjugate prior of the Bernoulli, Binomial and Geometric ``probs``; it has no
    tractable conjugate prior itself.

    Parameters
    ----------
    concentration1 : float or array-like, optional
        ``c1 > 0``, the exponent attached to ``x`` (``alpha``).
    concentration0 : float or array-like, optional
        ``c0 > 0``, the exponent attached to ``1 - x`` (``beta``).

    Examples
    --------
    >>> import numpy as np
    >>> d = Beta(concentration1=2.0, concentration0=2.0)
    >>> round(float(d.log_prob(np.array([0.5]))[0]), 6)
    0.405465
    >>> x = d.sample(20000, random_state=0)
    >>> fit = Beta().fit(x)
    >>> bool(abs(float(fit.concentration1) - 2.0) < 0.1)
    True
    """

    param_names = ("concentration1", "concentration0")
    _param_event_ndims = {"concentration1": 0, "concentration0": 0}
    support_description = "the unit interval [0, 1]"
    conjugate_prior_family = None

    def __init__(self, concentration1=None, concentration0=None):
        self._set_params(concentration1=concentration1, concentration0=concentration0)

    def _check_params(self):
        if bool((self._params["concentration1"] <= 0).any()) or bool((self._params["concentration0"] <= 0).any()):
            raise ValueError("Beta: concentration1 and concentration0 must be positive")

    def _validate_support(self, x, name="X"):
        if bool((x < 0).any()) or bool((x > 1).any()):
            raise ValueError(f"{name} must lie in [0, 1] for Beta (found values outside)")

    def _support_mask(self, x):
        return (x >= 0) & (x <= 1)

    def _support_placeholder(self, x):
        return torch.full((), 0.5, dtype=x.dtype, device=x.device)

    def _log_prob(self, x):
        a, b = self._params["concentration1"], self._params["concentration0"]
        return torch.xlogy(a - 1, x) + torch.xlogy(b - 1, 1 - x) - _lbeta(a, b)

    def _sufficient_statistics(self, x):
        return {"log_x": torch.log(x), "log_1mx": torch.log1p(-x)}

    def _natural_parameters(self):
        a, b = self._params["concentration1"], self._params["concentration0"]
        return {"log_x": (a - 1).expand(self._batch_shape), "log_1mx": (b - 1).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"concentration1": eta["log_x"] + 1, "concentration0": eta["log_1mx"] + 1}

    def _log_partition(self):
        a, b = self._params["concentration1"], self._params["concentration0"]
        return _lbeta(a, b).expand(self._batch_shape)

    def _log_base_measure(self, x):
        return torch.zeros_like(x)

    def _mean_parameters(self):
        a, b = self._params["concentration1"], self._params["concentration0"]
        dig_ab = torch.digamma(a + b)
        return {"log_x": (torch.digamma(a) - dig_ab).expand(self._batch_shape),
                "log_1mx": (torch.digamma(b) - dig_ab).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        m1, m0 = mean["log_x"], mean["log_1mx"]
        if not (bool(torch.isfinite(m1).all()) and bool(torch.isfinite(m0).all())):
            raise ValueError("Beta: fitting needs data strictly inside (0, 1); 0 or 1 makes the likelihood unbounded")
        if bool((torch.exp(m1) + torch.exp(m0) >= 1).any()):
            raise ValueError("Beta: the sample has no spread (all values equal); the MLE diverges")
        a, b = _beta_mle(m1, m0)
        return {"concentration1": a, "concentration0": b}

    def _sample(self, shape, gen):
        a, b = self._params["concentration1"], self._params["concentration0"]
        full = (*shape, *self._batch_shape)
        ga = standard_gamma(a.expand(full).contiguous(), gen)
        gb = standard_gamma(b.expand(full).contiguous(), gen)
        return ga / (ga + gb)

    def _entropy(self):
        a, b = self._params["concentration1"], self._params["concentration0"]
        return (_lbeta(a, b) - (a - 1) * torch.digamma(a) - (b - 1) * torch.digamma(b)
                + (a + b - 2) * torch.digamma(a + b)).expand(self._batch_shape)

    def _kl(self, other):
        a1, b1 = self._params["concentration1"], self._params["concentration0"]
        a2, b2 = other._params["concentration1"], other._params["concentration0"]
        return (_lbeta(a2, b2) - _lbeta(a1, b1) + (a1 - a2) * torch.digamma(a1)
                + (b1 - b2) * torch.digamma(b1) + (a2 - a1 + b2 - b1) * torch.digamma(a1 + b1))


class LogNormal(_PositiveSupport, _GaussianOfTransform):
    """Log-normal distribution: ``log x ~ N(loc, scale**2)`` on ``x > 0``.

    ``T(x) = (log x, (log x)**2)``, natural parameters ``(loc / scale**2, -1 / (2 scale**2))``,
    base measure ``1 / (x sqrt(2 pi))``. Conjugate prior: :class:`NormalGamma` on
    ``(loc, 1 / scale**2)``, i.e. the normal model of ``log x``.

    Parameters
    ----------
    loc : float or array-like, optional
        Mean(s) of ``log x``.
    scale : float or array-like, optional
        Standard deviation(s) of ``log x``, positive.
    min_scale : float, default=0.0
        Lower bound on ``scale`` after a fit (a floor for degenerate data).

    Examples
    --------
    >>> import numpy as np
    >>> round(float(LogNormal(loc=0.0, scale=1.0).log_prob(np.array([1.0]))[0]), 6)
    -0.918939
    >>> fit = LogNormal().fit(np.exp(np.array([1.0, 3.0])))
    >>> float(fit.loc), float(fit.scale)
    (2.0, 1.0)
    """

    support_description = "positive reals"
    _stat_names = ("log_x", "log_x_sq")
    _transform = staticmethod(torch.log)

    def _validate_support(self, x, name="X"):
        _check_positive_support(x, name, "LogNormal")

    def _log_prob(self, x):
        log_x = torch.log(x)
        return self._gaussian_log_prob(log_x) - log_x

    def _log_base_measure(self, x):
        return -torch.log(x) - 0.5 * LOG_2PI

    def _sample(self, shape, gen):
        return torch.exp(self._standard_normal(shape, gen))

    def _entropy(self):
        loc, scale = self._params["loc"], self._params["scale"]
        return (loc + 0.5 + 0.5 * LOG_2PI + torch.log(scale)).expand(self._batch_shape)

    def _log_marginal_likelihood(self, x, stats, prior):
        # Evidence of log x under the normal model, plus the Jacobian -sum(log x).
        return super()._log_marginal_likelihood(x, stats, prior) - torch.log(x).sum()
