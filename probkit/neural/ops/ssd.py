"""Mamba-2's state space duality (SSD) scan: public functions, argument checking, dispatch.

Three implementations share the semantics documented in :func:`ssd`:

``reference``
    a per-step Python loop of the recurrence (:func:`ssd_state_update`'s step), computed in
    float64 for float64 inputs and differentiated by autograd;
``cpu``
    the chunked form (:mod:`._ssd_cpu`): inside a chunk the quadratic, attention-like form
    with batched matrix products, between chunks the state passing; hand-written backward;
    runs on any torch device;
``triton``
    Triton kernels (:mod:`._ssd_triton`, imported lazily) using ``tl.dot`` for the
    intra-chunk matrices, forward and backward; on CUDA tensors, or on CPU tensors under
    ``TRITON_INTERPRET=1``.

The ``cpu`` and ``triton`` paths sit behind one :class:`torch.autograd.Function`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from probkit.utils.validation import check_int

from . import _ssd_cpu
from ._common import (check_nonpositive, check_same_device, check_shape, check_tensor,
                      compute_dtype, grad_as, resolve_backend, restore_scan_context, save_scan_context)

__all__ = ["ssd", "ssd_state_update"]


def _check_dt_limit(dt_limit):
    if dt_limit is None:
        return (-math.inf, math.inf)
    try:
        lo, hi = dt_limit
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"dt_limit must be None or a pair (low, high) of numbers, got {dt_limit!r}") from None
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"dt_limit must satisfy low <= high, got {dt_limit!r}")
    return lo, hi


def _check_groups(X, name, H):
    G = X.shape[-2]
    if G < 1 or H % G:
        raise ValueError(f"{name} has {G} groups, which must divide the number of heads ({H})")


def _check_D(D, H, P):
    check_tensor(D, "D", ndim=(1, 2), allow_none=True)
    if D is not None and tuple(D.shape) not in ((H,), (H, P)):
        raise ValueError(f"D must have shape (nheads,) = ({H},) or (nheads, headdim) = ({H}, {P}), "
                         f"got {tuple(D.shape)}")


def _check_ssd_args(x, dt, A, B, C, D, z, dt_bias, initial_state):
    check_tensor(x, "x", ndim=4)
    b, L, H, P = x.shape
    if L == 0:
        raise ValueError("x has sequence length L=0; the SSD scan needs L >= 1")
    if min(b, H, P) == 0:
        raise ValueError(f"x must have batch, nheads and headdim >= 1, got shape {tuple(x.shape)}")
    check_tensor(dt, "dt", ndim=3)
    check_shape(dt, "dt", (b, L, H), "(batch, L, nheads)")
    check_tensor(A, "A", ndim=1)
    check_shape(A, "A", (H,), "(nheads,): one scalar decay per head")
    check_tensor(B, "B", ndim=4)
    G, N = B.shape[2], B.shape[3]
    if N < 1:
        raise ValueError(f"B must have a state size N >= 1, got shape {tuple(B.shape)}")
    _check_groups(B, "B", H)
    check_shape(B, "B", (b, L, G, N), "(batch, L, ngroups, N)")
    check_tensor(C, "C", ndim=4)
    check_shape(C, "C", (b, L, G, N), "same as B: (batch, L, ngroups, N)")
    _check_D(D, H, P)
    check_tensor(z, "z", ndim=4, allow_none=True)
    check_shape(z, "z", (b, L, H, P), "same as x")
    check_tensor(dt_bias, "dt_bias", ndim=1, allow_none=True)
    check_shape(dt_bias, "dt_bias", (H,), "(nheads,)")
    check_tensor(initial_state, "initial_state", ndim=4, allow_none=True)
    check_shape(initial_state, "initial_state", (b, H, P, N), "(batch, nheads, headdim, N)")
    check_same_device("x", x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias,
                      initial_state=initial_state)
    check_nonpositive(A, "A", "decay convention S_t = exp(dt*A) S_{t-1} + ...; "
                      "parametrise it as A = -exp(A_log)")
    return b, L, H, P, G, N


class _SSDFn(torch.autograd.Function):
    """Autograd wrapper around the ``cpu`` and ``triton`` implementations."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, initial_state, softplus, dt_limit, backend,
                chunk):
        ct = compute_dtype(x, dt, A, B, C, D, z, dt_bias, initial_state)
        needs_grad = any(ctx.needs_input_grad[:9])
        if backend == "triton":
            from . import _ssd_triton

            out, last, saved, chunk = _ssd_triton.ssd_fwd(
                x, dt, A, B, C, D, z, dt_bias, softplus, dt_limit, initial_state, chunk,
                save_for_backward=needs_grad)
            starts, extra = saved if saved is not None else (None, None)
        else:  # extra: the output before the gate
            out, last, starts, extra = _ssd_cpu.ssd_fwd(
                x, dt, A, B, C, D, z, dt_bias, softplus, dt_limit, initial_state, chunk, ct,
                save_for_backward=needs_grad)
        ctx.softplus, ctx.dt_limit, ctx.backend, ctx.chunk, ctx.ct = softplus, dt_limit, backend, chunk, ct
        save_scan_context(ctx, initial_state, needs_grad, x, dt, A, B, C, D, z, dt_bias, starts, extra)
        return out, last

    @staticmethod
    def backward(ctx, gout, glast):
        (x, dt, A, B, C, D, z, dt_bias, starts, extra), gout, need_h0 = restore_scan_context(ctx, gout)
        if ctx.backend == "triton":
            from . import _ssd_triton

            grads = _ssd_triton.ssd_bwd(gout, glast, x, dt, A, B, C, D, z, dt_bias, ctx.softplus,
                                        ctx.dt_limit, (starts, extra), ctx.chunk,
                                        need_h0_grad=need_h0)
        else:
            grads = _ssd_cpu.ssd_bwd(gout, glast, x, dt, A, B, C, D, z, dt_bias, ctx.softplus,
                                     ctx.dt_limit, starts, extra, ctx.chunk, ctx.ct,
                                     need_h0_grad=need_h0)
        dx, ddt, dA, dB, dC, dD, dz, dbias, dh0 = grads
        return (grad_as(dx, x), grad_as(ddt, dt), grad_as(dA, A), grad_as(dB, B),
                grad_as(dC, C), grad_as(dD, D), grad_as(dz, z),
                grad_as(dbias, dt_bias),
                None if dh0 is None else dh0.to(ctx.h0_dtype), None, None, None, None)


