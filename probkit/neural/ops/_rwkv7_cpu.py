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
32); that path has a hand-written backward (:class:`_OneBlockChunks`), whose work after the
backward state passing runs on blocks of chunks that stay in cache.  Otherwise the chunk is
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
#: elements per tensor in one block of chunks of the backward (fits in a core's cache)
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


def _quarters(M, T):
    return M[..., :T, :T], M[..., :T, T:], M[..., T:, :T], M[..., T:, T:]


def _chunk_core(X, A_rk, N_rb, rh, kt, bt, eT, v, S, inplace=False):
    """The state passing and the outputs, given the solved ``X = [U_loc | W]``.

    ``N_rb = -A_rb``; ``rh = r o exp(lam)``, ``kt, bt = (k, b) o exp(lam_T - lam)``,
    ``eT = exp(lam_T)`` ``(..., nc, 1, K)``.  Returns ``(O, final state, U, chunk start
    states)``; differentiable by autograd unless ``inplace`` (buffers filled chunk by chunk).
    """
    V = v.shape[-1]
    U_loc, W = X[..., :V], X[..., V:]
    kv = kt.mT @ v
    if inplace:
        U, starts = torch.empty_like(U_loc), S.new_empty(S.shape[:2] + (U_loc.shape[2],) + S.shape[2:])
    Us, sts = [], []
    # unbind once: indexing chunk by chunk would make autograd write a full-size gradient per chunk
    for c, (U_c, W_c, kv_c, bt_c, e_c) in enumerate(zip(*(t.unbind(2) for t in (U_loc, W, kv, bt, eT)))):
        U_c = U_c + W_c @ S
        if inplace:
            starts[:, :, c] = S
            U[:, :, c] = U_c
        else:
            sts.append(S)
            Us.append(U_c)
        S = torch.addcmul(kv_c, e_c.mT, S) + bt_c.mT @ U_c
    if not inplace:
        U, starts = torch.stack(Us, 2), torch.stack(sts, 2)
    O = A_rk @ v - N_rb @ U + rh @ starts
    return O, S, U, starts


def _decay_factors(lam, ct, one_block):
    """``exp(lex)``, ``exp(lam)``, ``exp(-lam)``, ``exp(lam_T - lam)``, ``exp(lam_T)`` in ``ct``.

    ``lam`` (float64) is the inclusive cumulative log-decay in each chunk.  One exponential
    does: ``exp(lex_t) = exp(lam_{t-1})`` and, when the chunk's total decay is within
    :data:`SAFE_SPAN` (``one_block``), ``exp(-lam) = 1 / exp(lam)`` and ``exp(lam_T - lam) =
    exp(lam_T) exp(-lam)``; otherwise ``exp(-lam)`` could overflow: it is not formed
    (``None``) and ``exp(lam_T - lam)`` is an exponential of its own.
    """
    Er = torch.exp(lam.to(ct))
    Ea = F.pad(Er[..., :-1, :], (0, 0, 1, 0), value=1.0)
    eT = Er[..., -1:, :]
    if one_block:
        Ec = torch.reciprocal(Er)
        return Ea, Er, Ec, eT * Ec, eT
    return Ea, Er, None, torch.exp((lam[..., -1:, :] - lam).to(ct)), eT


def _reverse_cumsum(x, dim):
    return x.sum(dim, keepdim=True) - x.cumsum(dim) + x


