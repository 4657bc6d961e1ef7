"""VAE: probabilistic PCA recovered in closed form, bounds against exact marginals, sampling, save/load, bad input."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError

import probkit
from probkit.neural import VAE

LINEAR = dict(encoder_layers=(), decoder_layers=(), noise="isotropic", dtype="float64")


def ppca_data(n, seed=0):
    """Rows from a 2-factor PPCA in 5 dimensions (orthogonal loadings of scales 3 and 1.5, noise sd 0.5)."""
    rng = np.random.RandomState(seed)
    W = np.linalg.qr(rng.randn(5, 2))[0] * [3.0, 1.5]
    return rng.randn(n, 2) @ W.T + 0.5 * rng.randn(n, 5) + rng.randn(5)


def ppca_maximum_likelihood(X, q):
    """Tipping & Bishop's closed form: sigma^2 = mean discarded eigenvalue, W = U_q (L_q - sigma^2)^(1/2)."""
    S = np.cov(X.T, bias=True)
    lam, U = np.linalg.eigh(S)
    lam, U = lam[::-1], U[:, ::-1]
    s2 = lam[q:].mean()
    W = U[:, :q] * np.sqrt(lam[:q] - s2)
    return multivariate_normal(X.mean(0), W @ W.T + s2 * np.eye(X.shape[1])).logpdf(X)


def linear_decoder(vae):
    """The fitted linear decoder in data units: loadings W, offset b and noise sd sigma."""
    layer, s = vae.module_.decoder[0], vae._x_scale[0]
    W = layer.weight.detach().numpy() * s
    b = layer.bias.detach().numpy() * s + vae._x_mean
    return W, b, float(vae.module_.noise_scale().detach()[0]) * s


def test_linear_gaussian_vae_recovers_probabilistic_pca():
    X = ppca_data(500)
    vae = VAE(2, **LINEAR, batch_size=500, lr=0.1, max_epochs=400,
              early_stopping=False, random_state=0).fit(X)
    W, b, sigma = linear_decoder(vae)
    exact = multivariate_normal(b, W @ W.T + sigma ** 2 * np.eye(5)).logpdf(X).mean()
    best = ppca_maximum_likelihood(X, 2).mean()
    # The ELBO's maximum is the PPCA maximum likelihood (the decoder's columns turn orthogonal, the
    # posterior becomes diagonal). Measured gap 5e-5 nats per row; 0.005 leaves room for other BLAS
    # paths yet fails the 0.02-0.05 gap of a fit whose columns have not turned orthogonal.
    assert best - 0.005 < exact <= best + 1e-9
    # the decoded subspace is scikit-learn's principal subspace
    Q = np.linalg.qr(W)[0]
    cosines = np.linalg.svd(Q.T @ PCA(2).fit(X).components_.T)[1]
    assert np.degrees(np.arccos(np.clip(cosines.min(), -1, 1))) < 1.0
    # ... with orthogonal columns (the rotation the diagonal posterior selects)
    G = W.T @ W
    assert abs(G[0, 1]) < 0.05 * np.sqrt(G[0, 0] * G[1, 1])
    # the encoder's means are the exact posterior means M^-1 W^T (x - b), M = W^T W + sigma^2 I
    M = W.T @ W + sigma ** 2 * np.eye(2)
    np.testing.assert_allclose(vae.transform(X), (X - b) @ W @ np.linalg.inv(M), atol=0.05)


def test_bounds_against_the_closed_form_elbo_and_marginal_of_a_linear_gaussian_vae():
    X = ppca_data(300, seed=1)
    vae = VAE(2, **LINEAR, lr=0.02, max_epochs=10, early_stopping=False, random_state=0).fit(X)
    W, b, sigma = linear_decoder(vae)
    exact = multivariate_normal(b, W @ W.T + sigma ** 2 * np.eye(5)).logpdf(X)
    # the analytic ELBO of the encoder's q(z | x) = N(mu, diag s^2)
    x_std = (X - vae._x_mean) / vae._x_scale
    mu, s = (t.detach().numpy() for t in vae.module_.encode(torch.as_tensor(x_std)))
    resid = X - mu @ W.T - b
    expected_fit = (-0.5 * 5 * np.log(2 * np.pi * sigma ** 2)
                    - ((resid ** 2).sum(1) + (s ** 2 @ (W ** 2).sum(0))) / (2 * sigma ** 2))
    kl = 0.5 * (mu ** 2 + s ** 2 - 1 - 2 * np.log(s)).sum(1)
    analytic_elbo = expected_fit - kl
    b1 = vae.bounds(X, n_particles=4096)
    # Monte Carlo ELBO: the mean of 4096 log-weights per row (their sd is about 1 here, so 0.1 is 6 errors)
    np.testing.assert_allclose(b1["elbo"], analytic_elbo, atol=0.1)
    # elbo <= iwae from the same draws, row by row; the bound tightens with K and stays below log p(x)
    assert np.all(b1["iwae"] >= b1["elbo"])
    iwae = [vae.score(X, bound="iwae", n_particles=k) for k in (1, 16, 1024)]
    assert iwae[0] == pytest.approx(vae.score(X, n_particles=1))
    assert iwae[0] < iwae[1] < iwae[2] < exact.mean()
    assert exact.mean() - iwae[2] < 0.5 * (exact.mean() - analytic_elbo.mean())


