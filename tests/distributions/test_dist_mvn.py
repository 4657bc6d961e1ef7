"""MultivariateNormal specifics: the matrix-product log-likelihood path, shifted statistics, tied covariances."""

import numpy as np
import pytest
import torch
from scipy import stats

from probkit.distributions import COVARIANCE_TYPES, MultivariateNormal

MEANS = np.array([[0.0, 1.0, -1.0], [2.0, 0.5, 0.0], [-1.0, -1.0, 3.0]])
FULL = np.array([[[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]],
                 [[1.0, -0.4, 0.0], [-0.4, 0.8, 0.1], [0.0, 0.1, 1.5]],
                 [[0.6, 0.0, 0.2], [0.0, 0.6, 0.0], [0.2, 0.0, 0.9]]])
COVS = {"full": FULL, "tied": FULL[0], "diag": np.array([[2.0, 1.0, 0.5], [0.3, 0.8, 1.5], [1.0, 1.0, 1.0]]),
        "spherical": np.array([0.7, 1.8, 0.4])}


def _dense(ct, k):
    cov = COVS[ct]
    return {"full": cov[k], "tied": cov, "diag": np.diag(cov[k]) if ct == "diag" else None,
            "spherical": cov[k] * np.eye(3) if ct == "spherical" else None}[ct]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_log_prob_pairs_equals_broadcast_log_prob_and_scipy(covariance_type, offset):
    d = MultivariateNormal(mean=MEANS + offset, covariance=COVS[covariance_type], covariance_type=covariance_type)
    X = np.random.default_rng(0).normal(size=(50, 3)) * 2 + offset
    x = torch.as_tensor(X)
    pairs = d._log_prob_pairs(x)
    broadcast = d._log_prob(x[:, None, :])
    np.testing.assert_allclose(pairs.numpy(), broadcast.numpy(), rtol=1e-10)
    expected = np.column_stack([stats.multivariate_normal(MEANS[k] + offset, _dense(covariance_type, k)).logpdf(X)
                                for k in range(3)])
    np.testing.assert_allclose(d.log_prob(X), expected, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_quadratic_design_products_equal_scipy_log_densities_and_summarize(covariance_type, offset):
    """The batched E-step's two products: log-densities (scipy's) and statistics (_summarize's)."""
    d = MultivariateNormal(mean=MEANS + offset, covariance=COVS[covariance_type], covariance_type=covariance_type)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3)) * 2 + offset
    x = torch.as_tensor(X)
    center = x.mean(0)
    design = d._quadratic_design((x - center).T)
    log_prob = (d._quadratic_log_prob_coefficients(center).T @ design).T
    expected = np.column_stack([stats.multivariate_normal(MEANS[k] + offset, _dense(covariance_type, k)).logpdf(X)
                                for k in range(3)])
    np.testing.assert_allclose(log_prob.numpy(), expected, rtol=1e-9)
    resp = torch.as_tensor(rng.dirichlet(np.ones(3), size=60))
    # statistics come back about the family's stats_shift (the origin when None), whatever the design's centre
    for shift in (center, center + 0.5, None):
        family = MultivariateNormal(mean=MEANS + offset, covariance=COVS[covariance_type],
                                    covariance_type=covariance_type, stats_shift=shift)
        from_design = family._stats_from_design_sums(design @ resp, center)
        direct = MultivariateNormal(covariance_type=covariance_type, stats_shift=shift)._summarize(x, resp)
        direct + from_design  # same reference point: the statistics add
        assert from_design.meta.get("shared_fields") == direct.meta.get("shared_fields")
        scale = 1.0 if shift is not None else offset ** 2
        for field in ("count", "x", "xx"):
            np.testing.assert_allclose(from_design[field].numpy(), direct[field].numpy(), rtol=1e-10, atol=1e-9 * scale)
        fit_design = d.from_stats(from_design)
        fit_direct = d.from_stats(direct)
        np.testing.assert_allclose(fit_design.mean, fit_direct.mean, rtol=1e-12)
        np.testing.assert_allclose(fit_design.covariance, fit_direct.covariance, rtol=1e-10 if shift is not None else 1e-4)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_stats_shift_gives_the_same_fit(covariance_type):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3)) + 5.0
    resp = rng.random((40, 3))
    plain = MultivariateNormal(covariance_type=covariance_type)
    shifted = MultivariateNormal(covariance_type=covariance_type, stats_shift=X.mean(0))
    a = plain.from_stats(plain.summarize(X, resp))
    b = shifted.from_stats(shifted.summarize(X, resp))
    for name in a.params:
        np.testing.assert_allclose(b.params[name], a.params[name], rtol=1e-10, err_msg=name)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_stats_shift_keeps_the_fit_accurate_for_data_far_from_the_origin(covariance_type):
    rng = np.random.default_rng(2)
    Z = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.5], [0.5, 2.0]], size=500)
    X = Z + 1e8  # x x^T is ~1e16: the raw second moment has lost the unit-scale covariance
    true = np.cov(Z.T, bias=True)
    if covariance_type == "diag":
        true = np.diag(true)
    shifted = MultivariateNormal(covariance_type=covariance_type, stats_shift=X.mean(0)).fit(X)
    shifted_error = np.abs(shifted.covariance - true).max()
    assert shifted_error < 1e-8
    np.testing.assert_allclose(shifted.mean - 1e8, Z.mean(0), atol=1e-7)
    try:
        plain_error = np.abs(MultivariateNormal(covariance_type=covariance_type).fit(X).covariance - true).max()
    except ValueError:  # cancellation left a covariance that is not positive definite
        plain_error = np.inf
    assert plain_error > 1e4 * shifted_error


