"""One table of test cases per distribution family, with independent reference implementations.

Each :class:`Case` pairs a batched probkit distribution with the matching scipy (log-density,
entropy, moments) and torch.distributions objects, plus a data generator that does *not*
use probkit's samplers. The test modules parametrise over :data:`CASES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributions as td
from scipy import stats

from probkit.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Dirichlet,
    Exponential,
    Gamma,
    Geometric,
    Independent,
    LogNormal,
    Multinomial,
    MultivariateNormal,
    Normal,
    Poisson,
)

RTOL = 1e-10


@dataclass
class Case:
    name: str
    make: Callable  # () -> batched fitted distribution
    other: Callable  # () -> a second distribution of the same family and batch shape (for KL)
    unfitted: Callable  # () -> unfitted distribution of the family (same options)
    data: Callable  # (rng, n) -> valid samples, numpy, without probkit's samplers
    logpdf: Callable  # (dist, X) -> (n, *batch) reference log-density
    entropy: Optional[Callable]  # (dist) -> (*batch) reference entropy
    moments: Optional[Callable]  # (dist) -> (mean, var) of shape (*batch, *event)
    torch_dist: Optional[Callable] = None  # (dist) -> torch.distributions object for KL
    minimal: bool = True  # natural parametrisation minimal (autograd check of the mean parameters)
    tags: set = field(default_factory=set)

    def __repr__(self):
        return self.name


def _scalar_moments(frozen):
    mean, var = frozen.stats(moments="mv")
    return np.asarray(mean, dtype=float), np.asarray(var, dtype=float)


def _onehot(x, m):
    return np.eye(m)[np.asarray(x, dtype=int)]


def _categorical_logpmf(d, X):
    probs = d.probs
    return np.stack([stats.multinomial(1, p).logpmf(_onehot(X, probs.shape[-1])) for p in probs], -1)


def _categorical_moments(d):
    p = d.probs
    k = np.arange(p.shape[-1])
    mean = p @ k
    return mean, p @ (k * k) - mean ** 2


def _multinomial_logpmf(d, X):
    return np.stack([stats.multinomial(X.sum(1), p).logpmf(X) for p in d.probs], -1)


def _dirichlet_logpdf(d, X):
    return np.stack([stats.dirichlet(a).logpdf(X.T) for a in d.concentration], -1)


def _mvn_full_cov(d):
    cov = d.covariance
    mean = d.mean
    k, dim = mean.shape
    ct = d.covariance_type
    if ct == "full":
        return cov
    if ct == "tied":
        return np.broadcast_to(cov, (k, dim, dim))
    if ct == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(dim) for c in np.broadcast_to(cov, (k,))])


def _mvn_logpdf(d, X):
    covs = _mvn_full_cov(d)
    return np.stack([stats.multivariate_normal(m, c).logpdf(X) for m, c in zip(d.mean, covs)], -1)


def _mvn_entropy(d):
    return np.array([stats.multivariate_normal(m, c).entropy() for m, c in zip(d.mean, _mvn_full_cov(d))])


def _mvn_moments(d):
    covs = _mvn_full_cov(d)
    return d.mean, np.stack([np.diag(c) for c in covs])


def _mvn_torch(d):
    return td.MultivariateNormal(torch.as_tensor(d.mean), covariance_matrix=torch.as_tensor(_mvn_full_cov(d).copy()))


_MVN_PARAMS = {
    "full": dict(
        mean=[[0.0, 1.0, -1.0], [2.0, 0.5, 0.0]],
        covariance=[[[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]],
                    [[1.0, -0.4, 0.0], [-0.4, 0.8, 0.1], [0.0, 0.1, 1.5]]],
    ),
    "tied": dict(mean=[[0.0, 1.0, -1.0], [2.0, 0.5, 0.0]],
                 covariance=[[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]]),
    "diag": dict(mean=[[0.0, 1.0, -1.0], [2.0, 0.5, 0.0]], covariance=[[2.0, 1.0, 0.5], [0.3, 0.8, 1.5]]),
    "spherical": dict(mean=[[0.0, 1.0, -1.0], [2.0, 0.5, 0.0]], covariance=[0.7, 1.8]),
}
_MVN_OTHER = {
    "full": dict(mean=[[0.5, 0.0, -1.0], [1.0, 0.5, 0.3]],
                 covariance=[[[1.0, 0.1, 0.0], [0.1, 2.0, 0.3], [0.0, 0.3, 1.0]],
                             [[0.7, 0.0, 0.1], [0.0, 1.1, 0.0], [0.1, 0.0, 0.9]]]),
    "tied": dict(mean=[[0.5, 0.0, -1.0], [1.0, 0.5, 0.3]],
                 covariance=[[1.0, 0.1, 0.0], [0.1, 2.0, 0.3], [0.0, 0.3, 1.0]]),
    "diag": dict(mean=[[0.5, 0.0, -1.0], [1.0, 0.5, 0.3]], covariance=[[1.0, 2.0, 0.7], [0.9, 0.4, 1.0]]),
    "spherical": dict(mean=[[0.5, 0.0, -1.0], [1.0, 0.5, 0.3]], covariance=[1.2, 0.6]),
}


def _mvn_case(ct):
    return Case(
        name=f"MultivariateNormal-{ct}",
        make=lambda: MultivariateNormal(**_MVN_PARAMS[ct], covariance_type=ct),
        other=lambda: MultivariateNormal(**_MVN_OTHER[ct], covariance_type=ct),
        unfitted=lambda: MultivariateNormal(covariance_type=ct),
        data=lambda rng, n: rng.multivariate_normal([0.0, 1.0, -1.0], [[2.0, 0.3, 0.1], [0.3, 1.0, -0.2],
                                                                         [0.1, -0.2, 0.5]], size=n),
        logpdf=_mvn_logpdf,
        entropy=_mvn_entropy,
        moments=_mvn_moments,
        torch_dist=_mvn_torch,
        # The full/tied natural parameter is a symmetric matrix stored in full (not minimal;
        # the tied one is moreover shared by the batch).
        minimal=ct in ("diag", "spherical"),
        tags={"mvn", "symmetric-matrix"} if ct == "full" else {"mvn"},
    )


_CAT_PROBS = [[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]]
_CAT_OTHER = [[0.1, 0.6, 0.3], [0.3, 0.3, 0.4]]


def _independent_logpdf(d, X):
    norm, pois, cat = d.components
    return (stats.norm(norm.loc, norm.scale).logpdf(X[:, :1])
            + stats.poisson(pois.rate).logpmf(X[:, 1:2])
            + _categorical_logpmf(cat, X[:, 2]))


def _independent_entropy(d):
    norm, pois, cat = d.components
    return (stats.norm(norm.loc, norm.scale).entropy() + stats.poisson(pois.rate).entropy()
            + np.array([stats.entropy(p) for p in cat.probs]))


def _independent_moments(d):
    norm, pois, cat = d.components
    cm, cv = _categorical_moments(cat)
    mean = np.stack([norm.loc * np.ones(2), pois.rate * np.ones(2), cm], -1)
    var = np.stack([norm.scale ** 2 * np.ones(2), pois.rate * np.ones(2), cv], -1)
    return mean, var


def _independent_data(rng, n):
    return np.column_stack([rng.normal(0.0, 1.0, n), rng.poisson(2.0, n), rng.choice(3, n, p=[0.2, 0.3, 0.5])])


def _multinomial_fixed_data(rng, n):
    return rng.multinomial(5, [0.2, 0.3, 0.5], size=n).astype(float)


def _multinomial_free_data(rng, n):
    totals = rng.integers(1, 8, size=n)
    return np.stack([rng.multinomial(t, [0.2, 0.3, 0.5]) for t in totals]).astype(float)


CASES = [
    Case(
        name="Normal",
        make=lambda: Normal(loc=[0.0, 1.5], scale=[1.0, 2.5]),
        other=lambda: Normal(loc=[1.0, -0.5], scale=[0.5, 1.5]),
        unfitted=lambda: Normal(),
        data=lambda rng, n: rng.normal(0.5, 2.0, n),
        logpdf=lambda d, X: stats.norm(d.loc, d.scale).logpdf(X[:, None]),
        entropy=lambda d: stats.norm(d.loc, d.scale).entropy(),
        moments=lambda d: _scalar_moments(stats.norm(d.loc, d.scale)),
        torch_dist=lambda d: td.Normal(torch.as_tensor(d.loc), torch.as_tensor(d.scale)),
    ),
    Case(
        name="Poisson",
        make=lambda: Poisson(rate=[0.7, 4.0]),
        other=lambda: Poisson(rate=[2.0, 3.0]),
        unfitted=lambda: Poisson(),
        data=lambda rng, n: rng.poisson(2.5, n).astype(float),
        logpdf=lambda d, X: stats.poisson(d.rate).logpmf(X[:, None]),
        entropy=lambda d: stats.poisson(d.rate).entropy(),
        moments=lambda d: _scalar_moments(stats.poisson(d.rate)),
        torch_dist=lambda d: td.Poisson(torch.as_tensor(d.rate)),
    ),
    Case(
        name="Gamma",
        # A 2-D batch: (2, 1) shapes broadcast against (3,) rates.
        make=lambda: Gamma(concentration=[[0.5], [3.0]], rate=[1.0, 2.0, 0.3]),
        other=lambda: Gamma(concentration=[[1.5], [2.0]], rate=[0.5, 1.0, 1.0]),
        unfitted=lambda: Gamma(),
        data=lambda rng, n: rng.gamma(2.0, 1.5, n),
        logpdf=lambda d, X: stats.gamma(d.concentration, scale=1 / d.rate).logpdf(X[:, None, None]),
        entropy=lambda d: stats.gamma(d.concentration, scale=1 / d.rate).entropy(),
        moments=lambda d: _scalar_moments(stats.gamma(d.concentration, scale=1 / d.rate)),
        torch_dist=lambda d: td.Gamma(torch.as_tensor(d.concentration), torch.as_tensor(d.rate)),
    ),
    Case(
        name="Categorical",
        make=lambda: Categorical(probs=_CAT_PROBS),
        other=lambda: Categorical(probs=_CAT_OTHER),
        unfitted=lambda: Categorical(n_categories=3),
        data=lambda rng, n: rng.choice(3, n, p=[0.2, 0.3, 0.5]).astype(float),
        logpdf=_categorical_logpmf,
        entropy=lambda d: np.array([stats.entropy(p) for p in d.probs]),
        moments=_categorical_moments,
        torch_dist=lambda d: td.Categorical(probs=torch.as_tensor(d.probs)),
        minimal=False,
    ),
    Case(
        name="Bernoulli",
        make=lambda: Bernoulli(probs=[0.3, 0.9]),
        other=lambda: Bernoulli(probs=[0.5, 0.2]),
        unfitted=lambda: Bernoulli(),
        data=lambda rng, n: (rng.random(n) < 0.4).astype(float),
        logpdf=lambda d, X: stats.bernoulli(d.probs).logpmf(X[:, None]),
        entropy=lambda d: stats.bernoulli(d.probs).entropy(),
        moments=lambda d: _scalar_moments(stats.bernoulli(d.probs)),
        torch_dist=lambda d: td.Bernoulli(probs=torch.as_tensor(d.probs)),
    ),
    Case(
        name="Binomial",
        make=lambda: Binomial(total_count=7, probs=[0.2, 0.65]),
        other=lambda: Binomial(total_count=7, probs=[0.5, 0.4]),
        unfitted=lambda: Binomial(total_count=7),
        data=lambda rng, n: rng.binomial(7, 0.4, n).astype(float),
        logpdf=lambda d, X: stats.binom(7, d.probs).logpmf(X[:, None]),
        entropy=lambda d: stats.binom(7, d.probs).entropy(),
        moments=lambda d: _scalar_moments(stats.binom(7, d.probs)),
        torch_dist=lambda d: td.Binomial(7, probs=torch.as_tensor(d.probs)),
    ),
    Case(
        name="Geometric",
        make=lambda: Geometric(probs=[0.3, 0.8]),
        other=lambda: Geometric(probs=[0.6, 0.25]),
        unfitted=lambda: Geometric(),
        data=lambda rng, n: (rng.geometric(0.35, n) - 1).astype(float),
        # scipy's geom counts trials; loc=-1 counts failures.
        logpdf=lambda d, X: stats.geom(d.probs, loc=-1).logpmf(X[:, None]),
        entropy=lambda d: stats.geom(d.probs, loc=-1).entropy(),
        moments=lambda d: _scalar_moments(stats.geom(d.probs, loc=-1)),
        torch_dist=lambda d: td.Geometric(probs=torch.as_tensor(d.probs)),
    ),
    Case(
        name="Multinomial",
        make=lambda: Multinomial(probs=_CAT_PROBS),
        other=lambda: Multinomial(probs=_CAT_OTHER),
        unfitted=lambda: Multinomial(),
        data=_multinomial_free_data,
        logpdf=_multinomial_logpmf,
        entropy=None,  # needs a fixed total_count: see Multinomial-fixed
        moments=None,  # sampling needs a fixed total_count
        minimal=False,
        tags={"multinomial-free"},
    ),
    Case(
        name="Multinomial-fixed",
        make=lambda: Multinomial(probs=_CAT_PROBS, total_count=5),
        other=lambda: Multinomial(probs=_CAT_OTHER, total_count=5),
        unfitted=lambda: Multinomial(total_count=5),
        data=_multinomial_fixed_data,
        logpdf=_multinomial_logpmf,
        entropy=lambda d: np.array([stats.multinomial(5, p).entropy() for p in d.probs]),
        moments=lambda d: (5 * d.probs, 5 * d.probs * (1 - d.probs)),
        minimal=False,
    ),
    Case(
        name="Exponential",
        make=lambda: Exponential(rate=[0.5, 3.0]),
        other=lambda: Exponential(rate=[1.0, 1.5]),
        unfitted=lambda: Exponential(),
        data=lambda rng, n: rng.exponential(0.8, n),
        logpdf=lambda d, X: stats.expon(scale=1 / d.rate).logpdf(X[:, None]),
        entropy=lambda d: stats.expon(scale=1 / d.rate).entropy(),
        moments=lambda d: _scalar_moments(stats.expon(scale=1 / d.rate)),
        torch_dist=lambda d: td.Exponential(torch.as_tensor(d.rate)),
    ),
    Case(
        name="Beta",
        make=lambda: Beta(concentration1=[0.7, 2.5], concentration0=[1.5, 4.0]),
        other=lambda: Beta(concentration1=[2.0, 1.0], concentration0=[0.8, 3.0]),
        unfitted=lambda: Beta(),
        data=lambda rng, n: rng.beta(2.0, 3.0, n),
        logpdf=lambda d, X: stats.beta(d.concentration1, d.concentration0).logpdf(X[:, None]),
        entropy=lambda d: stats.beta(d.concentration1, d.concentration0).entropy(),
        moments=lambda d: _scalar_moments(stats.beta(d.concentration1, d.concentration0)),
        torch_dist=lambda d: td.Beta(torch.as_tensor(d.concentration1), torch.as_tensor(d.concentration0)),
    ),
    Case(
        name="LogNormal",
        make=lambda: LogNormal(loc=[0.0, 1.0], scale=[0.5, 1.2]),
        other=lambda: LogNormal(loc=[0.3, 0.0], scale=[1.0, 0.7]),
        unfitted=lambda: LogNormal(),
        data=lambda rng, n: rng.lognormal(0.5, 0.8, n),
        logpdf=lambda d, X: stats.lognorm(s=d.scale, scale=np.exp(d.loc)).logpdf(X[:, None]),
        entropy=lambda d: stats.lognorm(s=d.scale, scale=np.exp(d.loc)).entropy(),
        moments=lambda d: _scalar_moments(stats.lognorm(s=d.scale, scale=np.exp(d.loc))),
        torch_dist=lambda d: td.LogNormal(torch.as_tensor(d.loc), torch.as_tensor(d.scale)),
    ),
    Case(
        name="Dirichlet",
        make=lambda: Dirichlet(concentration=[[1.5, 2.0, 0.7], [4.0, 1.0, 2.0]]),
        other=lambda: Dirichlet(concentration=[[1.0, 1.0, 1.0], [2.0, 3.0, 0.5]]),
        unfitted=lambda: Dirichlet(),
        data=lambda rng, n: rng.dirichlet([2.0, 3.0, 1.5], n),
        logpdf=_dirichlet_logpdf,
        entropy=lambda d: np.array([stats.dirichlet(a).entropy() for a in d.concentration]),
        moments=lambda d: (np.stack([stats.dirichlet(a).mean() for a in d.concentration]),
                           np.stack([stats.dirichlet(a).var() for a in d.concentration])),
        torch_dist=lambda d: td.Dirichlet(torch.as_tensor(d.concentration)),
    ),
    *[_mvn_case(ct) for ct in ("full", "diag", "spherical", "tied")],
    Case(
        name="Independent",
        make=lambda: Independent([Normal(loc=[0.0, 1.0], scale=[1.0, 2.0]), Poisson(rate=[1.0, 3.0]),
                                  Categorical(probs=_CAT_PROBS)]),
        other=lambda: Independent([Normal(loc=[0.5, 0.0], scale=[2.0, 1.0]), Poisson(rate=[2.0, 0.5]),
                                   Categorical(probs=_CAT_OTHER)]),
        unfitted=lambda: Independent([Normal(), Poisson(), Categorical(n_categories=3)]),
        data=_independent_data,
        logpdf=_independent_logpdf,
        entropy=_independent_entropy,
        moments=_independent_moments,
        # The Categorical component's natural parameters are over-complete.
        minimal=False,
        tags={"independent"},
    ),
]

CASE_IDS = [c.name for c in CASES]


def rebuild_from_natural(dist, natural):
    """``type(dist).from_natural`` with the options (or components) of ``dist``."""
    if isinstance(dist, Independent):
        return Independent.from_natural(natural, dist.components)
    return type(dist).from_natural(natural, **dist._options())


def pairs_input(dist, X):
    """``X`` (n, *event) reshaped to broadcast against the batch, as ``_log_prob_pairs`` does."""
    x = torch.as_tensor(np.asarray(X, dtype=np.float64))
    n = x.shape[0]
    event = x.shape[1:]
    return x.reshape(n, *([1] * len(dist.batch_shape)), *event)
