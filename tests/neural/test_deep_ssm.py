"""DeepStateSpaceModel: bounds against an exact Kalman filter, Pyro consistency, masks, sampling, bad input."""

import doctest
import importlib

import numpy as np
import pytest
import torch
from pyro import poutine
from sklearn.exceptions import NotFittedError

from probkit.neural import DeepStateSpaceModel
from probkit.neural.networks import DSSMNet

A, Q, C, R = 0.9, 0.3, np.array([1.0, -0.5]), 0.3


def simulate(rng, n, T):
    """Linear-Gaussian state space: z_t = A z_{t-1} + N(0, Q^2) (stationary start), x_t = C z_t + N(0, R^2 I)."""
    z = np.zeros((n, T))
    z[:, 0] = rng.randn(n) * Q / np.sqrt(1 - A * A)
    for t in range(1, T):
        z[:, t] = A * z[:, t - 1] + Q * rng.randn(n)
    return z[..., None] * C + R * rng.randn(n, T, len(C)), z


def kalman_log_likelihood(x):
    """Exact log p(x_{1:T}) of one sequence (T, D) under the generator, by the Kalman filter."""
    H = C[:, None]
    m, P, ll = 0.0, Q * Q / (1 - A * A), 0.0
    for t in range(x.shape[0]):
        if t > 0:
            m, P = A * m, A * A * P + Q * Q
        S = P * (H @ H.T) + R * R * np.eye(len(C))
        e = x[t] - C * m
        S_inv = np.linalg.inv(S)
        ll -= 0.5 * (e @ S_inv @ e + np.linalg.slogdet(2 * np.pi * S)[1])
        K = P * (H.T @ S_inv)[0]
        m, P = m + K @ e, P - P * (K @ C)
    return ll


def test_bounds_against_the_exact_kalman_log_likelihood():
    rng = np.random.RandomState(0)
    X, _ = simulate(rng, 64, 40)
    X_test, Z_test = simulate(rng, 32, 40)
    ds = DeepStateSpaceModel(latent_dim=1, d_model=8, hidden_dim=16, batch_size=16, max_epochs=100, lr=1e-2,
                             early_stopping=False, random_state=0).fit(X.reshape(-1, 2), lengths=[40] * 64)
    n = 32 * 40
    exact = sum(kalman_log_likelihood(x) for x in X_test) / n
    b = ds.bounds(X_test.reshape(-1, 2), lengths=[40] * 32, n_particles=256)
    elbo, iwae = b["elbo"].sum() / n, b["iwae"].sum() / n
    # measured: ELBO -0.950, IWAE -0.941, exact -0.932 nats per step
    assert elbo < iwae < exact
    assert exact - elbo < 0.05                  # the stated gap after training
    assert np.all(b["iwae"] >= b["elbo"])       # from the same paths, log-mean-exp >= mean
    assert ds.score(X_test.reshape(-1, 2), lengths=[40] * 32, bound="iwae", n_particles=256) == pytest.approx(iwae)
    # the posterior means follow the true latent path (up to its sign)
    z = ds.transform(X_test.reshape(-1, 2), lengths=[40] * 32)[:, 0]
    assert abs(np.corrcoef(z, Z_test.reshape(-1))[0, 1]) > 0.9
    # training went up: the last epoch's ELBO beats the first (annealed) one
    assert ds.elbo_history_[-1] > ds.elbo_history_[0]


