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

With ``W = (I - A_ab)^{-1} (a o exp(lex))`` and ``U_loc = (I - A_ab)^{-1} A_ak V``, neither
depending on ``S_0``, a chunk maps its entering state affinely, ``S_T = M S_0 + C`` with
``M = diag(exp(lam_T)) + (b o exp(lam_T - lam))^T W``, and its outputs are
``O = O_loc + R S_0`` with ``R = r o exp(lam) + A_rb W``.  All of it is computed for every
chunk at once; only the state passing ``S <- M S + C`` (one ``K x K`` by ``K x V`` product
per chunk) runs chunk after chunk.

The four ``T x T`` matrices ``A_**`` come from one batched matrix product per sub-block of
``Ts <= 16`` rows, with no overflow whatever the decay: each weight ``exp(x_t - lam_s)`` is
factored at the start ``e`` of the row's sub-block, ``exp(x_t - lam_e) exp(lam_e - lam_s)``.
The row factor is ``<= 1``; so is the column factor for columns in earlier sub-blocks, and in
the row's own sub-block it is at most ``exp(-(sum of w over Ts steps))``.  When that sum could
overflow (beyond :data:`SAFE_SPAN`), the diagonal sub-blocks use pairwise ``(Ts, Ts, K)``
weights instead.  Gradients come from autograd through these operations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: largest log-decay sum over one sub-block for which the diagonal blocks are factored
SAFE_SPAN = {torch.float32: 60.0, torch.float64: 600.0}
DEFAULT_CHUNK = 64
MAX_SUB = 16


def default_chunk(L):
    """Chunk length of the ``cpu`` path: 64, or ``L`` when the sequence is shorter."""
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
    factored_diag = Ts == 1 or float((starts - ends).detach().amax()) <= SAFE_SPAN.get(ct, 60.0)
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


def rwkv7_chunked(r, w, k, v, a, b, state0, T, ct):
    """Outputs ``(batch, heads, L, V)`` (in ``ct``) and final state ``(batch, heads, K, V)``."""
    bsz, H, L, K = r.shape
    V = v.shape[-1]
    dev = r.device
    nc = (L + T - 1) // T
    pad = nc * T - L
    Ts = T

    def chunked(x):  # (b, H, L, d) -> (b, H, nc, T, d), zero padded: padding leaves S unchanged
        x = x.to(ct)
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(bsz, H, nc, T, x.shape[-1])

    rc, kc, vc, ac, bc = (chunked(x) for x in (r, k, v, a, b))
    # cumulative log-decays in float64: exponents are differences of them, and in float32 a
    # long strong decay would leave only a few correct digits in each difference
    wd = F.pad(w.to(torch.float64), (0, 0, 0, pad)).reshape(bsz, H, nc, T, K)
    lam = torch.cumsum(wd, dim=-2)  # inclusive, <= 0
    lex = lam - wd
    # one factorisation point per chunk when the chunk's total decay allows it
    if float(-lam[..., -1, :].detach().amin()) > SAFE_SPAN.get(ct, 60.0):
        Ts = sub_block(T)
    M = pair_matrices(torch.stack([ac, rc], -3), torch.stack([lex, lam], -3),
                      torch.stack([kc, bc], -3), lam, (True, False), Ts, ct)
    A_ak, A_ab, A_rk, A_rb = M[..., 0, 0, :, :], M[..., 0, 1, :, :], M[..., 1, 0, :, :], M[..., 1, 1, :, :]
    rhs = torch.cat([A_ak @ vc, ac * torch.exp(lex.to(ct))], dim=-1)
    # (I - A_ab) X = rhs: A_ab is strictly lower, the unit diagonal is implied
    X = torch.linalg.solve_triangular(-A_ab, rhs, upper=False, unitriangular=True)
    U_loc, W = X[..., :V], X[..., V:]
    O_loc = A_rk @ vc + A_rb @ U_loc
    R_s = rc * torch.exp(lam.to(ct)) + A_rb @ W  # (b, H, nc, T, K)
    lam_T = lam[..., -1:, :]  # (b, H, nc, 1, K)
    tail = torch.exp((lam_T - lam).to(ct))
    kt, bt = (kc * tail).transpose(-1, -2), (bc * tail).transpose(-1, -2)  # (b, H, nc, K, T)
    trans = torch.diag_embed(torch.exp(lam_T[..., 0, :].to(ct))) + bt @ W  # (b, H, nc, K, K)
    inject = kt @ vc + bt @ U_loc  # (b, H, nc, K, V)
    S = torch.zeros(bsz, H, K, V, dtype=ct, device=dev) if state0 is None else state0.to(ct)
    starts = []
    for c in range(nc):
        starts.append(S)
        S = torch.matmul(trans[:, :, c], S) + inject[:, :, c]
    o = O_loc + R_s @ torch.stack(starts, dim=2)
    return o.reshape(bsz, H, nc * T, V)[:, :, :L], S
