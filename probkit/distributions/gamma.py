"""The gamma distribution (shape-rate form)."""

from __future__ import annotations

import math

import torch

from probkit.distributions._sampling import standard_gamma
from probkit.distributions.base import (ExponentialFamily, _check_fixed, _check_positive, _optional_positive,
                                        _PositiveSupport)

__all__ = ["Gamma"]


def _gamma_rate_mode(post, lower=0.0):
    """Mode ``(a - 1) / b`` of a ``Gamma(a, b)`` posterior over a rate (0 where ``a < 1``), clamped to at
    least ``lower`` and the dtype's smallest normal number, so that the rate stays positive."""
    p = post.torch_params()
    mode = torch.clamp(p["concentration"] - 1.0, min=0.0) / p["rate"]
    return torch.clamp(mode, min=max(lower, torch.finfo(mode.dtype).tiny))


def _inverse_digamma_gap(s, tol=1e-12, max_iter=100):
    """Solve ``log(a) - digamma(a) = s`` for ``a > 0`` (s > 0), elementwise, by Newton's method.

    Started from Minka's closed-form approximation; Newton is run on ``log(a)`` so the
    iterate stays positive.
    """
    a = (3 - s + torch.sqrt((s - 3) ** 2 + 24 * s)) / (12 * s)
    log_a = torch.log(a)
    for _ in range(max_iter):
        a = torch.exp(log_a)
        f = torch.log(a) - torch.digamma(a) - s
        # d f / d log a = a * (1/a - trigamma(a)) = 1 - a * trigamma(a)  (< 0)
        df = 1 - a * torch.polygamma(1, a)
        step = f / df
        log_a = log_a - step
        if bool((step.abs() < tol).all()):
            break
    return torch.exp(log_a)


