"""Batched HMM recursions in pure torch over padded sequences (CPU or CUDA, differentiable).

Shapes: ``B`` sequences padded to length ``T`` with ``K`` states. ``mask[b, t]`` is True
for the real steps (a prefix of every row, at least one step). Transition matrices come
in three layouts, normalised by :func:`transition_layout`:

* ``(K, K)`` shared by every sequence and step,
* ``(B, K, K)`` one per sequence,
* ``(B, T, K, K)`` time-varying; ``[b, t]`` moves step ``t - 1`` into step ``t``.

Each recursion exists twice. "scaling" works with normalised probabilities and one
matrix product per step (fast, also on GPU); "log" works with log-probabilities and a
log-sum-exp over ``(B, K, K)`` per step (exact for any dynamic range). The scaled
recursions report, per sequence, whether a step normaliser fell below ``floor``
(``sqrt(finfo(dtype).tiny)``); the public functions recompute those sequences in log
space, so both implementations return the same answers.

Zero probabilities (-inf) never produce NaN, neither in values nor in gradients: every
log-sum-exp whose inputs are all -inf returns -inf through a branch whose gradient is 0.
"""

from __future__ import annotations

import torch

_NEG_INF = float("-inf")


def scaled_floor(dtype):
    """Smallest step normaliser the scaled recursions accept for ``dtype``."""
    return torch.finfo(dtype).tiny ** 0.5


def safe_logsumexp(x, dim):
    """``logsumexp`` that is -inf, with zero gradient, where all inputs along ``dim`` are -inf.

    ``torch.logsumexp`` returns -inf there too, but its gradient is NaN (exp(-inf + inf)).
    """
    m = x.detach().amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = torch.exp(x - m).sum(dim=dim, keepdim=True)
    positive = s > 0
    log_s = torch.log(torch.where(positive, s, torch.ones_like(s)))
    out = torch.where(positive, log_s + m, torch.full_like(s, _NEG_INF))
    return out.squeeze(dim)


def _safe_subtract(x, z):
    """``x - z[..., None]`` with -inf rows (z = -inf) mapped to -inf instead of NaN."""
    z_safe = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
    return x - z_safe.unsqueeze(-1)


def transition_layout(log_transmat):
    """Name of the transition layout: "shared" (K, K), "batch" (B, K, K) or "time" (B, T, K, K)."""
    return {2: "shared", 3: "batch", 4: "time"}[log_transmat.ndim]


def _step_matrix(trans, layout, t):
    """Transition matrix used to enter step ``t`` ((K, K) or (B, K, K))."""
    return trans[:, t] if layout == "time" else trans


def _propagate(alpha, trans_t):
    """Row vectors times matrices: (B, K) @ (K, K) or batched (B, K) @ (B, K, K)."""
    if trans_t.ndim == 2:
        return alpha @ trans_t
    return torch.bmm(alpha.unsqueeze(1), trans_t).squeeze(1)


def _propagate_back(w, trans_t):
    """Matrices times column vectors: trans @ w for (K, K) or batched (B, K, K)."""
    if trans_t.ndim == 2:
        return w @ trans_t.T
    return torch.bmm(trans_t, w.unsqueeze(-1)).squeeze(-1)


def _shifted_emission(log_emission):
    """exp(log_emission - rowmax) and the row maxima (0 for all -inf rows), both detached-shift."""
    shift = log_emission.detach().amax(dim=-1)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    return torch.exp(log_emission - shift.unsqueeze(-1)), shift


# ---------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------


def forward_scaled(log_startprob, log_transmat, log_emission, mask, all_full):
    """Scaled forward recursion.

    Returns
    -------
    alpha : Tensor (B, T, K)
        Filtered distributions; on padding the last real step's row is repeated.
    log_likelihood : Tensor (B,)
    failed : BoolTensor (B,)
        Sequences with a step normaliser below the floor (results not to be used).
    emis : Tensor (B, T, K)
        The shifted emission probabilities (reused by the backward pass).
    """
    layout = transition_layout(log_transmat)
    floor = scaled_floor(log_emission.dtype)
    trans = torch.exp(log_transmat)
    emis, shift = _shifted_emission(log_emission)
    batch, n_steps, _ = log_emission.shape

    a = torch.exp(log_startprob) * emis[:, 0]
    c = a.sum(-1)
    norms = [c]
    alpha = a / torch.where(c > 0, c, torch.ones_like(c)).unsqueeze(-1)
    alphas = [alpha]
    for t in range(1, n_steps):
        a = _propagate(alpha, _step_matrix(trans, layout, t)) * emis[:, t]
        c = a.sum(-1)
        norms.append(c)
        new_alpha = a / torch.where(c > 0, c, torch.ones_like(c)).unsqueeze(-1)
        alpha = new_alpha if all_full else torch.where(mask[:, t, None], new_alpha, alpha)
        alphas.append(alpha)
    norms = torch.stack(norms, dim=1)
    failed = ((norms < floor) & mask).any(dim=1)
    safe_norms = torch.where(mask & (norms > 0), norms, torch.ones_like(norms))
    log_likelihood = ((torch.log(safe_norms) + shift) * mask).sum(dim=1)
    return torch.stack(alphas, dim=1), log_likelihood, failed, emis