def test_statistics_with_different_shifts_cannot_be_added():
    X = np.zeros((2, 2))
    a = MultivariateNormal(stats_shift=[0.0, 0.0]).summarize(X)
    b = MultivariateNormal(stats_shift=[1.0, 0.0]).summarize(X)
    with pytest.raises(ValueError, match="shift"):
        a + b


def test_tied_covariance_is_the_pooled_within_component_scatter():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    resp = rng.random((60, 2))
    template = MultivariateNormal(covariance_type="tied")
    fit = template.from_stats(template.summarize(X, resp))
    means = (resp.T @ X) / resp.sum(0)[:, None]
    pooled = sum((resp[:, k, None] * (X - means[k])).T @ (X - means[k]) for k in range(2)) / resp.sum()
    np.testing.assert_allclose(fit.mean, means, rtol=1e-12)
    np.testing.assert_allclose(fit.covariance, pooled, rtol=1e-10)
    assert fit.covariance.shape == (3, 3)


def test_reg_covar_is_added_to_the_diagonal_of_every_covariance_type():
    X = np.random.default_rng(4).normal(size=(30, 2))
    for ct in COVARIANCE_TYPES:
        a = MultivariateNormal(covariance_type=ct).fit(X).covariance
        b = MultivariateNormal(covariance_type=ct, reg_covar=0.1).fit(X).covariance
        added = b - a
        expected = 0.1 * np.eye(2) if ct in ("full", "tied") else (np.full(2, 0.1) if ct == "diag" else 0.1)
        np.testing.assert_allclose(added, expected, atol=1e-14, err_msg=ct)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mean=[0.0, 0.0], covariance=[[1.0, 2.0], [2.0, 1.0]]), "not positive definite"),
        (dict(mean=[0.0, 0.0], covariance=[[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
        (dict(mean=[0.0, 0.0], covariance=np.eye(3)), "trailing shape"),
        (dict(mean=[0.0, 0.0], covariance=[1.0, -1.0], covariance_type="diag"), "not positive definite"),
        (dict(mean=[[0.0, 0.0]], covariance=[np.eye(2)], covariance_type="tied"), "tied covariance"),
        (dict(covariance_type="banded"), "covariance_type"),
        (dict(reg_covar=-1.0), "reg_covar"),
    ],
)
def test_invalid_mvn_parameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultivariateNormal(**kwargs)


def test_mvn_input_with_the_wrong_number_of_features_is_rejected():
    d = MultivariateNormal(mean=[0.0, 0.0], covariance=np.eye(2))
    with pytest.raises(ValueError, match="X has 3 features but this MultivariateNormal has 2"):
        d.log_prob(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2 dimension"):
        d.log_prob(np.zeros(3))
