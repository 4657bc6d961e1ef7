"""The Poisson distribution."""

from __future__ import annotations

import torch

from probkit.distributions.gamma import _GammaConjugateRate
from probkit.utils.validation import check_nonnegative_integers

__all__ = ["Poisson"]


class Poisson(_GammaConjugateRate):
    """Poisson distribution over counts ``0, 1, 2, ...`` with mean ``rate``.

    ``T(x) = x``, natural parameter ``log(rate)``, log-partition ``rate``, base measure
    ``1 / x!``. Conjugate prior: :class:`Gamma` on ``rate`` (shape-rate form).

    Parameters
    ----------
    rate : float or array-like, optional
        Positive mean(s).
    min_rate : float, default=0.0
        Lower bound on ``rate`` after a fit (an all-zero sample otherwise gives rate 0,
        which is not a valid Poisson parameter).

    Examples
    --------
    >>> import numpy as np
    >>> round(float(Poisson(rate=2.0).log_prob(np.array([3]))[0]), 6)
    -1.712318
    >>> float(Poisson().fit(np.array([1, 2, 6])).rate)
    3.0
    """

    support_description = "non-negative integers"
    # Gamma(a, b) on the rate: a gains the sum of x, b the count.
    _concentration_stat = "x"
    _rate_stat = "count"

    def __init__(self, rate=None, min_rate=0.0):
        if min_rate < 0:
            raise ValueError(f"min_rate must be non-negative, got {min_rate}")
        self.min_rate = float(min_rate)
        self._set_params(rate=rate)

    def _options(self):
        return {"min_rate": self.min_rate}

    def _validate_support(self, x, name="X"):
        check_nonnegative_integers(x, name)

    def _log_prob(self, x):
        rate = self._params["rate"]
        return x * torch.log(rate) - rate - torch.lgamma(x + 1)

    def _natural_parameters(self):
        return {"x": torch.log(self._params["rate"]).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"rate": torch.exp(eta["x"])}

    def _log_partition(self):
        return self._params["rate"].expand(self._batch_shape)

    def _log_base_measure(self, x):
        return -torch.lgamma(x + 1)

    def _mean_parameters(self):
        return {"x": self._params["rate"].expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        rate = torch.clamp(mean["x"], min=self.min_rate)
        if bool((rate <= 0).any()):
            raise ValueError("Poisson: the weighted mean count is 0; set min_rate > 0 to fit an all-zero sample")
        return {"rate": rate}

    def _sample(self, shape, gen):
        rate = self._params["rate"].expand(*shape, *self._batch_shape)
        return torch.poisson(rate, generator=gen)

    def _entropy(self):
        # No closed form: sum the series over the bulk of the mass (mean ± 20 sd, at least 0..50).
        rate = self._params["rate"].expand(self._batch_shape)
        upper = int(torch.max(rate + 20 * torch.sqrt(rate) + 50).item())
        k = torch.arange(upper + 1, dtype=rate.dtype, device=rate.device).reshape(-1, *([1] * rate.ndim))
        logp = k * torch.log(rate) - rate - torch.lgamma(k + 1)
        return -(torch.exp(logp) * logp).sum(0)

    def _kl(self, other):
        r1, r2 = self._params["rate"], other._params["rate"]
        return r1 * torch.log(r1 / r2) - r1 + r2

    def _rate_lower_bound(self):
        return self.min_rate

    def _log_marginal_likelihood(self, x, stats, prior):
        return super()._log_marginal_likelihood(x, stats, prior) - torch.lgamma(x + 1).sum()
