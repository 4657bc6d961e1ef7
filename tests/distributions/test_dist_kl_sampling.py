"""KL divergences against torch.distributions, and sampling: moments and reproducibility."""

import itertools

import numpy as np
import pytest
import torch
import torch.distributions as td
from _dist_cases import CASE_IDS, CASES
from scipy import stats

from probkit.distributions import Multinomial, kl_divergence


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    return request.param


def _torch_kl(case, p, q):
    if case.torch_dist is not None:
        return td.kl_divergence(case.torch_dist(p), case.torch_dist(q)).numpy()
    # Independent: a sum of per-feature divergences, each from torch.
    total = 0.0
    for cp, cq in zip(p.components, q.components):
        tp = {"Normal": lambda c: td.Normal(torch.as_tensor(c.loc), torch.as_tensor(c.scale)),
              "Poisson": lambda c: td.Poisson(torch.as_tensor(c.rate)),
              "Categorical": lambda c: td.Categorical(probs=torch.as_tensor(c.probs))}[type(cp).__name__]
        total = total + td.kl_divergence(tp(cp), tp(cq)).numpy()
    return total


def _multinomial_kl_by_enumeration(p, q, total_count):
    # Exact sum over every count vector with the given total.
    k = p.probs.shape[-1]
    rows = np.array([c for c in itertools.product(range(total_count + 1), repeat=k) if sum(c) == total_count])
    out = []
    for pp, qq in zip(p.probs, q.probs):
        logp = stats.multinomial(total_count, pp).logpmf(rows)
        logq = stats.multinomial(total_count, qq).logpmf(rows)
        out.append(np.sum(np.exp(logp) * (logp - logq)))
    return np.array(out)


def test_kl_matches_torch(case):
    p, q = case.make(), case.other()
    if "multinomial-free" in case.tags:
        with pytest.raises(ValueError, match="total_count"):
            kl_divergence(p, q)
        return
    got = p.kl_divergence(q)
    assert got.shape == tuple(p.batch_shape)
    if case.name == "Multinomial-fixed":
        expected = _multinomial_kl_by_enumeration(p, q, 5)
    else:
        expected = _torch_kl(case, p, q)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(kl_divergence(p, p), 0.0, atol=1e-12)
    assert np.all(got > 0)


def test_kl_between_different_families_is_a_type_error(case):
    from probkit.distributions import Normal

    other = Normal(loc=0.0, scale=1.0) if case.name != "Normal" else Multinomial(probs=[0.5, 0.5])
    with pytest.raises(TypeError, match="one family"):
        kl_divergence(case.make(), other)


def test_sample_shape_and_support(case):
    if case.moments is None:
        dist = case.make()
        with pytest.raises(ValueError, match="total_count"):
            dist.sample(3, random_state=0)
        return
    dist = case.make()
    s = dist.sample(50, random_state=0)
    assert isinstance(s, np.ndarray)
    X = case.data(np.random.default_rng(0), 5)
    assert s.shape == (50, *dist.batch_shape, *X.shape[1:])
    # Every draw lies in the support: the validation of the first batch member accepts it.
    first = s.reshape(50, -1, *X.shape[1:])[:, 0]
    dist._validate_support(torch.as_tensor(first), "X")


def test_sample_is_reproducible_from_random_state(case):
    if case.moments is None:
        pytest.skip("sampling needs a fixed total_count")
    dist = case.make()
    a = dist.sample(20, random_state=123)
    b = dist.sample(20, random_state=123)
    c = dist.sample(20, random_state=124)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    np.testing.assert_array_equal(dist.sample(4, random_state=g1), dist.sample(4, random_state=g2))
    np.testing.assert_array_equal(dist.sample(4, random_state=np.random.RandomState(9)),
                                  dist.sample(4, random_state=np.random.RandomState(9)))


def test_sample_moments_match_the_distribution(case):
    # Mean and variance of n draws, per batch member and coordinate. Tolerances are five
    # standard errors: sd/sqrt(n) for the mean and sqrt((m4 - var^2)/n) for the variance,
    # with the fourth central moment m4 estimated from the same draws.
    if case.moments is None:
        pytest.skip("sampling needs a fixed total_count")
    dist = case.make()
    n = 40000
    s = dist.sample(n, random_state=1)
    mean, var = case.moments(dist)
    centred = s - s.mean(0)
    sample_var = (centred ** 2).mean(0)
    m4 = (centred ** 4).mean(0)
    np.testing.assert_array_less(np.abs(s.mean(0) - mean), 5 * np.sqrt(var / n) + 1e-12)
    np.testing.assert_array_less(np.abs(sample_var - var), 5 * np.sqrt(np.maximum(m4 - sample_var ** 2, 0) / n) + 1e-12)


def test_mvn_sample_covariance_matches_full_covariance():
    from probkit.distributions import MultivariateNormal

    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    d = MultivariateNormal(mean=[1.0, -1.0], covariance=cov)
    s = d.sample(40000, random_state=3)
    # sd of an empirical covariance entry is about sqrt((s_ii s_jj + s_ij^2) / n) <= 0.015 here.
    np.testing.assert_allclose(np.cov(s.T), cov, atol=0.06)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10"])
def test_sample_rejects_bad_counts(bad):
    from probkit.distributions import Poisson

    with pytest.raises(ValueError, match="n_samples"):
        Poisson(rate=1.0).sample(bad)
