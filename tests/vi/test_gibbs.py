"""Gibbs samplers of conjugate mixtures and HMMs against exact posteriors.

Truths: closed-form conjugate posteriors; the exact posterior of a small mixture or HMM by
enumerating every assignment or state path with the parameters integrated out (Dirichlet-
multinomial and Poisson-Gamma marginal likelihoods written out here with scipy); the
brute-force path posterior of :func:`probkit.inference.brute_force_hmm` under fixed
parameters; NUTS (Pyro) on the earthquake HMM. Means must agree within 3 Monte Carlo
standard errors (from the sampler's own ESS) for a single quantity, within 4 for the
largest deviation over a vector of quantities (several comparisons at once).
"""

import itertools

import numpy as np
import pytest
from scipy.special import gammaln

from probkit.distributions import Dirichlet, Gamma, NormalGamma, Poisson
from probkit.inference import brute_force_hmm
from probkit.vi import ess, gibbs_hmm, gibbs_mixture, mcse, rhat

RNG = np.random.RandomState(0)


# ---------------------------------------------------------------------------- one component: exact posteriors
def test_normal_with_normal_gamma_prior():
    x = RNG.normal(3.0, 2.0, size=(20, 1))
    m0, k0, a0, b0 = 0.0, 1.0, 2.0, 2.0
    n, xbar = len(x), x.mean()
    kn, an = k0 + n, a0 + n / 2
    mn = (k0 * m0 + n * xbar) / kn
    bn = b0 + 0.5 * ((x - xbar) ** 2).sum() + k0 * n * (xbar - m0) ** 2 / (2 * kn)
    prior = NormalGamma(loc=m0, mean_precision=k0, concentration=a0, rate=b0)
    res = gibbs_mixture(x, "normal", 1, prior=prior, n_samples=1000, warmup=10, random_state=0)
    loc = res.samples["loc"][..., 0, 0]
    precision = res.samples["scale"][..., 0, 0] ** -2
    assert abs(loc.mean() - mn) < 3 * mcse(loc)
    assert abs(precision.mean() - an / bn) < 3 * mcse(precision)
    np.testing.assert_array_equal(res.samples["weights"], 1.0)


def test_poisson_with_gamma_prior():
    x = RNG.poisson(4.0, size=(30, 2))
    a, b = 2.0, 0.5
    res = gibbs_mixture(x, "poisson", 1, prior=Gamma(concentration=a, rate=b), n_samples=1000, warmup=10,
                        random_state=1)
    rate = res.samples["rate"][:, :, 0, :]
    exact = (a + x.sum(0)) / (b + len(x))
    assert np.all(np.abs(rate.mean(axis=(0, 1)) - exact) < 3 * mcse(rate))


def test_dirichlet_categorical():
    x = RNG.choice(4, p=[0.1, 0.2, 0.3, 0.4], size=(40, 1))
    alpha = np.array([0.5, 1.0, 2.0, 1.0])
    res = gibbs_mixture(x, "categorical", 1, prior=Dirichlet(concentration=alpha), n_samples=1000, warmup=10,
                        random_state=2)
    probs = res.samples["probs"][:, :, 0, 0, :]
    counts = np.bincount(x[:, 0], minlength=4)
    exact = (alpha + counts) / (alpha + counts).sum()
    assert np.all(np.abs(probs.mean(axis=(0, 1)) - exact) < 4 * mcse(probs))


# ---------------------------------------------------------------------------- a mixture, enumerated
X_MIX = np.array([[0], [1], [2], [3], [5], [7], [9], [12]], dtype=float)
A_MIX, B_MIX, ALPHA_MIX = 1.0, 0.2, 1.0


def _log_dirichlet_multinomial(counts, alpha):
    counts = np.asarray(counts, dtype=float)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=float), counts.shape)
    return (gammaln(alpha.sum(-1)) - gammaln(alpha.sum(-1) + counts.sum(-1))
            + (gammaln(alpha + counts) - gammaln(alpha)).sum(-1))


def _log_poisson_gamma(x, a, b):
    """log of the integral of prod_i Poisson(x_i | rate) Gamma(rate | a, b) over the rate."""
    s, n = x.sum(), len(x)
    return a * np.log(b) - gammaln(a) + gammaln(a + s) - (a + s) * np.log(b + n) - gammaln(x + 1).sum()


def _exact_mixture():
    x = X_MIX[:, 0]
    weights, coclustering, rate_of_first = [], [], []
    for z in itertools.product(range(2), repeat=len(x)):
        z = np.array(z)
        logp = _log_dirichlet_multinomial(np.bincount(z, minlength=2), ALPHA_MIX)
        logp += sum(_log_poisson_gamma(x[z == k], A_MIX, B_MIX) for k in range(2))
        weights.append(logp)
        coclustering.append(z[:, None] == z[None, :])
        k0 = z[0]
        rate_of_first.append((A_MIX + x[z == k0].sum()) / (B_MIX + (z == k0).sum()))
    w = np.exp(np.array(weights) - max(weights))
    w /= w.sum()
    return np.tensordot(w, np.array(coclustering, dtype=float), 1), float(w @ np.array(rate_of_first))


