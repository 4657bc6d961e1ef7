"""The torch.distributions-style accessors: to_torch(), mean/variance/stddev, sample(sample_shape).

Truth: torch.distributions' own log_prob on the same points (probkit's log_prob is an
independent implementation), Monte Carlo moments of probkit's own sampler, and the
closed forms of scipy.stats.
"""

import numpy as np
import pytest
import torch
from scipy import stats

from probkit.distributions import (
    Bernoulli, Beta, Binomial, Categorical, Dirichlet, Exponential, Gamma, Geometric, InverseWishart, Laplace,
    LogNormal, Multinomial, MultivariateNormal, NegativeBinomial, Normal, Poisson, StudentT, VonMises, Wishart,
)

# (distribution with a batch of 2, points in its support of shape (n, *event))
CASES = {
    "Normal": (Normal(loc=[0.0, 3.0], scale=[1.0, 0.5]), np.array([-1.0, 0.2, 2.9])),
    "LogNormal": (LogNormal(loc=[0.0, 1.0], scale=[1.0, 0.3]), np.array([0.5, 1.0, 3.0])),
    "Laplace": (Laplace(loc=[0.0, 2.0], scale=[1.0, 2.0]), np.array([-1.0, 0.5, 4.0])),
    "StudentT": (StudentT(df=[3.0, 10.0], loc=[0.0, 1.0], scale=[1.0, 2.0]), np.array([-2.0, 0.0, 5.0])),
    "Exponential": (Exponential(rate=[0.5, 2.0]), np.array([0.1, 1.0, 3.0])),
    "Gamma": (Gamma(concentration=[2.0, 0.7], rate=[1.0, 3.0]), np.array([0.2, 1.0, 2.5])),
    "Beta": (Beta(concentration1=[2.0, 0.5], concentration0=[3.0, 0.5]), np.array([0.1, 0.5, 0.9])),
    "VonMises": (VonMises(loc=[0.0, 1.0], concentration=[1.0, 4.0]), np.array([-1.0, 0.5, 2.0])),
    "Poisson": (Poisson(rate=[1.5, 7.0]), np.array([0, 2, 9])),
    "Bernoulli": (Bernoulli(probs=[0.2, 0.7]), np.array([0, 1, 1])),
    "Binomial": (Binomial(total_count=5, probs=[0.2, 0.7]), np.array([0, 3, 5])),
    "Geometric": (Geometric(probs=[0.3, 0.8]), np.array([0, 1, 6])),
    "NegativeBinomial": (NegativeBinomial(total_count=[2.5, 8.0], probs=[0.3, 0.6]), np.array([0, 4, 11])),
    "Categorical": (Categorical(probs=[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]), np.array([0, 1, 2])),
    "Dirichlet": (Dirichlet(concentration=[[1.0, 2.0, 3.0], [0.5, 0.5, 4.0]]),
                  np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])),
    "Multinomial": (Multinomial(probs=[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], total_count=4),
                    np.array([[1, 1, 2], [4, 0, 0]])),
    "MultivariateNormal": (MultivariateNormal(mean=[[0.0, 1.0], [2.0, -1.0]],
                                              covariance=[[[1.0, 0.3], [0.3, 2.0]], [[0.5, 0.0], [0.0, 0.4]]]),
                           np.array([[0.0, 0.0], [1.0, 2.0], [-1.0, 0.5]])),
    "MultivariateNormal-diag": (MultivariateNormal(mean=[[0.0, 1.0], [2.0, -1.0]], covariance=[[1.0, 2.0], [0.5, 0.3]],
                                                   covariance_type="diag"), np.array([[0.0, 0.0], [1.0, 2.0]])),
    "MultivariateNormal-spherical": (MultivariateNormal(mean=[[0.0, 1.0], [2.0, -1.0]], covariance=[1.0, 0.2],
                                                        covariance_type="spherical"), np.array([[0.0, 0.0], [1.0, 2.0]])),
    "MultivariateNormal-tied": (MultivariateNormal(mean=[[0.0, 1.0], [2.0, -1.0]], covariance=[[1.0, 0.3], [0.3, 2.0]],
                                                   covariance_type="tied"), np.array([[0.0, 0.0], [1.0, 2.0]])),
    "Wishart": (Wishart(df=[4.0, 6.0], scale_matrix=[[[1.0, 0.2], [0.2, 1.0]], [[2.0, 0.0], [0.0, 0.5]]]),
                np.array([[[2.0, 0.3], [0.3, 1.5]], [[1.0, -0.2], [-0.2, 3.0]]])),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_to_torch_has_the_same_log_prob(name):
    dist, points = CASES[name]
    t = dist.to_torch()
    assert isinstance(t, torch.distributions.Distribution)
    ours = dist.log_prob(points)                        # (n, batch)
    event = points.shape[1:]
    x = torch.as_tensor(points, dtype=torch.float64).reshape(len(points), 1, *event)
    theirs = t.log_prob(x).numpy()                       # broadcast against the batch of 2
    # torch evaluates VonMises' Bessel function by a polynomial accurate to about 1e-7
    tol = 1e-6 if name == "VonMises" else 1e-10
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mean_and_variance_match_monte_carlo(name):
    dist, _ = CASES[name]
    draws = dist.sample(40_000, random_state=0)
    mean, var, sd = dist.mean, dist.variance, dist.stddev
    assert isinstance(mean, np.ndarray) and mean.shape == draws.shape[1:]
    scale = np.sqrt(var / len(draws))
    if name == "VonMises":  # torch's VonMises mean is the circular location, its variance the circular variance
        np.testing.assert_allclose(mean, dist.loc)
    else:
        assert np.all(np.abs(draws.mean(0) - mean) <= 6 * scale + 1e-12), (draws.mean(0), mean)
    if name not in ("StudentT", "VonMises"):  # heavy tails / circular: the sample variance converges slowly
        np.testing.assert_allclose(draws.var(0), var, rtol=0.1, atol=1e-3)
    np.testing.assert_allclose(sd, np.sqrt(var))