def _heads(X, H):
    """(..., G, N) grouped B or C -> (..., H, N): head ``h`` uses group ``h // (H // G)``."""
    return X.repeat_interleave(H // X.shape[-2], dim=-2)


def _recurrence_step(S, x_t, dt_t, A, B_t, C_t, D, z_t):
    """One step on prepared tensors: S (b, H, P, N), x_t (b, H, P), dt_t (b, H), B_t/C_t (b, G, N)."""
    H = x_t.shape[1]
    decay = torch.exp(dt_t * A)[:, :, None, None]
    S = decay * S + (dt_t[:, :, None] * x_t)[..., None] * _heads(B_t, H)[:, :, None, :]
    y = (S * _heads(C_t, H)[:, :, None, :]).sum(-1)
    if D is not None:
        y = y + x_t * (D[:, None] if D.dim() == 1 else D)
    if z_t is not None:
        y = y * F.silu(z_t)
    return y, S


def _ssd_reference(x, dt, A, B, C, D, z, dt_bias, softplus, dt_limit, initial_state):
    """The recurrence by a per-step loop (the oracle of the tests)."""
    ct = compute_dtype(x, dt, A, B, C, D, z, dt_bias, initial_state)
    b, L, H, P = x.shape
    N = B.shape[-1]
    dtv, _ = _ssd_cpu.prepare_dt(dt, dt_bias, softplus, dt_limit, ct)
    xx, AA, BB, CC = x.to(ct), A.to(ct), B.to(ct), C.to(ct)
    DD = None if D is None else D.to(ct)
    zz = None if z is None else z.to(ct)
    S = (torch.zeros(b, H, P, N, dtype=ct, device=x.device) if initial_state is None
         else initial_state.to(ct))
    ys = []
    for t in range(L):
        y, S = _recurrence_step(S, xx[:, t], dtv[:, t], AA, BB[:, t], CC[:, t], DD,
                                None if zz is None else zz[:, t])
        ys.append(y)
    return torch.stack(ys, dim=1).to(x.dtype), S


def ssd(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=None,
        return_last_state=False, initial_state=None, backend="auto", chunk_size=None):
    r"""Mamba-2's SSD scan: a selective state space model with scalar decay per head.

    With ``dt' = clamp(softplus(dt + dt_bias), *dt_limit)`` (the softplus only with
    ``dt_softplus``, the clamp only with ``dt_limit``) and, for every head ``h``, a state
    ``S`` of shape ``(headdim, N)`` starting at ``initial_state`` (zeros by default)::

        S_t = exp(dt'_t A_h) S_{t-1} + dt'_t x_t B_t^T       (x_t: (headdim,), B_t: (N,))
        y_t = S_t C_t + D_h x_t
        out_t = y_t * silu(z_t)                               (only when z is given)

    ``A`` is a scalar per head (``A I`` in the paper), so inside a chunk of ``T`` steps the
    map from inputs to outputs is a masked ``T x T`` "attention" matrix
    ``(C B^T) o exp(segment sums of dt' A)``; the implementations other than the reference
    use that form inside chunks and pass the state between chunks.

    Parameters
    ----------
    x : Tensor, shape (batch, L, nheads, headdim)
        Input (float32, float64, bfloat16 or float16).
    dt : Tensor, shape (batch, L, nheads)
        Time steps before the optional bias, softplus and clamp.
    A : Tensor, shape (nheads,)
        Decay rate per head, ``<= 0`` (parametrised as ``A = -exp(A_log)``); a
        ``ValueError`` is raised otherwise.
    B, C : Tensor, shape (batch, L, ngroups, N)
        Input and output projections; head ``h`` uses group ``h // (nheads // ngroups)``
        (``ngroups`` divides ``nheads``).
    D : Tensor of shape (nheads,) or (nheads, headdim), optional
        Skip connection.
    z : Tensor of shape (batch, L, nheads, headdim), optional
        Gate: the output is multiplied by ``silu(z)``.
    dt_bias : Tensor of shape (nheads,), optional
        Added to ``dt`` before the softplus.
    dt_softplus : bool, default False
        Apply ``softplus`` to ``dt + dt_bias``.
    dt_limit : (float, float), optional
        Clamp the time steps (after the softplus) to this range; gradients are zero where a
        step is clamped.
    return_last_state : bool, default False
        Also return the state after the last step.
    initial_state : Tensor of shape (batch, nheads, headdim, N), optional
        State before the first step; gradients flow into it.
    backend : {"auto", "reference", "cpu", "triton"}, default "auto"
        ``"auto"`` uses Triton for CUDA tensors when Triton is installed and ``"cpu"``
        otherwise and for float64 inputs; ``"reference"`` is the per-step loop.
    chunk_size : int, optional
        Steps per chunk: default 64 (at most ``L``) for ``cpu``; for ``triton`` rounded up to
        a power of two in [16, 64] (default 32 on GPU, 16 under the interpreter).  Results
        do not depend on it beyond rounding.

    Returns
    -------
    out : Tensor, shape (batch, L, nheads, headdim), dtype of ``x``
    last_state : Tensor, shape (batch, nheads, headdim, N)
        Only with ``return_last_state=True``; float32 (float64 for float64 inputs).

    Notes
    -----
    Accumulations are float32 for float32/bfloat16/float16 inputs and float64 for float64
    inputs on the ``reference`` and ``cpu`` paths; the Triton kernels compute in float32.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import ssd
    >>> g = torch.Generator().manual_seed(0)
    >>> b, L, H, P, G, N = 2, 10, 4, 3, 2, 5
    >>> x, dt = torch.randn(b, L, H, P, generator=g), torch.randn(b, L, H, generator=g)
    >>> A = -torch.rand(H, generator=g)
    >>> B, C = torch.randn(b, L, G, N, generator=g), torch.randn(b, L, G, N, generator=g)
    >>> out, state = ssd(x, dt, A, B, C, dt_softplus=True, return_last_state=True, chunk_size=4)
    >>> out.shape, state.shape
    (torch.Size([2, 10, 4, 3]), torch.Size([2, 4, 3, 5]))
    >>> ref = ssd(x, dt, A, B, C, dt_softplus=True, backend="reference")
    >>> bool(torch.allclose(out, ref, atol=1e-5))
    True
    """
    _check_ssd_args(x, dt, A, B, C, D, z, dt_bias, initial_state)
    limit = _check_dt_limit(dt_limit)
    chunk_size = check_int(chunk_size, "chunk_size", allow_none=True)
    backend = resolve_backend(backend, x.device, "ssd", x.dtype)
    if backend == "reference":
        out, last = _ssd_reference(x, dt, A, B, C, D, z, dt_bias, bool(dt_softplus), limit,
                                   initial_state)
    else:
        if backend == "cpu":
            chunk = min(int(chunk_size), x.shape[1]) if chunk_size else _ssd_cpu.default_chunk(x.shape[1])
        else:
            chunk = None if chunk_size is None else int(chunk_size)
        out, last = _SSDFn.apply(x, dt, A, B, C, D, z, dt_bias, initial_state, bool(dt_softplus),
                                 limit, backend, chunk)
    return (out, last) if return_last_state else out


def ssd_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False,
                     dt_limit=None, inplace=False):
    r"""One step of the SSD scan, for recurrent generation.

    Computes ``dt' = clamp(softplus(dt + dt_bias), *dt_limit)``,
    ``S = exp(dt' A) state + dt' x B^T`` and ``y = S C + D x`` (times ``silu(z)``) per head:
    exactly one time step of :func:`ssd`.

    Parameters
    ----------
    state : Tensor, shape (batch, nheads, headdim, N)
        State before the step (float32 recommended for 16-bit models).
    x : Tensor, shape (batch, nheads, headdim)
    dt : Tensor, shape (batch, nheads)
    A : Tensor, shape (nheads,)
        ``<= 0``.
    B, C : Tensor, shape (batch, ngroups, N)
    D : Tensor of shape (nheads,) or (nheads, headdim), optional
    z : Tensor of shape (batch, nheads, headdim), optional
    dt_bias : Tensor of shape (nheads,), optional
    dt_softplus : bool, default False
    dt_limit : (float, float), optional
    inplace : bool, default False
        Write the new state into ``state`` (and return it) instead of allocating one.

    Returns
    -------
    y : Tensor, shape (batch, nheads, headdim), dtype of ``x``
    new_state : Tensor, shape (batch, nheads, headdim, N), dtype of ``state``

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import ssd, ssd_state_update
    >>> g = torch.Generator().manual_seed(0)
    >>> b, L, H, P, N = 1, 6, 2, 3, 4
    >>> x, dt = torch.randn(b, L, H, P, generator=g), torch.randn(b, L, H, generator=g)
    >>> A = -torch.rand(H, generator=g)
    >>> B, C = torch.randn(b, L, 1, N, generator=g), torch.randn(b, L, 1, N, generator=g)
    >>> S = torch.zeros(b, H, P, N)
    >>> ys = []
    >>> for t in range(L):
    ...     y, S = ssd_state_update(S, x[:, t], dt[:, t], A, B[:, t], C[:, t], dt_softplus=True)
    ...     ys.append(y)
    >>> full = ssd(x, dt, A, B, C, dt_softplus=True)
    >>> bool(torch.allclose(torch.stack(ys, 1), full, atol=1e-5))
    True
    """
    check_tensor(state, "state", ndim=4)
    b, H, P, N = state.shape
    check_tensor(x, "x", ndim=3)
    check_shape(x, "x", (b, H, P), "(batch, nheads, headdim)")
    check_tensor(dt, "dt", ndim=2)
    check_shape(dt, "dt", (b, H), "(batch, nheads)")
    check_tensor(A, "A", ndim=1)
    check_shape(A, "A", (H,), "(nheads,)")
    check_tensor(B, "B", ndim=3)
    _check_groups(B, "B", H)
    check_shape(B, "B", (b, B.shape[1], N), "(batch, ngroups, N)")
    check_tensor(C, "C", ndim=3)
    check_shape(C, "C", tuple(B.shape), "same as B: (batch, ngroups, N)")
    _check_D(D, H, P)
    check_tensor(z, "z", ndim=3, allow_none=True)
    check_shape(z, "z", (b, H, P), "same as x")
    check_tensor(dt_bias, "dt_bias", ndim=1, allow_none=True)
    check_shape(dt_bias, "dt_bias", (H,), "(nheads,)")
    check_same_device("state", state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    check_nonpositive(A, "A", "decay convention; parametrise it as A = -exp(A_log)")
    limit = _check_dt_limit(dt_limit)
    ct = compute_dtype(state, x, dt, A, B, C, D, z, dt_bias)
    dtv, _ = _ssd_cpu.prepare_dt(dt, dt_bias, bool(dt_softplus), limit, ct)
    y, new = _recurrence_step(state.to(ct), x.to(ct), dtv, A.to(ct), B.to(ct), C.to(ct),
                              None if D is None else D.to(ct), None if z is None else z.to(ct))
    if inplace:
        with torch.no_grad():
            state.copy_(new)
        new = state
    else:
        new = new.to(state.dtype)
    return y.to(x.dtype), new
