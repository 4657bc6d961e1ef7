"""Independent: products of mixed scalar families, with per-feature missing values."""

import numpy as np
import pytest
import torch

from probkit.distributions import (
    Beta,
    Categorical,
    Dirichlet,
    Gamma,
    Independent,
    MultivariateNormal,
    Normal,
    NormalGamma,
    Poisson,
)


def _mixed_batched():
    return Independent([Normal(loc=[0.0, 1.0], scale=[1.0, 2.0]), Poisson(rate=[1.0, 3.0]),
                        Categorical(probs=[[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])])


def _data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=n), rng.poisson(2.0, n), rng.choice(3, n)]).astype(float)


def test_log_prob_columns_are_the_component_log_probs():
    d = _mixed_batched()
    X = _data()
    cols = d._log_prob_columns(torch.as_tensor(X))
    assert cols.shape == (30, 2, 3)
    for j, comp in enumerate(d.components):
        np.testing.assert_allclose(cols[..., j].numpy(), comp.log_prob(X[:, j]), rtol=1e-14)
    np.testing.assert_allclose(d.log_prob(X), cols.sum(-1).numpy(), rtol=1e-14)


def test_missing_entries_contribute_zero_and_leave_the_rest_unchanged():
    d = _mixed_batched()
    X = _data()
    full = d._log_prob_columns(torch.as_tensor(X)).numpy()
    Xm = X.copy()
    Xm[[0, 5, 7], 2] = np.nan  # some categorical entries missing
    Xm[3, 0] = np.nan
    Xm[:, 1] = np.nan  # a whole feature missing
    cols = d._log_prob_columns(torch.as_tensor(Xm)).numpy()
    missing = np.isnan(Xm)
    assert np.all(cols[missing.nonzero()[0], :, missing.nonzero()[1]] == 0.0)
    observed = ~missing
    np.testing.assert_array_equal(cols[observed.nonzero()[0], :, observed.nonzero()[1]],
                                  full[observed.nonzero()[0], :, observed.nonzero()[1]])


def test_statistics_with_missing_values_fit_each_feature_on_its_observed_rows():
    d = Independent([Normal(), Poisson(), Categorical(n_categories=3)])
    X = _data(40, 1)
    rng = np.random.default_rng(2)
    X[rng.random(40) < 0.3, 0] = np.nan
    X[rng.random(40) < 0.2, 2] = np.nan
    w = rng.random(40)
    stats_ = d._summarize(torch.as_tensor(X), torch.as_tensor(w))
    fit = d.from_stats(stats_)
    for j, comp in enumerate([Normal(), Poisson(), Categorical(n_categories=3)]):
        obs = ~np.isnan(X[:, j])
        ref = comp.fit(X[obs, j], sample_weight=w[obs])
        for name, value in ref.params.items():
            np.testing.assert_allclose(fit.components[j].params[name], value, rtol=1e-12)
        np.testing.assert_allclose(stats_[f"{j}.count"].numpy(), w[obs].sum(), rtol=1e-14)
    np.testing.assert_allclose(stats_["count"].numpy(), w.sum(), rtol=1e-14)


def test_a_feature_missing_everywhere_in_a_chunk_adds_zero_statistics():
    d = _mixed_batched()
    X1 = _data(10, 3)
    X2 = _data(10, 4)
    X2[:, 0] = np.nan
    resp = np.random.default_rng(5).random((20, 2))
    total = d._summarize(torch.as_tensor(X1), torch.as_tensor(resp[:10])) + \
        d._summarize(torch.as_tensor(X2), torch.as_tensor(resp[10:]))
    only_first = d._summarize(torch.as_tensor(X1), torch.as_tensor(resp[:10]))
    for key in ("0.count", "0.x", "0.xx"):
        np.testing.assert_allclose(total[key].numpy(), only_first[key].numpy(), rtol=1e-14)
    with pytest.raises(ValueError, match="feature 0 has no observed value"):
        Independent([Normal(), Poisson(), Categorical(n_categories=3)])._summarize(
            torch.as_tensor(X2), torch.ones(10, dtype=torch.float64))


def test_summary_fields_are_prefixed_per_component_and_additive():
    d = Independent([Normal(), Poisson()])
    X = np.column_stack([np.arange(5.0), np.arange(5.0)])
    s = d.summarize(X)
    assert set(s) == {"count", "0.count", "0.x", "0.xx", "1.count", "1.x"}
    s2 = d.summarize(X[:2]) + d.summarize(X[2:])
    for key in s:
        np.testing.assert_allclose(s2[key].numpy(), s[key].numpy())
    with pytest.raises(TypeError, match="cannot add statistics"):
        s + Normal().summarize(X[:, 0])


def test_batched_responsibilities_fit_every_component_per_batch_member():
    X = _data(50, 6)
    resp = np.random.default_rng(7).random((50, 2))
    template = Independent([Normal(), Poisson(), Categorical(n_categories=3)])
    fit = template.from_stats(template.summarize(X, resp))
    assert fit.batch_shape == (2,)
    for k in range(2):
        np.testing.assert_allclose(fit.components[1].rate[k], (resp[:, k] @ X[:, 1]) / resp[:, k].sum())
        np.testing.assert_allclose(fit.components[0].loc[k], (resp[:, k] @ X[:, 0]) / resp[:, k].sum())


