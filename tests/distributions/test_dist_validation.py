"""Bad input: every error is a ValueError/TypeError that names the offending argument."""

import numpy as np
import pytest
import torch
from _dist_cases import CASE_IDS, CASES

from probkit.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Dirichlet,
    Exponential,
    Gamma,
    Geometric,
    LogNormal,
    Multinomial,
    Normal,
    Poisson,
    SufficientStats,
)


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    return request.param


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected(case, bad):
    X = case.data(np.random.default_rng(0), 5).astype(float)
    X.reshape(-1)[1] = bad
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        case.make().log_prob(X)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        case.unfitted().fit(X)


def test_wrong_number_of_dimensions_is_rejected(case):
    X = case.data(np.random.default_rng(0), 5)
    wrong = X[..., None] if X.ndim == 2 else X[:, None, None]
    with pytest.raises(ValueError, match="X must have shape"):
        case.make().log_prob(wrong)
    with pytest.raises(ValueError, match="X must have shape"):
        case.unfitted().fit(X[0])


def test_empty_and_non_numeric_input_is_rejected(case):
    X = case.data(np.random.default_rng(0), 5)
    with pytest.raises(ValueError, match="at least one sample"):
        case.make().log_prob(X[:0])
    with pytest.raises(TypeError, match="X must be numeric"):
        case.make().log_prob(X.astype(str))


def test_unfitted_use_is_a_clear_error(case):
    d = case.unfitted()
    X = case.data(np.random.default_rng(0), 3)
    for call in (lambda: d.log_prob(X), d.entropy, lambda: d.sample(2), d.natural_parameters,
                 lambda: d.kl_divergence(case.make())):
        with pytest.raises(ValueError, match="no parameters yet"):
            call()


def test_unfitted_parameter_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no parameter values yet"):
        Normal().loc
    with pytest.raises(ValueError, match="no parameters yet"):
        Normal().log_prob(np.array([0.0]))


@pytest.mark.parametrize(
    "weights,match",
    [
        (np.zeros(5), "at least one positive"),
        (np.array([1.0, -1.0, 1.0, 1.0, 1.0]), "non-negative"),
        (np.ones(4), r"shape \(5,\)"),
        (np.array([1.0, np.nan, 1.0, 1.0, 1.0]), "NaN"),
    ],
)
def test_invalid_sample_weight_is_rejected(case, weights, match):
    X = case.data(np.random.default_rng(0), 5)
    with pytest.raises(ValueError, match=f"sample_weight.*{match}|{match}"):
        case.unfitted().fit(X, sample_weight=weights)


def test_negative_summarize_weights_are_rejected():
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        Normal().summarize(np.zeros(3), np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="weights must have shape"):
        Normal().summarize(np.zeros(3), np.ones(2))


