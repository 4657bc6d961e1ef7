"""RWKV "WKV" recurrences: RWKV-4 (per-channel decay), RWKV-6 (matrix state, dynamic decay).

Decay convention (both ops): ``w`` is a **log-decay, w <= 0**; one step multiplies the state
by ``exp(w)``.  Conversions from the RWKV parametrisations, done by the caller:

* RWKV-4: the model parameter ``time_decay`` gives ``w = -exp(time_decay)``; ``u`` is the
  model's ``time_first`` unchanged.
* RWKV-6: the data-dependent decay ``w_raw`` (output of the LoRA) gives
  ``w = -exp(w_raw)``; ``u`` is ``time_faaaa`` reshaped to ``(heads, head_dim)``.

Backends (``backend=`` argument): ``"reference"`` (per-step loop), ``"cpu"`` (chunked torch,
differentiated by autograd, runs on any device), ``"triton"`` (Triton kernels),
``"auto"`` (Triton on CUDA, else ``"cpu"``).  The RWKV-6 Triton forward is chunked (matrix
products on the tensor cores, :mod:`._wkv6_chunked_triton`) for sequences of 64 steps or
more, recurrent otherwise, and so is its backward (:mod:`._wkv6_chunked_bwd_triton`).
The other Triton backwards are recurrent Triton kernels (see :mod:`._wkv_triton`): for
RWKV-4 the forward saves the per-step state history and one reverse-time kernel
differentiates the running-maximum step; for RWKV-6 the forward saves the state every 64
steps and one reverse-time kernel recomputes the states of each 16-step sub-chunk in
registers next to the adjoint.  In both RWKV-6 backwards every gradient, ``dw`` included, is
a sum of products of bounded factors (no difference of large quantities).  All backends compute in float64 when an input is float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from probkit.utils.validation import check_int

from ._common import (check_nonpositive, check_same_device, check_shape, check_tensor,
                      compute_dtype, resolve_backend, restore_scan_context, save_scan_context)
from ._docs import OPS_DOCS
from ._reference import wkv4_ref, wkv6_ref

__all__ = ["wkv4", "wkv4_step", "wkv6", "wkv6_step"]

_NEG = -1e38  # "log of zero" for the running maximum of an empty RWKV-4 state


def _check_chunk(chunk_size, default):
    return default if chunk_size is None else check_int(chunk_size, "chunk_size")


class _WKV4Triton(torch.autograd.Function):
    """RWKV-4 with Triton kernels for the forward and the backward."""

    @staticmethod
    def forward(ctx, w, u, k, v, state0):
        from ._wkv_triton import wkv4_fwd

        need = any(ctx.needs_input_grad)
        res = wkv4_fwd(w, u, k, v, state0, save_history=need)
        ctx.set_materialize_grads(False)
        if need:
            y, sT, hist = res
            ctx.save_for_backward(w, u, k, v, y, hist, state0)
            return y, sT
        return res

    @staticmethod
    def backward(ctx, gy, gsT):
        from ._wkv_triton import wkv4_bwd

        w, u, k, v, y, hist, state0 = ctx.saved_tensors
        if gy is None:
            gy = torch.zeros_like(y)
        gw, gu, gk, gv, gs0 = wkv4_bwd(w, u, k, v, y, hist, gy, gsT)
        return (gw.to(w.dtype), gu.to(u.dtype), gk, gv,
                None if state0 is None else gs0.to(state0.dtype))


class _WKV6Triton(torch.autograd.Function):
    """RWKV-6 with Triton kernels for the forward and the backward.

    The forward is the chunked ``tl.dot`` kernel or the fused-recurrent one, by
    :func:`._wkv6_chunked_triton.use_chunked`; the backward likewise, by
    :func:`._wkv6_chunked_bwd_triton.use_chunked_backward`.  Either forward saves the
    states the backward recomputes from.
    """

    @staticmethod
    def forward(ctx, r, k, v, w, u, state0):
        from ._wkv6_chunked_bwd_triton import SAVE_EVERY, use_chunked_backward
        from ._wkv6_chunked_triton import use_chunked, wkv6_fwd_chunked
        from ._wkv_triton import _wkv6_chunks, wkv6_fwd

        need = any(ctx.needs_input_grad)
        L, ct = r.shape[2], compute_dtype(r, k, v, w, u, state0)
        sub, nsub = _wkv6_chunks(L)
        chunked_fwd = use_chunked(L, ct)
        ctx.chunked_bwd = need and use_chunked_backward(L, ct)
        # the spacing of the saved states: the recurrent forward's is fixed (SUB * NSUB)
        ctx.save_every = SAVE_EVERY if ctx.chunked_bwd and chunked_fwd else sub * nsub
        if chunked_fwd:
            o, sT, ck = wkv6_fwd_chunked(r, k, v, w, u, state0,
                                         save_every=ctx.save_every if need else None)
        else:
            o, sT, ck = wkv6_fwd(r, k, v, w, u, state0, save_chunks=need)
        save_scan_context(ctx, state0, need, r, k, v, w, u, ck)
        return o, sT

    @staticmethod
    def backward(ctx, do, dsT):
        from ._wkv6_chunked_bwd_triton import wkv6_bwd_chunked
        from ._wkv_triton import wkv6_bwd

        (r, k, v, w, u, ck), do, need_s0 = restore_scan_context(ctx, do, h0_index=5, out_like=2)
        if ctx.chunked_bwd:
            grads = wkv6_bwd_chunked(r, k, v, w, u, ck, do, dsT, save_every=ctx.save_every)
        else:
            grads = wkv6_bwd(r, k, v, w, u, ck, do, dsT)
        dr, dk, dv, dw, du = (g.to(x.dtype) for g, x in zip(grads[:5], (r, k, v, w, u)))
        return dr, dk, dv, dw, du, grads[5].to(ctx.h0_dtype) if need_s0 else None


# ----------------------------------------------------------------------------- RWKV-4


def _wkv4_chunked(w, u, k, v, state0, T):
    """Chunked RWKV-4 WKV in torch (differentiable).

    Inside a chunk of ``T`` steps all pairwise log-weights ``w (i - 1 - j) + k_j`` are
    formed at once and each output row is normalised by its own maximum (the ratio is
    invariant to that shift, so it is detached); chunks exchange the state in the
    ``(aa, bb, pp)`` running-maximum form, so nothing overflows for large keys.
    """
    ct = compute_dtype(w, u, k, v, state0)
    b, L, Cn = k.shape
    dev = k.device
    nc = (L + T - 1) // T
    pad = nc * T - L
    ww, uu = w.to(ct), u.to(ct)
    kk = F.pad(k.to(ct), (0, 0, 0, pad), value=-1e30).view(b, nc, T, Cn)
    vv = F.pad(v.to(ct), (0, 0, 0, pad)).view(b, nc, T, Cn)
    i = torch.arange(T, device=dev)
    rel = (i[:, None] - 1 - i[None, :]).to(ct)  # i - 1 - j
    lg = ww * rel[..., None] + kk[:, :, None, :, :]  # (b, nc, T_i, T_j, C)
    diag = (uu + kk)[:, :, :, None, :]  # u + k_i on the diagonal
    eye = (i[:, None] == i[None, :])[..., None]
    lower = (i[:, None] > i[None, :])[..., None]
    lg = torch.where(eye, diag, torch.where(lower, lg, torch.full_like(lg, float("-inf"))))
    mloc = lg.detach().amax(3)  # (b, nc, T, C)
    e = torch.exp(lg - mloc[:, :, :, None, :])
    numloc = (e * vv[:, :, None, :, :]).sum(3)
    denloc = e.sum(3)
    lens = torch.full((nc,), T, device=dev, dtype=ct)
    lens[-1] = T - pad
    E = ww * (lens[:, None] - 1 - i[None, :].to(ct))[..., None] + kk  # (b, nc, T, C)
    ploc = E.amax(2)  # (b, nc, C)
    pd = ploc.detach()
    eE = torch.exp(E - pd[:, :, None, :])
    aloc = (eE * vv).sum(2)
    bloc = eE.sum(2)
    if state0 is None:
        aa = torch.zeros(b, Cn, dtype=ct, device=dev)
        bb = torch.zeros(b, Cn, dtype=ct, device=dev)
        pp = torch.full((b, Cn), _NEG, dtype=ct, device=dev)
    else:
        aa, bb, pp = state0.to(ct).unbind(1)
    wi = ww * i[:, None].to(ct)  # (T, C)
    outs = []
    for c in range(nc):
        sl = pp[:, None, :] + wi
        m = torch.maximum(mloc[:, c], sl).detach()
        e1 = torch.exp(sl - m)
        e2 = torch.exp(mloc[:, c] - m)
        outs.append((e1 * aa[:, None] + e2 * numloc[:, c]) / (e1 * bb[:, None] + e2 * denloc[:, c]))
        q = pp + ww * lens[c]
        pnew = torch.maximum(q, ploc[:, c])
        f1 = torch.exp(q - pnew)
        f2 = torch.exp(pd[:, c] - pnew)
        aa = f1 * aa + f2 * aloc[:, c]
        bb = f1 * bb + f2 * bloc[:, c]
        pp = pnew
    y = torch.cat(outs, dim=1)[:, :L].to(v.dtype)
    return y, torch.stack([aa, bb, pp], dim=1)


def _check_wkv4(w, u, k, v, state, state_name):
    check_tensor(k, "k", ndim=3)
    b, L, Cn = k.shape
    if L == 0:
        raise ValueError("k has sequence length L=0; wkv4 needs L >= 1")
    check_tensor(v, "v", ndim=3)
    check_shape(v, "v", (b, L, Cn), "same as k")
    check_tensor(w, "w", ndim=1)
    check_shape(w, "w", (Cn,), "(channels,)")
    check_tensor(u, "u", ndim=1)
    check_shape(u, "u", (Cn,), "(channels,)")
    check_tensor(state, state_name, ndim=3, allow_none=True)
    check_shape(state, state_name, (b, 3, Cn), "(batch, 3, channels) = stacked (aa, bb, pp)")
    check_same_device("k", k, v=v, w=w, u=u, **{state_name: state})
    check_nonpositive(w, "w", "w is the log-decay; from RWKV-4's time_decay use w = -exp(time_decay)")


@OPS_DOCS.fill
def wkv4(w, u, k, v, initial_state=None, return_last_state=False, backend="auto",
         chunk_size=None):
    r"""RWKV-4 WKV operator (numerically stable running-maximum form).

    For each channel, with log-decay ``w <= 0`` and bonus ``u``::

        y_t = (sum_{s<t} e^{(t-1-s) w + k_s} v_s + e^{u + k_t} v_t)
              / (sum_{s<t} e^{(t-1-s) w + k_s}     + e^{u + k_t})

    Parameters
    ----------
    w : Tensor, shape (channels,)
        Log-decay, ``<= 0``.  From RWKV-4's ``time_decay`` parameter: ``w = -exp(time_decay)``.
    u : Tensor, shape (channels,)
        Bonus for the current token (RWKV-4's ``time_first``).
    k, v : Tensor, shape (batch, L, channels)
    initial_state : Tensor of shape (batch, 3, channels), optional
        Stacked ``(aa, bb, pp)``: the numerator and denominator sums scaled by ``exp(-pp)``
        and the log-scale ``pp``.  The empty state is ``(0, 0, -1e38)`` (the default).
    %(wkv_options)s

    Returns
    -------
    y : Tensor, shape (batch, L, channels), dtype of ``v``
    last_state : Tensor, shape (batch, 3, channels)
        %(last_state_dtype)s

    Notes
    -----
    The ``cpu`` path forms all pairwise log-weights inside a chunk: memory
    ``O(batch * L * chunk_size * channels)``.  The ``triton`` path keeps the state in
    registers; with gradients it saves the state before every step, ``(batch, L, 3, C)``.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import wkv4
    >>> g = torch.Generator().manual_seed(0)
    >>> b, L, C = 2, 7, 4
    >>> time_decay = torch.randn(C, generator=g)
    >>> w, u = -torch.exp(time_decay), torch.randn(C, generator=g)
    >>> k, v = torch.randn(b, L, C, generator=g), torch.randn(b, L, C, generator=g)
    >>> y, s = wkv4(w, u, k, v, return_last_state=True)
    >>> y.shape, s.shape
    (torch.Size([2, 7, 4]), torch.Size([2, 3, 4]))
    >>> bool(torch.allclose(y, wkv4(w, u, k, v, backend="reference"), atol=1e-5))
    True
    """
    _check_wkv4(w, u, k, v, initial_state, "initial_state")
    T = _check_chunk(chunk_size, 16)
    backend = resolve_backend(backend, k.device, "wkv4", k.dtype)
    if backend == "reference":
        y, s = wkv4_ref(w, u, k, v, initial_state, return_last_state=True)
    elif backend == "cpu":
        y, s = _wkv4_chunked(w, u, k, v, initial_state, T)
    else:
        y, s = _WKV4Triton.apply(w, u, k, v, initial_state)
        s = s.to(compute_dtype(w, u, k, v, initial_state))
    return (y, s) if return_last_state else y


def wkv4_step(w, u, k, v, state=None):
    r"""One RWKV-4 WKV step for recurrent inference.

    Parameters
    ----------
    w, u : Tensor, shape (channels,)
        Log-decay (``<= 0``) and bonus, as in :func:`wkv4`.
    k, v : Tensor, shape (batch, channels)
    state : Tensor of shape (batch, 3, channels), optional
        ``(aa, bb, pp)`` before the step; the empty state when omitted.

    Returns
    -------
    y : Tensor, shape (batch, channels), dtype of ``v``
    new_state : Tensor, shape (batch, 3, channels)

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import wkv4, wkv4_step
    >>> g = torch.Generator().manual_seed(0)
    >>> w, u = -torch.rand(3, generator=g), torch.randn(3, generator=g)
    >>> k, v = torch.randn(1, 4, 3, generator=g), torch.randn(1, 4, 3, generator=g)
    >>> s, ys = None, []
    >>> for t in range(4):
    ...     y, s = wkv4_step(w, u, k[:, t], v[:, t], s)
    ...     ys.append(y)
    >>> bool(torch.allclose(torch.stack(ys, 1), wkv4(w, u, k, v), atol=1e-5))
    True
    """
    check_tensor(k, "k", ndim=2)
    _check_wkv4(w, u, k.unsqueeze(1), check_tensor(v, "v", ndim=2).unsqueeze(1), state, "state")
    y, s = wkv4_ref(w, u, k.unsqueeze(1), v.unsqueeze(1), state, return_last_state=True)
    return y[:, 0], s


# ----------------------------------------------------------------------------- RWKV-6


def _wkv6_chunked(r, k, v, w, u, state0, T):
    """Chunked RWKV-6 WKV in torch (differentiable).

    Within a chunk, with ``Lam_t`` the inclusive cumulative log-decay (computed in float64)
    the intra-chunk weights are ``sum_i r_t[i] k_s[i] exp(Lam_{t-1}[i] - Lam_s[i])`` for
    ``s < t``: exponents of differences with ``t-1 >= s``, always ``<= 0``, so there is no
    overflow whatever the decay.  All chunks' intra parts are computed at once; only the
    ``(K, V)`` chunk-boundary states are passed sequentially.  Memory is
    ``O(batch * heads * L * T * K)``.
    """
    ct = compute_dtype(r, k, v, w, u, state0)
    b, H, L, K = r.shape
    V = v.shape[-1]
    dev = r.device
    nc = (L + T - 1) // T
    pad = nc * T - L

    def chunked(x):
        return F.pad(x.to(ct), (0, 0, 0, pad)).view(b, H, nc, T, x.shape[-1])

    rc, kc, vc = chunked(r), chunked(k), chunked(v)
    wd = F.pad(w.to(torch.float64), (0, 0, 0, pad)).view(b, H, nc, T, K)
    lam = wd.cumsum(3)  # inclusive
    lex = lam - wd  # exclusive: decay from the chunk start up to t-1
    i = torch.arange(T, device=dev)
    strict = (i[:, None] > i[None, :])[..., None]  # s < t
    diff = (lex[..., :, None, :] - lam[..., None, :, :]).masked_fill(~strict, float("-inf"))
    att = torch.einsum("bhctk,bhcsk,bhctsk->bhcts", rc, kc, torch.exp(diff).to(ct))
    uu = u.to(ct)[None, :, None, None, :]
    o = att @ vc + (rc * uu * kc).sum(-1, keepdim=True) * vc
    q = rc * torch.exp(lex).to(ct)
    lam_end = lam[..., -1, :]  # (b, H, nc, K)
    kd = kc * torch.exp(lam_end[..., None, :] - lam).to(ct)
    decay = torch.exp(lam_end).to(ct)
    S = torch.zeros(b, H, K, V, dtype=ct, device=dev) if state0 is None else state0.to(ct)
    starts = []
    for c in range(nc):
        starts.append(S)
        S = decay[:, :, c, :, None] * S + kd[:, :, c].transpose(-1, -2) @ vc[:, :, c]
    o = o + q @ torch.stack(starts, dim=2)
    o = o.reshape(b, H, nc * T, V)[:, :, :L].to(v.dtype)
    return o, S


def _check_wkv6(r, k, v, w, u, state, state_name, step=False):
    dims = 3 if step else 4
    check_tensor(r, "r", ndim=dims)
    lead = tuple(r.shape[:-1])
    K = r.shape[-1]
    if not step and r.shape[2] == 0:
        raise ValueError("r has sequence length L=0; wkv6 needs L >= 1")
    check_tensor(k, "k", ndim=dims)
    check_shape(k, "k", r.shape, "same as r")
    check_tensor(w, "w", ndim=dims)
    check_shape(w, "w", r.shape, "same as r")
    check_tensor(v, "v", ndim=dims)
    if tuple(v.shape[:-1]) != lead:
        raise ValueError(f"v must have shape {lead + ('V',)}, got {tuple(v.shape)}")
    H = r.shape[1]
    check_tensor(u, "u", ndim=2)
    check_shape(u, "u", (H, K), "(heads, head_dim)")
    check_tensor(state, state_name, ndim=4, allow_none=True)
    check_shape(state, state_name, (r.shape[0], H, K, v.shape[-1]), "(batch, heads, K, V)")
    check_same_device("r", r, k=k, v=v, w=w, u=u, **{state_name: state})
    check_nonpositive(w, "w", "w is the log-decay; from RWKV-6's decay w_raw use w = -exp(w_raw)")


@OPS_DOCS.fill
def wkv6(r, k, v, w, u, initial_state=None, return_last_state=False, backend="auto",
         chunk_size=None):
    r"""RWKV-6 WKV operator (per-head matrix state, data-dependent decay).

    For each head, with state ``S`` of shape ``(K, V)``::

        o_t = r_t^T (S_{t-1} + diag(u) k_t v_t^T)
        S_t = diag(exp(w_t)) S_{t-1} + k_t v_t^T

    Parameters
    ----------
    r, k, w : Tensor, shape (batch, heads, L, K)
        Receptance, key and log-decay ``w <= 0`` (per channel and time step; from RWKV-6's
        ``w_raw``: ``w = -exp(w_raw)``).
    v : Tensor, shape (batch, heads, L, V)
        Values (``V`` is usually ``K``, the head size).
    u : Tensor, shape (heads, K)
        Bonus for the current token (``time_faaaa``).
    initial_state : Tensor of shape (batch, heads, K, V), optional
    %(wkv_options)s

    Returns
    -------
    o : Tensor, shape (batch, heads, L, V), dtype of ``v``
    last_state : Tensor, shape (batch, heads, K, V)
        %(last_state_dtype)s

    Notes
    -----
    The ``cpu`` path forms float64 pairwise decay differences inside a chunk: memory
    ``O(batch * heads * L * chunk_size * K)``.  The ``triton`` path keeps the ``(K, V)``
    state in registers and, for ``L >= 64``, steps 16 at a time with matrix products; with
    gradients its forward saves the state every 64 steps
    (``(batch, heads, L / 64, K, V)``).

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import wkv6
    >>> g = torch.Generator().manual_seed(0)
    >>> b, H, L, K = 1, 2, 9, 4
    >>> r, k, v = (torch.randn(b, H, L, K, generator=g) for _ in range(3))
    >>> w = -torch.exp(torch.randn(b, H, L, K, generator=g))
    >>> u = torch.randn(H, K, generator=g)
    >>> o, S = wkv6(r, k, v, w, u, return_last_state=True)
    >>> o.shape, S.shape
    (torch.Size([1, 2, 9, 4]), torch.Size([1, 2, 4, 4]))
    >>> bool(torch.allclose(o, wkv6(r, k, v, w, u, backend="reference"), atol=1e-5))
    True
    """
    _check_wkv6(r, k, v, w, u, initial_state, "initial_state")
    T = _check_chunk(chunk_size, 16)
    backend = resolve_backend(backend, r.device, "wkv6", r.dtype)
    if backend == "reference":
        o, s = wkv6_ref(r, k, v, w, u, initial_state, return_last_state=True)
    elif backend == "cpu":
        o, s = _wkv6_chunked(r, k, v, w, u, initial_state, T)
    else:
        o, s = _WKV6Triton.apply(r, k, v, w, u, initial_state)
        s = s.to(compute_dtype(r, k, v, w, u, initial_state))
    return (o, s) if return_last_state else o


def wkv6_step(r, k, v, w, u, state=None):
    r"""One RWKV-6 WKV step for recurrent inference.

    Parameters
    ----------
    r, k, w : Tensor, shape (batch, heads, K)
    v : Tensor, shape (batch, heads, V)
    u : Tensor, shape (heads, K)
    state : Tensor of shape (batch, heads, K, V), optional (zeros when omitted)

    Returns
    -------
    o : Tensor, shape (batch, heads, V), dtype of ``v``
    new_state : Tensor, shape (batch, heads, K, V)

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import wkv6, wkv6_step
    >>> g = torch.Generator().manual_seed(0)
    >>> r, k, v = (torch.randn(1, 1, 3, 2, generator=g) for _ in range(3))
    >>> w, u = -torch.rand(1, 1, 3, 2, generator=g), torch.randn(1, 2, generator=g)
    >>> s, outs = None, []
    >>> for t in range(3):
    ...     o, s = wkv6_step(r[:, :, t], k[:, :, t], v[:, :, t], w[:, :, t], u, s)
    ...     outs.append(o)
    >>> bool(torch.allclose(torch.stack(outs, 2), wkv6(r, k, v, w, u), atol=1e-5))
    True
    """
    _check_wkv6(r, k, v, w, u, state, "state", step=True)
    o, s = wkv6_ref(r.unsqueeze(2), k.unsqueeze(2), v.unsqueeze(2), w.unsqueeze(2), u, state,
                    return_last_state=True)
    return o[:, :, 0], s
