"""Chunked torch implementation of the RWKV-7 recurrence (the ``cpu`` backend of :func:`~.rwkv7.rwkv7`).

Per head, with the state ``S`` of shape ``(K, V)`` (rows indexed by keys), the recurrence is::

    S_t = diag(exp(w_t)) S_{t-1} + b_t (a_t^T S_{t-1}) + k_t v_t^T,      o_t = S_t^T r_t

The sequence is cut into chunks of ``T`` steps.  Inside a chunk, with ``lam_t`` the inclusive
cumulative log-decay from the chunk start and ``lex_t = lam_t - w_t`` the exclusive one, the
"pseudo-values" ``u_t = S_{t-1}^T a_t`` of the rank-one terms solve a unit lower-triangular
system (the WY / UT transform of the chunked delta rule)::

    (I - A_ab) U = A_ak V + (a o exp(lex)) S_0
    A_ak[t, s] = sum_i a_t[i] k_s[i] exp(lex_t[i] - lam_s[i])           (s < t)
    A_ab[t, s] = sum_i a_t[i] b_s[i] exp(lex_t[i] - lam_s[i])           (s < t)

after which the outputs and the final state of the chunk are matrix products::

    O   = A_rk V + A_rb U + (r o exp(lam)) S_0        A_r*[t, s]: r_t, exp(lam_t - lam_s), s <= t
    S_T = diag(exp(lam_T)) S_0 + (k o exp(lam_T - lam))^T V + (b o exp(lam_T - lam))^T U

With ``[U_loc | W] = (I - A_ab)^{-1} [A_ak V | a o exp(lex)]``, computed for every chunk at
once, a chunk's ``U = U_loc + W S_0``: only that product and the state update run chunk after
chunk; the outputs are again formed for all chunks at once.

The four ``T x T`` matrices come from one matrix product ``[a^; r^] [k^; -b^]^T`` of the
vectors scaled by ``exp(+-lam)``, factored at the chunk start, when the total log-decay of
every chunk is within :data:`SAFE_SPAN` (always for RWKV-7's decays at the default chunk of
32); that path has a hand-written backward (:class:`_OneBlockChunks`), and both its
directions run block by block of consecutive chunks small enough to stay in cache, each
block carried from the cumulative log-decays to the outputs (or to the input gradients)
before the next, so that no whole-sequence intermediate is formed but what the backward
keeps.  Otherwise the chunk is
split into sub-blocks of ``Ts <= 16`` steps, each weight ``exp(x_t - lam_s)`` is factored at
the start of the row's sub-block (both factors bounded), with pairwise ``(Ts, Ts, K)``
weights inside the diagonal sub-blocks when even a sub-block's decay is too large
(:func:`pair_matrices`); that path is differentiated by autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: largest log-decay sum over a block for which its weights are factored: beyond, float32
#: factors lose digits (their error grows with the exponents) and float64 ones could overflow
SAFE_SPAN = {torch.float32: 30.0, torch.float64: 600.0}
DEFAULT_CHUNK = 32
MAX_SUB = 16
#: elements per tensor in one block of chunks, forward and backward (fits in a core's cache)
BLOCK_ELEMENTS = 1 << 17


def default_chunk(L):
    """Chunk length of the ``cpu`` path: 32, or ``L`` when the sequence is shorter."""
    return max(1, min(DEFAULT_CHUNK, L))


def sub_block(T):
    """Sub-block length: the largest divisor of ``T`` that is at most 16."""
    return next(s for s in range(min(MAX_SUB, T), 0, -1) if T % s == 0)


def pair_matrices(rowv, rowlam, colv, collam, strict_rows, Ts, ct):
    """``M[t, s] = sum_i rowv[t, i] colv[s, i] exp(rowlam[t, i] - collam[s, i])``, causal part.

    ``rowv``/``rowlam`` are ``(..., R, T, K)`` (``R`` row sets), ``colv`` is ``(..., C, T, K)``
    and ``collam`` ``(..., T, K)`` (the same for every column set); the result is
    ``(..., R, C, T, T)``, zero above the diagonal and, for the row sets flagged in
    ``strict_rows``, on it.  Needs ``rowlam[t] <= collam[s]`` for ``s <= t`` and ``rowlam[t]``
    at most the log-decay just before ``t``'s sub-block of ``Ts`` steps (log-decays are <= 0).
    """
    lead = rowv.shape[:-3]
    R, T, K = rowv.shape[-3:]
    Cn = colv.shape[-3]
    ns = T // Ts
    dev = rowv.device
    # log-decay just before each sub-block (0 before the first): the factorisation points
    ends = collam[..., Ts - 1::Ts, :]  # (..., ns, K)
    starts = F.pad(ends[..., :-1, :], (0, 0, 1, 0))
    factored_diag = Ts == 1 or float((starts - ends).detach().amax()) <= SAFE_SPAN.get(ct, 30.0)
    blk = torch.arange(T, device=dev) // Ts
    own = torch.arange(ns, device=dev)[:, None]
    keep = (blk[None, :] <= own) if factored_diag else (blk[None, :] < own)  # (ns, T)
    # rows: exp(rowlam_t - start of t's sub-block) <= 1, laid out (..., ns, R * Ts, K)
    rl = rowlam.reshape(*lead, R, ns, Ts, K) - starts.unsqueeze(-2).unsqueeze(-4)
    rows = (rowv.reshape(*lead, R, ns, Ts, K) * torch.exp(rl.to(ct))).transpose(-4, -3)
    rows = rows.reshape(*lead, ns, R * Ts, K)
    # columns, one copy per row sub-block: exp(start - collam_s) where bounded, else 0
    ce = starts.unsqueeze(-2) - collam.unsqueeze(-3)  # (..., ns, T, K)
    ce = torch.where(keep[:, :, None], ce, torch.full((), float("-inf"), dtype=ce.dtype, device=dev))
    cols = colv.unsqueeze(-4) * torch.exp(ce.to(ct)).unsqueeze(-3)  # (..., ns, C, T, K)
    M = torch.matmul(rows, cols.reshape(*lead, ns, Cn * T, K).transpose(-1, -2))
    n = len(lead)
    M = M.view(*lead, ns, R, Ts, Cn, T).permute(*range(n), n + 1, n + 3, n, n + 2, n + 4)
    M = M.reshape(*lead, R, Cn, T, T)
    if not factored_diag:  # pairwise weights inside the diagonal sub-blocks
        rl = rowlam.reshape(*lead, R, 1, ns, Ts, 1, K)
        cl = collam.reshape(*lead, 1, 1, ns, 1, Ts, K)
        i = torch.arange(Ts, device=dev)
        low = torch.stack([(i[:, None] > i[None, :]) if s else (i[:, None] >= i[None, :])
                           for s in strict_rows]).view(R, 1, 1, Ts, Ts, 1)
        expo = torch.where(low, rl - cl, torch.full((), float("-inf"), dtype=rl.dtype, device=dev))
        diag = (rowv.reshape(*lead, R, 1, ns, Ts, 1, K) * colv.reshape(*lead, 1, Cn, ns, 1, Ts, K)
                * torch.exp(expo.to(ct))).sum(-1)  # (..., R, C, ns, Ts, Ts)
        eye = torch.eye(ns, dtype=ct, device=dev).view(ns, 1, ns, 1)
        M = M + (diag.unsqueeze(-2) * eye).reshape(*lead, R, Cn, T, T)
    i = torch.arange(T, device=dev)
    masks = torch.stack([(i[:, None] > i[None, :]) if s else (i[:, None] >= i[None, :])
                         for s in strict_rows])  # (R, T, T)
    return M * masks.view(R, 1, T, T).to(ct)


def _quarter_masks(T, ct, device):
    """(2T, 2T) mask of the stacked ``[[A_ak, A_ab], [A_rk, A_rb]]``: strict then inclusive rows."""
    i = torch.arange(T, device=device)
    strict = (i[:, None] > i[None, :]).repeat(1, 2)
    incl = (i[:, None] >= i[None, :]).repeat(1, 2)
    return torch.cat([strict, incl], 0).to(ct)


def _chunk_core(X, A_rk, N_rb, rh, kt, bt, eT, v, S):
    """The state passing and the outputs, given the solved ``X = [U_loc | W]``.

    ``N_rb = -A_rb``; ``rh = r o exp(lam)``, ``kt, bt = (k, b) o exp(lam_T - lam)``,
    ``eT = exp(lam_T)`` ``(..., nc, 1, K)``.  Returns the outputs and the final state;
    differentiable by autograd.
    """
    V = v.shape[-1]
    U_loc, W = X[..., :V], X[..., V:]
    kv = kt.mT @ v
    Us, sts = [], []
    # unbind once: indexing chunk by chunk would make autograd write a full-size gradient per chunk
    for U_c, W_c, kv_c, bt_c, e_c in zip(*(t.unbind(2) for t in (U_loc, W, kv, bt, eT))):
        U_c = U_c + W_c @ S
        sts.append(S)
        Us.append(U_c)
        S = torch.addcmul(kv_c, e_c.mT, S) + bt_c.mT @ U_c
    U, starts = torch.stack(Us, 2), torch.stack(sts, 2)
    O = A_rk @ v - N_rb @ U + rh @ starts
    return O, S


def _decay_factors(lam, ct):
    """``exp(lex)``, ``exp(lam)``, ``exp(lam_T - lam)``, ``exp(lam_T)`` in ``ct``, each exponent
    formed in float64 from the inclusive cumulative log-decay ``lam`` (any total decay)."""
    Er = torch.exp(lam.to(ct))
    Ea = F.pad(Er[..., :-1, :], (0, 0, 1, 0), value=1.0)
    return Ea, Er, torch.exp((lam[..., -1:, :] - lam).to(ct)), Er[..., -1:, :]


def _one_block_factors(Er):
    """``exp(lex)``, ``exp(-lam)``, ``exp(lam_T - lam)``, ``exp(lam_T)`` from ``Er = exp(lam)``.

    One exponential does when the chunk's total decay is within :data:`SAFE_SPAN`:
    ``exp(lex_t) = exp(lam_{t-1})``, ``exp(-lam) = 1 / exp(lam)`` and ``exp(lam_T - lam) =
    exp(lam_T) exp(-lam)``.
    """
    Ea = F.pad(Er[..., :-1, :], (0, 0, 1, 0), value=1.0)
    Ec = torch.reciprocal(Er)
    eT = Er[..., -1:, :]
    return Ea, Ec, eT * Ec, eT


def _block_ranges(nc, per_chunk):
    """``(start, end)`` of consecutive blocks of chunks of about :data:`BLOCK_ELEMENTS`
    elements per tensor (``per_chunk`` elements per chunk, all heads)."""
    size = max(1, BLOCK_ELEMENTS // per_chunk)
    return [(s, min(s + size, nc)) for s in range(0, nc, size)]


def _gather(x, s, e, dtype=None):
    """Chunks ``s..e-1`` of ``x`` ``(BH, nc, T, d)``, chunk-major: a contiguous ``((e-s) BH, T, d)``."""
    blk = x[:, s:e].transpose(0, 1).to(dtype=dtype or x.dtype, memory_format=torch.contiguous_format)
    return blk.reshape(-1, *x.shape[2:])


def _mul_into(out, x, s, e, factor):
    """``out = `` chunks ``s..e-1`` of ``x`` ``(BH, nc, T, d)`` times ``factor`` (chunk-major)."""
    n = e - s
    torch.mul(x[:, s:e].transpose(0, 1), factor.view(n, -1, *factor.shape[1:]),
              out=out.view(n, -1, *out.shape[1:]))
    return out


def _scatter(out, blk, s, e):
    """Writes the chunk-major block ``blk`` into chunks ``s..e-1`` of ``out`` ``(BH, nc, T, d)``."""
    out[:, s:e].copy_(blk.view(e - s, -1, *blk.shape[1:]).transpose(0, 1))


def _reverse_cumsum(x, dim):
    return x.sum(dim, keepdim=True) - x.cumsum(dim) + x


def _scaled_operands(raw, s, e, Er, rows, cols, kt, bt):
    """Fills ``rows = [a^, r^]``, ``cols = [k^, -b^]`` and ``kt, bt = (k, b) o exp(lam_T - lam)``
    of chunks ``s..e-1`` (chunk-major) from the inputs ``raw = (r, k, a, b)`` and ``Er = exp(lam)``;
    returns the factors ``exp(lex), exp(-lam), exp(lam_T - lam), exp(lam_T)``."""
    r, k, a, b = raw
    T = Er.shape[-2]
    Ea, Ec, Et, eT = _one_block_factors(Er)
    _mul_into(rows[:, :T], a, s, e, Ea)
    _mul_into(rows[:, T:], r, s, e, Er)
    _mul_into(cols[:, :T], k, s, e, Ec)
    _mul_into(cols[:, T:], b, s, e, Ec).neg_()
    _mul_into(kt, k, s, e, Et)
    _mul_into(bt, b, s, e, Et)
    return Ea, Ec, Et, eT


def _chunk_grads(s, e, raw, v, rows, cols, M, inv, U_loc, W, U, S_c, S_next, kt, Ea, Er, Ec, Et,
                 gO, dU, dSn, outs):
    """Gradients to ``r, w, k, v, a, b`` of chunks ``s..e-1`` (chunk-major ``(n, T, .)`` blocks),
    given the output gradient ``gO``, the pseudo-value gradients ``dU`` and the state gradients
    ``dSn`` after each chunk; written into ``outs``, the gradients' ``(chunks, BH, T, .)`` views.

    ``raw`` holds the inputs ``r, k, a, b`` ``(BH, nc, T, K)``; ``S_c``/``S_next`` are the states
    before/after each chunk.  Products go to their own outputs (no concatenation); the quarters
    of ``dM``, the gradient of ``M = [[A_ak, -A_ab], [A_rk, -A_rb]]``, are masked in place
    (strict for the ``a`` rows, inclusive for the ``r`` rows).
    """
    T, n = v.shape[-2], e - s
    A_ak, A_rk = M[:, :T, :T], M[:, T:, :T]
    ah, rh = rows[:, :T], rows[:, T:]
    kh, nbh = cols[:, :T], cols[:, T:]
    # through the state passing and the outputs
    dkt, dbt = torch.bmm(v, dSn.mT), torch.bmm(U, dSn.mT)
    drh, dW = torch.bmm(gO, S_c.mT), torch.bmm(dU, S_c.mT)
    # back through the solve X = Inv [A_ak V | a^] = [U_loc | W]
    dR_v, dR_w = torch.bmm(inv.mT, dU), torch.bmm(inv.mT, dW)
    dA_ak = torch.bmm(dR_v, v.mT).tril_(-1)
    dN_ab = torch.bmm(dR_v, U_loc.mT).baddbmm_(dR_w, W.mT).neg_().tril_(-1)
    dA_rk = torch.bmm(gO, v.mT).tril_()
    dN_rb = torch.bmm(gO, U.mT).neg_().tril_()
    dv = torch.bmm(kt, dSn).baddbmm_(A_rk.mT, gO).baddbmm_(A_ak.mT, dR_v)
    # back to rows = [a^, r^] and cols = [k^, -b^]
    dah = torch.bmm(dA_ak, kh).baddbmm_(dN_ab, nbh).add_(dR_w)
    drh.baddbmm_(dA_rk, kh).baddbmm_(dN_rb, nbh)
    dkh = torch.bmm(dA_ak.mT, ah).baddbmm_(dA_rk.mT, rh)
    dnbh = torch.bmm(dN_ab.mT, ah).baddbmm_(dN_rb.mT, rh)  # d(-b^)
    # and to the inputs, in their own layout
    def c4(t):
        return t.view(n, -1, *t.shape[1:])

    r, k, a, b = (x[:, s:e].transpose(0, 1) for x in raw)
    g_r, g_w, g_k, g_v, g_a, g_b = outs
    dr = torch.mul(c4(drh), c4(Er), out=g_r)
    da = torch.mul(c4(dah), c4(Ea), out=g_a)
    dk = torch.mul(c4(dkh), c4(Ec), out=g_k).addcmul_(c4(dkt), c4(Et))
    db = torch.mul(c4(dbt), c4(Et), out=g_b).addcmul_(c4(dnbh), c4(Ec), value=-1.0)
    g_v.copy_(c4(dv))
    # d lam of every factor exp(+-lam ...): x^ o d(x^) = x o dx, with the signs of the
    # exponents; the last step's lam_T also scales the state (through e^{lam_T}, k~ and b~),
    # which sums to <dS_{c+1}, S_{c+1}> per key
    dlex = a * da
    dlam = torch.mul(r, dr).addcmul_(k, dk, value=-1.0).addcmul_(b, db, value=-1.0).add_(dlex)
    dlam[..., -1, :] += c4((dSn * S_next).sum(-1))
    torch.sub(_reverse_cumsum(dlam, -2), dlex, out=g_w)


class _OneBlockChunks(torch.autograd.Function):
    """Chunked RWKV-7 with one factorisation point per chunk, and a hand-written backward.

    Inputs are chunked ``(BH, nc, T, .)`` (batch and heads flattened), ``S0`` is ``(BH, K, V)``.
    With ``rows = [a^, r^]``, ``cols = [k^, -b^]`` (``x^ = x o exp(+-lam)``), ``M = rows cols^T``
    masked holds ``A_ak, -A_ab, A_rk, -A_rb``; ``Inv = (I - A_ab)^{-1}`` (from a triangular
    solve against the identity) gives ``X = Inv [A_ak V | a^]``.  Backward, chunk adjoints
    ``dS`` passed from the last chunk to the first: ``dU_c = A_rb^T g + b~ dS_{c+1}``,
    ``dS_c = e^{lam_T} o dS_{c+1} + r^^T g + W^T dU_c``; then ``dX = [dU | dU S_c^T]`` goes back
    through the solve (``dR = Inv^T dX``, ``dA_ab = dR X^T``), the four matrices back to
    ``rows`` and ``cols``, and every ``x^`` to ``x`` and to the cumulative log-decays, whose
    reverse cumulative sum is ``dw``.

    Both directions run on blocks of consecutive chunks of all heads small enough to stay in
    cache (:func:`_block_ranges`), laid out chunk-major ``(chunks * BH, ., .)`` so that each
    chunk's heads are one batch of the sequential state passing: every step, from the
    cumulative log-decays to the outputs (forward) or to the input gradients (backward),
    runs on one block before the next; only what the backward needs is written to
    whole-sequence buffers.
    """

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, S0):
        BH, nc, T, K = r.shape
        V, ct, dev = v.shape[-1], r.dtype, r.device
        mask = _quarter_masks(T, ct, dev)
        eye = torch.eye(T, dtype=ct, device=dev)
        blocks = _block_ranges(nc, BH * T * max(K, V))
        save = any(ctx.needs_input_grad)
        kept = dict(M=(2 * T, 2 * T), inv=(T, T), U_loc=(T, V), W=(T, K), U=(T, V), Er=(T, K))
        if save:  # what the backward cannot cheaply recompute, written block by block in place;
            # the states end with the final one
            saved = {n: r.new_empty(nc * BH, *shp) for n, shp in kept.items()}
            states = r.new_empty((nc + 1) * BH, K, V)
        O = r.new_empty(BH, nc, T, V)
        S = S0
        for s, e in blocks:
            N = (e - s) * BH
            if save:
                buf = {n: t[s * BH:e * BH] for n, t in saved.items()}
                st = states[s * BH:(e + 1) * BH]
            else:
                buf = {n: r.new_empty(N, *shp) for n, shp in kept.items()}
                st = r.new_empty(N + BH, K, V)
            if not save or s == 0:
                st[:BH] = S
            lam = torch.cumsum(_gather(w, s, e, torch.float64), -2)
            Er = buf["Er"].copy_(lam).exp_()
            rows, cols = r.new_empty(N, 2 * T, K), r.new_empty(N, 2 * T, K)
            kt, bt = torch.empty_like(Er), torch.empty_like(Er)
            eT = _scaled_operands((r, k, a, b), s, e, Er, rows, cols, kt, bt)[-1]
            vb = _gather(v, s, e)
            M = torch.bmm(rows, cols.mT, out=buf["M"]).mul_(mask)
            inv = torch.linalg.solve_triangular(M[:, :T, T:], eye.expand(N, T, T), upper=False,
                                                unitriangular=True, out=buf["inv"])
            U_loc = torch.bmm(inv, torch.bmm(M[:, :T, :T], vb), out=buf["U_loc"])
            W = torch.bmm(inv, rows[:, :T], out=buf["W"])
            kv = torch.bmm(kt.mT, vb)
            U = buf["U"]
            for j in range(e - s):  # the state passing, chunk after chunk (all heads at once)
                c, nxt = slice(j * BH, (j + 1) * BH), slice((j + 1) * BH, (j + 2) * BH)
                torch.baddbmm(U_loc[c], W[c], st[c], out=U[c])
                torch.addcmul(kv[c], eT[c].mT, st[c], out=st[nxt]).baddbmm_(bt[c].mT, U[c])
            S = st[N:]
            Ob = torch.bmm(rows[:, T:], st[:N]).baddbmm_(M[:, T:, :T], vb)
            Ob.baddbmm_(M[:, T:, T:], U, alpha=-1.0)
            _scatter(O, Ob, s, e)
        if save:
            ctx.save_for_backward(r, k, a, b, v, states, *saved.values())
            ctx.blocks = blocks
        ctx.set_materialize_grads(False)
        return O, S.clone()

    @staticmethod
    def backward(ctx, gO, gS):
        r, k, a, b, v, states, M, inv, U_loc, W, U, Er = ctx.saved_tensors
        BH, nc, T, K = r.shape
        V = v.shape[-1]
        dS = states.new_zeros(BH, K, V) if gS is None else gS.to(states.dtype)
        grads = [r.new_empty(BH, nc, T, d) for d in (K, K, K, V, K, K)]  # r, w, k, v, a, b
        for s, e in reversed(ctx.blocks):
            N, blk = (e - s) * BH, slice(s * BH, e * BH)
            Erb, Wb = Er[blk], W[blk]
            rows, cols = r.new_empty(N, 2 * T, K), r.new_empty(N, 2 * T, K)
            kt, bt = torch.empty_like(Erb), torch.empty_like(Erb)
            Ea, Ec, Et, eT = _scaled_operands((r, k, a, b), s, e, Erb, rows, cols, kt, bt)
            gOb = v.new_zeros(N, T, V) if gO is None else _gather(gO, s, e, v.dtype)
            P = torch.bmm(M[blk, T:, T:].mT, gOb)  # -dU from the outputs
            Q = torch.bmm(rows[:, T:].mT, gOb)  # dS_c from the outputs
            dSn, dU = v.new_empty(N, K, V), v.new_empty(N, T, V)
            dSn[N - BH:] = dS
            for j in range(e - s - 1, -1, -1):  # the adjoint state passing, last chunk first
                c = slice(j * BH, (j + 1) * BH)
                dS = dSn[c]
                torch.baddbmm(P[c], bt[c], dS, beta=-1.0, out=dU[c])
                prv = dSn[c.start - BH:c.start] if j else torch.empty_like(dS)
                dS = torch.addcmul(Q[c], eT[c].mT, dS, out=prv).baddbmm_(Wb[c].mT, dU[c])
            _chunk_grads(s, e, (r, k, a, b), _gather(v, s, e), rows, cols, M[blk], inv[blk], U_loc[blk],
                         Wb, U[blk], states[blk], states[(s + 1) * BH:(e + 1) * BH], kt, Ea, Erb, Ec, Et,
                         gOb, dU, dSn, [g[:, s:e].transpose(0, 1) for g in grads])
        return (*grads, dS if ctx.needs_input_grad[6] else None)


def rwkv7_chunked(r, w, k, v, a, b, state0, T, ct):
    """Outputs ``(batch, heads, L, V)`` (in ``ct``) and final state ``(batch, heads, K, V)``."""
    bsz, H, L, K = r.shape
    V = v.shape[-1]
    dev = r.device
    nc = (L + T - 1) // T
    pad = nc * T - L

    def chunked(x):  # (b, H, L, d) -> (b, H, nc, T, d), zero padded: padding leaves S unchanged
        x = x.to(ct)
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(bsz, H, nc, T, x.shape[-1])

    rc, wc, kc, vc, ac, bc = (chunked(x) for x in (r, w, k, v, a, b))
    S0 = torch.zeros(bsz, H, K, V, dtype=ct, device=dev) if state0 is None else state0.to(ct)
    # every chunk's total log-decay, in the compute dtype: its few ulps of rounding do not
    # matter against the threshold's margin
    if float(-wc.detach().sum(-2).amin()) <= SAFE_SPAN.get(ct, 30.0):
        flat = (x.reshape(bsz * H, nc, T, x.shape[-1]) for x in (rc, wc, kc, vc, ac, bc))
        o, S = _OneBlockChunks.apply(*flat, S0.reshape(bsz * H, K, V))
        return o.reshape(bsz, H, nc * T, V)[:, :, :L], S.reshape(bsz, H, K, V)
    # sub-blocks (and pairwise diagonal blocks), differentiated by autograd; cumulative
    # log-decays in float64: exponents are differences of them, and in float32 a long strong
    # decay would leave only a few correct digits in each difference
    wd = wc.to(torch.float64)
    lam = torch.cumsum(wd, dim=-2)
    lex = lam - wd
    M = pair_matrices(torch.stack([ac, rc], -3), torch.stack([lex, lam], -3),
                      torch.stack([kc, bc], -3), lam, (True, False), sub_block(T), ct)
    Ea, Er, Et, eT = _decay_factors(lam, ct)
    rhs = torch.cat([M[..., 0, 0, :, :] @ vc, ac * Ea], -1)
    X = torch.linalg.solve_triangular(-M[..., 0, 1, :, :], rhs, upper=False, unitriangular=True)
    o, S = _chunk_core(X, M[..., 1, 0, :, :], -M[..., 1, 1, :, :], rc * Er, kc * Et, bc * Et, eT, vc, S0)
    return o.reshape(bsz, H, nc * T, V)[:, :, :L], S
