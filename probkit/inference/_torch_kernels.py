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
(``sqrt(finfo(dtype).tiny)``), and forward-only calls on transition matrices with
structural zeros are verified by :func:`backward_check_scaled`; the public functions
recompute flagged sequences in log space, so both implementations return the same
answers (the argument is in the ``probkit.inference`` docstring).

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


def _emission_shift(log_emission):
    """Row maxima of the log emissions (0 for all -inf rows), detached.

    Subtracting a per-step constant leaves every posterior unchanged and moves the
    log-likelihood by that constant, whose gradient then cancels exactly; working with
    shifted rows keeps the recursions' magnitudes near zero, where float64 resolves them
    (an emission of -1e17 would otherwise erase differences of order one).
    """
    shift = log_emission.detach().amax(dim=-1)
    return torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))


def _shifted_emission(log_emission):
    """exp(log_emission - rowmax) and the row maxima (see :func:`_emission_shift`)."""
    shift = _emission_shift(log_emission)
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
    shift = _emission_shift(log_emission)
    log_emission = log_emission - shift.unsqueeze(-1)
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
    log_norms = torch.stack(log_norms, dim=1) + shift
    log_norms = torch.where(mask, log_norms, torch.zeros_like(log_norms))
    return torch.stack(las, dim=1), log_norms.sum(dim=1)


# ---------------------------------------------------------------------------------------
# Backward (posteriors and expected transitions)
# ---------------------------------------------------------------------------------------