def forward_log(log_startprob, log_transmat, log_emission, mask, all_full):
    """Log-space forward recursion with per-step normalisation.

    Returns
    -------
    log_alpha : Tensor (B, T, K)
        Log filtered distributions (-inf rows once a sequence became impossible);
        padding repeats the last real row.
    log_likelihood : Tensor (B,)
        -inf for impossible sequences.
    """
    layout = transition_layout(log_transmat)
    batch, n_steps, _ = log_emission.shape
    v = log_startprob + log_emission[:, 0]
    z = safe_logsumexp(v, -1)
    log_norms = [z]
    la = _safe_subtract(v, z)
    las = [la]
    for t in range(1, n_steps):
        lt = _step_matrix(log_transmat, layout, t)
        v = safe_logsumexp(la.unsqueeze(-1) + lt, dim=-2) + log_emission[:, t]
        z = safe_logsumexp(v, -1)
        log_norms.append(z)
        new_la = _safe_subtract(v, z)
        la = new_la if all_full else torch.where(mask[:, t, None], new_la, la)
        las.append(la)
    log_norms = torch.stack(log_norms, dim=1)
    log_norms = torch.where(mask, log_norms, torch.zeros_like(log_norms))
    return torch.stack(las, dim=1), log_norms.sum(dim=1)


# ---------------------------------------------------------------------------------------
# Backward (posteriors and expected transitions)
# ---------------------------------------------------------------------------------------


def backward_scaled(log_transmat, alpha, emis, mask, all_full):
    """Scaled backward recursion given the scaled forward results.

    Returns
    -------
    posteriors : Tensor (B, T, K), zero on padding
    expected_transitions : Tensor (B, K, K), summed over the steps of each sequence
    failed : BoolTensor (B,)
    """
    layout = transition_layout(log_transmat)
    floor = scaled_floor(alpha.dtype)
    trans = torch.exp(log_transmat)
    batch, n_steps, n_states = alpha.shape
    maskf = mask.to(alpha.dtype)
    beta = torch.ones_like(alpha[:, 0])
    posteriors = [None] * n_steps
    posteriors[-1] = alpha[:, -1] * maskf[:, -1, None]
    outer_sum = alpha.new_zeros(batch, n_states, n_states)
    failed = torch.zeros(batch, dtype=torch.bool, device=alpha.device)
    for t in range(n_steps - 2, -1, -1):
        trans_next = _step_matrix(trans, layout, t + 1)
        w = emis[:, t + 1] * beta
        b = _propagate_back(w, trans_next)
        g = alpha[:, t] * b
        z = g.sum(-1)
        valid = mask[:, t + 1]
        failed = failed | (valid & (z < floor))
        z_safe = torch.where(valid & (z > 0), z, torch.ones_like(z))
        gamma = g / z_safe.unsqueeze(-1)
        outer = (alpha[:, t] / z_safe.unsqueeze(-1)).unsqueeze(-1) * w.unsqueeze(-2)
        if layout == "time":
            outer = outer * trans_next
        d = b.sum(-1)
        d_safe = torch.where(d > 0, d, torch.ones_like(d))
        new_beta = b / d_safe.unsqueeze(-1)
        if all_full:
            posteriors[t] = gamma
            outer_sum = outer_sum + outer
            beta = new_beta
        else:
            # Step t is the last real step of a sequence when step t + 1 is padding: its
            # posterior is the filtered distribution and the backward message restarts at 1.
            posteriors[t] = torch.where(valid[:, None], gamma, alpha[:, t]) * maskf[:, t, None]
            outer_sum = outer_sum + outer * valid.to(alpha.dtype)[:, None, None]
            beta = torch.where(valid[:, None], new_beta, torch.ones_like(new_beta))
    expected = outer_sum if layout == "time" else outer_sum * trans
    return torch.stack(posteriors, dim=1), expected, failed


