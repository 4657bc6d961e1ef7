"""SequenceVAE: bounds against the closed-form marginal of its linear-Gaussian case, padding never leaks into a
sequence's ELBO, step mode equals the parallel decoder, a two-cluster data set separates in the latent space,
quadrature marginals of a discrete model, bad input."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.linear_model import LogisticRegression

from probkit.neural import SequenceVAE
from probkit.neural.estimators.sequence_vae import SequenceVAENet

T, D = 6, 2
M_TRUE = 2.0 * np.stack([np.sin(0.8 * np.arange(T)), np.cos(0.5 * np.arange(T))], 1)
C_TRUE = np.array([1.5, -1.0])
SIGMA_TRUE = np.array([0.3, 0.5])


def random_intercept_covariance(C, sigma):
    """Covariance of a flattened (T, D) sequence x_t = m_t + C z + e_t: (1 1^T) kron C C^T + I kron diag sigma^2."""
    return np.kron(np.ones((T, T)), np.outer(C, C)) + np.kron(np.eye(T), np.diag(sigma ** 2))


def random_intercept_data(n, seed=0):
    rng = np.random.RandomState(seed)
    return M_TRUE + rng.randn(n, 1, 1) * C_TRUE + SIGMA_TRUE * rng.randn(n, T, D)


def test_linear_gaussian_case_bounds_approach_the_closed_form_marginal():
    X = random_intercept_data(200)
    vae = SequenceVAE(1, backbone="gru", d_model=8, n_layers=1, latent_input=False, decoder_layers=(),
                      weight_decay=0.0, lr=3e-2, batch_size=25, max_epochs=50, early_stopping=False, dtype="float64",
                      random_state=0).fit(X)
    # the fitted decoder is linear in z: its means at z = 0, 1, 2 give the offsets and loadings in data units
    m = vae.inverse_transform(np.zeros((1, 1)), length=T)[0]
    C = vae.inverse_transform(np.ones((1, 1)), length=T)[0] - m
    np.testing.assert_allclose(vae.inverse_transform(2 * np.ones((1, 1)), length=T)[0] - m, 2 * C, atol=1e-10)
    np.testing.assert_allclose(C, np.broadcast_to(C[0], C.shape), atol=1e-10)   # loadings shared by the steps
    sigma = vae.module_.noise_scale().detach().numpy() * vae._x_scale
    cov = random_intercept_covariance(C[0], sigma)
    flat = X.reshape(len(X), -1)
    exact = multivariate_normal(m.ravel(), cov).logpdf(flat)
    truth = multivariate_normal(M_TRUE.ravel(), random_intercept_covariance(C_TRUE, SIGMA_TRUE)).logpdf(flat)
    # maximum likelihood is at least the generating parameters' likelihood (200 sequences, 13 free parameters):
    # the fitted model is within 0.05 nats per sequence of it (measured 0.04 above it)
    assert exact.mean() > truth.mean() - 0.05
    b = vae.bounds(X, n_particles=512)
    assert np.all(b["iwae"] >= b["elbo"])                          # Jensen, row by row from the same draws
    # ELBO <= IWAE <= log p(x) on average (Monte Carlo error of 512 draws with a good guide: ~1e-3 per sequence)
    assert b["elbo"].mean() <= b["iwae"].mean() <= exact.mean() + 0.01
    # the bounds approach the marginal: measured gaps 0.04 (ELBO) and 0.0004 (IWAE) nats per sequence of 12 values
    assert exact.mean() - b["elbo"].mean() < 0.15
    assert exact.mean() - b["iwae"].mean() < 0.03
    # the encoder's means approach the exact posterior mean (linear in x): cov W^T Psi^-1 (x - m)
    W, psi = np.tile(C[0], T)[:, None], np.tile(sigma ** 2, T)
    post_cov = np.linalg.inv(1.0 + W.T @ (W / psi[:, None]))
    post_mean = ((flat - m.ravel()) / psi) @ W @ post_cov
    z = vae.transform(X)
    assert np.corrcoef(z[:, 0], post_mean[:, 0])[0, 1] > 0.999
    np.testing.assert_allclose(z, post_mean, atol=0.3)           # posterior sd ~0.08, measured max error 0.1
    # samples follow the same closed-form marginal
    Xs, Zs = vae.sample(4000, length=T, random_state=1)
    assert Xs.shape == (4000, T, D) and Zs.shape == (4000, 1)
    flat_s = Xs.reshape(4000, -1)
    np.testing.assert_allclose(flat_s.mean(0), m.ravel(), atol=0.1)              # sd of a mean <= 0.03
    np.testing.assert_allclose(np.cov(flat_s.T), cov, atol=0.3)                   # sd of a covariance <= 0.06


NETS = {
    "gru-mean": dict(backbone="gru"),
    "mamba-autoregressive": dict(backbone="mamba", autoregressive=True),
    "transformer-bidirectional-max": dict(backbone="transformer", bidirectional=True, pooling="max"),
    "transformer-noncausal-decoder": dict(backbone="transformer", backbone_kwargs={"causal": False}),
    "s4d-last": dict(backbone="s4d", pooling="last", latent_input=False),
    "mambaout-categorical": dict(backbone="mambaout", likelihood="categorical", autoregressive=True),
    "rwkv-bernoulli": dict(backbone="rwkv", likelihood="bernoulli"),
}


def _net_and_batch(options, seed=0):
    options = dict(options)
    likelihood = options.pop("likelihood", "gaussian")
    n_categories = 3
    torch.manual_seed(seed)
    n_in = D * n_categories if likelihood == "categorical" else D
    net = SequenceVAENet(n_in, D, 3, likelihood, d_model=16, n_layers=1, decoder_layers=(8,),
                         n_categories=n_categories, **options).double().eval()
    lengths = torch.tensor([7, 3, 1, 5])
    gen = torch.Generator().manual_seed(seed)
    if likelihood == "categorical":
        x_obs = torch.randint(0, n_categories, (4, 7, D), generator=gen)
        x_in = torch.nn.functional.one_hot(x_obs, n_categories).double().flatten(-2)
    elif likelihood == "bernoulli":
        x_obs = (torch.rand(4, 7, D, generator=gen) < 0.5).double()
        x_in = x_obs
    else:
        x_obs = torch.randn(4, 7, D, generator=gen, dtype=torch.float64)
        x_in = x_obs
    return net, x_in, x_obs, lengths


@pytest.mark.parametrize("name", sorted(NETS))
def test_batch_elbo_is_the_sum_of_per_sequence_elbos(name):
    net, x_in, x_obs, lengths = _net_and_batch(NETS[name])
    eps = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)   # common draws
    with torch.no_grad():
        batch = net.log_weights(x_in, x_obs, eps, lengths)                 # (K, B), padded to 7 steps
        # padding filled with garbage must not matter either
        garbage_in, garbage_obs = x_in.clone(), x_obs.clone()
        for i, n in enumerate(lengths.tolist()):
            garbage_in[i, n:] = 1e3 if x_in.dtype.is_floating_point else 0
            if x_obs.dtype.is_floating_point and net.likelihood == "gaussian":
                garbage_obs[i, n:] = -1e3
        garbage = net.log_weights(garbage_in, garbage_obs, eps, lengths)
        alone = torch.stack([net.log_weights(x_in[i:i + 1, :n], x_obs[i:i + 1, :n], eps, lengths[i:i + 1])[:, 0]
                             for i, n in enumerate(lengths.tolist())], 1)
    np.testing.assert_allclose(batch.numpy(), alone.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(garbage.numpy(), alone.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(batch.sum(1).numpy(), alone.sum(1).numpy(), rtol=1e-10)


@pytest.mark.parametrize("name", ["mamba-autoregressive", "mambaout-categorical"])
def test_step_by_step_decoder_equals_the_parallel_decoder(name):
    net, x_in, _, _ = _net_and_batch(NETS[name])
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        parallel = net.decode(z, x_in)
        steps = iter(range(x_in.shape[1]))
        stepped = net.roll_out(z, x_in.shape[1], lambda out: (out, x_in[:, next(steps)]))   # teacher forcing
    np.testing.assert_allclose(stepped.numpy(), parallel.numpy(), rtol=1e-9, atol=1e-10)


def test_estimator_bounds_do_not_depend_on_the_other_sequences():
    rng = np.random.RandomState(0)
    seqs = [rng.randn(n, D) for n in (9, 2, 5, 12, 1, 7)]
    vae = SequenceVAE(2, backbone="gru", d_model=8, n_layers=1, decoder_layers=(8,), max_epochs=2, dtype="float64",
                      random_state=0).fit(seqs)
    together = vae.bounds(seqs, n_particles=8)
    for i, x in enumerate(seqs):
        alone = vae.bounds([x], n_particles=8)
        for key in ("elbo", "iwae"):
            np.testing.assert_allclose(alone[key][0], together[key][i], rtol=1e-12)
    # the same sequences as a padded array with garbage past valid_lengths, and as concatenated rows
    lengths = np.array([len(x) for x in seqs])
    padded = np.full((len(seqs), 12, D), 1e3)
    for i, x in enumerate(seqs):
        padded[i, :len(x)] = x
    np.testing.assert_allclose(vae.score_samples(padded, valid_lengths=lengths), vae.score_samples(seqs), rtol=1e-12)
    np.testing.assert_allclose(vae.transform(np.concatenate(seqs), lengths=lengths), vae.transform(seqs), rtol=1e-12)


def two_frequency_sines(n, seed):
    rng = np.random.RandomState(seed)
    labels = np.arange(n) % 2
    X = [np.sin((0.4 + 0.6 * c) * np.arange(rng.randint(12, 21)) + rng.uniform(0, 0.5))[:, None]
         + 0.1 * rng.randn(1) for c in labels]
    return [x + 0.1 * rng.randn(*x.shape) for x in X], labels


def test_two_clusters_of_sequences_separate_in_the_latent_space():
    X, labels = two_frequency_sines(60, seed=0)
    vae = SequenceVAE(2, backbone="gru", d_model=16, n_layers=1, decoder_layers=(16,), lr=1e-2, batch_size=16,
                      max_epochs=30, early_stopping=False, random_state=0).fit(X)
    X_new, labels_new = two_frequency_sines(60, seed=1)
    clf = LogisticRegression().fit(vae.transform(X), labels)
    assert clf.score(vae.transform(X_new), labels_new) > 0.95         # held-out sequences
    assert vae.elbo_history_[-1] > vae.elbo_history_[0]


def test_discrete_bounds_lie_below_the_marginal_by_quadrature():
    """A one-dimensional latent: log p(x) = log of the integral of p(x | z) N(z) on a fine grid."""
    rng = np.random.RandomState(0)
    X = [(rng.rand(n, D) < 0.3 + 0.4 * (i % 2)).astype(float) for i, n in enumerate(rng.randint(3, 8, size=12))]
    vae = SequenceVAE(1, "bernoulli", backbone="gru", d_model=8, n_layers=1, decoder_layers=(8,), lr=1e-2,
                      max_epochs=20, early_stopping=False, dtype="float64", random_state=0).fit(X)
    grid = np.linspace(-8, 8, 4001)
    marginal = []
    with torch.no_grad():
        for x in X:
            logits = vae.module_.decode(torch.as_tensor(grid[:, None]), length=len(x)).numpy()    # (G, L, D)
            log_lik = (x * logits - np.logaddexp(0, logits)).sum((1, 2))
            log_joint = log_lik - 0.5 * grid ** 2 - 0.5 * np.log(2 * np.pi)
            marginal.append(logsumexp(log_joint) + np.log(grid[1] - grid[0]))
    marginal = np.array(marginal)
    b = vae.bounds(X, n_particles=2000)
    assert np.all(b["elbo"] <= b["iwae"])
    assert np.all(b["elbo"] <= marginal + 1e-9)                       # the ELBO of 2000 draws: sd ~0.01
    np.testing.assert_allclose(b["iwae"], marginal, atol=0.02)          # IWAE with 2000 draws is near exact


def test_categorical_autoregressive_model_samples_and_decodes_in_range():
    rng = np.random.RandomState(0)
    X = [rng.randint(0, 3, size=(n, 1)) for n in rng.randint(3, 9, size=16)]
    vae = SequenceVAE(2, "categorical", backbone="gru", d_model=8, n_layers=1, autoregressive=True,
                      decoder_layers=(), max_epochs=2, random_state=0).fit(X)
    assert vae.n_categories_ == 3
    Xs, Zs = vae.sample(5, length=4, random_state=0)
    assert Xs.shape == (5, 4, 1) and set(np.unique(Xs)) <= {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(vae.sample(5, length=4, random_state=0)[0], Xs)
    means = vae.inverse_transform(Zs, length=4)
    assert means.shape == (5, 4, 1) and np.all((means >= 0) & (means <= 2))
    assert vae.sample(2)[0].shape == (2, vae.max_length_, 1)


def test_bad_input_is_refused_with_clear_errors():
    rng = np.random.RandomState(0)
    X = [rng.randn(5, 2), rng.randn(3, 2)]
    kw = dict(backbone="gru", d_model=8, n_layers=1, max_epochs=1, random_state=0)
    with pytest.raises(ValueError, match="X"):
        SequenceVAE(**kw).fit([[1.0, 2.0], [3.0]])                     # ragged rows, no lengths
    with pytest.raises(ValueError, match="lengths"):
        SequenceVAE(**kw).fit(np.zeros((5, 2)), lengths=[2, 2])
    bad = [X[0].copy(), X[1]]
    bad[0][1, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        SequenceVAE(**kw).fit(bad)
    with pytest.raises(ValueError, match="only 0 and 1"):
        SequenceVAE(likelihood="bernoulli", **kw).fit(X)
    with pytest.raises(ValueError, match="likelihood"):
        SequenceVAE(likelihood="poisson", **kw).fit(X)
    with pytest.raises(ValueError, match="autoregressive"):
        SequenceVAE(autoregressive=True, backbone_kwargs={"causal": False}, **{**kw, "backbone": "transformer"}).fit(X)
    vae = SequenceVAE(**kw).fit(X)
    with pytest.raises(ValueError, match="X has 3 features"):
        vae.transform([rng.randn(4, 3)])
    with pytest.raises(ValueError, match="Z has 3 columns"):
        vae.inverse_transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="length"):
        vae.sample(2, length=0)
    with pytest.raises(ValueError, match="bound"):
        vae.score_samples(X, bound="exact")
    with pytest.raises(TypeError, match="lengths"):
        vae.score_samples(np.concatenate(X), [5, 3])