@pytest.mark.parametrize(
    "dist,X,match",
    [
        (Poisson(rate=1.0), np.array([1.0, -2.0]), "Negative values in data passed to X: it must hold non-negative integer counts"),
        (Poisson(rate=1.0), np.array([1.5]), "non-integer values"),
        (Geometric(probs=0.5), np.array([-1.0]), "Negative values in data passed to X"),
        (Bernoulli(probs=0.5), np.array([2.0]), "0/1 outcomes"),
        (Bernoulli(probs=0.5), np.array([0.5]), "non-integer"),
        (Binomial(total_count=3, probs=0.5), np.array([4.0]), "above total_count=3"),
        (Binomial(total_count=3, probs=0.5), np.array([1.5]), "non-integer"),
        (Binomial(total_count=3, probs=0.5), np.array([-1.0]), "Negative values in data passed to X"),
        (Multinomial(probs=[0.5, 0.5]), np.array([[1.0, -1.0]]), "Negative values in data passed to X"),
        (Multinomial(probs=[0.5, 0.5]), np.array([[1.5, 1.0]]), "non-integer"),
        (Multinomial(probs=[0.5, 0.5], total_count=3), np.array([[1.0, 1.0]]), "sum to total_count=3"),
        (Multinomial(probs=[0.5, 0.5]), np.array([[1.0, 1.0, 1.0]]), "2 columns"),
        (Gamma(concentration=1.0, rate=1.0), np.array([1.0, 0.0]), "strictly positive for Gamma"),
        (Exponential(rate=1.0), np.array([0.0]), "strictly positive for Exponential"),
        (LogNormal(loc=0.0, scale=1.0), np.array([-1.0]), "strictly positive for LogNormal"),
        (Beta(concentration1=1.0, concentration0=1.0), np.array([1.2]), r"\[0, 1\] for Beta"),
        (Beta(concentration1=1.0, concentration0=1.0), np.array([-0.1]), r"\[0, 1\] for Beta"),
        (Dirichlet(concentration=[1.0, 1.0]), np.array([[0.3, 0.3]]), "simplex.*summing to 0.6"),
        (Dirichlet(concentration=[1.0, 1.0]), np.array([[1.5, -0.5]]), "simplex"),
        (Dirichlet(concentration=[1.0, 1.0]), np.array([[0.2, 0.3, 0.5]]), "2 columns"),
        (Categorical(probs=[0.5, 0.5]), np.array([0.0, 2.0]), "symbol 2 but the alphabet has 2"),
        (Categorical(probs=[0.5, 0.5]), np.array([-1.0]), "non-negative integer symbols"),
        (Categorical(probs=[0.5, 0.5]), np.array([0.5]), "non-negative integer symbols"),
    ],
)
def test_values_outside_the_support_are_rejected(dist, X, match):
    with pytest.raises(ValueError, match=match):
        dist.log_prob(X)
    if "columns" not in match:  # an unfitted distribution takes its width from the data
        with pytest.raises(ValueError, match=match):
            type(dist)(**dist._options()).fit(X)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Normal(loc=0.0, scale=-1.0), "scale must be positive"),
        (lambda: Normal(loc=0.0), "needs all of"),
        (lambda: Normal(loc=[0.0, 1.0], scale=[1.0, 1.0, 1.0]), "do not broadcast"),
        (lambda: Normal(loc=np.nan, scale=1.0), "'loc' contains NaN"),
        (lambda: Normal(min_scale=-1.0), "min_scale"),
        (lambda: Poisson(rate=0.0), "rate must be positive"),
        (lambda: Gamma(concentration=-1.0, rate=1.0), "must be positive"),
        (lambda: Categorical(probs=[0.5, 0.6]), "sum to 1"),
        (lambda: Categorical(probs=[1.5, -0.5]), "non-negative"),
        (lambda: Categorical(probs=[0.5, 0.5], n_categories=3), "n_categories=3"),
        (lambda: Bernoulli(probs=1.5), r"probs must lie in \[0, 1\]"),
        (lambda: Binomial(total_count=0), "total_count must be a positive integer"),
        (lambda: Binomial(total_count=2.5), "total_count must be a positive integer"),
        (lambda: Binomial(total_count=3, probs=-0.1), r"probs must lie in \[0, 1\]"),
        (lambda: Geometric(probs=0.0), r"probs must lie in \(0, 1\]"),
        (lambda: Multinomial(probs=[0.2, 0.2]), "sum to 1"),
        (lambda: Multinomial(total_count=-2), "total_count must be a positive integer"),
        (lambda: Exponential(rate=-2.0), "rate must be positive"),
        (lambda: Beta(concentration1=0.0, concentration0=1.0), "must be positive"),
        (lambda: LogNormal(loc=0.0, scale=0.0), "scale must be positive"),
        (lambda: Dirichlet(concentration=[1.0, -1.0]), "concentration must be positive"),
        (lambda: Dirichlet(concentration=[1.0]), "at least 2 categories"),
        (lambda: Dirichlet(concentration=1.0), "at least 1 dimensions"),
        (lambda: Dirichlet(tol=0.0), "tol must be positive"),
    ],
)
def test_invalid_parameters_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_degenerate_fits_explain_themselves():
    with pytest.raises(ValueError, match="no spread"):
        Gamma().fit(np.full(4, 2.0))
    with pytest.raises(ValueError, match="no spread"):
        Beta().fit(np.full(4, 0.3))
    with pytest.raises(ValueError, match=r"strictly inside \(0, 1\)"):
        Beta().fit(np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="no spread"):
        Dirichlet().fit(np.tile([0.2, 0.8], (3, 1)))
    with pytest.raises(ValueError, match="strictly positive"):
        Dirichlet().fit(np.array([[0.0, 1.0], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="zero total weight"):
        Normal().from_stats(Normal().summarize(np.array([1.0, 2.0]), np.array([[1.0, 0.0], [1.0, 0.0]])))
    with pytest.raises(ValueError, match="total_count"):
        Multinomial(probs=[0.5, 0.5]).entropy()


def test_statistics_misuse_is_a_type_error():
    s = Normal().summarize(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="statistics of Normal cannot fit a Poisson"):
        Poisson().from_stats(s)
    with pytest.raises(TypeError, match="stats must be SufficientStats"):
        Poisson().from_stats({"count": torch.tensor(1.0)})
    with pytest.raises(TypeError, match="cannot add statistics of Poisson"):
        s + Poisson().summarize(np.array([1.0]))
    with pytest.raises(TypeError, match="multiplied by a scalar"):
        s * np.ones(2)
    with pytest.raises(ValueError, match="'count' field"):
        SufficientStats("Normal", {"x": torch.tensor(1.0)})
