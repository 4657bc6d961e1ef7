"""Exact log evidence of tiny Bayesian mixtures and HMMs, by enumeration and conjugate marginals.

Written with numpy/scipy only (no probkit code), so the tests compare probkit's variational
bounds against an independent computation.
"""

import itertools

import numpy as np
from scipy.special import gammaln, logsumexp, multigammaln


def nw_log_marginal(X, m0, kappa0, nu0, psi0):
    """log p(X) of rows X (n, d) under x ~ N(mu, inv(L)), (mu, L) ~ NormalWishart(m0, kappa0, nu0, inv(psi0))."""
    n, d = X.shape
    if n == 0:
        return 0.0
    xbar = X.mean(0)
    S = (X - xbar).T @ (X - xbar)
    kn = kappa0 + n
    nun = nu0 + n
    diff = (xbar - m0)[:, None]
    psin = psi0 + S + kappa0 * n / kn * (diff @ diff.T)
    return float(-0.5 * n * d * np.log(np.pi) + 0.5 * d * (np.log(kappa0) - np.log(kn))
                 + multigammaln(0.5 * nun, d) - multigammaln(0.5 * nu0, d)
                 + 0.5 * nu0 * np.linalg.slogdet(psi0)[1] - 0.5 * nun * np.linalg.slogdet(psin)[1])


def dirichlet_multinomial(counts, alpha):
    """log of E_{p ~ Dir(alpha)}[prod_i p_i^counts_i] (a sequence of draws, no multinomial coefficient)."""
    counts = np.asarray(counts, dtype=float)
    alpha = np.asarray(alpha, dtype=float)
    return float(gammaln(alpha.sum()) - gammaln(alpha.sum() + counts.sum()) + (gammaln(alpha + counts) - gammaln(alpha)).sum())


def stick_breaking_log_prob(counts, gamma):
    """log E[prod_k pi_k^{n_k}] under v_k ~ Beta(1, gamma), pi_k = v_k prod_{j<k}(1 - v_j), k = 1..K."""
    counts = np.asarray(counts, dtype=float)
    later = np.concatenate([np.cumsum(counts[::-1])[::-1][1:], [0.0]])
    lbeta = lambda a, b: gammaln(a) + gammaln(b) - gammaln(a + b)  # noqa: E731
    return float(np.sum(lbeta(1 + counts, gamma + later) - lbeta(1.0, gamma)))


def mixture_log_evidence(X, k, weight_type, weight_prior, m0, kappa0, nu0, psi0):
    """log sum_z p(z) prod_k p(X_k): all k^n assignments (n must be tiny)."""
    n = X.shape[0]
    terms = []
    for z in itertools.product(range(k), repeat=n):
        z = np.asarray(z)
        counts = np.bincount(z, minlength=k)
        if weight_type == "dirichlet_process":
            lw = stick_breaking_log_prob(counts, weight_prior)
        else:
            lw = dirichlet_multinomial(counts, np.full(k, weight_prior))
        terms.append(lw + sum(nw_log_marginal(X[z == j], m0, kappa0, nu0, psi0) for j in range(k)))
    return float(logsumexp(terms))


def poisson_gamma_log_marginal(x, a, b):
    """log p(x) of counts x under x_i ~ Poisson(r), r ~ Gamma(a, rate b)."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return 0.0
    s, n = x.sum(), x.size
    return float(a * np.log(b) - gammaln(a) + gammaln(a + s) - (a + s) * np.log(b + n) - gammaln(x + 1).sum())


def hmm_log_evidence(sequences, k, start_prior, trans_prior, emission_log_marginal):
    """log sum over all state paths of p(paths) * emission marginal, for a Bayesian HMM.

    ``emission_log_marginal(state, rows)`` gives log p(rows) for the observations assigned to
    ``state`` (conjugate marginal). ``start_prior`` (k,), ``trans_prior`` (k, k).
    """
    lengths = [len(s) for s in sequences]
    X = np.concatenate(sequences, 0)
    total = sum(lengths)
    terms = []
    for path in itertools.product(range(k), repeat=total):
        path = np.asarray(path)
        start_counts = np.zeros(k)
        trans_counts = np.zeros((k, k))
        offset = 0
        for L in lengths:
            p = path[offset:offset + L]
            start_counts[p[0]] += 1
            for a, b in zip(p[:-1], p[1:]):
                trans_counts[a, b] += 1
            offset += L
        lp = dirichlet_multinomial(start_counts, start_prior)
        lp += sum(dirichlet_multinomial(trans_counts[i], trans_prior[i]) for i in range(k))
        lp += sum(emission_log_marginal(j, X[path == j]) for j in range(k))
        terms.append(lp)
    return float(logsumexp(terms))


def normal_gamma_log_marginal(x, m0, kappa0, a0, b0):
    """log p(x) of scalars x under x_i ~ N(mu, 1/tau), tau ~ Gamma(a0, rate b0), mu | tau ~ N(m0, 1/(kappa0 tau))."""
    x = np.asarray(x, dtype=float)
    n = x.size
    if n == 0:
        return 0.0
    xbar = x.mean()
    kn = kappa0 + n
    an = a0 + 0.5 * n
    bn = b0 + 0.5 * ((x - xbar) ** 2).sum() + 0.5 * kappa0 * n * (xbar - m0) ** 2 / kn
    return float(gammaln(an) - gammaln(a0) + a0 * np.log(b0) - an * np.log(bn) + 0.5 * np.log(kappa0 / kn)
                 - 0.5 * n * np.log(2 * np.pi))


def hmm_path_log_likelihood(log_start, log_trans, log_emis_rows):
    """log p(x) of one sequence by summing over all K^T paths (log_emis_rows: (T, K))."""
    T, K = log_emis_rows.shape
    scores = []
    for path in itertools.product(range(K), repeat=T):
        s = log_start[path[0]] + log_emis_rows[0, path[0]]
        for t in range(1, T):
            s += log_trans[path[t - 1], path[t]] + log_emis_rows[t, path[t]]
        scores.append(s)
    return float(logsumexp(scores))