def _chunk_grads(mask, v, rows, cols, M, inv, X, U, starts, kt, bt, Ea, Er, Ec, Et, eT, gO, dU, dSn):
    """Gradients to ``r, w, k, v, a, b`` of a block of chunks, given the output gradient
    ``gO``, the pseudo-value gradients ``dU`` and the state gradients ``dSn`` after each chunk."""
    T, V = v.shape[-2], v.shape[-1]
    A_ak, _, A_rk, _ = _quarters(M, T)
    ah, rh = rows[..., :T, :], rows[..., T:, :]
    kh, nbh = cols[..., :T, :], cols[..., T:, :]
    # through the state passing and the outputs
    vU = torch.cat([v, U], -2)  # (.., 2T, V)
    d_kt_bt = vU @ dSn.mT  # [dk~; db~]
    deT = (dSn * starts).sum(-1).unsqueeze(-2)  # (.., 1, K)
    d_rh_W = torch.cat([gO, dU], -2) @ starts.mT  # [dr^ from g S_c^T; dW]
    dX = torch.cat([dU, d_rh_W[..., T:, :]], -1)
    dR = inv.mT @ dX
    dR_v = dR[..., :V]
    # dM of M = [[A_ak, -A_ab], [A_rk, -A_rb]], masked
    dM = torch.cat([torch.cat([dR_v @ v.mT, -(dR @ X.mT)], -1), gO @ vU.mT], -2)
    dM[..., T:, T:] *= -1
    dM.mul_(mask)
    dv = kt @ dSn + A_rk.mT @ gO + A_ak.mT @ dR_v
    drows = dM @ cols
    dcols = dM.mT @ rows
    dah = drows[..., :T, :] + dR[..., V:]
    drh = drows[..., T:, :] + d_rh_W[..., :T, :]
    dkh, dnbh = dcols[..., :T, :], dcols[..., T:, :]  # dnbh = d(-b^)
    dkt, dbt = d_kt_bt[..., :T, :], d_kt_bt[..., T:, :]
    dr, da = drh * Er, dah * Ea
    dk = torch.addcmul(dkh * Ec, dkt, Et)
    db = torch.addcmul(dbt * Et, dnbh, Ec, value=-1.0)
    # d lam of every factor exp(+-lam ...), d lex of a^
    dlex = dah * ah
    tail = torch.addcmul(dkt * kt, dbt, bt)  # d(lam_T - lam) of k~ and b~
    dlam = (drh * rh).addcmul_(dkh, kh, value=-1.0).addcmul_(dnbh, nbh, value=-1.0).sub_(tail).add_(dlex)
    dlam[..., -1:, :] += tail.sum(-2, keepdim=True) + deT * eT
    dw = _reverse_cumsum(dlam, -2).sub_(dlex)
    return dr, dw, dk, dv, da, db