def backward_log(log_transmat, log_emission, log_alpha, mask, all_full):
    """Log-space backward recursion given the log-space forward results.

    Returns posteriors (B, T, K) (zero on padding and for impossible sequences) and
    expected transitions (B, K, K).
    """
    layout = transition_layout(log_transmat)
    batch, n_steps, n_states = log_alpha.shape
    maskf = mask.to(log_alpha.dtype)
    lb = torch.zeros_like(log_alpha[:, 0])
    posteriors = [None] * n_steps
    posteriors[-1] = torch.exp(log_alpha[:, -1]) * maskf[:, -1, None]
    expected = log_alpha.new_zeros(batch, n_states, n_states)
    for t in range(n_steps - 2, -1, -1):
        lt = _step_matrix(log_transmat, layout, t + 1)
        lw = log_emission[:, t + 1] + lb
        lb_new = safe_logsumexp(lt + lw.unsqueeze(-2), dim=-1)
        lg = log_alpha[:, t] + lb_new
        log_z = safe_logsumexp(lg, -1)
        gamma = torch.exp(_safe_subtract(lg, log_z))
        log_z_safe = torch.where(torch.isfinite(log_z), log_z, torch.zeros_like(log_z))
        xi = torch.exp(
            log_alpha[:, t].unsqueeze(-1) + lt + lw.unsqueeze(-2) - log_z_safe[:, None, None]
        )
        new_lb = _safe_subtract(lb_new, safe_logsumexp(lb_new, -1))
        if all_full:
            posteriors[t] = gamma
            expected = expected + xi
            lb = new_lb
        else:
            valid = mask[:, t + 1]
            posteriors[t] = torch.where(valid[:, None], gamma, torch.exp(log_alpha[:, t])) * maskf[:, t, None]
            expected = expected + xi * valid.to(xi.dtype)[:, None, None]
            lb = torch.where(valid[:, None], new_lb, torch.zeros_like(new_lb))
    return torch.stack(posteriors, dim=1), expected


# ---------------------------------------------------------------------------------------
# Viterbi
# ---------------------------------------------------------------------------------------


def viterbi_log(log_startprob, log_transmat, log_emission, mask, all_full):
    """Batched Viterbi. Returns (log_prob (B,), paths (B, T) with -1 on padding).

    Scores are re-centred to max 0 at every step (the shifts are summed separately) so
    long sequences keep full precision. Ties go to the lowest state index. Impossible
    sequences get -inf and a path of -1.
    """
    layout = transition_layout(log_transmat)
    batch, n_steps, n_states = log_emission.shape
    device = log_emission.device
    with torch.no_grad():
        delta = log_startprob + log_emission[:, 0]
        m = delta.amax(-1)
        offset = m
        delta = _safe_subtract(delta, m)
        identity = torch.arange(n_states, device=device).expand(batch, n_states)
        backpointers = [identity]
        for t in range(1, n_steps):
            lt = _step_matrix(log_transmat, layout, t)
            best, arg = (delta.unsqueeze(-1) + lt).max(dim=-2)
            new_delta = best + log_emission[:, t]
            m = new_delta.amax(-1)
            new_delta = _safe_subtract(new_delta, m)
            if all_full:
                delta, offset = new_delta, offset + m
                backpointers.append(arg)
            else:
                valid = mask[:, t]
                delta = torch.where(valid[:, None], new_delta, delta)
                offset = offset + torch.where(valid, m, torch.zeros_like(m))
                backpointers.append(torch.where(valid[:, None], arg, identity))
        best_last, state = delta.max(dim=-1)
        log_prob = offset + best_last
        states = [state]
        for t in range(n_steps - 1, 0, -1):
            state = backpointers[t].gather(1, state.unsqueeze(1)).squeeze(1)
            states.append(state)
        paths = torch.stack(states[::-1], dim=1)
        possible = torch.isfinite(log_prob)
        paths = torch.where(mask & possible[:, None], paths, torch.full_like(paths, -1))
        log_prob = torch.where(possible, log_prob, torch.full_like(log_prob, _NEG_INF))
    return log_prob, paths
