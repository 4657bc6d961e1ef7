"""Mamba's selective scan (S6): public functions, argument checking and dispatch.

Three implementations share the semantics documented in :func:`selective_scan`:

``reference``
    a per-step Python loop (:mod:`._reference`), float64-capable, differentiated by autograd;
``cpu``
    on CPU tensors a numba-compiled forward (:mod:`._scan_cpu_numba`, one channel at a
    time with its states in L1), elsewhere the chunked torch forward (:mod:`._scan_cpu`);
    both store the states at chunk starts for the hand-written chunked backward, which
    recomputes inside chunks (on CPU tensors its state and adjoint recurrences run in
    numba kernels too); runs on any torch device;
``triton``
    fused Triton kernels (:mod:`._scan_triton`, imported lazily) for the forward and the
    backward, one channel per thread with its states in registers; on CUDA tensors, or on
    CPU tensors under ``TRITON_INTERPRET=1``.

The ``cpu`` and ``triton`` paths sit behind one :class:`torch.autograd.Function`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from probkit.utils.validation import check_int

from . import _scan_cpu
from ._common import (check_nonpositive, check_same_device, check_shape, check_tensor,
                      compute_dtype, grad_as, resolve_backend, restore_scan_context, save_scan_context)
from ._reference import selective_scan_ref

__all__ = ["selective_scan", "selective_state_update"]


def _check_bc(X, name, b, d, L, N):
    check_tensor(X, name, ndim=(2, 3, 4))
    if X.dim() == 2:
        check_shape(X, name, (d, N), "time-invariant (dim, N)")
    elif X.dim() == 3:
        check_shape(X, name, (b, N, L), "(batch, N, L)")
    else:
        G = X.shape[1]
        if G < 1 or d % G != 0:
            raise ValueError(f"{name} has {G} groups, which must divide dim={d}")
        check_shape(X, name, (b, G, N, L), "(batch, G, N, L)")


def _check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state):
    check_tensor(u, "u", ndim=3)
    b, d, L = u.shape
    if L == 0:
        raise ValueError("u has sequence length L=0; the selective scan needs L >= 1")
    if b == 0 or d == 0:
        raise ValueError(f"u must have batch >= 1 and dim >= 1, got shape {tuple(u.shape)}")
    check_tensor(delta, "delta", ndim=3)
    check_shape(delta, "delta", (b, d, L), "same as u")
    if isinstance(A, torch.Tensor) and A.is_complex():
        raise TypeError("A must be real; complex A is not supported")
    check_tensor(A, "A", ndim=2)
    if A.shape[0] != d or A.shape[1] < 1:
        raise ValueError(f"A must have shape (dim, N) = ({d}, N) with N >= 1, got {tuple(A.shape)}")
    N = A.shape[1]
    _check_bc(B, "B", b, d, L, N)
    _check_bc(C, "C", b, d, L, N)
    check_tensor(D, "D", ndim=1, allow_none=True)
    check_shape(D, "D", (d,))
    check_tensor(z, "z", ndim=3, allow_none=True)
    check_shape(z, "z", (b, d, L), "same as u")
    check_tensor(delta_bias, "delta_bias", ndim=1, allow_none=True)
    check_shape(delta_bias, "delta_bias", (d,))
    check_tensor(initial_state, "initial_state", ndim=3, allow_none=True)
    check_shape(initial_state, "initial_state", (b, d, N), "(batch, dim, N)")
    check_same_device("u", u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
                      initial_state=initial_state)
    check_nonpositive(A, "A", "decay convention h_t = exp(dt*A) h_{t-1} + ...; "
                      "parametrise it as A = -exp(A_log)")
    return b, d, L, N


class _SelectiveScanFn(torch.autograd.Function):
    """Autograd wrapper around the ``cpu`` and ``triton`` implementations."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, softplus, backend,
                chunk):
        ct = compute_dtype(u, delta, A, B, C, D, z, delta_bias, initial_state)
        needs_grad = any(ctx.needs_input_grad[:9])
        if backend == "triton":
            from . import _scan_triton

            out, last, ckpt, chunk = _scan_triton.scan_fwd(
                u, delta, A, B, C, D, z, delta_bias, softplus, initial_state, chunk,
                save_for_backward=needs_grad)
            ypre = None
        else:
            compiled = _scan_cpu.compiled() if u.device.type == "cpu" else None
            fwd = _scan_cpu.scan_fwd if compiled is None else compiled.scan_fwd
            out, last, ckpt, ypre = fwd(
                u, delta, A, B, C, D, z, delta_bias, softplus, initial_state,
                chunk=chunk, save_for_backward=needs_grad, ct=ct)
        ctx.softplus, ctx.backend, ctx.chunk, ctx.ct = softplus, backend, chunk, ct
        save_scan_context(ctx, initial_state, needs_grad, u, delta, A, B, C, D, z, delta_bias, ckpt, ypre)
        return out, last

    @staticmethod
    def backward(ctx, gout, glast):
        (u, delta, A, B, C, D, z, delta_bias, ckpt, ypre), gout, need_h0 = restore_scan_context(ctx, gout)
        if ctx.backend == "triton":
            from . import _scan_triton

            grads = _scan_triton.scan_bwd(
                gout, glast, u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ckpt,
                ctx.chunk, need_h0_grad=need_h0)
        else:
            grads = _scan_cpu.scan_bwd(
                gout, glast, u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ckpt, ypre,
                chunk=ctx.chunk, ct=ctx.ct, need_h0_grad=need_h0)
        du, ddelta, dA, dB, dC, dD, dz, dbias, dh0 = grads
        return (grad_as(du, u), grad_as(ddelta, delta), grad_as(dA, A), grad_as(dB, B), grad_as(dC, C),
                grad_as(dD, D), grad_as(dz, z), grad_as(dbias, delta_bias),
                None if dh0 is None else dh0.to(ctx.h0_dtype), None, None, None)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, initial_state=None, backend="auto",
                   chunk_size=None):
    r"""Mamba's selective scan (S6) over a batch of sequences.

    With ``dt = softplus(delta + delta_bias)`` (or ``delta + delta_bias`` without
    ``delta_softplus``) and a state ``h`` of shape ``(batch, dim, N)`` starting at
    ``initial_state`` (zeros by default), for every time step ``t``::

        h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t
        y_t = sum_n C_t[n] * h_t[n] + D * u_t
        out_t = y_t * silu(z_t)            (only when z is given)

    Parameters
    ----------
    u : Tensor, shape (batch, dim, L)
        Input sequence (float32, float64, bfloat16 or float16).
    delta : Tensor, shape (batch, dim, L)
        Time steps before the optional bias and softplus.
    A : Tensor, shape (dim, N)
        Real state matrix (diagonal per channel).  Entries must be ``<= 0`` (the usual
        parametrisation is ``A = -exp(A_log)``); a ``ValueError`` is raised otherwise.
    B, C : Tensor
        Input and output projections, each either time-varying ``(batch, N, L)``, grouped
        ``(batch, G, N, L)`` (channel ``i`` uses group ``i // (dim // G)``, ``G`` divides
        ``dim``) or time-invariant ``(dim, N)``.
    D : Tensor of shape (dim,), optional
        Skip connection.
    z : Tensor of shape (batch, dim, L), optional
        Gate: the output is multiplied by ``silu(z)``.
    delta_bias : Tensor of shape (dim,), optional
        Added to ``delta`` before the softplus.
    delta_softplus : bool, default False
        Apply ``softplus`` to ``delta + delta_bias``.
    return_last_state : bool, default False
        Also return the state after the last step.
    initial_state : Tensor of shape (batch, dim, N), optional
        State before the first step; gradients flow into it.
    backend : {"auto", "reference", "cpu", "triton"}, default "auto"
        ``"auto"`` uses Triton for CUDA tensors when Triton is installed and ``"cpu"``
        otherwise.  ``"cpu"`` runs on any device: a compiled (numba) forward on CPU tensors,
        a chunked torch forward elsewhere, and a chunked backward;
        ``"reference"`` the plain loop, ``"triton"`` the fused kernels (CUDA tensors, or CPU
        tensors when ``TRITON_INTERPRET=1`` was set before import).
    chunk_size : int, optional
        Time steps per chunk for the ``cpu`` path (default: 16 to 128, about 2**18 elements
        per ``(chunk, batch, dim, N)`` block); for the ``triton`` path the steps each thread
        holds in registers, which is also the interval at which the forward saves the
        state for the backward (default 8, 4 for float64; rounded up to a power of two, at
        most 32).  Results do not depend on it beyond rounding.

    Returns
    -------
    out : Tensor, shape (batch, dim, L), dtype of ``u``
    last_state : Tensor, shape (batch, dim, N)
        Only with ``return_last_state=True``; float32 (float64 for float64 inputs).

    Notes
    -----
    States and accumulations are float32 for float32/bfloat16/float16 inputs and float64
    for float64 inputs.  Non-contiguous inputs are accepted.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import selective_scan
    >>> g = torch.Generator().manual_seed(0)
    >>> b, d, L, N = 2, 4, 10, 3
    >>> u, delta = torch.randn(b, d, L, generator=g), torch.randn(b, d, L, generator=g)
    >>> A = -torch.rand(d, N, generator=g)
    >>> B, C = torch.randn(b, N, L, generator=g), torch.randn(b, N, L, generator=g)
    >>> out, h = selective_scan(u, delta, A, B, C, delta_softplus=True, return_last_state=True)
    >>> out.shape, h.shape
    (torch.Size([2, 4, 10]), torch.Size([2, 4, 3]))
    >>> ref = selective_scan(u, delta, A, B, C, delta_softplus=True, backend="reference")
    >>> bool(torch.allclose(out, ref, atol=1e-5))
    True
    """
    _check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    chunk_size = check_int(chunk_size, "chunk_size", allow_none=True)
    backend = resolve_backend(backend, u.device, "selective_scan", u.dtype)
    if backend == "reference":
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state, initial_state)
    if backend == "cpu":
        chunk = chunk_size or _scan_cpu.default_chunk(*u.shape[:2], A.shape[1])
    else:
        chunk = chunk_size
    out, last = _SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, initial_state,
                                       bool(delta_softplus), backend, chunk)
    return (out, last) if return_last_state else out


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                           dt_softplus=False, inplace=False):
    r"""One step of the selective scan, for recurrent inference.

    Computes ``dt' = softplus(dt + dt_bias)`` (or ``dt + dt_bias``),
    ``h = exp(dt' A) * state + dt' * B * x`` and ``y = C . h + D * x`` (times ``silu(z)``),
    exactly one time step of :func:`selective_scan`.

    Parameters
    ----------
    state : Tensor, shape (batch, dim, N)
        State before the step (float32 recommended).
    x, dt : Tensor, shape (batch, dim)
        Input and time step at this step.
    A : Tensor, shape (dim, N)
        Real, ``<= 0``.
    B, C : Tensor, shape (batch, N) or grouped (batch, G, N)
    D, dt_bias : Tensor of shape (dim,), optional
    z : Tensor of shape (batch, dim), optional
    dt_softplus : bool, default False
    inplace : bool, default False
        Write the new state into ``state`` (and return it) instead of allocating one.

    Returns
    -------
    y : Tensor, shape (batch, dim), dtype of ``x``
    new_state : Tensor, shape (batch, dim, N), dtype of ``state``

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import selective_scan, selective_state_update
    >>> g = torch.Generator().manual_seed(0)
    >>> b, d, L, N = 1, 3, 5, 2
    >>> u, delta = torch.randn(b, d, L, generator=g), torch.randn(b, d, L, generator=g)
    >>> A = -torch.rand(d, N, generator=g)
    >>> B, C = torch.randn(b, N, L, generator=g), torch.randn(b, N, L, generator=g)
    >>> h = torch.zeros(b, d, N)
    >>> ys = []
    >>> for t in range(L):
    ...     y, h = selective_state_update(h, u[..., t], delta[..., t], A, B[..., t], C[..., t],
    ...                                   dt_softplus=True)
    ...     ys.append(y)
    >>> full = selective_scan(u, delta, A, B, C, delta_softplus=True)
    >>> bool(torch.allclose(torch.stack(ys, -1), full, atol=1e-5))
    True
    """
    check_tensor(state, "state", ndim=3)
    b, d, N = state.shape
    check_tensor(x, "x", ndim=2)
    check_shape(x, "x", (b, d), "(batch, dim)")
    check_tensor(dt, "dt", ndim=2)
    check_shape(dt, "dt", (b, d), "(batch, dim)")
    check_tensor(A, "A", ndim=2)
    check_shape(A, "A", (d, N), "(dim, N)")
    for name, X in (("B", B), ("C", C)):
        check_tensor(X, name, ndim=(2, 3))
        if X.dim() == 2:
            check_shape(X, name, (b, N), "(batch, N)")
        else:
            G = X.shape[1]
            if G < 1 or d % G:
                raise ValueError(f"{name} has {G} groups, which must divide dim={d}")
            check_shape(X, name, (b, G, N), "(batch, G, N)")
    check_tensor(D, "D", ndim=1, allow_none=True)
    check_shape(D, "D", (d,))
    check_tensor(z, "z", ndim=2, allow_none=True)
    check_shape(z, "z", (b, d))
    check_tensor(dt_bias, "dt_bias", ndim=1, allow_none=True)
    check_shape(dt_bias, "dt_bias", (d,))
    check_same_device("state", state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    check_nonpositive(A, "A", "decay convention; parametrise it as A = -exp(A_log)")
    ct = compute_dtype(state, x, dt, A, B, C, D, z, dt_bias)
    step = dt.to(ct)
    if dt_bias is not None:
        step = step + dt_bias.to(ct)
    if dt_softplus:
        step = F.softplus(step)

    def per_channel(X):
        X = X.to(ct)
        if X.dim() == 2:
            return X.unsqueeze(1)
        return X.repeat_interleave(d // X.shape[1], dim=1)

    xx = x.to(ct)
    new = torch.exp(step.unsqueeze(-1) * A.to(ct)) * state.to(ct) \
        + (step * xx).unsqueeze(-1) * per_channel(B)
    y = (new * per_channel(C)).sum(-1)
    if D is not None:
        y = y + D.to(ct) * xx
    if z is not None:
        y = y * F.silu(z.to(ct))
    if inplace:
        with torch.no_grad():
            state.copy_(new)
        new = state
    else:
        new = new.to(state.dtype)
    return y.to(x.dtype), new
