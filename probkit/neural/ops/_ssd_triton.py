"""Triton kernels for the SSD scan (forward and backward), chunked like :mod:`._ssd_cpu`.

Forward, three launches:

1. ``_chunk_state_kernel``, one program per (chunk, batch x head): forms the time steps
   ``dt`` (bias, softplus, clamp), their cumulative log-decays ``cs`` inside the chunk (both
   stored, ``(batch, nheads, n_chunks * T)`` fp32, for the other kernels) and the chunk's
   own contribution to the state, ``(x o dt o w)^T B`` with ``w_s = exp(sum_{r > s} a_r)``,
   as one ``tl.dot`` of a ``(P, T)`` by a ``(T, N)`` tile.
2. ``_state_pass_kernel``, one program per (batch x head, block of the ``P x N`` state):
   walks the chunks in order, ``out[c] = S; S = exp(cs_T[c]) S + local[c]``, in place, so
   the buffer ends up holding the state entering every chunk; the final state is stored.
3. ``_chunk_scan_kernel``, one program per (chunk, batch x head): the ``T x T`` matrix
   ``C B^T`` (``tl.dot``), masked by ``exp(seg)`` with ``seg[t, s] = sum_{s < r <= t} a_r``
   (a cumulative sum down the columns, so no difference of large sums), applied to
   ``dt o x`` (``tl.dot``), plus ``exp(cs) o (C S_0^T)`` (``tl.dot``), the D skip and the
   ``silu(z)`` gate.

Backward, five launches, each program again one (chunk, batch x head) except the state
passing:

1. with a gate, ``_chunk_scan_kernel`` in its ``GATE_BWD`` mode recomputes the output before
   the gate and stores ``dz`` and the gradient before the gate ``g`` (float32), which the
   other kernels read (so none of them carries the gate);
2. ``_chunk_dstate_kernel``: each chunk's contribution ``(exp(cs) o g)^T C`` to the adjoint
   of the state entering it;
3. ``_state_pass_kernel`` in reverse turns them into the adjoint leaving each chunk (and the
   gradient of ``initial_state``);
4. ``_chunk_bwd_dx_kernel``: ``du = M^T g + w o (B dS^T)`` (``M = C B^T o exp(seg)``), hence
   ``dx`` and ``dD``, and the terms of ``d cs`` without ``C B^T``;
5. ``_chunk_bwd_dbc_kernel``: ``dM = g u^T``, hence ``dB``, ``dC`` and the rest of ``d cs``,
   whose reverse cumulative sum gives ``d dt``, ``dA`` and ``d dt_bias``.

The formulas are those of :mod:`._ssd_cpu`; splitting the backward in two chunk kernels keeps
each within the register file (``benchmarks/sass_ssd.py``).  ``dB`` and ``dC`` are stored per
head and summed over the heads of a group on the host; ``dA``, ``dD`` and ``d dt_bias`` are
stored per program and summed on the host (no atomics, deterministic).

All arithmetic is float32.  ``tl.dot`` runs at ``DOT_PRECISION`` (``"ieee"``: exact float32
products; ``"tf32"`` trades about three decimal digits for tensor-core speed).  Tile sizes
are powers of two, at least 16 (``tl.dot``'s minimum): ``T`` the chunk, ``PP >= headdim``,
``NP >= N``, masked at the edges.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._triton_utils import interpreting, next_pow2, sigmoid, softplus

#: input precision of the ``tl.dot`` products ("ieee", "tf32" or "tf32x3")
DOT_PRECISION = "ieee"
#: (chunk, num_warps forward, num_warps backward) forced by the benchmarks, or None
CONFIG_OVERRIDE = None


@triton.jit
def _dt_block(dt_ptr, bias_ptr, offs_t, mt, h, L, H, pid_b, lo, hi,
              HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr):
    """Raw ``dt + bias`` and the processed step (softplus, clamp; 0 past the end)."""
    raw = tl.load(dt_ptr + (pid_b * L + offs_t) * H + h, mask=mt, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + tl.load(bias_ptr + h).to(tl.float32)
    if SOFTPLUS:
        val = softplus(raw)
    else:
        val = raw
    if CLAMP:
        val = tl.minimum(tl.maximum(val, lo), hi)
    return raw, tl.where(mt, val, 0.0)


@triton.jit
def _segsum_exp(a, T: tl.constexpr):
    """``exp(sum_{s < r <= t} a_r)`` for ``t >= s``, 0 above the diagonal: (T, T)."""
    rows = tl.arange(0, T)[:, None]
    cols = tl.arange(0, T)[None, :]
    seg = tl.cumsum(tl.where(rows > cols, a[:, None], 0.0), axis=0)
    return tl.where(rows >= cols, tl.exp(seg), 0.0)


@triton.jit
def _chunk_program(H, G):
    """(chunk, batch * nheads + head, batch, head, group) of a chunk program."""
    c = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    h = pid_bh % H
    return c, pid_bh, pid_bh // H, h, h // (H // G)


@triton.jit
def _chunk_offsets(c, L, P, N, T: tl.constexpr, PP: tl.constexpr, NP: tl.constexpr):
    """Positions, head channels and state indices of a chunk program, with their masks."""
    offs_t = c * T + tl.arange(0, T)
    offs_p = tl.arange(0, PP)
    offs_n = tl.arange(0, NP)
    return offs_t, offs_t < L, offs_p, offs_p < P, offs_n, offs_n < N


@triton.jit
def _chunk_tiles(c, pid_bh, pid_b, h, grp, L, H, G, P, N, nchunks, offs_t, mt, offs_p, mp,
                 offs_n, mn):
    """Masks ``(T, P)``, ``(T, N)``, ``(P, N)`` and offsets of the chunk's ``x`` (and ``dout``)
    tile, ``B``/``C`` tile and ``(P, N)`` state, in that order."""
    mtp = mt[:, None] & mp[None, :]
    mtn = mt[:, None] & mn[None, :]
    mpn = mp[:, None] & mn[None, :]
    xo = ((pid_b * L + offs_t[:, None]) * H + h) * P + offs_p[None, :]
    bo = ((pid_b * L + offs_t[:, None]) * G + grp) * N + offs_n[None, :]
    so = ((pid_bh * nchunks + c) * P + offs_p[:, None]) * N + offs_n[None, :]
    return mtp, mtn, mpn, xo, bo, so


@triton.jit
def _chunk_state_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, bias_ptr, dtv_ptr, cs_ptr, states_ptr,
    L, H, G, P, N, nchunks, lo, hi,
    T: tl.constexpr, PP: tl.constexpr, NP: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    c, pid_bh, pid_b, h, grp = _chunk_program(H, G)
    offs_t, mt, offs_p, mp, offs_n, mn = _chunk_offsets(c, L, P, N, T, PP, NP)
    _, dt = _dt_block(dt_ptr, bias_ptr, offs_t, mt, h, L, H, pid_b, lo, hi,
                      HAS_BIAS, SOFTPLUS, CLAMP)
    a = dt * tl.load(A_ptr + h).to(tl.float32)
    cs = tl.cumsum(a, axis=0)
    tl.store(dtv_ptr + pid_bh * nchunks * T + offs_t, dt)
    tl.store(cs_ptr + pid_bh * nchunks * T + offs_t, cs)
    w = tl.exp(tl.cumsum(a, axis=0, reverse=True) - a)  # exp(sum_{r > s} a_r)
    x = tl.load(x_ptr + ((pid_b * L + offs_t[:, None]) * H + h) * P + offs_p[None, :],
                mask=mt[:, None] & mp[None, :], other=0.0).to(tl.float32)
    Bt = tl.load(B_ptr + ((pid_b * L + offs_t[:, None]) * G + grp) * N + offs_n[None, :],
                 mask=mt[:, None] & mn[None, :], other=0.0).to(tl.float32)
    local = tl.dot(tl.trans(x * (dt * w)[:, None]), Bt, input_precision=DOT_PREC)  # (PP, NP)
    tl.store(states_ptr + ((pid_bh * nchunks + c) * P + offs_p[:, None]) * N + offs_n[None, :],
             local, mask=mp[:, None] & mn[None, :])


@triton.jit
def _state_pass_kernel(
    states_ptr, cs_ptr, init_ptr, final_ptr,
    PN, nchunks,
    T: tl.constexpr, BLOCK: tl.constexpr, HAS_INIT: tl.constexpr, REVERSE: tl.constexpr,
):
    """In place over ``states`` (batch x head, chunk, P*N): out[c] = S; S = dec[c] S + local[c]."""
    pid_bh = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < PN
    if HAS_INIT:
        S = tl.load(init_ptr + pid_bh * PN + offs, mask=m, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, nchunks):
        if REVERSE:
            c = nchunks - 1 - i
        else:
            c = i
        dec = tl.exp(tl.load(cs_ptr + pid_bh * nchunks * T + c * T + T - 1))
        ptr = states_ptr + (pid_bh * nchunks + c) * PN + offs
        local = tl.load(ptr, mask=m, other=0.0)
        tl.store(ptr, S, mask=m)
        S = dec * S + local
    tl.store(final_ptr + pid_bh * PN + offs, S, mask=m)


@triton.jit
def _chunk_scan_kernel(
    x_ptr, z_ptr, B_ptr, C_ptr, D_ptr, A_ptr, dtv_ptr, cs_ptr, states_ptr, out_ptr,
    g_ptr, gy_ptr,
    L, H, G, P, N, nchunks,
    T: tl.constexpr, PP: tl.constexpr, NP: tl.constexpr,
    HAS_D: tl.constexpr, D_PER_P: tl.constexpr, HAS_Z: tl.constexpr, GATE_BWD: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Outputs of a chunk; with ``GATE_BWD`` (backward, with a gate) it recomputes the output
    before the gate and stores ``dz`` into ``out`` and the gradient before the gate into ``gy``."""
    c, pid_bh, pid_b, h, grp = _chunk_program(H, G)
    offs_t, mt, offs_p, mp, offs_n, mn = _chunk_offsets(c, L, P, N, T, PP, NP)
    dt = tl.load(dtv_ptr + pid_bh * nchunks * T + offs_t)
    cs = tl.load(cs_ptr + pid_bh * nchunks * T + offs_t)
    a = dt * tl.load(A_ptr + h).to(tl.float32)
    Lm = _segsum_exp(a, T)
    mtp = mt[:, None] & mp[None, :]
    xo = ((pid_b * L + offs_t[:, None]) * H + h) * P + offs_p[None, :]
    x = tl.load(x_ptr + xo, mask=mtp, other=0.0).to(tl.float32)
    bo = ((pid_b * L + offs_t[:, None]) * G + grp) * N + offs_n[None, :]
    mtn = mt[:, None] & mn[None, :]
    Bt = tl.load(B_ptr + bo, mask=mtn, other=0.0).to(tl.float32)
    Ct = tl.load(C_ptr + bo, mask=mtn, other=0.0).to(tl.float32)
    S0 = tl.load(states_ptr + ((pid_bh * nchunks + c) * P + offs_p[:, None]) * N + offs_n[None, :],
                 mask=mp[:, None] & mn[None, :], other=0.0)
    CB = tl.dot(Ct, tl.trans(Bt), input_precision=DOT_PREC)
    y = tl.dot(CB * Lm, x * dt[:, None], input_precision=DOT_PREC)
    y += tl.dot(Ct, tl.trans(S0), input_precision=DOT_PREC) * tl.exp(cs)[:, None]
    if HAS_D:
        if D_PER_P:
            Dv = tl.load(D_ptr + h * P + offs_p, mask=mp, other=0.0).to(tl.float32)
        else:
            Dv = tl.load(D_ptr + h + offs_p * 0).to(tl.float32)
        y += x * Dv[None, :]
    if GATE_BWD:
        zz = tl.load(z_ptr + xo, mask=mtp, other=0.0).to(tl.float32)
        sz = sigmoid(zz)
        gg = tl.load(g_ptr + xo, mask=mtp, other=0.0).to(tl.float32)
        tl.store(out_ptr + xo, (gg * y * sz * (1.0 + zz * (1.0 - sz))).to(out_ptr.dtype.element_ty),
                 mask=mtp)
        tl.store(gy_ptr + xo, gg * zz * sz, mask=mtp)
    else:
        if HAS_Z:
            zz = tl.load(z_ptr + xo, mask=mtp, other=0.0).to(tl.float32)
            y = y * zz * sigmoid(zz)
        tl.store(out_ptr + xo, y.to(out_ptr.dtype.element_ty), mask=mtp)