class _OneBlockChunks(torch.autograd.Function):
    """Chunked RWKV-7 with one factorisation point per chunk, and a hand-written backward.

    Inputs are chunked ``(b, H, nc, T, .)``, ``S0`` is ``(b, H, K, V)`` and ``lam`` the
    (float64, not differentiated) cumulative sums of ``w`` inside the chunks.  With
    ``rows = [a^, r^]``, ``cols = [k^, -b^]`` (``x^ = x o exp(+-lam)``), ``M = rows cols^T``
    masked holds ``A_ak, -A_ab, A_rk, -A_rb``; ``Inv = (I - A_ab)^{-1}`` (from a triangular
    solve against the identity) gives ``X = Inv [A_ak V | a^]``.  Backward, chunk adjoints
    ``dS`` passed from the last chunk to the first: ``dU_c = A_rb^T g + b~ dS_{c+1}``,
    ``dS_c = e^{lam_T} o dS_{c+1} + r^^T g + W^T dU_c``; then ``dX = [dU | dU S_c^T]`` goes back
    through the solve (``dR = Inv^T dX``, ``dA_ab = dR X^T``), the four matrices back to
    ``rows`` and ``cols``, and every ``x^`` to ``x`` and to the cumulative log-decays, whose
    reverse cumulative sum is ``dw``.
    """

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, S0, lam):
        ct = r.dtype
        T, V = r.shape[-2], v.shape[-1]
        Ea, Er, Ec, Et, eT = _decay_factors(lam, ct, one_block=True)
        lead = r.shape[:-2]
        rows, cols = r.new_empty(*lead, 2 * T, r.shape[-1]), r.new_empty(*lead, 2 * T, r.shape[-1])
        ah, rh = torch.mul(a, Ea, out=rows[..., :T, :]), torch.mul(r, Er, out=rows[..., T:, :])
        torch.mul(k, Ec, out=cols[..., :T, :])
        torch.mul(b, Ec, out=cols[..., T:, :]).neg_()
        kt, bt = k * Et, b * Et
        M = (rows @ cols.mT).mul_(_quarter_masks(T, ct, r.device))
        A_ak, N_ab, A_rk, N_rb = _quarters(M, T)
        eye = torch.eye(T, dtype=ct, device=r.device).expand_as(N_ab)
        inv = torch.linalg.solve_triangular(N_ab, eye, upper=False, unitriangular=True)
        X = inv @ torch.cat([A_ak @ v, ah], -1)
        O, S, U, starts = _chunk_core(X, A_rk, N_rb, rh, kt, bt, eT, v, S0, inplace=True)
        ctx.save_for_backward(v, rows, cols, M, inv, X, U, starts, kt, bt, Ea, Er, Ec, Et, eT)
        ctx.set_materialize_grads(False)
        return O, S

    @staticmethod
    def backward(ctx, gO, gS):
        v, rows, cols, M, inv, X, U, starts, kt, bt, Ea, Er, Ec, Et, eT = ctx.saved_tensors
        T, V = v.shape[-2], v.shape[-1]
        nc = U.shape[2]
        if gO is None:
            gO = torch.zeros_like(U)
        N_rb, rh, W = M[..., T:, T:], rows[..., T:, :], X[..., V:]
        P = N_rb.mT @ gO  # -dU from the outputs
        Q = rh.mT @ gO  # dS_c from the outputs
        dS = torch.zeros_like(starts[:, :, 0]) if gS is None else gS.to(starts.dtype)
        dSn, dU = torch.empty_like(starts), torch.empty_like(U)
        for c, (P_c, Q_c, bt_c, W_c, e_c) in zip(range(nc - 1, -1, -1),
                                                  zip(*(t.unbind(2)[::-1] for t in (P, Q, bt, W, eT)))):
            dSn[:, :, c] = dS
            dU_c = bt_c @ dS - P_c
            dU[:, :, c] = dU_c
            dS = torch.addcmul(Q_c, e_c.mT, dS) + W_c.mT @ dU_c
        # the rest is independent per chunk: blocks of chunks small enough to stay in cache
        # (the element-wise steps are memory-bound on whole-sequence tensors)
        per_chunk = v.shape[0] * v.shape[1] * T * max(v.shape[-1], rows.shape[-1])
        size = max(1, BLOCK_ELEMENTS // per_chunk)
        mask = _quarter_masks(T, M.dtype, M.device)
        saved = (v, rows, cols, M, inv, X, U, starts, kt, bt, Ea, Er, Ec, Et, eT, gO, dU, dSn)
        parts = [_chunk_grads(mask, *(t[:, :, s:s + size] for t in saved)) for s in range(0, nc, size)]
        dr, dw, dk, dv, da, db = (torch.cat(g, 2) if len(g) > 1 else g[0] for g in zip(*parts))
        return dr, dw, dk, dv, da, db, (dS if ctx.needs_input_grad[6] else None), None


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

    rc, kc, vc, ac, bc = (chunked(x) for x in (r, k, v, a, b))
    # cumulative log-decays in float64: exponents are differences of them, and in float32 a
    # long strong decay would leave only a few correct digits in each difference
    wd = F.pad(w.to(torch.float64), (0, 0, 0, pad)).reshape(bsz, H, nc, T, K)
    S0 = torch.zeros(bsz, H, K, V, dtype=ct, device=dev) if state0 is None else state0.to(ct)
    lam = torch.cumsum(wd.detach(), dim=-2)  # inclusive, <= 0
    if float(-lam[..., -1, :].amin()) <= SAFE_SPAN.get(ct, 30.0):  # every chunk's total decay
        o, S = _OneBlockChunks.apply(rc, chunked(w), kc, vc, ac, bc, S0, lam)
    else:  # sub-blocks (and pairwise diagonal blocks), differentiated by autograd
        lam = torch.cumsum(wd, dim=-2)
        lex = lam - wd
        M = pair_matrices(torch.stack([ac, rc], -3), torch.stack([lex, lam], -3),
                          torch.stack([kc, bc], -3), lam, (True, False), sub_block(T), ct)
        Ea, Er, _, Et, eT = _decay_factors(lam, ct, one_block=False)
        rhs = torch.cat([M[..., 0, 0, :, :] @ vc, ac * Ea], -1)
        X = torch.linalg.solve_triangular(-M[..., 0, 1, :, :], rhs, upper=False, unitriangular=True)
        o, S, _, _ = _chunk_core(X, M[..., 1, 0, :, :], -M[..., 1, 1, :, :], rc * Er, kc * Et,
                                 bc * Et, eT, vc, S0)
    return o.reshape(bsz, H, nc * T, V)[:, :, :L], S
