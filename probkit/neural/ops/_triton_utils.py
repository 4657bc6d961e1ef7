"""Small Triton helpers shared by the kernels (imported only when a kernel is requested)."""

from __future__ import annotations

import os

import triton
import triton.language as tl

LOG2E = 1.4426950408889634


def interpreting():
    """True when Triton runs kernels through its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def next_pow2(n):
    return 1 << max(0, int(n) - 1).bit_length()


def largest_pow2_divisor(n, cap):
    """Largest power of two that divides ``n`` and is at most ``cap``."""
    p = 1
    while p * 2 <= cap and n % (p * 2) == 0:
        p *= 2
    return p


def tl_dtype(torch_dtype):
    """The Triton scalar type matching a torch floating dtype."""
    import torch

    return {torch.float32: tl.float32, torch.float64: tl.float64,
            torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}[torch_dtype]


def vector_width(*tensors):
    """Elements of the narrowest 16-byte vector among the tensors' element sizes."""
    return min(16 // t.element_size() for t in tensors if t is not None)


@triton.jit
def _add(a, b):
    return a + b


# Combine function of sums written as ``tl.reduce(x, axis, add)``: Triton's own (the CPU
# interpreter evaluates it with one numpy sum instead of an element loop), else an equivalent.
add = getattr(tl.standard, "_sum_combine", _add)


@triton.jit
def softplus(x):
    """log(1 + exp(x)), accurate to a few ulps for every x in any float precision.

    ``log1p(e)`` is evaluated as ``log(w) * e / (w - 1)`` with ``w = 1 + e`` rounded
    (Goldberg's trick): the rounding of ``w`` cancels, so tiny ``e`` keeps full relative
    accuracy without a series or a threshold.
    """
    e = tl.exp(-tl.abs(x))
    w = 1.0 + e
    return tl.maximum(x, 0.0) + tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def col(x, offs, k):
    """Column ``k`` (a compile-time index) of a 2-D tile as a 1-D tensor.

    When the tile's second axis lies in each thread's registers (the layout every kernel
    here is written for) the select folds to a register read: the ``-0.0`` filler is the
    exact additive identity, so the compiler drops the additions as well.
    """
    return tl.sum(tl.where(offs[None, :] == k, x, -0.0), axis=1)


@triton.jit
def row(x, offs, k):
    """Row ``k`` (a compile-time index) of a 2-D tile whose first axis is in registers."""
    return tl.sum(tl.where(offs[:, None] == k, x, -0.0), axis=0)


@triton.jit
def put_col(x, offs, k, v):
    """``x`` with column ``k`` replaced by the 1-D tensor ``v`` (a register write)."""
    return tl.where(offs[None, :] == k, v[:, None], x)


@triton.jit
def put_row(x, offs, k, v):
    """``x`` with row ``k`` replaced by the 1-D tensor ``v`` (a register write)."""
    return tl.where(offs[:, None] == k, v[None, :], x)


@triton.jit
def load_rows(base, rows, t0, L, mrow, BLOCK: tl.constexpr, TT: tl.constexpr,
              VEC: tl.constexpr, MASKED: tl.constexpr):
    """Tile ``base[rows[i] + t0 + j]`` of shape ``(BLOCK, TT)`` (time contiguous in memory).

    Loaded as ``(TT // VEC, BLOCK, VEC)`` so that Triton gives each thread whole 16-byte
    vectors of one row and puts its lanes across rows; the tile therefore arrives with all
    ``TT`` steps of a row in one thread, ready for in-register recurrences.  ``MASKED``
    guards the last, partial tile (and rows past the end); full tiles load unmasked.
    """
    if TT == VEC:
        t = t0 + tl.arange(0, TT)
        ptrs = base + rows[:, None] + t[None, :]
        if MASKED:
            x = tl.load(ptrs, mask=mrow[:, None] & (t < L)[None, :], other=0.0)
        else:
            x = tl.load(ptrs)
        return x
    else:
        t = t0 + tl.arange(0, TT // VEC)[:, None] * VEC + tl.arange(0, VEC)[None, :]
        ptrs = base + rows[None, :, None] + t[:, None, :]
        if MASKED:
            x = tl.load(ptrs, mask=mrow[None, :, None] & (t < L)[:, None, :], other=0.0)
        else:
            x = tl.load(ptrs)
        return tl.reshape(tl.permute(x, [1, 0, 2]), [BLOCK, TT])


@triton.jit
def store_rows(base, rows, t0, L, mrow, val, BLOCK: tl.constexpr, TT: tl.constexpr,
               VEC: tl.constexpr, MASKED: tl.constexpr):
    """Store a ``(BLOCK, TT)`` tile laid out as :func:`load_rows` reads it."""
    val = val.to(base.dtype.element_ty)
    if TT == VEC:
        t = t0 + tl.arange(0, TT)
        ptrs = base + rows[:, None] + t[None, :]
        if MASKED:
            tl.store(ptrs, val, mask=mrow[:, None] & (t < L)[None, :])
        else:
            tl.store(ptrs, val, mask=mrow[:, None])
    else:
        t = t0 + tl.arange(0, TT // VEC)[:, None] * VEC + tl.arange(0, VEC)[None, :]
        ptrs = base + rows[None, :, None] + t[:, None, :]
        v = tl.permute(tl.reshape(val, [BLOCK, TT // VEC, VEC]), [1, 0, 2])
        if MASKED:
            tl.store(ptrs, v, mask=mrow[None, :, None] & (t < L)[:, None, :])
        else:
            tl.store(ptrs, v, mask=mrow[None, :, None])


@triton.jit
def sum_rows(x, BLOCK: tl.constexpr, K: tl.constexpr, LOG_BLOCK: tl.constexpr):
    """Sum of a ``(BLOCK, K)`` tile over its rows, as a ``(K,)`` tensor (``BLOCK = 2**LOG_BLOCK``).

    Written as repeated halving (reshape, split, add).  For a tile whose rows are spread
    over lanes, the first split makes Triton re-lay the tile out once through shared memory
    so that each thread holds whole columns; the additions then run in registers.  That is
    about one shared-memory access and one add per element, where ``tl.sum`` would spend
    ``LOG_BLOCK`` shuffles and adds per element.
    """
    for lev in tl.static_range(LOG_BLOCK):
        a, b = tl.split(tl.permute(tl.reshape(x, [2, BLOCK >> (lev + 1), K]), [1, 2, 0]))
        x = a + b
    return tl.reshape(x, [K])


@triton.jit
def load_steps(base, t0, L, TT: tl.constexpr, MASKED: tl.constexpr):
    """``base[t0 : t0 + TT]`` as a 1-D tensor (a row shared by every channel of a block)."""
    t = t0 + tl.arange(0, TT)
    if MASKED:
        return tl.load(base + t, mask=t < L, other=0.0)
    else:
        return tl.load(base + t)