@pytest.mark.parametrize("collapsed", [False, True])
def test_mixture_matches_the_enumerated_posterior(collapsed):
    exact_co, exact_rate = _exact_mixture()
    res = gibbs_mixture(X_MIX, "poisson", 2, prior=Gamma(concentration=A_MIX, rate=B_MIX),
                        weight_concentration=ALPHA_MIX, collapsed=collapsed, n_samples=1000 if collapsed else 2000,
                        warmup=100, store_assignments=True, random_state=3)
    z = res.samples["assignments"]                                   # (chains, draws, n)
    co = (z[..., :, None] == z[..., None, :]).astype(float)          # label-invariant
    iu = np.triu_indices(len(X_MIX), 1)
    co_pairs = co[..., iu[0], iu[1]]
    err = mcse(co_pairs)
    assert np.all(np.abs(co_pairs.mean(axis=(0, 1)) - exact_co[iu]) < 4 * err)
    rate = res.samples["rate"][..., 0]                               # (chains, draws, K)
    rate_first = np.take_along_axis(rate, z[..., :1], axis=-1)[..., 0]
    assert abs(rate_first.mean() - exact_rate) < 3 * mcse(rate_first)
    # log p(X | weights, rates) recomputed from the draws
    w, lam = res.samples["weights"][0, -1], rate[0, -1]
    loglik = np.log((w * np.exp(Poisson(rate=lam).log_prob(X_MIX[:, 0]))).sum(1)).sum()
    assert res.sample_stats["log_likelihood"][0, -1] == pytest.approx(loglik, rel=1e-10)


def test_gaussian_mixture_recovers_separated_clusters():
    X = np.r_[RNG.normal([0, 0], 0.5, (60, 2)), RNG.normal([4, 1], 0.5, (40, 2))]
    res = gibbs_mixture(X, "gaussian", 2, n_samples=200, warmup=100, random_state=4)
    means = res.samples["mean"].reshape(-1, 2, 2)
    order = np.argsort(means[:, :, 0], axis=1)
    sorted_means = np.take_along_axis(means, order[:, :, None], axis=1).mean(0)
    np.testing.assert_allclose(sorted_means, [[0, 0], [4, 1]], atol=0.25)
    weights = np.take_along_axis(res.samples["weights"].reshape(-1, 2), order, axis=1).mean(0)
    np.testing.assert_allclose(weights, [0.6, 0.4], atol=0.1)


def test_same_seed_same_draws_and_chains_differ():
    a = gibbs_mixture(X_MIX, "poisson", 2, n_samples=20, warmup=5, random_state=5)
    b = gibbs_mixture(X_MIX, "poisson", 2, n_samples=20, warmup=5, random_state=5)
    np.testing.assert_array_equal(a.samples["rate"], b.samples["rate"])
    assert not np.array_equal(a.samples["rate"][0], a.samples["rate"][1])


# ---------------------------------------------------------------------------- HMMs
START = np.array([0.6, 0.4])
TRANS = np.array([[0.8, 0.2], [0.3, 0.7]])
RATES = np.array([[1.0], [6.0]])
X_HMM = np.array([[0], [2], [1], [7], [5], [4], [8], [1], [0]], dtype=float)


def test_fixed_parameter_paths_match_brute_force():
    lengths = [5, 4]
    res = gibbs_hmm(X_HMM, "poisson", 2, lengths=lengths, update="", store_states=True, n_samples=3000, warmup=0,
                    init={"startprob": START, "transmat": TRANS, "emission": Poisson(rate=RATES)}, random_state=6)
    states = res.samples["states"]
    log_emis = Poisson(rate=RATES[:, 0]).log_prob(X_HMM[:, 0])
    offset = 0
    for length in lengths:
        exact = brute_force_hmm(np.log(START), np.log(TRANS), log_emis[offset:offset + length])
        occupancy = (states[..., offset:offset + length] == 1).astype(float)
        # Under fixed parameters every draw is an independent exact path: the standard error of
        # an occupancy frequency is binomial (the ESS-based estimate is poor for rare states).
        p = exact.posteriors[:, 1]
        assert np.all(np.abs(occupancy.mean(axis=(0, 1)) - p) < 4 * np.sqrt(p * (1 - p) / occupancy[..., 0].size))
        assert np.all(ess(occupancy[..., 1:3]) > 0.8 * occupancy[..., 0].size)
        pairs = ((states[..., offset:offset + length - 1] == 0) & (states[..., offset + 1:offset + length] == 1))
        pairs = pairs.astype(float).sum(-1)
        assert abs(pairs.mean() - exact.expected_transitions[0, 1]) < 3 * mcse(pairs)
        offset += length
    # the parameters stayed where they were put
    np.testing.assert_array_equal(res.samples["transmat"][0, 5], TRANS)
    np.testing.assert_array_equal(res.sample_stats["log_likelihood"][0, 0], res.sample_stats["log_likelihood"][1, 7])