@triton.jit
def _chunk_dstate_kernel(
    g_ptr, C_ptr, cs_ptr, dstates_ptr,
    L, H, G, P, N, nchunks,
    T: tl.constexpr, PP: tl.constexpr, NP: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """A chunk's contribution ``(exp(cs) o g)^T C`` to the adjoint of the state entering it
    (``g``: the gradient of the output before the gate)."""
    c, pid_bh, pid_b, h, grp = _chunk_program(H, G)
    offs_t, mt, offs_p, mp, offs_n, mn = _chunk_offsets(c, L, P, N, T, PP, NP)
    cs = tl.load(cs_ptr + pid_bh * nchunks * T + offs_t)
    mtp = mt[:, None] & mp[None, :]
    xo = ((pid_b * L + offs_t[:, None]) * H + h) * P + offs_p[None, :]
    gy = tl.load(g_ptr + xo, mask=mtp, other=0.0).to(tl.float32)
    Ct = tl.load(C_ptr + ((pid_b * L + offs_t[:, None]) * G + grp) * N + offs_n[None, :],
                 mask=mt[:, None] & mn[None, :], other=0.0).to(tl.float32)
    local = tl.dot(tl.trans(gy * tl.exp(cs)[:, None]), Ct, input_precision=DOT_PREC)
    tl.store(dstates_ptr + ((pid_bh * nchunks + c) * P + offs_p[:, None]) * N + offs_n[None, :],
             local, mask=mp[:, None] & mn[None, :])


@triton.jit
def _chunk_bwd_dx_kernel(
    x_ptr, A_ptr, B_ptr, C_ptr, D_ptr, g_ptr, dtv_ptr, cs_ptr, states_ptr, dstates_ptr,
    dx_ptr, part_ptr, dD_ptr,
    L, H, G, P, N, nchunks,
    T: tl.constexpr, PP: tl.constexpr, NP: tl.constexpr,
    HAS_D: tl.constexpr, D_PER_P: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Backward, part 1: ``du`` -> ``dx``, ``dD``; stores ``x . du`` and the terms of ``d cs``
    that do not involve ``C B^T`` for part 2 (``g``: the gradient before the gate)."""
    c, pid_bh, pid_b, h, grp = _chunk_program(H, G)
    offs_t, mt, offs_p, mp, offs_n, mn = _chunk_offsets(c, L, P, N, T, PP, NP)
    idx = tl.arange(0, T)
    dt = tl.load(dtv_ptr + pid_bh * nchunks * T + offs_t)
    cs = tl.load(cs_ptr + pid_bh * nchunks * T + offs_t)
    a = dt * tl.load(A_ptr + h).to(tl.float32)
    ecs = tl.exp(cs)
    w = tl.exp(tl.cumsum(a, axis=0, reverse=True) - a)
    dec = tl.exp(tl.sum(tl.where(idx == T - 1, cs, 0.0), axis=0))
    mtp, mtn, mpn, xo, bo, so = _chunk_tiles(c, pid_bh, pid_b, h, grp, L, H, G, P, N, nchunks,
                                             offs_t, mt, offs_p, mp, offs_n, mn)
    x = tl.load(x_ptr + xo, mask=mtp, other=0.0).to(tl.float32)
    Bt = tl.load(B_ptr + bo, mask=mtn, other=0.0).to(tl.float32)
    Ct = tl.load(C_ptr + bo, mask=mtn, other=0.0).to(tl.float32)
    S0 = tl.load(states_ptr + so, mask=mpn, other=0.0)
    dS = tl.load(dstates_ptr + so, mask=mpn, other=0.0)
    gy = tl.load(g_ptr + xo, mask=mtp, other=0.0).to(tl.float32)
    u = x * dt[:, None]
    M = tl.dot(Ct, tl.trans(Bt), input_precision=DOT_PREC) * _segsum_exp(a, T)
    CS = tl.dot(Ct, tl.trans(S0), input_precision=DOT_PREC)  # (T, PP)
    if HAS_D:
        if D_PER_P:
            Dv = tl.load(D_ptr + h * P + offs_p, mask=mp, other=0.0).to(tl.float32)
        else:
            Dv = tl.load(D_ptr + h + offs_p * 0).to(tl.float32)
    BdS = tl.dot(Bt, tl.trans(dS), input_precision=DOT_PREC)  # (T, PP)
    du = tl.dot(tl.trans(M), gy, input_precision=DOT_PREC) + w[:, None] * BdS
    dx = du * dt[:, None]
    if HAS_D:
        dx += gy * Dv[None, :]
        tl.store(dD_ptr + (pid_bh * nchunks + c) * PP + offs_p, tl.sum(gy * x, axis=0))
    tl.store(dx_ptr + xo, dx.to(dx_ptr.dtype.element_ty), mask=mtp)
    dww = tl.sum(u * BdS, axis=1) * w  # d w_s * w_s
    last = tl.sum(dww, axis=0) + dec * tl.sum(tl.sum(S0 * dS, axis=1), axis=0)
    dcs = ecs * tl.sum(gy * CS, axis=1) - dww + tl.where(idx == T - 1, last, 0.0)
    tl.store(part_ptr + pid_bh * nchunks * T + offs_t, tl.sum(x * du, axis=1))
    tl.store(part_ptr + (tl.num_programs(1) + pid_bh) * nchunks * T + offs_t, dcs)


@triton.jit
def _chunk_bwd_dbc_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, bias_ptr, g_ptr, dtv_ptr, cs_ptr,
    states_ptr, dstates_ptr, part_ptr,
    ddt_ptr, dB_ptr, dC_ptr, dA_ptr, dbias_ptr,
    L, H, G, P, N, nchunks, lo, hi,
    T: tl.constexpr, PP: tl.constexpr, NP: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Backward, part 2: ``dB``, ``dC`` (per head), the rest of ``d cs`` and with it ``d dt``,
    ``dA`` and ``d dt_bias``."""
    c, pid_bh, pid_b, h, grp = _chunk_program(H, G)
    offs_t, mt, offs_p, mp, offs_n, mn = _chunk_offsets(c, L, P, N, T, PP, NP)
    Ah = tl.load(A_ptr + h).to(tl.float32)
    dt = tl.load(dtv_ptr + pid_bh * nchunks * T + offs_t)
    cs = tl.load(cs_ptr + pid_bh * nchunks * T + offs_t)
    a = dt * Ah
    Lm = _segsum_exp(a, T)
    w = tl.exp(tl.cumsum(a, axis=0, reverse=True) - a)
    mtp, mtn, mpn, xo, bo, so = _chunk_tiles(c, pid_bh, pid_b, h, grp, L, H, G, P, N, nchunks,
                                             offs_t, mt, offs_p, mp, offs_n, mn)
    u = tl.load(x_ptr + xo, mask=mtp, other=0.0).to(tl.float32) * dt[:, None]
    Bt = tl.load(B_ptr + bo, mask=mtn, other=0.0).to(tl.float32)
    Ct = tl.load(C_ptr + bo, mask=mtn, other=0.0).to(tl.float32)
    gy = tl.load(g_ptr + xo, mask=mtp, other=0.0).to(tl.float32)
    dML = tl.dot(gy, tl.trans(u), input_precision=DOT_PREC) * Lm  # (T, T)
    ho = ((pid_b * L + offs_t[:, None]) * H + h) * N + offs_n[None, :]  # per-head dB, dC
    S0 = tl.load(states_ptr + so, mask=mpn, other=0.0)
    dCt = tl.dot(dML, Bt, input_precision=DOT_PREC) + \
        tl.dot(gy * tl.exp(cs)[:, None], S0, input_precision=DOT_PREC)
    tl.store(dC_ptr + ho, dCt, mask=mtn)
    dS = tl.load(dstates_ptr + so, mask=mpn, other=0.0)
    dBt = tl.dot(tl.trans(dML), Ct, input_precision=DOT_PREC) + \
        tl.dot(u * w[:, None], dS, input_precision=DOT_PREC)
    tl.store(dB_ptr + ho, dBt, mask=mtn)
    dseg = dML * tl.dot(Ct, tl.trans(Bt), input_precision=DOT_PREC)
    dcs = tl.sum(dseg, axis=1) - tl.sum(dseg, axis=0) + \
        tl.load(part_ptr + (tl.num_programs(1) + pid_bh) * nchunks * T + offs_t)
    da = tl.cumsum(dcs, axis=0, reverse=True)
    tl.store(dA_ptr + pid_bh * nchunks + c, tl.sum(dt * da, axis=0))
    ddt = tl.load(part_ptr + pid_bh * nchunks * T + offs_t) + Ah * da
    raw, _ = _dt_block(dt_ptr, bias_ptr, offs_t, mt, h, L, H, pid_b, lo, hi,
                       HAS_BIAS, SOFTPLUS, CLAMP)
    if SOFTPLUS:
        ddt = ddt * sigmoid(raw)
    if CLAMP:
        if SOFTPLUS:
            pre = softplus(raw)
        else:
            pre = raw
        ddt = tl.where((pre >= lo) & (pre <= hi), ddt, 0.0)
    ddt = tl.where(mt, ddt, 0.0)
    tl.store(ddt_ptr + (pid_b * L + offs_t) * H + h, ddt.to(ddt_ptr.dtype.element_ty), mask=mt)
    if HAS_BIAS:
        tl.store(dbias_ptr + pid_bh * nchunks + c, tl.sum(ddt, axis=0))


def _config(chunk):
    """(T, num_warps forward, num_warps backward)."""
    if CONFIG_OVERRIDE is not None:
        T, wf, wb = CONFIG_OVERRIDE
        return max(16, next_pow2(T if chunk is None else chunk)), wf, wb
    if chunk is None:
        chunk = 16 if interpreting() else 32
    # whole (T, T) tiles live in registers: longer chunks would not fit
    chunk = min(chunk, 64)
    # T = 32 with 8 warps: no kernel spills registers at headdim 64, N 64 with exact float32
    # dots (benchmarks/sass_ssd.py); T = 64 or 4 warps spill in the backward
    return max(16, next_pow2(chunk)), 8, 8


def _limits(dt_limit):
    lo, hi = dt_limit
    clamp = lo > -math.inf or hi < math.inf
    big = 3.0e38  # float32-representable stand-ins for infinite limits
    return clamp, max(lo, -big), min(hi, big)


def _prep(*ts):
    return [None if t is None else t.contiguous() for t in ts]


def ssd_fwd(x, dt, A, B, C, D, z, dt_bias, softplus, dt_limit, h0, chunk, save_for_backward):
    """Run the forward kernels.  Returns ``(out, last_state, saved, T)``.

    ``saved`` is ``(chunk_start_states, dt_and_cumsums)`` for the backward (None without it).
    """
    x, dt, A, B, C, D, z, dt_bias, h0 = _prep(x, dt, A, B, C, D, z, dt_bias, h0)
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    T, wf, _ = _config(chunk)
    PP, NP = max(16, next_pow2(P)), max(16, next_pow2(N))
    nc = triton.cdiv(L, T)
    dev = x.device
    f32 = dict(dtype=torch.float32, device=dev)
    dtcs = torch.empty((2, b * H, nc * T), **f32)
    states = torch.empty((b * H, nc, P, N), **f32)
    final = torch.empty((b, H, P, N), **f32)
    out = torch.empty_like(x)
    clamp, lo, hi = _limits(dt_limit)
    dummy = final
    _chunk_state_kernel[(nc, b * H)](
        x, dt, A, B, dt_bias if dt_bias is not None else dummy, dtcs[0], dtcs[1], states,
        L, H, G, P, N, nc, lo, hi,
        T=T, PP=PP, NP=NP, HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(softplus), CLAMP=clamp,
        DOT_PREC=DOT_PRECISION, num_warps=wf)
    PN = P * N
    BLOCK = min(1024, next_pow2(PN))
    _state_pass_kernel[(b * H, triton.cdiv(PN, BLOCK))](
        states, dtcs[1], h0 if h0 is not None else dummy, final, PN, nc,
        T=T, BLOCK=BLOCK, HAS_INIT=h0 is not None, REVERSE=False, num_warps=4)
    _chunk_scan_kernel[(nc, b * H)](
        x, z if z is not None else dummy, B, C, D if D is not None else dummy, A,
        dtcs[0], dtcs[1], states, out, dummy, dummy,
        L, H, G, P, N, nc,
        T=T, PP=PP, NP=NP, HAS_D=D is not None, D_PER_P=D is not None and D.dim() == 2,
        HAS_Z=z is not None, GATE_BWD=False, DOT_PREC=DOT_PRECISION, num_warps=wf)
    if x.dtype == torch.float64:
        final = final.double()
    return out, final, ((states, dtcs) if save_for_backward else None), T


def ssd_bwd(gout, gfinal, x, dt, A, B, C, D, z, dt_bias, softplus, dt_limit, saved, T,
            need_h0_grad=False):
    """Run the backward kernels.  Returns ``(dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dh0)``."""
    gout, gfinal, x, dt, A, B, C, D, z, dt_bias = _prep(gout, gfinal, x, dt, A, B, C, D, z, dt_bias)
    states, dtcs = saved
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    _, wf, wb = _config(T)
    PP, NP = max(16, next_pow2(P)), max(16, next_pow2(N))
    nc = states.shape[1]
    dev = x.device
    f32 = dict(dtype=torch.float32, device=dev)
    dstates = torch.empty((b * H, nc, P, N), **f32)
    dh0 = torch.empty((b, H, P, N), **f32)
    dummy = dh0
    hasD, D_per_p = D is not None, D is not None and D.dim() == 2
    dz = None
    if z is not None:  # dz, and the gradient before the gate that the other kernels use
        dz = torch.empty_like(z)
        gy = torch.empty((b, L, H, P), **f32)
        _chunk_scan_kernel[(nc, b * H)](
            x, z, B, C, D if hasD else dummy, A, dtcs[0], dtcs[1], states, dz, gout, gy,
            L, H, G, P, N, nc,
            T=T, PP=PP, NP=NP, HAS_D=hasD, D_PER_P=D_per_p, HAS_Z=True, GATE_BWD=True,
            DOT_PREC=DOT_PRECISION, num_warps=wf)
    else:
        gy = gout
    _chunk_dstate_kernel[(nc, b * H)](
        gy, C, dtcs[1], dstates, L, H, G, P, N, nc, T=T, PP=PP, NP=NP, DOT_PREC=DOT_PRECISION,
        num_warps=wf)
    PN = P * N
    BLOCK = min(1024, next_pow2(PN))
    _state_pass_kernel[(b * H, triton.cdiv(PN, BLOCK))](
        dstates, dtcs[1], gfinal if gfinal is not None else dummy, dh0, PN, nc,
        T=T, BLOCK=BLOCK, HAS_INIT=gfinal is not None, REVERSE=True, num_warps=4)
    dx = torch.empty_like(x)
    ddt = torch.empty_like(dt)
    dBh = torch.empty((b, L, H, N), **f32)
    dCh = torch.empty((b, L, H, N), **f32)
    part = torch.empty((2, b * H, nc * T), **f32)
    dA = torch.empty((b * H, nc), **f32)
    dD = torch.empty((b * H, nc, PP), **f32) if hasD else dummy
    dbias = torch.empty((b * H, nc), **f32) if dt_bias is not None else dummy
    clamp, lo, hi = _limits(dt_limit)
    _chunk_bwd_dx_kernel[(nc, b * H)](
        x, A, B, C, D if hasD else dummy, gy, dtcs[0], dtcs[1], states, dstates, dx, part, dD,
        L, H, G, P, N, nc,
        T=T, PP=PP, NP=NP, HAS_D=hasD, D_PER_P=D_per_p, DOT_PREC=DOT_PRECISION, num_warps=wb)
    _chunk_bwd_dbc_kernel[(nc, b * H)](
        x, dt, A, B, C, dt_bias if dt_bias is not None else dummy, gy, dtcs[0], dtcs[1],
        states, dstates, part, ddt, dBh, dCh, dA, dbias,
        L, H, G, P, N, nc, lo, hi,
        T=T, PP=PP, NP=NP, HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(softplus), CLAMP=clamp,
        DOT_PREC=DOT_PRECISION, num_warps=wb)
    k = H // G
    dB = dBh.view(b, L, G, k, N).sum(3)
    dC = dCh.view(b, L, G, k, N).sum(3)
    dA = dA.view(b, H, nc).sum((0, 2))
    dDs = None
    if D is not None:
        dDs = dD.view(b, H, nc, PP)[..., :P].sum((0, 2))
        if D.dim() == 1:
            dDs = dDs.sum(-1)
    dbs = dbias.view(b, H, nc).sum((0, 2)) if dt_bias is not None else None
    return (dx, ddt, dA, dB, dC, dDs, dz, dbs,
            dh0 if need_h0_grad else None)