def test_moments_against_scipy_closed_forms():
    np.testing.assert_allclose(Gamma(concentration=3.0, rate=2.0).variance, stats.gamma(3.0, scale=0.5).var())
    np.testing.assert_allclose(NegativeBinomial(total_count=2.5, probs=0.3).mean, stats.nbinom(2.5, 0.3).mean())
    np.testing.assert_allclose(NegativeBinomial(total_count=2.5, probs=0.3).variance, stats.nbinom(2.5, 0.3).var())
    np.testing.assert_allclose(Geometric(probs=0.3).mean, stats.geom(0.3).mean() - 1)  # scipy counts trials
    np.testing.assert_allclose(StudentT(df=5.0, loc=1.0, scale=2.0).variance, stats.t(5.0, 1.0, 2.0).var())
    np.testing.assert_allclose(Beta(concentration1=2.0, concentration0=3.0).stddev, stats.beta(2.0, 3.0).std())
    mvn = MultivariateNormal(mean=[1.0, 2.0], covariance=[[2.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(mvn.mean, [1.0, 2.0])
    np.testing.assert_allclose(mvn.variance, [2.0, 1.0])


def test_sample_accepts_a_sample_shape_as_torch_does():
    d = Normal(loc=[0.0, 10.0, 20.0], scale=1.0)
    assert d.sample(4, random_state=0).shape == (4, 3)
    assert d.sample((2, 5), random_state=0).shape == (2, 5, 3)
    assert d.sample(torch.Size([7]), random_state=0).shape == (7, 3)
    one = d.sample((), random_state=0)
    assert one.shape == (3,) and np.all(np.abs(one - [0, 10, 20]) < 6)
    # the same generator stream: a (2, 5) shape is the first 10 draws of sample(10), reshaped
    np.testing.assert_array_equal(d.sample((2, 5), random_state=3).reshape(10, 3), d.sample(10, random_state=3))
    assert CASES["MultivariateNormal"][0].sample((3, 2), random_state=0).shape == (3, 2, 2, 2)
    for bad in [0, -1, 2.5, True, (2, -1), (2, 1.5)]:
        with pytest.raises(ValueError, match="n_samples|sample_shape"):
            d.sample(bad)


def test_families_without_a_torch_counterpart_say_so():
    iw = InverseWishart(df=5.0, scale_matrix=np.eye(2))
    with pytest.raises(NotImplementedError, match="InverseWishart"):
        iw.to_torch()
    with pytest.raises(NotImplementedError, match="no mean"):
        iw.mean


def test_multivariate_normal_takes_torch_keyword_names():
    cov = np.array([[2.0, 0.3], [0.3, 1.0]])
    a = MultivariateNormal(loc=[1.0, -1.0], covariance_matrix=cov)
    b = MultivariateNormal(mean=[1.0, -1.0], covariance=cov)
    x = np.array([[0.0, 0.0], [1.0, 2.0]])
    np.testing.assert_array_equal(a.log_prob(x), b.log_prob(x))
    expected = torch.distributions.MultivariateNormal(torch.tensor([1.0, -1.0], dtype=torch.float64),
                                                      covariance_matrix=torch.as_tensor(cov)).log_prob(
        torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(a.log_prob(x), expected, rtol=1e-12)
    with pytest.raises(TypeError, match="not both"):
        MultivariateNormal(mean=[0.0], loc=[0.0], covariance=[[1.0]])
    with pytest.raises(TypeError, match="not both"):
        MultivariateNormal(mean=[0.0], covariance=[[1.0]], covariance_matrix=[[1.0]])
    with pytest.raises(ValueError, match="full covariance"):
        MultivariateNormal(loc=[0.0], covariance_matrix=[[1.0]], covariance_type="diag")


def test_multivariate_student_t_moments():
    from probkit.distributions import MultivariateStudentT

    shape = np.array([[2.0, 0.6], [0.6, 1.0]])
    d = MultivariateStudentT(df=[6.0, 1.5, 0.8], loc=[[1.0, -2.0], [0.0, 0.0], [3.0, 3.0]], scale_matrix=shape)
    # each coordinate is a univariate t with the same df, its loc and scale sqrt(shape[j, j])
    for j in range(2):
        marginal = stats.t(6.0, [1.0, -2.0][j], np.sqrt(shape[j, j]))
        np.testing.assert_allclose(d.mean[0, j], marginal.mean())
        np.testing.assert_allclose(d.variance[0, j], marginal.var())
    assert np.all(np.isinf(d.variance[1])) and np.all(d.mean[1] == 0.0)      # 1 < df <= 2
    assert np.all(np.isnan(d.mean[2])) and np.all(np.isnan(d.variance[2]))   # df <= 1
    np.testing.assert_allclose(d.stddev[0], np.sqrt(d.variance[0]))
    draws = MultivariateStudentT(df=6.0, loc=[1.0, -2.0], scale_matrix=shape).sample(200_000, random_state=0)
    np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(draws.var(0), d.variance[0], rtol=0.05)