def _tiny_net(**kw):
    torch.manual_seed(0)
    net = DSSMNet(2, 2, guide_backbone="gru", d_model=6, n_layers=1, hidden_dim=5, **kw).double()
    with torch.no_grad():   # non-zero MLP outputs, so that every term matters
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("backbone", [None, "gru"])
def test_pyro_programs_give_the_log_weights_and_annealing_scales_only_the_latent_terms(backbone):
    net = _tiny_net(backbone=backbone)
    x = torch.randn(3, 5, 2, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 1])
    torch.manual_seed(1)
    guide_tr = poutine.trace(net.guide).get_trace(x, x, lengths)
    model_tr = poutine.trace(poutine.replay(net.model, trace=guide_tr)).get_trace(x, x, lengths)
    z = guide_tr.nodes["z"]["value"]
    mask = (torch.arange(5)[None] < lengths[:, None]).double()
    a = net.summary(x, lengths)
    log_pz, log_px = net.prior_log_prob(z, mask, lengths), net.emission_log_prob(z, x, mask)
    log_qz = net.guide_log_prob(z, a, mask)
    model_tr.compute_log_prob()
    guide_tr.compute_log_prob()
    torch.testing.assert_close(model_tr.nodes["z"]["log_prob"], log_pz)
    torch.testing.assert_close(model_tr.nodes["x"]["log_prob"], log_px)
    torch.testing.assert_close(guide_tr.nodes["z"]["log_prob"], log_qz)
    # the same draw through log_weights
    torch.manual_seed(1)
    w = net.log_weights(x, x, lengths, n_particles=1, generator=None)[0]
    torch.testing.assert_close(w, log_pz + log_px - log_qz)
    # Pyro's loss with KL annealing 0.3: -(log p(x|z) + 0.3 (log p(z) - log q(z)))
    torch.manual_seed(1)
    loss = net(x, x, lengths, 0.3)
    torch.testing.assert_close(loss, -(log_px + 0.3 * (log_pz - log_qz)).sum())


