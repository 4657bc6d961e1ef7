"""Mixture-weight priors of the Bayesian mixtures: finite Dirichlet and truncated Dirichlet process.

``dirichlet_distribution``: ``pi ~ Dirichlet(alpha0, ..., alpha0)``; ``q(pi) = Dirichlet(alpha)``.

``dirichlet_process``: stick-breaking, ``v_k ~ Beta(1, gamma)`` and
``pi_k = v_k prod_{j<k} (1 - v_j)``, with ``q(v_k) = Beta(a_k, b_k)`` for the first
``K = n_components`` sticks and the assignments restricted to those ``K`` components
(the truncation of scikit-learn's ``BayesianGaussianMixture``). The evidence lower bound
is then a bound on ``p(X, every z_n <= K)``; the weights of the ``K`` components sum
to less than one and are renormalised for display (``weights_``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from probkit.distributions.dirichlet import dirichlet_expected_log

__all__ = ["WEIGHT_PRIOR_TYPES", "check_weight_prior", "expected_log_weights", "log_weight_normaliser",
           "prior_log_normaliser", "weight_kl",
           "weight_posterior", "weights_from_concentration"]

WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


def _lbeta(a, b):
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def weight_posterior(nk, prior, prior_type):
    """``q`` of the weights from the expected counts ``nk`` (K,): a tensor ``alpha`` or a pair ``(a, b)``."""
    if prior_type == "dirichlet_process":
        later = torch.flip(torch.cumsum(torch.flip(nk, [0]), 0), [0]) - nk  # sum_{j > k} n_j
        later = torch.clamp(later, min=0.0)
        return (1.0 + nk, prior + later)
    return prior + nk


def expected_log_weights(conc, prior_type):
    """``E_q[log pi_k]`` (K,)."""
    if prior_type == "dirichlet_process":
        a, b = conc
        dsum = torch.digamma(a + b)
        log_v = torch.digamma(a) - dsum
        log_1mv = torch.digamma(b) - dsum
        return log_v + torch.cat([torch.zeros(1, dtype=a.dtype, device=a.device), torch.cumsum(log_1mv, 0)[:-1]])
    return dirichlet_expected_log(conc)


def log_weight_normaliser(conc, prior_type):
    """``log B`` of the weight distribution: ``sum_k lbeta(a_k, b_k)`` or ``sum lgamma(alpha) - lgamma(sum alpha)``."""
    if prior_type == "dirichlet_process":
        a, b = conc
        return _lbeta(a, b).sum()
    return torch.lgamma(conc).sum() - torch.lgamma(conc.sum())


def prior_log_normaliser(prior, n_components, prior_type):
    """``log B`` of the prior (``K lbeta(1, gamma)`` or ``K lgamma(a0) - lgamma(K a0)``) as a float."""
    if prior_type == "dirichlet_process":
        return n_components * (math.lgamma(1.0) + math.lgamma(prior) - math.lgamma(1.0 + prior))
    return n_components * math.lgamma(prior) - math.lgamma(n_components * prior)


def weight_kl(conc, prior, prior_type):
    """``KL(q(pi) || p(pi))`` (sum over sticks for the Dirichlet process)."""
    if prior_type == "dirichlet_process":
        a, b = conc
        a0 = torch.ones_like(a)
        b0 = torch.full_like(b, float(prior))
        da, db, dab = torch.digamma(a), torch.digamma(b), torch.digamma(a + b)
        return (_lbeta(a0, b0) - _lbeta(a, b) + (a - a0) * (da - dab) + (b - b0) * (db - dab)).sum()
    alpha = conc
    alpha0 = torch.full_like(alpha, float(prior))
    total = alpha.sum()
    return (torch.lgamma(total) - torch.lgamma(alpha0.sum()) - (torch.lgamma(alpha) - torch.lgamma(alpha0)).sum()
            + ((alpha - alpha0) * (torch.digamma(alpha) - torch.digamma(total))).sum())


def weights_from_concentration(conc, prior_type):
    """Posterior-mean weights (numpy, summing to one), as scikit-learn's ``weights_``."""
    if prior_type == "dirichlet_process":
        a, b = (np.asarray(c, dtype=np.float64) for c in conc)
        total = a + b
        w = a / total * np.hstack((1.0, np.cumprod(b / total)[:-1]))
        return w / w.sum()
    alpha = np.asarray(conc, dtype=np.float64)
    return alpha / alpha.sum()


def check_weight_prior(prior_type, prior, n_components):
    """Validate ``weight_concentration_prior_type`` / ``weight_concentration_prior``; return the resolved prior."""
    if prior_type not in WEIGHT_PRIOR_TYPES:
        raise ValueError(f"weight_concentration_prior_type must be one of {WEIGHT_PRIOR_TYPES}, got {prior_type!r}")
    if prior is None:
        return 1.0 / n_components
    if isinstance(prior, bool) or not isinstance(prior, (int, float, np.integer, np.floating)) or not np.isfinite(prior):
        raise ValueError(f"weight_concentration_prior must be a positive number, got {prior!r}")
    if prior <= 0:
        raise ValueError(f"weight_concentration_prior must be positive (a Dirichlet/Beta concentration), got {prior!r}")
    return float(prior)