class Gamma(_PositiveSupport, ExponentialFamily):
    """Gamma distribution with shape ``concentration`` and inverse scale ``rate``.

    ``T(x) = (log x, x)``, natural parameters ``(concentration - 1, -rate)``,
    log-partition ``lgamma(concentration) - concentration * log(rate)``. The MLE of the
    shape solves ``log a - digamma(a) = log mean(x) - mean(log x)`` by Newton's method.
    Gamma is also the conjugate prior of the Poisson rate and the exponential rate.

    With the shape known (``fixed_concentration``) the family is ``T(x) = x`` in the rate,
    the MLE is ``rate = a / mean(x)`` and the conjugate prior of the rate is again a
    :class:`Gamma`: ``Gamma(c, d)`` becomes ``Gamma(c + a n, d + sum(x))``.

    Parameters
    ----------
    concentration : float or array-like, optional
        Shape ``a > 0``.
    rate : float or array-like, optional
        Rate ``b > 0`` (mean ``a / b``).
    fixed_concentration : float, optional
        A known shape: fits estimate the rate only, under an optional Gamma prior.

    Examples
    --------
    >>> import numpy as np
    >>> d = Gamma(concentration=2.0, rate=1.0)
    >>> round(float(d.log_prob(np.array([1.0]))[0]), 6)
    -1.0
    >>> x = Gamma(concentration=3.0, rate=2.0).sample(20000, random_state=0)
    >>> fit = Gamma().fit(x)
    >>> bool(abs(float(fit.concentration) - 3.0) < 0.1)
    True
    >>> known_shape = Gamma(fixed_concentration=2.0)
    >>> post = known_shape.posterior(np.array([1.0, 3.0]), Gamma(concentration=1.0, rate=1.0))
    >>> float(post.concentration), float(post.rate)
    (5.0, 5.0)
    """

    param_names = ("concentration", "rate")
    _param_event_ndims = {"concentration": 0, "rate": 0}
    support_description = "positive reals"

    def __init__(self, concentration=None, rate=None, *, fixed_concentration=None):
        self.fixed_concentration = _optional_positive(fixed_concentration, "fixed_concentration")
        self._set_params(concentration=concentration, rate=rate)

    def _options(self):
        return {} if self.fixed_concentration is None else {"fixed_concentration": self.fixed_concentration}

    def _check_params(self):
        if bool((self._params["concentration"] <= 0).any()) or bool((self._params["rate"] <= 0).any()):
            raise ValueError("Gamma: concentration and rate must be positive")
        _check_fixed(self._params["concentration"], self.fixed_concentration, "concentration", "Gamma")

    @property
    def conjugate_prior_family(self):
        return Gamma if self.fixed_concentration is not None else None

    # conjugate prior (known shape a): Gamma(c, d) on the rate
    def _posterior(self, stats, prior):
        p = prior.torch_params()
        return Gamma(concentration=p["concentration"] + self.fixed_concentration * stats["count"],
                     rate=p["rate"] + stats["x"])

    def _map_params(self, post):
        rate = _gamma_rate_mode(post)
        return {"concentration": torch.full_like(rate, self.fixed_concentration), "rate": rate}

    def _log_marginal_likelihood(self, x, stats, prior):
        a = self.fixed_concentration
        c, d = prior._params["concentration"], prior._params["rate"]
        c_n, d_n = c + a * stats["count"], d + stats["x"]
        return ((a - 1) * torch.log(x).sum() - x.shape[0] * math.lgamma(a)
                + torch.lgamma(c_n) - c_n * torch.log(d_n) - torch.lgamma(c) + c * torch.log(d))

    def _validate_support(self, x, name="X"):
        if bool((x <= 0).any()):
            raise ValueError(f"{name} must be strictly positive for Gamma (found values <= 0)")

    def _log_prob(self, x):
        a, b = self._params["concentration"], self._params["rate"]
        return a * torch.log(b) + (a - 1) * torch.log(x) - b * x - torch.lgamma(a)

    def _sufficient_statistics(self, x):
        return {"log_x": torch.log(x), "x": x}

    def _natural_parameters(self):
        a, b = self._params["concentration"], self._params["rate"]
        return {"log_x": (a - 1).expand(self._batch_shape), "x": (-b).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"concentration": eta["log_x"] + 1, "rate": -eta["x"]}

    def _log_partition(self):
        a, b = self._params["concentration"], self._params["rate"]
        return (torch.lgamma(a) - a * torch.log(b)).expand(self._batch_shape)

    def _log_base_measure(self, x):
        return torch.zeros_like(x)

    def _mean_parameters(self):
        a, b = self._params["concentration"], self._params["rate"]
        return {"log_x": (torch.digamma(a) - torch.log(b)).expand(self._batch_shape),
                "x": (a / b).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        m, mlog = mean["x"], mean["log_x"]
        if self.fixed_concentration is not None:
            a = torch.full_like(m, self.fixed_concentration)
            return {"concentration": a, "rate": a / m}
        s = torch.log(m) - mlog
        if bool((s <= 0).any()):
            raise ValueError("Gamma: the sample has no spread (all values equal); the shape MLE diverges")
        a = _inverse_digamma_gap(s)
        return {"concentration": a, "rate": a / m}

    def _sample(self, shape, gen):
        a, b = self._params["concentration"], self._params["rate"]
        a_full = a.expand(*shape, *self._batch_shape).contiguous()
        return standard_gamma(a_full, gen) / b

    def _entropy(self):
        a, b = self._params["concentration"], self._params["rate"]
        return (a - torch.log(b) + torch.lgamma(a) + (1 - a) * torch.digamma(a)).expand(self._batch_shape)

    def _kl(self, other):
        a1, b1 = self._params["concentration"], self._params["rate"]
        a2, b2 = other._params["concentration"], other._params["rate"]
        return ((a1 - a2) * torch.digamma(a1) - torch.lgamma(a1) + torch.lgamma(a2)
                + a2 * (torch.log(b1) - torch.log(b2)) + a1 * (b2 - b1) / b1)


class _GammaConjugateRate(ExponentialFamily):
    """A family with one positive parameter ``rate``, ``T(x) = x`` and a conjugate :class:`Gamma` prior
    on the rate.

    The likelihood of a sample is ``rate**S exp(-rate * R)`` times the base measure, where ``S`` and
    ``R`` are the summed statistics named by ``_concentration_stat`` and ``_rate_stat`` (``"x"`` or
    ``"count"``), so ``Gamma(a, b)`` updates to ``Gamma(a + S, b + R)``. The marginal likelihood here
    has no base-measure term (a family with one adds it in ``_log_marginal_likelihood``);
    ``_rate_lower_bound`` is the floor of the MAP rate.
    """

    param_names = ("rate",)
    _param_event_ndims = {"rate": 0}
    conjugate_prior_family = Gamma
    _concentration_stat = None
    _rate_stat = None

    def _check_params(self):
        _check_positive(self._params["rate"], "rate", type(self).__name__)

    def _sufficient_statistics(self, x):
        return {"x": x}

    def _rate_lower_bound(self):
        return 0.0

    def _gamma_posterior_params(self, stats, concentration, rate):
        return concentration + stats[self._concentration_stat], rate + stats[self._rate_stat]

    def _posterior(self, stats, prior):
        p = prior.torch_params()
        concentration, rate = self._gamma_posterior_params(stats, p["concentration"], p["rate"])
        return type(prior)(concentration=concentration, rate=rate)

    def _map_params(self, post):
        return {"rate": _gamma_rate_mode(post, self._rate_lower_bound())}

    def _log_marginal_likelihood(self, x, stats, prior):
        a, b = prior._params["concentration"], prior._params["rate"]
        a_n, b_n = self._gamma_posterior_params(stats, a, b)
        return torch.lgamma(a_n) - a_n * torch.log(b_n) - torch.lgamma(a) + a * torch.log(b)
