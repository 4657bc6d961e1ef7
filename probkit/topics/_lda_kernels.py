"""numba kernels of variational LDA: the per-document E-step and the per-word bound.

Documents are rows of a CSR matrix (``indptr``, ``indices``, ``data``); every kernel
handles a contiguous block of documents and releases the GIL, so the caller can run
blocks on threads, each with its own statistics accumulator.
"""

from __future__ import annotations

import math

import numpy as np

from probkit.inference._numba_kernels import _jit


@_jit()
def digamma(x):
    """``psi(x)`` for ``x > 0``: recurrence up to ``x >= 10``, then the asymptotic series.

    The truncation error of the series at ``x >= 10`` is below ``1e-15`` (the next term is
    ``691 / (32760 x^12)``).
    """
    result = 0.0
    while x < 10.0:
        result -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    series = f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f * (1.0 / 132)))))
    return result + math.log(x) - 0.5 / x - series


@_jit()
def _exp_expected_log(gamma, out):
    """``out = exp(E[log theta])`` for ``theta ~ Dirichlet(gamma)``."""
    total = 0.0
    for k in range(gamma.shape[0]):
        total += gamma[k]
    psi_total = digamma(total)
    for k in range(gamma.shape[0]):
        out[k] = math.exp(digamma(gamma[k]) - psi_total)


@_jit()
def e_step_block(indptr, indices, data, exp_topic_word, gamma, alpha, max_iter, tol, eps, want_stats, stats,
                 d_begin, d_end):
    """Coordinate ascent on ``q(theta_d) = Dirichlet(gamma_d)`` for documents ``[d_begin, d_end)``.

    ``exp_topic_word`` is ``exp(E[log beta])`` transposed, (V, K); ``gamma`` (D, K) holds the
    starting values and receives the result. Each document iterates
    ``gamma_dk = alpha + exp(E log theta_dk) sum_w n_dw exp(E log beta_kw) / norm_dw`` with
    ``norm_dw = sum_k exp(E log theta_dk) exp(E log beta_kw) + eps`` until the mean absolute
    change of ``gamma_d`` is below ``tol`` or after ``max_iter`` updates (Blei et al. 2003;
    the stopping rule and ``eps`` of scikit-learn). With ``want_stats`` the expected counts
    ``sum_d n_dw exp(E log theta_dk) / norm_dw`` are added to ``stats`` (V, K); the caller
    multiplies them by ``exp(E[log beta])``.
    """
    n_topics = gamma.shape[1]
    exp_theta = np.empty(n_topics)
    last = np.empty(n_topics)
    acc = np.empty(n_topics)
    for d in range(d_begin, d_end):
        lo = indptr[d]
        hi = indptr[d + 1]
        norm = np.empty(hi - lo)
        g = gamma[d]
        _exp_expected_log(g, exp_theta)
        for _ in range(max_iter):
            for k in range(n_topics):
                last[k] = g[k]
                acc[k] = 0.0
            for j in range(lo, hi):
                row = exp_topic_word[indices[j]]
                s = 0.0
                for k in range(n_topics):
                    s += exp_theta[k] * row[k]
                ratio = data[j] / (s + eps)
                for k in range(n_topics):
                    acc[k] += ratio * row[k]
            change = 0.0
            for k in range(n_topics):
                g[k] = exp_theta[k] * acc[k] + alpha
                change += abs(g[k] - last[k])
            _exp_expected_log(g, exp_theta)
            if change / n_topics < tol:
                break
        if want_stats:
            for j in range(lo, hi):
                row = exp_topic_word[indices[j]]
                s = 0.0
                for k in range(n_topics):
                    s += exp_theta[k] * row[k]
                norm[j - lo] = data[j] / (s + eps)
            for j in range(lo, hi):
                out = stats[indices[j]]
                for k in range(n_topics):
                    out[k] += exp_theta[k] * norm[j - lo]


@_jit()
def word_bound_block(indptr, indices, data, expected_log_theta, expected_log_beta_t, d_begin, d_end):
    """``sum_d sum_w n_dw log sum_k exp(E log theta_dk + E log beta_kw)`` over a block of documents.

    ``expected_log_beta_t`` is (V, K).
    """
    n_topics = expected_log_theta.shape[1]
    total = 0.0
    for d in range(d_begin, d_end):
        theta = expected_log_theta[d]
        for j in range(indptr[d], indptr[d + 1]):
            row = expected_log_beta_t[indices[j]]
            top = -np.inf
            for k in range(n_topics):
                v = theta[k] + row[k]
                if v > top:
                    top = v
            s = 0.0
            for k in range(n_topics):
                s += math.exp(theta[k] + row[k] - top)
            total += data[j] * (top + math.log(s))
    return total
