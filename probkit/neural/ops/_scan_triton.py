"""Fused Triton kernels for the selective scan (forward and backward).

One program handles one batch element and a block of ``BLOCK_D`` channels and walks the
sequence in chunks of ``CHUNK`` steps, keeping the ``(BLOCK_D, N)`` state in registers.
Per chunk the forward kernel loads ``(BLOCK_D, CHUNK)`` tiles of ``u``, ``delta`` (and
``z``) and ``(CHUNK, N)`` tiles of B and C, forms ``dt`` (bias + softplus), the decays
``exp(dt A)`` and inputs ``dt B u`` as ``(BLOCK_D, CHUNK, N)`` tiles, scans them along the
chunk with ``tl.associative_scan`` on the pair operator
``(a1, x1) . (a2, x2) = (a1 a2, a2 x1 + x2)``, applies the carried state, contracts with C,
adds the D skip, gates with ``silu(z)`` and stores the outputs.  When gradients are needed it
also stores the state at each chunk start (``(batch, dim, n_chunks, N)`` fp32, ``1/CHUNK`` of
the full state history).

The backward kernel walks the chunks last to first: it recomputes the chunk's states from
the stored chunk-start state with one scan whose elements carry two affine maps, the
composition of steps ``0..t`` and of steps ``0..t-1`` (combine
``(a1, x1, p1, y1) . (a2, x2, p2, y2) = (a1 a2, a2 x1 + x2, a1 p2, p2 x1 + y2)``, element
``(a_t, x_t, 1, 0)``), so both ``h_t`` and ``h_{t-1}`` come out exactly without shifting a
register tile.  The adjoint is scanned backwards in the form ``mu_t = a_t lam_t``,
``mu_t = a_t (g_t C_t + mu_{t+1})``, with the same two-map trick (``reverse=True``) giving
``mu_{t+1}`` and hence ``lam_t = g_t C_t + mu_{t+1}``: one exponential per element in the
backward, like the forward.  All gradients are formed in registers.  ``dA``, ``dD``,
``d delta_bias`` and time-invariant ``dB``/``dC`` are accumulated per program and summed
over the batch on the host; time-varying ``dB`` and ``dC`` are reduced over the program's
channels and added with ``tl.atomic_add`` into an fp32 buffer.  All arithmetic is fp32 whatever the input dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_utils import (interpreting, largest_pow2_divisor, linear_combine,
                            linear_combine_excl, next_pow2, sigmoid, softplus)


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr,
    out_ptr, last_ptr, ckpt_ptr,
    dim, L, N, dgB, dgC, nchunks,
    sBb, sBg, sBn, sBl, sCb, sCg, sCn, sCl,
    BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, NP: tl.constexpr,
    B_CONST: tl.constexpr, C_CONST: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr,
    SAVE_CKPT: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    md = offs_d < dim
    offs_n = tl.arange(0, NP)
    mn = offs_n < N
    mdn = md[:, None] & mn[None, :]
    A2 = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mdn, other=0.0).to(tl.float32) * 1.4426950408889634
    row = (pid_b * dim + offs_d) * L  # start of each channel's sequence
    state_off = (pid_b * dim + offs_d[:, None]) * N + offs_n[None, :]
    if HAS_H0:
        h = tl.load(h0_ptr + state_off, mask=mdn, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bv = tl.load(bias_ptr + offs_d, mask=md, other=0.0).to(tl.float32)
    if B_CONST:
        Bc = tl.load(B_ptr + offs_d[:, None] * sBg + offs_n[None, :] * sBn, mask=mdn, other=0.0).to(tl.float32)
    else:
        Bbase = B_ptr + pid_b * sBb + ((pid_d * BLOCK_D) // dgB) * sBg
    if C_CONST:
        Cc = tl.load(C_ptr + offs_d[:, None] * sCg + offs_n[None, :] * sCn, mask=mdn, other=0.0).to(tl.float32)
    else:
        Cbase = C_ptr + pid_b * sCb + ((pid_d * BLOCK_D) // dgC) * sCg
    is_last = (tl.arange(0, CHUNK) == CHUNK - 1)[None, :, None]
    for c in range(0, nchunks):
        offs_t = c * CHUNK + tl.arange(0, CHUNK)
        mt = offs_t < L
        m2 = md[:, None] & mt[None, :]
        if SAVE_CKPT:
            tl.store(ckpt_ptr + ((pid_b * dim + offs_d[:, None]) * nchunks + c) * N + offs_n[None, :], h, mask=mdn)
        ptr2 = row[:, None] + offs_t[None, :]
        uu = tl.load(u_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
        dl = tl.load(delta_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dl = dl + bv[:, None]
        if SOFTPLUS:
            dl = softplus(dl)
        dt = tl.where(m2, dl, 0.0)
        a = tl.exp2(dt[:, :, None] * A2[:, None, :])
        if B_CONST:
            x = (dt * uu)[:, :, None] * Bc[:, None, :]
        else:
            Bt = tl.load(Bbase + offs_t[:, None] * sBl + offs_n[None, :] * sBn,
                         mask=mt[:, None] & mn[None, :], other=0.0).to(tl.float32)
            x = (dt * uu)[:, :, None] * Bt[None, :, :]
        ac, xc = tl.associative_scan((a, x), axis=1, combine_fn=linear_combine)
        hs = ac * h[:, None, :] + xc
        if C_CONST:
            y = tl.sum(hs * Cc[:, None, :], axis=2)
        else:
            Ct = tl.load(Cbase + offs_t[:, None] * sCl + offs_n[None, :] * sCn,
                         mask=mt[:, None] & mn[None, :], other=0.0).to(tl.float32)
            y = tl.sum(hs * Ct[None, :, :], axis=2)
        if HAS_D:
            y = y + Dv[:, None] * uu
        if HAS_Z:
            zz = tl.load(z_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
            y = y * zz * sigmoid(zz)
        tl.store(out_ptr + ptr2, y.to(out_ptr.dtype.element_ty), mask=m2)
        h = tl.sum(tl.where(is_last, hs, 0.0), axis=1)
    tl.store(last_ptr + state_off, h, mask=mdn)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr, g_ptr, glast_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, dh0_ptr,
    dim, L, N, dgB, dgC, nchunks,
    sBb, sBg, sBn, sBl, sCb, sCg, sCn, sCl,
    tBb, tBg, tCb, tCg,
    BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, NP: tl.constexpr,
    B_CONST: tl.constexpr, C_CONST: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_GLAST: tl.constexpr,
    NEED_DH0: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    md = offs_d < dim
    offs_n = tl.arange(0, NP)
    mn = offs_n < N
    mdn = md[:, None] & mn[None, :]
    Araw = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mdn, other=0.0).to(tl.float32)
    A2 = Araw * 1.4426950408889634
    row = (pid_b * dim + offs_d) * L
    state_off = (pid_b * dim + offs_d[:, None]) * N + offs_n[None, :]
    if HAS_GLAST:
        carry = tl.load(glast_ptr + state_off, mask=mdn, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bv = tl.load(bias_ptr + offs_d, mask=md, other=0.0).to(tl.float32)
    if B_CONST:
        Bc = tl.load(B_ptr + offs_d[:, None] * sBg + offs_n[None, :] * sBn, mask=mdn, other=0.0).to(tl.float32)
        dBc = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
    else:
        Bbase = B_ptr + pid_b * sBb + ((pid_d * BLOCK_D) // dgB) * sBg
        dBbase = dB_ptr + pid_b * tBb + ((pid_d * BLOCK_D) // dgB) * tBg
    if C_CONST:
        Cc = tl.load(C_ptr + offs_d[:, None] * sCg + offs_n[None, :] * sCn, mask=mdn, other=0.0).to(tl.float32)
        dCc = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
    else:
        Cbase = C_ptr + pid_b * sCb + ((pid_d * BLOCK_D) // dgC) * sCg
        dCbase = dC_ptr + pid_b * tCb + ((pid_d * BLOCK_D) // dgC) * tCg
    dA_acc = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    is_first = (tl.arange(0, CHUNK) == 0)[None, :, None]
    ones = tl.full([BLOCK_D, CHUNK, NP], 1.0, dtype=tl.float32)
    zeros = tl.zeros([BLOCK_D, CHUNK, NP], dtype=tl.float32)
    for i in range(0, nchunks):
        c = nchunks - 1 - i
        offs_t = c * CHUNK + tl.arange(0, CHUNK)
        mt = offs_t < L
        m2 = md[:, None] & mt[None, :]
        mtn = mt[:, None] & mn[None, :]
        ptr2 = row[:, None] + offs_t[None, :]
        # ---- recompute the forward inside the chunk
        h0 = tl.load(ckpt_ptr + ((pid_b * dim + offs_d[:, None]) * nchunks + c) * N + offs_n[None, :], mask=mdn, other=0.0)
        uu = tl.load(u_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
        dl = tl.load(delta_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dl = dl + bv[:, None]
        if SOFTPLUS:
            dt = tl.where(m2, softplus(dl), 0.0)
        else:
            dt = tl.where(m2, dl, 0.0)
        a = tl.exp2(dt[:, :, None] * A2[:, None, :])
        dtu = dt * uu
        if B_CONST:
            Bx = Bc[:, None, :]
        else:
            Bx = tl.load(Bbase + offs_t[:, None] * sBl + offs_n[None, :] * sBn, mask=mtn, other=0.0).to(tl.float32)[None, :, :]
        x = dtu[:, :, None] * Bx
        # inclusive maps give h_t, the "all but the last step" maps give h_{t-1}
        ac, xc, pc, yc = tl.associative_scan((a, x, ones, zeros), axis=1,
                                             combine_fn=linear_combine_excl)
        hs = ac * h0[:, None, :] + xc
        hprev = pc * h0[:, None, :] + yc
        if C_CONST:
            Cx = Cc[:, None, :]
        else:
            Cx = tl.load(Cbase + offs_t[:, None] * sCl + offs_n[None, :] * sCn, mask=mtn, other=0.0).to(tl.float32)[None, :, :]
        gg = tl.load(g_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
        if HAS_Z:
            y = tl.sum(hs * Cx, axis=2)
            if HAS_D:
                y = y + Dv[:, None] * uu
            zz = tl.load(z_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
            sz = sigmoid(zz)
            gy = gg * zz * sz
            dzv = gg * y * sz * (1.0 + zz * (1.0 - sz))
            tl.store(dz_ptr + ptr2, dzv.to(dz_ptr.dtype.element_ty), mask=m2)
        else:
            gy = gg
        # ---- adjoint.  mu_t = a_t lam_t obeys mu_t = a_t (gy_t C_t + mu_{t+1}): a reverse scan of
        # the maps mu -> a_t mu + a_t c_t; its "all but the last step" part gives mu_{t+1},
        # so lam_t = c_t + mu_{t+1} needs no shifted decay.  carry = mu entering from the right.
        cc = gy[:, :, None] * Cx
        am, xm, pm, ym = tl.associative_scan((a, a * cc, ones, zeros), axis=1,
                                             combine_fn=linear_combine_excl, reverse=True)
        lam = cc + pm * carry[:, None, :] + ym
        carry = tl.sum(tl.where(is_first, am * carry[:, None, :] + xm, 0.0), axis=1)
        # ---- gradients
        gdtA = lam * a * hprev  # d(dt_t A) = lam_t a_t h_{t-1}
        dA_acc += tl.sum(gdtA * dt[:, :, None], axis=1)
        lamB = tl.sum(lam * Bx, axis=2)
        ddt = tl.sum(gdtA * Araw[:, None, :], axis=2) + uu * lamB
        duv = dt * lamB
        if HAS_D:
            duv = duv + gy * Dv[:, None]
            dD_acc += tl.sum(gy * uu, axis=1)
        if SOFTPLUS:
            ddt = ddt * sigmoid(dl)  # dl still holds delta + bias before the softplus
        ddt = tl.where(m2, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + ptr2, duv.to(du_ptr.dtype.element_ty), mask=m2)
        tl.store(ddelta_ptr + ptr2, ddt.to(ddelta_ptr.dtype.element_ty), mask=m2)
        if B_CONST:
            dBc += tl.sum(lam * dtu[:, :, None], axis=1)
        else:
            tl.atomic_add(dBbase + offs_t[:, None] + offs_n[None, :] * L,
                          tl.sum(lam * dtu[:, :, None], axis=0), mask=mtn)
        if C_CONST:
            dCc += tl.sum(hs * gy[:, :, None], axis=1)
        else:
            tl.atomic_add(dCbase + offs_t[:, None] + offs_n[None, :] * L,
                          tl.sum(hs * gy[:, :, None], axis=0), mask=mtn)
    if NEED_DH0:  # d h_{-1} = a_0 lam_0 = mu_0
        tl.store(dh0_ptr + state_off, carry, mask=mdn)
    tl.store(dA_ptr + state_off, dA_acc, mask=mdn)
    if B_CONST:
        tl.store(dB_ptr + state_off, dBc, mask=mdn)
    if C_CONST:
        tl.store(dC_ptr + state_off, dCc, mask=mdn)
    if HAS_D:
        tl.store(dD_ptr + pid_b * dim + offs_d, dD_acc, mask=md)
    if HAS_BIAS:
        tl.store(dbias_ptr + pid_b * dim + offs_d, dbias_acc, mask=md)


def _bc_info(X, d):
    """(const, dg, strides (b, g, n, l)) for B or C."""
    if X.dim() == 2:
        return True, 1, (0, X.stride(0), X.stride(1), 0)
    if X.dim() == 3:
        return False, d, (X.stride(0), 0, X.stride(1), X.stride(2))
    return False, d // X.shape[1], (X.stride(0), X.stride(1), X.stride(2), X.stride(3))


# (block_d, chunk, num_warps) forced by benchmarks/gpu_ops.py while sweeping launch configs
CONFIG_OVERRIDE = {"fwd": None, "bwd": None}


def _config(d, NP, dgB, dgC, chunk, for_backward=False):
    """(BLOCK_D, CHUNK, num_warps).  BLOCK_D divides the channels of one B/C group."""
    forced = CONFIG_OVERRIDE["bwd" if for_backward else "fwd"]
    if forced is not None:
        bd, ch, warps = forced
        if for_backward and chunk is not None:
            ch = chunk
        for dg in (dgB, dgC):
            if dg is not None:
                bd = largest_pow2_divisor(dg, bd)
        return bd, ch, warps
    if chunk is None:
        chunk = 8 if interpreting() else 32
    chunk = next_pow2(chunk)
    budget = 2048 if for_backward else 4096  # elements of one (BLOCK_D, CHUNK, NP) tile
    cap = max(1, min(64, budget // (chunk * NP)))
    if interpreting():
        cap = min(cap, 16)
    cap = min(cap, next_pow2(d))
    for dg in (dgB, dgC):
        if dg is not None:
            cap = largest_pow2_divisor(dg, cap)
    return cap, chunk, 4


def _prep(*ts):
    return [None if t is None else t.contiguous() for t in ts]


def scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus, h0, chunk, save_for_backward):
    """Run the forward kernel.  Returns ``(out, last_state, chunk_start_states, chunk)``."""
    u, delta, A, D, z, delta_bias, h0 = _prep(u, delta, A, D, z, delta_bias, h0)
    b, d, L = u.shape
    N = A.shape[1]
    NP = next_pow2(N)
    B_const, dgB, sB = _bc_info(B, d)
    C_const, dgC, sC = _bc_info(C, d)
    BD, CH, warps = _config(d, NP, None if B_const else dgB, None if C_const else dgC, chunk)
    nch = triton.cdiv(L, CH)
    dev = u.device
    out = torch.empty((b, d, L), dtype=u.dtype, device=dev)
    last = torch.empty((b, d, N), dtype=torch.float32, device=dev)
    ckpt = torch.empty((b, d, nch, N), dtype=torch.float32, device=dev) if save_for_backward else last
    dummy = last
    grid = (b, triton.cdiv(d, BD))
    _scan_fwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else dummy, z if z is not None else dummy,
        delta_bias if delta_bias is not None else dummy, h0 if h0 is not None else dummy,
        out, last, ckpt,
        d, L, N, dgB, dgC, nch, *sB, *sC,
        BLOCK_D=BD, CHUNK=CH, NP=NP, B_CONST=B_const, C_CONST=C_const,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(softplus), HAS_H0=h0 is not None, SAVE_CKPT=bool(save_for_backward),
        num_warps=warps,
    )
    if u.dtype == torch.float64:
        last = last.double()
    return out, last, (ckpt if save_for_backward else None), CH


def scan_bwd(gout, glast, u, delta, A, B, C, D, z, delta_bias, softplus, ckpt, chunk,
             need_h0_grad=False):
    """Run the backward kernel.  Returns ``(du, ddelta, dA, dB, dC, dD, dz, dbias, dh0)``."""
    gout, glast, u, delta, A, D, z, delta_bias = _prep(gout, glast, u, delta, A, D, z, delta_bias)
    b, d, L = u.shape
    N = A.shape[1]
    NP = next_pow2(N)
    B_const, dgB, sB = _bc_info(B, d)
    C_const, dgC, sC = _bc_info(C, d)
    BD, CH, warps = _config(d, NP, None if B_const else dgB, None if C_const else dgC, chunk,
                            for_backward=True)
    assert CH == chunk, "backward must use the forward's chunk length"
    nch = ckpt.shape[2]
    dev = u.device
    f32 = dict(dtype=torch.float32, device=dev)
    du = torch.empty((b, d, L), dtype=u.dtype, device=dev)
    ddelta = torch.empty((b, d, L), dtype=delta.dtype, device=dev)
    dz = torch.empty((b, d, L), dtype=z.dtype, device=dev) if z is not None else du
    dA = torch.empty((b, d, N), **f32)
    dB = torch.empty((b, d, N), **f32) if B_const else torch.zeros(
        (b, 1 if B.dim() == 3 else B.shape[1], N, L), **f32)
    dC = torch.empty((b, d, N), **f32) if C_const else torch.zeros(
        (b, 1 if C.dim() == 3 else C.shape[1], N, L), **f32)
    dD = torch.empty((b, d), **f32) if D is not None else dA
    dbias = torch.empty((b, d), **f32) if delta_bias is not None else dA
    dh0 = torch.empty((b, d, N), **f32) if need_h0_grad else dA
    dummy = dA
    grid = (b, triton.cdiv(d, BD))
    _scan_bwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else dummy, z if z is not None else dummy,
        delta_bias if delta_bias is not None else dummy, ckpt, gout,
        glast if glast is not None else dummy,
        du, ddelta, dz, dA, dB, dC, dD, dbias, dh0,
        d, L, N, dgB, dgC, nch, *sB, *sC,
        0 if B_const else dB.stride(0), 0 if B_const else dB.stride(1),
        0 if C_const else dC.stride(0), 0 if C_const else dC.stride(1),
        BLOCK_D=BD, CHUNK=CH, NP=NP, B_CONST=B_const, C_CONST=C_const,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(softplus), HAS_GLAST=glast is not None, NEED_DH0=bool(need_h0_grad),
        num_warps=warps,
    )
    dA = dA.sum(0)
    dB = dB.sum(0) if B_const else (dB.squeeze(1) if B.dim() == 3 else dB)
    dC = dC.sum(0) if C_const else (dC.squeeze(1) if C.dim() == 3 else dC)
    return (du, ddelta, dA, dB, dC, dD.sum(0) if D is not None else None,
            dz if z is not None else None, dbias.sum(0) if delta_bias is not None else None,
            dh0 if need_h0_grad else None)