def backward_scaled(log_transmat, alpha, emis, mask, all_full):
    """Scaled backward recursion given the scaled forward results.

    The expected transitions sum_t (alpha_t / Z_t) w_{t+1}^T (times A) are formed after
    the loop as one batched matrix product of the stacked (B, T-1, K) factors, so every
    operation inside the loop is (B, K)-sized: per-step (B, K, K) outer products were
    2-3 orders of magnitude slower on a busy CPU, where torch hands tensors above 32k
    elements to its thread pool.

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
    u_factors = [None] * (n_steps - 1)
    w_factors = [None] * (n_steps - 1)
    failed = torch.zeros(batch, dtype=torch.bool, device=alpha.device)
    for t in range(n_steps - 2, -1, -1):
        w = emis[:, t + 1] * beta
        b = _propagate_back(w, _step_matrix(trans, layout, t + 1))
        g = alpha[:, t] * b
        z = g.sum(-1)
        valid = mask[:, t + 1]
        failed = failed | (valid & (z < floor))
        z_safe = torch.where(valid & (z > 0), z, torch.ones_like(z))
        gamma = g / z_safe.unsqueeze(-1)
        u = alpha[:, t] / z_safe.unsqueeze(-1)
        d = b.sum(-1)
        new_beta = b / torch.where(d > 0, d, torch.ones_like(d)).unsqueeze(-1)
        if all_full:
            posteriors[t] = gamma
            beta = new_beta
        else:
            # Step t is the last real step of a sequence when step t + 1 is padding: its
            # posterior is the filtered distribution and the backward message restarts at 1.
            posteriors[t] = torch.where(valid[:, None], gamma, alpha[:, t]) * maskf[:, t, None]
            u = u * valid.to(u.dtype).unsqueeze(-1)
            beta = torch.where(valid[:, None], new_beta, torch.ones_like(new_beta))
        u_factors[t] = u
        w_factors[t] = w
    if n_steps > 1:
        U = torch.stack(u_factors, dim=1)
        W = torch.stack(w_factors, dim=1)
        if layout == "time":
            expected = torch.einsum("btk,btl,btkl->bkl", U, W, trans[:, 1:])
        else:
            expected = (U.transpose(1, 2) @ W) * trans
    else:
        expected = alpha.new_zeros(batch, n_states, n_states)
    return torch.stack(posteriors, dim=1), expected, failed


def scaled_forward_is_exact(log_transmat):
    """Whether the scaled forward pass alone is exact (no structural or tiny transitions).

    Mirrors ``_numba_backend.scaled_forward_is_exact``: every transition probability must
    be at least the floor times the largest row sum. For time-varying matrices the unused
    entry ``[:, 0]`` is ignored.
    """
    trans = torch.exp(log_transmat.detach())
    if trans.ndim == 4:
        trans = trans[:, 1:]
    if trans.numel() == 0:
        return True
    floor = scaled_floor(trans.dtype)
    return bool(trans.min() >= floor * max(1.0, float(trans.sum(-1).max())))


def backward_check_scaled(log_transmat, alpha, emis, mask, all_full):
    """Backward sweep that only checks the scaled forward results (no gradients).

    Returns a BoolTensor (B,) marking sequences where some Z_t = alpha_t . (A (e_{t+1}
    beta_{t+1})) fell below the floor, i.e. where probability the forward pass flushed to
    zero could matter; those must be recomputed in log space.
    """
    layout = transition_layout(log_transmat)
    floor = scaled_floor(alpha.dtype)
    with torch.no_grad():
        trans = torch.exp(log_transmat)
        alpha, emis = alpha.detach(), emis.detach()
        beta = torch.ones_like(alpha[:, 0])
        failed = torch.zeros(alpha.shape[0], dtype=torch.bool, device=alpha.device)
        for t in range(alpha.shape[1] - 2, -1, -1):
            b = _propagate_back(emis[:, t + 1] * beta, _step_matrix(trans, layout, t + 1))
            z = (alpha[:, t] * b).sum(-1)
            d = b.sum(-1)
            new_beta = b / torch.where(d > 0, d, torch.ones_like(d)).unsqueeze(-1)
            if all_full:
                failed = failed | (z < floor)
                beta = new_beta
            else:
                valid = mask[:, t + 1]
                failed = failed | (valid & (z < floor))
                beta = torch.where(valid[:, None], new_beta, torch.ones_like(new_beta))
    return failed


def backward_log(log_transmat, log_emission, log_alpha, mask, all_full):
    """Log-space backward recursion given the log-space forward results.

    Returns posteriors (B, T, K) (zero on padding and for impossible sequences) and
    expected transitions (B, K, K).
    """
    layout = transition_layout(log_transmat)
    batch, n_steps, n_states = log_alpha.shape
    log_emission = log_emission - _emission_shift(log_emission).unsqueeze(-1)
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
            scores = delta.unsqueeze(-1) + lt
            # amax + argmax rather than max(dim): torch 2.13's values-and-indices
            # reduction was measured at 12 ms (vs 5 us) for a (3, 19, 19) tensor with two
            # intra-op threads on a busy machine. argmax returns the first maximum.
            best, arg = scores.amax(dim=-2), scores.argmax(dim=-2)
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
        best_last, state = delta.amax(dim=-1), delta.argmax(dim=-1)
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


# ---------------------------------------------------------------------------------------
# Chunked forward (log-likelihood only): sequential depth ~ T / L + L instead of T
# ---------------------------------------------------------------------------------------


def _safe_log(x):
    """log(x) for x >= 0 with log(0) = -inf and a zero (not NaN) gradient there."""
    positive = x > 0
    return torch.where(positive, torch.log(torch.where(positive, x, torch.ones_like(x))), torch.full_like(x, _NEG_INF))


def forward_scaled_chunked(log_startprob, log_transmat, log_emission, mask, all_full, chunk_size):
    """Scaled log-likelihood through products of per-chunk transfer matrices.

    Steps 1..T-1 are cut into chunks of ``chunk_size`` steps. Phase 1 multiplies, for all
    chunks at once, the step matrices ``A_t * e_t[None, :]`` of each chunk (one batched
    (K, K) product per step of a chunk, ``chunk_size`` sequential steps). Every row of a
    running product (one per start state) is normalised by its own sum, whose log is
    kept, so rows of very different probability never underflow each other. Phase 2
    carries the filtered distribution across chunks (one sequential step per chunk).
    The work grows by a factor K; the sequential depth drops from T to about
    ``T / chunk_size + chunk_size``, which is what matters on a GPU.

    Returns ``(log_likelihood (B,), failed (B,))``; ``failed`` marks sequences where a
    normaliser fell below the floor or where probability flushed to zero at a chunk
    boundary could have mattered (same guarantee as the step-by-step recursion).
    """
    layout = transition_layout(log_transmat)
    dtype = log_emission.dtype
    floor = scaled_floor(dtype)
    log_floor = float(torch.log(torch.tensor(floor, dtype=torch.float64)))
    log_tiny = float(torch.log(torch.tensor(torch.finfo(dtype).tiny, dtype=torch.float64)))
    batch, n_steps, n_states = log_emission.shape
    emis, shift = _shifted_emission(log_emission)
    shift = shift * mask.to(dtype)

    a = torch.exp(log_startprob) * emis[:, 0]
    c = a.sum(-1)
    failed = ~(c >= floor)
    c_safe = torch.where(c > 0, c, torch.ones_like(c))
    alpha = a / c_safe.unsqueeze(-1)
    log_likelihood = torch.log(c_safe) + shift.sum(dim=1)
    n_trans = n_steps - 1
    if n_trans == 0:
        return log_likelihood, failed

    trans = torch.exp(log_transmat)
    if layout == "time":
        step_trans = trans[:, 1:]
    elif layout == "batch":
        step_trans = trans.unsqueeze(1)
    else:
        step_trans = trans.view(1, 1, n_states, n_states)
    # M[b, s, i, j] = A_s[i, j] e_s[j] for the transition into step s + 1.
    steps = step_trans * emis[:, 1:].unsqueeze(-2)
    eye = torch.eye(n_states, dtype=dtype, device=log_emission.device)
    if not all_full:
        steps = torch.where(mask[:, 1:, None, None], steps, eye)
    n_chunks = -(-n_trans // chunk_size)
    pad = n_chunks * chunk_size - n_trans
    if pad:
        steps = torch.cat([steps, eye.expand(batch, pad, n_states, n_states)], dim=1)
    steps = steps.view(batch, n_chunks, chunk_size, n_states, n_states)

    product = eye.expand(batch, n_chunks, n_states, n_states)
    row_logs = []
    for l in range(chunk_size):
        product = product @ steps[:, :, l]
        r = product.sum(-1)
        failed = failed | (r < floor).flatten(1).any(dim=1)
        r_safe = torch.where(r > 0, r, torch.ones_like(r))
        product = product / r_safe.unsqueeze(-1)
        row_logs.append(r_safe)
    # One log of all row normalisers instead of one per step (transcendental ops are the
    # expensive ones inside a loop of small torch calls).
    log_scale = torch.log(torch.stack(row_logs, dim=0)).sum(dim=0)

    for k in range(n_chunks):
        w = _safe_log(alpha) + log_scale[:, k]
        m = w.detach().amax(-1)
        m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        coef = torch.exp(w - m_safe.unsqueeze(-1))
        v = torch.bmm(coef.unsqueeze(1), product[:, k]).squeeze(1)
        z = v.sum(-1)
        # Entries of alpha flushed to zero (below tiny) could have carried at most
        # K * tiny * exp(max log_scale); compared with exp(m) that must stay below the floor.
        failed = failed | (m < log_scale[:, k].detach().amax(-1) + log_tiny - log_floor) | ~(z >= 1.0 - 1e-6)
        z_safe = torch.where(z > 0, z, torch.ones_like(z))
        alpha = v / z_safe.unsqueeze(-1)
        log_likelihood = log_likelihood + m_safe + torch.log(z_safe)
    return log_likelihood, failed
