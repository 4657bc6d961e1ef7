"""The negative binomial distribution: over-dispersed counts, a Gamma mixture of Poissons."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize, special

from probkit.distributions._latent import ExpectedStatisticsMixin
from probkit.distributions._sampling import standard_gamma
from probkit.distributions.base import ExponentialFamily, _check_fixed, _check_positive, _optional_positive
from probkit.distributions.discrete import _beta_log_evidence, _beta_mode, _beta_prior_class, _check_probability
from probkit.distributions.gamma import _inverse_digamma_gap
from probkit.utils.validation import check_nonnegative_integers

__all__ = ["NegativeBinomial"]

# Range of an estimated total_count: the upper end is the Poisson limit (no over-dispersion).
TOTAL_COUNT_BOUNDS = (1e-8, 1e8)


def _nb_log_pmf(x, r, p):
    return (torch.lgamma(x + r) - torch.lgamma(r) - torch.lgamma(x + 1)
            + r * torch.log(p) + torch.special.xlog1py(x, -p))


def _series_support(r, p):
    """Counts ``0 .. upper`` holding all but a negligible tail of every member's mass."""
    mean = r * (1 - p) / p
    sd = torch.sqrt(r * (1 - p)) / p
    upper = int(torch.max(mean + 40 * sd + 100).item())
    return torch.arange(upper + 1, dtype=r.dtype, device=r.device).reshape(-1, *([1] * r.ndim))