def test_masks_make_padding_irrelevant():
    net = _tiny_net(backbone="gru")
    x = torch.randn(2, 6, 2, dtype=torch.float64)
    lengths = torch.tensor([6, 3])
    garbage = x.clone()
    garbage[1, 3:] = 1e3
    w1 = net.log_weights(x, x, lengths, 4, torch.Generator().manual_seed(0))
    w2 = net.log_weights(garbage, garbage, lengths, 4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(w1, w2)
    # the short sequence alone, in a batch trimmed to its length: the same weights with the same draws
    single = net.log_weights(x[1:, :3], x[1:, :3], lengths[1:], 4, torch.Generator().manual_seed(0))
    pair = net.log_weights(x[1:], x[1:], lengths[1:], 4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(single, pair)


@pytest.mark.parametrize("backbone", [None, "rwkv"])
def test_sampling_with_step_follows_the_parallel_transition(backbone):
    """With nearly no transition noise, each sampled z_t is the parallel transition mean at z_{<t}."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 2))
    ds = DeepStateSpaceModel(latent_dim=2, backbone=backbone, d_model=8, hidden_dim=8, max_epochs=1,
                             dtype="float64", random_state=0).fit(X, lengths=[20, 20])
    net = ds.module_
    with torch.no_grad():
        net.trans_scale.weight.zero_()
        net.trans_scale.bias.fill_(-30.0)              # scale = softplus(-30) + 1e-3
        for p in net.trans_mlp.parameters():
            p.normal_(0, 0.3)
    Xs, Zs = ds.sample(12, random_state=0, n_sequences=3)
    z = torch.as_tensor(Zs.reshape(3, 12, 2))
    loc, scale = net.transition(net._shift(z), net.prior_features(z))
    assert float(scale.detach().max()) < 1.1e-3
    np.testing.assert_allclose(loc.detach().numpy(), z.numpy(), atol=1e-2)
    assert Xs.shape == (36, 2)


def test_forecast_transform_and_sample_shapes_and_reproducibility():
    rng = np.random.RandomState(1)
    X, _ = simulate(rng, 8, 15)
    X = X.reshape(-1, 2)
    ds = DeepStateSpaceModel(latent_dim=2, backbone="gru", d_model=8, hidden_dim=8, max_epochs=3,
                             random_state=0).fit(X, lengths=[15] * 8)
    again = DeepStateSpaceModel(latent_dim=2, backbone="gru", d_model=8, hidden_dim=8, max_epochs=3,
                                random_state=0).fit(X, lengths=[15] * 8)
    np.testing.assert_array_equal(ds.elbo_history_, again.elbo_history_)
    mean, samples = ds.forecast(X[:30], 4, lengths=[10, 20], n_particles=7, return_samples=True)
    assert mean.shape == (2, 4, 2) and samples.shape == (7, 2, 4, 2)
    np.testing.assert_allclose(mean, ds.forecast(X[:30], 4, lengths=[10, 20], n_particles=7))
    assert ds.transform([X[:10], X[10:30]]).shape == (30, 2)
    assert ds.transform(X[:30], lengths=[10, 20], n_particles=5).shape == (30, 2)
    S, Z = ds.sample(5, random_state=3, n_sequences=2)
    assert S.shape == (10, 2) and Z.shape == (10, 2)
    np.testing.assert_array_equal(S, ds.sample(5, random_state=3, n_sequences=2)[0])
    assert ds.score(X, lengths=[15] * 8) == ds.score(X, lengths=[15] * 8)
    counts = rng.poisson(3.0, size=(40, 2))
    pois = DeepStateSpaceModel(emission="poisson", d_model=8, hidden_dim=8, max_epochs=2, random_state=0)
    pois.fit(counts, lengths=[20, 20])
    S, _ = pois.sample(6, random_state=0)
    assert np.all(S >= 0) and np.all(S == np.round(S)) and np.isfinite(pois.score(counts, lengths=[20, 20]))


def test_the_three_forms_of_the_contract_are_the_same_sequences():
    rng = np.random.RandomState(3)
    X, _ = simulate(rng, 3, 12)
    lengths = np.array([12, 7, 3])
    seqs = [X[i, :n] for i, n in enumerate(lengths)]
    kw = dict(latent_dim=1, d_model=6, hidden_dim=6, max_epochs=2, random_state=0)
    forms = [((seqs,), {}), ((np.concatenate(seqs),), {"lengths": lengths}), ((X,), {"valid_lengths": lengths})]
    fitted = [DeepStateSpaceModel(**kw).fit(*a, **k) for a, k in forms]
    reference = fitted[0].transform(seqs)
    assert reference.shape == (22, 1)
    for est in fitted:
        for a, k in forms:
            np.testing.assert_array_equal(est.transform(*a, **k), reference)
            np.testing.assert_array_equal(est.bounds(*a, **k, n_particles=4)["elbo"],
                                          fitted[0].bounds(seqs, n_particles=4)["elbo"])


def test_bad_input_is_refused_with_clear_errors():
    X = np.random.RandomState(0).normal(size=(20, 2))
    tiny = dict(d_model=4, hidden_dim=4, max_epochs=1)
    with pytest.raises(ValueError, match="The 'backbone' parameter of DeepStateSpaceModel must be None or a str among "
                                         ".*Got 'nope'"):
        DeepStateSpaceModel(backbone="nope").fit(X)
    with pytest.raises(ValueError, match="The 'guide_backbone' parameter of DeepStateSpaceModel must be a str among "
                                         ".*Got 'nope'"):
        DeepStateSpaceModel(guide_backbone="nope").fit(X)
    with pytest.raises(ValueError, match="The 'emission' parameter of DeepStateSpaceModel must be a str among "
                                         ".*Got 'gamma'"):
        DeepStateSpaceModel(emission="gamma").fit(X)
    with pytest.raises(ValueError, match="non-negative integer.*emission='poisson'"):
        DeepStateSpaceModel(emission="poisson", **tiny).fit(X)
    with pytest.raises(ValueError, match="lengths must sum to the number of samples"):
        DeepStateSpaceModel(**tiny).fit(X, lengths=[10, 5])
    with pytest.raises(ValueError, match="sequence 0 of X is empty"):
        DeepStateSpaceModel(**tiny).fit([X[:0], X])
    with pytest.raises(ValueError, match="lengths must be positive"):
        DeepStateSpaceModel(**tiny).fit(X, lengths=[0, 20])
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        DeepStateSpaceModel(**tiny).fit(bad)
    with pytest.raises(ValueError, match=r"The 'kl_annealing' parameter of DeepStateSpaceModel must be a float in "
                                         r"the range \[0.0, 1.0\)"):
        DeepStateSpaceModel(kl_annealing=1.5).fit(X)
    for call in (lambda m: m.transform(X), lambda m: m.score(X), lambda m: m.sample(2),
                 lambda m: m.forecast(X, 2), lambda m: m.bounds(X)):
        with pytest.raises(NotFittedError):
            call(DeepStateSpaceModel())
    ds = DeepStateSpaceModel(**tiny, random_state=0).fit(X)
    with pytest.raises(ValueError, match="bound must be"):
        ds.score(X, bound="exact")
    with pytest.raises(ValueError, match="n_particles"):
        ds.bounds(X, n_particles=0)


@pytest.mark.parametrize("name", ["probkit.neural.estimators.deep_ssm"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
