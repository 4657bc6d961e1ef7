"""Triton kernels for the RWKV-7 recurrence (forward and backward), recurrent in time.

One program per (block of ``BV`` value columns, batch x head) keeps its ``(K, BV)`` slice of
the state in registers and walks the sequence::

    u   = S^T a                    (BV,)    the "removal" read of the old state
    S  <- exp(w) o S + b u^T + k v^T
    o   = S^T r

The value columns of the state never interact, so the slices are independent.

Backward: the adjoint ``G = dL/dS`` runs backwards in time with the transposed recursion
``G <- exp(w) o G + a du^T`` (``du = G^T b``) after adding ``r do^T``; the per-step gradients
are ``dr = S_t do``, ``dk = G v``, ``dv = G^T k``, ``db = G u``, ``dw = exp(w) o (G . S_{t-1})``
(row sums) and ``da = S_{t-1} du``.  They need the state before every step: the forward
stores it every ``CK`` steps (``checkpoints``), and the backward recomputes each segment of
``CK`` steps from its checkpoint into a per-program scratch buffer before walking it
backwards.  Gradients summed over the value columns (``dr, dk, db, dw, da``) are stored per
block of columns and summed on the host (no atomics: deterministic).

All arithmetic is float32; inputs may be float32, bfloat16 or float16.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_utils import next_pow2

#: steps between two saved states (the backward recomputes segments of this length)
CHECKPOINT_EVERY = 16
#: (block of value columns, num_warps) forced by the benchmarks, or None
CONFIG_OVERRIDE = None


@triton.jit
def _load_step(r_ptr, w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, base_k, base_v, offs_k, offs_v, mk, mv, t, L):
    """r, w, k, a, b (BK,) and v (BV,) of step ``t``, as float32; zeros past the end (a no-op step)."""
    lk = mk & (offs_k * 0 + t < L)
    lv = mv & (offs_v * 0 + t < L)
    r = tl.load(r_ptr + base_k + offs_k, mask=lk, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + base_k + offs_k, mask=lk, other=0.0).to(tl.float32)
    k = tl.load(k_ptr + base_k + offs_k, mask=lk, other=0.0).to(tl.float32)
    a = tl.load(a_ptr + base_k + offs_k, mask=lk, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + base_k + offs_k, mask=lk, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + base_v + offs_v, mask=lv, other=0.0).to(tl.float32)
    return r, w, k, v, a, b


@triton.jit
def _state_slice(s_ptr, K, V, BK: tl.constexpr, BV: tl.constexpr, PRESENT: tl.constexpr):
    """The program's ``(BK, BV)`` slice of a ``(K, V)`` state: ``(pid_bh, offs_k, offs_v, mk,
    mv, mkv, offsets of the slice, the slice of s_ptr as float32 or zeros when not PRESENT)``."""
    pid_v = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    offs_k = tl.arange(0, BK)
    offs_v = pid_v * BV + tl.arange(0, BV)
    mk = offs_k < K
    mv = offs_v < V
    mkv = mk[:, None] & mv[None, :]
    tile = offs_k[:, None] * V + offs_v[None, :]
    if PRESENT:
        S = tl.load(s_ptr + pid_bh * K * V + tile, mask=mkv, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    return pid_bh, offs_k, offs_v, mk, mv, mkv, tile, S


@triton.jit
def _step_state(S, w, k, v, a, b):
    """``(u, S')``: the removal read ``u = S^T a`` and the next state."""
    u = tl.sum(a[:, None] * S, axis=0)
    return u, tl.exp(w)[:, None] * S + b[:, None] * u[None, :] + k[:, None] * v[None, :]


@triton.jit
def _fwd_kernel(
    r_ptr, w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, s0_ptr, o_ptr, sT_ptr, ckpt_ptr,
    L, K, V, n_ckpt,
    BK: tl.constexpr, BV: tl.constexpr, CK: tl.constexpr,
    HAS_S0: tl.constexpr, SAVE: tl.constexpr,
):
    pid_bh, offs_k, offs_v, mk, mv, mkv, tile, S = _state_slice(s0_ptr, K, V, BK, BV, HAS_S0)
    for c in range(0, n_ckpt):
        if SAVE:
            tl.store(ckpt_ptr + (pid_bh * n_ckpt + c) * K * V + tile, S, mask=mkv)
        for j in range(0, CK):
            t = c * CK + j
            base_k = (pid_bh * L + t) * K
            base_v = (pid_bh * L + t) * V
            r, w, k, v, a, b = _load_step(r_ptr, w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, base_k, base_v,
                                          offs_k, offs_v, mk, mv, t, L)
            u, S = _step_state(S, w, k, v, a, b)
            o = tl.sum(r[:, None] * S, axis=0)
            tl.store(o_ptr + base_v + offs_v, o.to(o_ptr.dtype.element_ty),
                     mask=mv & (offs_v * 0 + t < L))
    tl.store(sT_ptr + pid_bh * K * V + tile, S, mask=mkv)


@triton.jit
def _bwd_kernel(
    r_ptr, w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, do_ptr, dsT_ptr, ckpt_ptr, scratch_ptr,
    dv_ptr, part_ptr, ds0_ptr,
    L, K, V, n_ckpt, BH,
    BK: tl.constexpr, BV: tl.constexpr, CK: tl.constexpr, HAS_DST: tl.constexpr,
):
    pid_bh, offs_k, offs_v, mk, mv, mkv, tile, G = _state_slice(dsT_ptr, K, V, BK, BV, HAS_DST)
    pid_v = tl.program_id(0)
    stile = offs_k[:, None] * BV + tl.arange(0, BV)[None, :]
    scratch = scratch_ptr + (pid_v * BH + pid_bh) * CK * BK * BV
    # partial sums over this block of value columns: (5, n_vblocks, batch*heads, L, K)
    part_stride = tl.num_programs(0).to(tl.int64) * BH * L * K
    part = part_ptr + (pid_v * BH + pid_bh) * L * K
    for cc in range(0, n_ckpt):
        c = n_ckpt - 1 - cc
        # recompute the states before each step of the segment
        S = tl.load(ckpt_ptr + (pid_bh * n_ckpt + c) * K * V + tile, mask=mkv, other=0.0)
        for j in range(0, CK):
            t = c * CK + j
            tl.store(scratch + j * BK * BV + stile, S)
            base_k = (pid_bh * L + t) * K
            base_v = (pid_bh * L + t) * V
            r, w, k, v, a, b = _load_step(r_ptr, w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, base_k, base_v,
                                          offs_k, offs_v, mk, mv, t, L)
            u, S = _step_state(S, w, k, v, a, b)
        # walk the segment backwards
        for jj in range(0, CK):
            j = CK - 1 - jj
            t = c * CK + j
            base_k = (pid_bh * L + t) * K
            base_v = (pid_bh * L + t) * V
            Sp = tl.load(scratch + j * BK * BV + stile)
            r, w, k, v, a, b = _load_step(r_ptr, w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, base_k, base_v,
                                          offs_k, offs_v, mk, mv, t, L)
            lv = mv & (offs_v * 0 + t < L)
            lk = mk & (offs_k * 0 + t < L)
            do = tl.load(do_ptr + base_v + offs_v, mask=lv, other=0.0).to(tl.float32)
            ew = tl.exp(w)
            u, St = _step_state(Sp, w, k, v, a, b)
            G += r[:, None] * do[None, :]
            du = tl.sum(G * b[:, None], axis=0)
            dv = tl.sum(G * k[:, None], axis=0)
            tl.store(dv_ptr + base_v + offs_v, dv, mask=lv)
            tl.store(part + t * K + offs_k, tl.sum(St * do[None, :], axis=1), mask=lk)  # dr
            tl.store(part + part_stride + t * K + offs_k, tl.sum(G * v[None, :], axis=1), mask=lk)  # dk
            tl.store(part + 2 * part_stride + t * K + offs_k, tl.sum(G * u[None, :], axis=1), mask=lk)  # db
            tl.store(part + 3 * part_stride + t * K + offs_k, ew * tl.sum(G * Sp, axis=1), mask=lk)  # dw
            tl.store(part + 4 * part_stride + t * K + offs_k, tl.sum(Sp * du[None, :], axis=1), mask=lk)  # da
            G = ew[:, None] * G + a[:, None] * du[None, :]
    tl.store(ds0_ptr + pid_bh * K * V + tile, G, mask=mkv)


def _config(V):
    """(BV, num_warps)."""
    if CONFIG_OVERRIDE is not None:
        return CONFIG_OVERRIDE
    # 32 value columns x 64 keys with 4 warps: 16 registers per tile and thread; the backward
    # holds four such tiles (benchmarks/sass_rwkv7.py)
    return min(32, max(16, next_pow2(V))), 4


def _shapes(r, v):
    """``(batch, heads, L, K, V, BK, BV, num_warps)`` of a launch."""
    bsz, H, L, K = r.shape
    V = v.shape[-1]
    return (bsz, H, L, K, V, max(16, next_pow2(K))) + _config(V)


def rwkv7_fwd(r, w, k, v, a, b, state0, save_states):
    """Run the forward kernel.  Returns ``(o, final_state, checkpoints or None)``."""
    r, w, k, v, a, b = (x.contiguous() for x in (r, w, k, v, a, b))
    state0 = None if state0 is None else state0.contiguous()
    bsz, H, L, K, V, BK, BV, warps = _shapes(r, v)
    CK = CHECKPOINT_EVERY
    n_ckpt = triton.cdiv(L, CK)
    f32 = dict(dtype=torch.float32, device=r.device)
    o = torch.empty_like(v)
    sT = torch.empty((bsz, H, K, V), **f32)
    ckpt = torch.empty((bsz * H, n_ckpt, K, V), **f32) if save_states else sT
    _fwd_kernel[(triton.cdiv(V, BV), bsz * H)](
        r, w, k, v, a, b, state0 if state0 is not None else sT, o, sT, ckpt,
        L, K, V, n_ckpt,
        BK=BK, BV=BV, CK=CK, HAS_S0=state0 is not None, SAVE=bool(save_states), num_warps=warps)
    return o, sT, (ckpt if save_states else None)


def rwkv7_bwd(r, w, k, v, a, b, checkpoints, do, dsT):
    """Run the backward kernel.  Returns ``(dr, dw, dk, dv, da, db, dstate0)`` (float32)."""
    r, w, k, v, a, b, do = (x.contiguous() for x in (r, w, k, v, a, b, do))
    dsT = None if dsT is None else dsT.contiguous()
    bsz, H, L, K, V, BK, BV, warps = _shapes(r, v)
    CK = CHECKPOINT_EVERY
    n_ckpt = checkpoints.shape[1]
    nv = triton.cdiv(V, BV)
    f32 = dict(dtype=torch.float32, device=r.device)
    scratch = torch.empty((nv * bsz * H, CK, BK, BV), **f32)
    dv = torch.empty((bsz, H, L, V), **f32)
    part = torch.empty((5, nv, bsz * H, L, K), **f32)
    ds0 = torch.empty((bsz, H, K, V), **f32)
    _bwd_kernel[(nv, bsz * H)](
        r, w, k, v, a, b, do, dsT if dsT is not None else ds0, checkpoints, scratch,
        dv, part, ds0,
        L, K, V, n_ckpt, bsz * H,
        BK=BK, BV=BV, CK=CK, HAS_DST=dsT is not None, num_warps=warps)
    dr, dk, db, dw, da = (p.sum(0).view(bsz, H, L, K) for p in part.unbind(0))
    return dr, dw, dk, dv, da, db, ds0