def _exact_hmm(x, a, b, alpha_start, alpha_trans):
    n = len(x)
    logps, same, rate_first = [], [], []
    for z in itertools.product(range(2), repeat=n):
        z = np.array(z)
        logp = _log_dirichlet_multinomial(np.bincount(z[:1], minlength=2), alpha_start)
        counts = np.zeros((2, 2))
        np.add.at(counts, (z[:-1], z[1:]), 1)
        logp += _log_dirichlet_multinomial(counts, alpha_trans).sum()
        logp += sum(_log_poisson_gamma(x[z == k], a, b) for k in range(2))
        logps.append(logp)
        same.append(z[:-1] == z[1:])
        rate_first.append((a + x[z == z[0]].sum()) / (b + (z == z[0]).sum()))
    w = np.exp(np.array(logps) - max(logps))
    w /= w.sum()
    return w @ np.array(same, dtype=float), float(w @ np.array(rate_first))


def test_full_bayesian_hmm_matches_enumeration():
    x = X_HMM[:8]
    a, b = 2.0, 0.5
    exact_same, exact_rate = _exact_hmm(x[:, 0], a, b, 1.0, 1.0)
    res = gibbs_hmm(x, "poisson", 2, startprob_prior=1.0, transmat_prior=1.0,
                    emission_prior=Gamma(concentration=a, rate=b), store_states=True, n_samples=3000, warmup=100,
                    random_state=7)
    z = res.samples["states"]
    same = (z[..., :-1] == z[..., 1:]).astype(float)
    assert np.all(np.abs(same.mean(axis=(0, 1)) - exact_same) < 4 * mcse(same))
    rate_first = np.take_along_axis(res.samples["rate"][..., 0], z[..., :1], axis=-1)[..., 0]
    assert abs(rate_first.mean() - exact_rate) < 3 * mcse(rate_first)


@pytest.mark.slow(reason="NUTS (Pyro) on the 107-year HMM takes one to several minutes on two shared cores")
def test_earthquake_hmm_gibbs_agrees_with_nuts():
    from probkit import VariationalHMM
    from probkit.datasets import load_earthquakes

    _, counts = load_earthquakes()
    X = counts.reshape(-1, 1).astype(float)
    nuts = VariationalHMM(2, emission="poisson", inference="nuts", num_samples=100, warmup_steps=50,
                          random_state=0).fit(X)
    prior = nuts.prior_
    gibbs = gibbs_hmm(X, "poisson", 2, startprob_prior=nuts.startprob_prior_, transmat_prior=nuts.transmat_prior_,
                      emission_prior=Gamma(concentration=nuts.lambdas_prior_, rate=nuts.lambdas_weight_),
                      n_samples=1000, warmup=200, random_state=0)
    assert prior["emission"].batch_shape == (2, 1)

    def ordered(rate, trans):  # relabel every draw so that state 0 has the lower rate
        flip = rate[..., 0, 0] > rate[..., 1, 0]
        rate = np.where(flip[..., None, None], rate[..., ::-1, :], rate)
        trans = np.where(flip[..., None, None], trans[..., ::-1, ::-1], trans)
        return rate[..., 0], np.stack([trans[..., 0, 0], trans[..., 1, 1]], -1)

    g_rate, g_stay = ordered(gibbs.samples["rate"], gibbs.samples["transmat"])
    n_rate, n_stay = ordered(nuts.posterior_samples_["rate"][None], nuts.posterior_samples_["transmat"][None])
    for g, n in ((g_rate, n_rate), (g_stay, n_stay)):
        tol = 4 * np.sqrt(mcse(g) ** 2 + mcse(n) ** 2)
        assert np.all(np.abs(g.mean(axis=(0, 1)) - n.mean(axis=(0, 1))) < tol)
    assert np.all(rhat(g_rate) < 1.05)  # chains agree once labels are ordered


def test_hmm_argument_errors():
    with pytest.raises(ValueError, match="update must be"):
        gibbs_hmm(X_HMM, "poisson", 2, update="sx")
    with pytest.raises(ValueError, match="keeps the other parameters fixed"):
        gibbs_hmm(X_HMM, "poisson", 2, update="e")
    init = {"startprob": START, "transmat": TRANS, "emission": Poisson(rate=RATES)}
    with pytest.raises(ValueError, match="shapes"):
        gibbs_hmm(X_HMM, "poisson", 3, init=init)
    with pytest.raises(TypeError, match="fitted Poisson"):
        gibbs_hmm(X_HMM, "poisson", 2, init={**init, "emission": Gamma(concentration=[1.0, 2.0], rate=1.0)})
    with pytest.raises(ValueError, match="lengths"):
        gibbs_hmm(X_HMM, "poisson", 2, lengths=[3, 3])
    with pytest.raises(ValueError, match="no conjugate prior"):
        gibbs_mixture(X_MIX, "laplace", 2)
    with pytest.raises(ValueError, match="non-negative integer counts"):
        gibbs_mixture(-X_MIX - 1, "poisson", 2)