def test_map_with_one_prior_per_component():
    X = np.column_stack([np.array([0.3, -1.2, 2.1, 0.8]), np.array([0.0, 3.0, 1.0, 4.0])])
    ng = NormalGamma(loc=0.0, mean_precision=1.0, concentration=2.0, rate=1.0)
    gamma = Gamma(concentration=2.0, rate=1.0)
    fit = Independent([Normal(), Poisson()]).fit(X, prior=[ng, gamma])
    np.testing.assert_allclose(fit.components[0].loc, Normal().fit(X[:, 0], prior=ng).loc)
    np.testing.assert_allclose(fit.components[1].rate, Poisson().fit(X[:, 1], prior=gamma).rate)
    # None leaves a component at its MLE
    mixed = Independent([Normal(), Poisson()]).fit(X, prior=[None, gamma])
    np.testing.assert_allclose(mixed.components[0].loc, X[:, 0].mean())
    with pytest.raises(ValueError, match="sequence of 2 priors"):
        Independent([Normal(), Poisson()]).fit(X, prior=[ng])


def test_mean_parameters_are_the_gradient_of_the_summed_log_partition():
    d = Independent([Normal(loc=[0.5, -1.0], scale=[1.0, 2.0]), Poisson(rate=[2.0, 0.3]),
                     Gamma(concentration=[2.0, 0.7], rate=[1.0, 3.0])])
    eta = {k: torch.as_tensor(v).clone().requires_grad_(True) for k, v in d.natural_parameters().items()}
    A = Independent.from_natural(eta, d.components)._log_partition().sum()
    grads = dict(zip(eta, torch.autograd.grad(A, list(eta.values()))))
    for name, value in d.mean_parameters().items():
        np.testing.assert_allclose(grads[name].numpy(), value, rtol=1e-10)


def test_entropy_and_kl_are_sums_over_features():
    p = _mixed_batched()
    q = Independent([Normal(loc=[1.0, 1.0], scale=[1.0, 1.0]), Poisson(rate=[2.0, 2.0]),
                     Categorical(probs=[[0.3, 0.3, 0.4], [0.3, 0.3, 0.4]])])
    np.testing.assert_allclose(p.entropy(), sum(c.entropy() for c in p.components))
    np.testing.assert_allclose(p.kl_divergence(q), sum(a.kl_divergence(b) for a, b in zip(p.components, q.components)))
    r = Independent([Normal(loc=[1.0, 1.0], scale=[1.0, 1.0]), Normal(loc=[2.0, 2.0], scale=[1.0, 1.0]),
                     Categorical(probs=[[0.3, 0.3, 0.4], [0.3, 0.3, 0.4]])])
    with pytest.raises(TypeError, match="feature 1"):
        p.kl_divergence(r)


def test_sample_stacks_component_draws_reproducibly():
    d = _mixed_batched()
    s = d.sample(1000, random_state=0)
    assert s.shape == (1000, 2, 3)
    np.testing.assert_array_equal(s, d.sample(1000, random_state=0))
    assert np.all(s[..., 1] == np.round(s[..., 1])) and set(np.unique(s[..., 2])) <= {0.0, 1.0, 2.0}


def test_support_errors_name_the_column():
    d = Independent([Normal(loc=0.0, scale=1.0), Poisson(rate=1.0), Beta(concentration1=1.0, concentration0=1.0)])
    with pytest.raises(ValueError, match=r"Negative values in data passed to X\[:, 1\]"):
        d.log_prob(np.array([[0.0, -1.0, 0.5]]))
    with pytest.raises(ValueError, match=r"X\[:, 2\] must lie in \[0, 1\]"):
        d.log_prob(np.array([[0.0, 1.0, 1.5]]))
    with pytest.raises(ValueError, match="3 columns"):
        d.log_prob(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        d.log_prob(np.array([[np.nan, 1.0, 0.5]]))


@pytest.mark.parametrize(
    "components,error,match",
    [
        ([Normal(loc=[0.0, 1.0], scale=1.0), Poisson(rate=1.0)], ValueError, "one batch shape"),
        ([Normal(loc=0.0, scale=1.0), Poisson()], ValueError, "all fitted or all unfitted"),
        ([MultivariateNormal()], ValueError, "not a scalar family"),
        ([Dirichlet()], ValueError, "not a scalar family"),
        ([], ValueError, "at least one"),
        ([Normal(), "Poisson"], TypeError, "components\\[1\\]"),
        (Normal(), TypeError, "sequence of distributions"),
    ],
)
def test_invalid_components_are_rejected(components, error, match):
    with pytest.raises(error, match=match):
        Independent(components)


def test_statistics_of_other_features_cannot_fit():
    s = Independent([Normal(), Poisson()]).summarize(np.array([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(TypeError, match="cannot fit components"):
        Independent([Poisson(), Poisson()]).from_stats(s)
    with pytest.raises(TypeError, match="SufficientStats"):
        Independent([Poisson(), Poisson()]).from_stats({"count": 1})


def test_zero_weight_for_one_batch_member_names_the_feature():
    template = Independent([Normal(), Poisson()])
    X = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 0.0]])
    resp = np.column_stack([np.ones(3), np.zeros(3)])
    with pytest.raises(ValueError, match=r"feature 0 \(Normal\)"):
        template.from_stats(template.summarize(X, resp))


def test_unfitted_independent_reports_missing_parameters():
    d = Independent([Normal(), Poisson()])
    assert not d.is_fitted
    with pytest.raises(ValueError, match="no parameters"):
        d.log_prob(np.zeros((1, 2)))