class NegativeBinomial(ExpectedStatisticsMixin, ExponentialFamily):
    """Negative binomial distribution over counts ``0, 1, 2, ...``: failures before ``total_count`` successes.

    ``P(x) = Gamma(x + r) / (Gamma(r) x!) * p**r * (1 - p)**x`` with ``r = total_count > 0``
    (real) and success probability ``p = probs``, as ``scipy.stats.nbinom(r, p)`` (``torch``'s
    ``NegativeBinomial`` counts the other outcome: its ``probs`` is ``1 - p``). Mean
    ``r (1 - p) / p`` and variance ``mean + mean**2 / r``: a Poisson whose rate is Gamma
    distributed, ``lambda ~ Gamma(r, rate=p / (1 - p))``, so the counts are over-dispersed
    (``r -> infinity`` is the Poisson limit). ``Geometric`` is ``r = 1``.

    With ``total_count`` fixed (``fixed_total_count``) it is an exponential family in ``probs``:
    ``T(x) = x``, natural parameter ``log(1 - p)``, log-partition ``-r log p``, conjugate prior
    :class:`Beta` on ``probs``. With ``total_count`` estimated:

    * :meth:`fit` maximises the likelihood exactly (``probs = r / (r + mean)`` and a 1-D root
      of the profile score in ``r``);
    * :meth:`summarize` by a distribution with parameters returns the expected statistics of
      the Gamma-Poisson complete-data model (``E[lambda | x]``, ``E[log lambda | x]``) and
      :meth:`from_stats` is the EM step from them, which is what mixtures and HMMs iterate
      (``MixtureModel(family="negative_binomial")``). Statistics from a distribution without
      parameters give the method-of-moments start.

    Parameters
    ----------
    total_count : float or array-like, optional
        ``r > 0``. Omit both parameters for an unfitted distribution.
    probs : float or array-like, optional
        Success probabilities in ``(0, 1]``.
    fixed_total_count : float, optional
        Keep ``total_count`` at this value in fits.

    Examples
    --------
    >>> import numpy as np
    >>> d = NegativeBinomial(total_count=2.5, probs=0.4)
    >>> round(float(d.log_prob(np.array([3]))[0]), 6)
    -1.941832
    >>> from probkit.datasets import load_earthquakes
    >>> _, counts = load_earthquakes()
    >>> nb = NegativeBinomial().fit(counts)
    >>> round(float(nb.total_count), 2), round(float(nb.probs), 4)
    (12.19, 0.3863)
    """

    param_names = ("total_count", "probs")
    _param_event_ndims = {"total_count": 0, "probs": 0}
    support_description = "non-negative integers"

    def __init__(self, total_count=None, probs=None, *, fixed_total_count=None):
        self.fixed_total_count = _optional_positive(fixed_total_count, "fixed_total_count")
        self._set_params(total_count=total_count, probs=probs)

    def _options(self):
        return {"fixed_total_count": self.fixed_total_count}

    @property
    def latent_statistics(self):
        """Whether the statistics are expectations under the current parameters (``total_count`` estimated)."""
        return self.fixed_total_count is None

    def _check_params(self):
        r, p = self._params["total_count"], self._params["probs"]
        _check_positive(r, "total_count", "NegativeBinomial")
        _check_probability(p, "NegativeBinomial", allow_zero=False)
        _check_fixed(r, self.fixed_total_count, "total_count", "NegativeBinomial")

    @property
    def conjugate_prior_family(self):
        return _beta_prior_class() if self.fixed_total_count is not None else None

    def _check_prior(self, prior):
        if self.fixed_total_count is None:
            raise TypeError("NegativeBinomial has a conjugate prior (Beta on probs) only with fixed_total_count set")
        super()._check_prior(prior)

    def _validate_support(self, x, name="X"):
        check_nonnegative_integers(x, name)

    # ------------------------------------------------------------------ densities
    def _log_prob(self, x):
        return _nb_log_pmf(x, self._params["total_count"], self._params["probs"])

    def _fixed_r(self, like):
        if self.is_fitted:
            return self._params["total_count"]
        return torch.full_like(like, self.fixed_total_count)

    def _sufficient_statistics(self, x):
        if self.fixed_total_count is not None:
            return {"x": x}
        if not self.is_fitted:
            return {"x": x, "xx": x * x}
        # Gamma-Poisson: lambda | x ~ Gamma(r + x, rate = p / (1 - p) + 1 = 1 / (1 - p)).
        r, p = self._params["total_count"], self._params["probs"]
        shape = x + r
        return {"x": x * torch.ones_like(shape), "xx": x * x * torch.ones_like(shape),
                "lam": shape * (1 - p), "log_lam": torch.digamma(shape) + torch.log1p(-p)}

    def _natural_parameters(self):
        return {"x": torch.log1p(-self._params["probs"]).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        r = options.get("fixed_total_count")
        if r is None:
            raise ValueError("NegativeBinomial.from_natural needs fixed_total_count (the natural parameter fixes probs only)")
        probs = -torch.expm1(eta["x"])
        return {"total_count": torch.full_like(probs, r), "probs": probs}

    def _log_partition(self):
        return (-self._params["total_count"] * torch.log(self._params["probs"])).expand(self._batch_shape)

    def _log_base_measure(self, x):
        r = self._params["total_count"] if self.is_fitted else self.fixed_total_count
        r = torch.as_tensor(r, dtype=x.dtype, device=x.device)
        return torch.lgamma(x + r) - torch.lgamma(r) - torch.lgamma(x + 1)

    def _mean_parameters(self):
        r, p = self._params["total_count"], self._params["probs"]
        return {"x": (r * (1 - p) / p).expand(self._batch_shape)}

    # ------------------------------------------------------------------ fitting from statistics
    def _mle_params(self, stats):
        count, sum_x = stats["count"], stats["x"]
        mean = sum_x / count
        if self.fixed_total_count is not None:
            r = torch.full_like(mean, self.fixed_total_count)
            return {"total_count": r, "probs": r / (r + mean)}
        if bool((mean <= 0).any()):
            raise ValueError("NegativeBinomial: every weighted count is 0, so total_count cannot be estimated; "
                             "set fixed_total_count")
        low, high = TOTAL_COUNT_BOUNDS
        if "lam" in stats.fields:
            # EM step: the Gamma MLE of the latent rates' expected statistics.
            mean_lam = stats["lam"] / count
            gap = torch.clamp(torch.log(mean_lam) - stats["log_lam"] / count, min=0.5 / high)
            r = torch.clamp(_inverse_digamma_gap(gap), min=low, max=high)
            return {"total_count": r, "probs": r / (r + mean_lam)}
        # Method of moments (the start of EM): variance = mean + mean**2 / r.
        excess = stats["xx"] / count - mean * mean - mean
        r = torch.where(excess > 0, mean * mean / torch.where(excess > 0, excess, torch.ones_like(excess)),
                        torch.full_like(mean, high))
        r = torch.clamp(r, min=low, max=high)
        return {"total_count": r, "probs": r / (r + mean)}

    def fit(self, X, sample_weight=None, prior=None):
        """Maximum-likelihood (or MAP, with ``fixed_total_count`` and a Beta prior) fit to counts.

        With ``total_count`` estimated the likelihood is maximised exactly: for any ``r`` the
        best ``probs`` is ``r / (r + mean)``, and ``r`` is the root of the profile score
        ``sum_i w_i (digamma(x_i + r) - digamma(r)) + W log(r / (r + mean))``, found by Brent's
        method on ``log r``. Counts that are not over-dispersed (weighted variance at most the
        mean) have no finite maximiser: ``total_count`` then takes its upper bound (the Poisson limit).

        Parameters
        ----------
        X : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        prior : Beta, optional
            Conjugate prior of ``probs`` (requires ``fixed_total_count``).

        Returns
        -------
        self
        """
        if self.fixed_total_count is not None or prior is not None:
            return super().fit(X, sample_weight=sample_weight, prior=prior)
        x, w = self._direct_fit_data(X, sample_weight, prior=None)
        counts = x.detach().cpu().numpy().astype(np.float64)
        keep = w > 0
        counts, w = counts[keep], w[keep]
        if counts.size == 0:
            raise ValueError("cannot fit NegativeBinomial: the total weight is zero")
        total = w.sum()
        mean = float(w @ counts / total)
        if mean <= 0:
            raise ValueError("NegativeBinomial: every weighted count is 0, so total_count cannot be estimated; "
                             "set fixed_total_count")

        def score(log_r):
            r = math.exp(log_r)
            return float(w @ (special.digamma(counts + r) - special.digamma(r))) + total * math.log(r / (r + mean))

        low, high = (math.log(b) for b in TOTAL_COUNT_BOUNDS)
        if score(high) >= 0:
            r = TOTAL_COUNT_BOUNDS[1]
        else:
            r = math.exp(optimize.brentq(score, low, high, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500))
        dtype = x.dtype
        self._set_params(total_count=torch.tensor(r, dtype=dtype, device=x.device),
                         probs=torch.tensor(r / (r + mean), dtype=dtype, device=x.device))
        return self

    # ------------------------------------------------------------------ sampling, entropy, KL
    def _sample(self, shape, gen):
        r, p = self._params["total_count"], self._params["probs"]
        full = (*shape, *self._batch_shape)
        lam = standard_gamma(r.expand(full).contiguous(), gen) * ((1 - p) / p)
        return torch.poisson(lam, generator=gen)

    def _entropy(self):
        # No closed form: the series over the bulk of the mass.
        r = self._params["total_count"].expand(self._batch_shape)
        p = self._params["probs"].expand(self._batch_shape)
        k = _series_support(r, p)
        logp = _nb_log_pmf(k, r, p)
        return -(torch.exp(logp) * logp).sum(0)

    def _kl(self, other):
        r1, p1 = self._params["total_count"], self._params["probs"]
        r2, p2 = other._params["total_count"], other._params["probs"]
        if bool((r1 == r2).all()):
            mean1 = r1 * (1 - p1) / p1
            return r1 * torch.log(p1 / p2) + mean1 * (torch.log1p(-p1) - torch.log1p(-p2))
        batch = torch.broadcast_shapes(r1.shape, p1.shape, r2.shape, p2.shape)
        r1, p1, r2, p2 = (t.expand(batch) for t in (r1, p1, r2, p2))
        k = _series_support(r1, p1)
        logp = _nb_log_pmf(k, r1, p1)
        return (torch.exp(logp) * (logp - _nb_log_pmf(k, r2, p2))).sum(0)

    def _n_free_parameters(self):
        return 1 + (self.fixed_total_count is None)

    # ------------------------------------------------------------------ conjugate prior (fixed total_count)
    def _posterior(self, stats, prior):
        if "lam" in stats.fields or "xx" in stats.fields:
            raise ValueError("a conjugate posterior needs statistics summarised with fixed_total_count set")
        p = prior.torch_params()
        r = self.fixed_total_count
        return type(prior)(concentration1=p["concentration1"] + r * stats["count"],
                           concentration0=p["concentration0"] + stats["x"])

    def _map_params(self, post):
        probs = _beta_mode(post, lower=torch.finfo(post.dtype).tiny)
        return {"total_count": torch.full_like(probs, self.fixed_total_count), "probs": probs}

    def _log_marginal_likelihood(self, x, stats, prior):
        return self._log_base_measure(x).sum() + _beta_log_evidence(prior, self._posterior(stats, prior))