@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical"])
def test_discrete_bounds_lie_below_the_marginal_by_quadrature(likelihood):
    """With one latent coordinate, log p(x) = log of a 1-D integral, computed on a fine grid."""
    rng = np.random.RandomState(0)
    z = rng.randn(400)
    if likelihood == "bernoulli":
        logits = np.outer(z, [2.0, -2.0, 1.0, 3.0, -1.0, 0.5]) + [0.0, 0.5, -0.5, 0.0, 1.0, -1.0]
        X = (rng.rand(*logits.shape) < 1 / (1 + np.exp(-logits))).astype(float)
    else:
        centres = np.array([0.0, 1.0, 2.0])
        X = np.stack([np.clip(np.round(z * c + 1 + 0.5 * rng.randn(400)), 0, 2) for c in centres + 0.5], 1)
    vae = VAE(1, likelihood, encoder_layers=(16,), decoder_layers=(16,), lr=1e-2, max_epochs=60, batch_size=50,
              dtype="float64", random_state=0).fit(X)
    grid = np.linspace(-8, 8, 4001)
    with torch.no_grad():
        obs = vae.module_.observation_dist(torch.as_tensor(grid[:, None, None]))
        x_obs = torch.as_tensor(X).long() if likelihood == "categorical" else torch.as_tensor(X)
        log_lik = obs.log_prob(x_obs).numpy()                      # (grid, rows)
    log_prior = -0.5 * grid ** 2 - 0.5 * np.log(2 * np.pi)
    joint = log_lik + log_prior[:, None]
    peak = joint.max(0)
    exact = peak + np.log(np.exp(joint - peak).sum(0) * (grid[1] - grid[0]))
    b = vae.bounds(X, n_particles=64)
    assert np.all(b["iwae"] >= b["elbo"])
    # IWAE <= log p(x) holds in expectation: the mean of 10 independent estimates stays below the
    # exact value up to 3 standard errors, and above the ELBO.
    iwae = np.array([vae.score(X, bound="iwae", n_particles=64, random_state=s) for s in range(10)])
    assert b["elbo"].mean() < iwae.mean() < exact.mean() + 3 * iwae.std(ddof=1) / np.sqrt(len(iwae))
    X_new, Z_new = vae.sample(200, random_state=0)
    assert Z_new.shape == (200, 1) and X_new.shape == (200, X.shape[1])
    assert set(np.unique(X_new)) <= set(np.unique(X)) | {0.0, 1.0, 2.0}
    recon = vae.inverse_transform(vae.transform(X))
    assert recon.shape == X.shape and np.all((recon >= 0) & (recon <= vae.n_categories_ - 1))


def test_samples_follow_the_linear_gaussian_marginal():
    X = ppca_data(300, seed=2)
    vae = VAE(2, **LINEAR, lr=0.02, max_epochs=20, early_stopping=False, random_state=0).fit(X)
    W, b, sigma = linear_decoder(vae)
    X_new, Z_new = vae.sample(20000, random_state=1)
    np.testing.assert_allclose(X_new.mean(0), b, atol=0.1)                    # sd of a mean <= 3.5 / sqrt(2e4)
    np.testing.assert_allclose(np.cov(X_new.T), W @ W.T + sigma ** 2 * np.eye(5), atol=0.35)
    np.testing.assert_allclose(vae.inverse_transform(Z_new[:5]), Z_new[:5] @ W.T + b, atol=1e-9)
    again, _ = vae.sample(20000, random_state=1)
    np.testing.assert_array_equal(X_new, again)


def test_save_load_round_trip(tmp_path):
    X = ppca_data(200, seed=3)
    vae = VAE(2, encoder_layers=(8,), decoder_layers=(8,), max_epochs=5, random_state=0).fit(X)
    path = tmp_path / "vae.probkit"
    vae.save(path)
    loaded = probkit.load(path)
    assert isinstance(loaded, VAE) and loaded.get_params() == vae.get_params()
    np.testing.assert_array_equal(loaded.transform(X), vae.transform(X))
    np.testing.assert_array_equal(loaded.score_samples(X), vae.score_samples(X))
    np.testing.assert_array_equal(loaded.sample(5, random_state=0)[0], vae.sample(5, random_state=0)[0])


def test_bad_input_is_refused_with_clear_errors():
    X = ppca_data(50)
    with pytest.raises(NotFittedError):
        VAE().transform(X)
    with pytest.raises(ValueError, match="likelihood"):
        VAE(likelihood="poisson").fit(X)
    with pytest.raises(ValueError, match="n_components"):
        VAE(0).fit(X)
    with pytest.raises(ValueError, match="encoder_layers"):
        VAE(encoder_layers=(8, 0)).fit(X)
    with pytest.raises(ValueError, match="0 and 1"):
        VAE(likelihood="bernoulli").fit(X)
    with pytest.raises(ValueError, match="non-integer"):
        VAE(likelihood="categorical").fit(X)
    with pytest.raises(ValueError, match="Negative"):
        VAE(likelihood="categorical").fit(-np.ones((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        VAE().fit(np.where(np.eye(50, 5) > 0, np.nan, X))
    with pytest.raises(ValueError, match="n_samples = 1"):
        VAE().fit(X[:1])
    cat = VAE(1, "categorical", n_categories=3, encoder_layers=(4,), decoder_layers=(4,), max_epochs=2,
              random_state=0).fit(np.array([[0, 1], [2, 1], [1, 0]] * 5))
    with pytest.raises(ValueError, match="category 3"):
        cat.transform(np.array([[3, 0]]))
    vae = VAE(2, encoder_layers=(4,), decoder_layers=(4,), max_epochs=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="5 features"):
        vae.transform(X[:, :3])
    with pytest.raises(ValueError, match="n_components=2"):
        vae.inverse_transform(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="bound"):
        vae.score(X, bound="exact")
    with pytest.raises(ValueError, match="n_particles"):
        vae.bounds(X, n_particles=0)
    with pytest.raises(ValueError, match="n_samples"):
        vae.sample(0)
