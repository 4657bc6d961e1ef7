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


@triton.jit
def softplus(x):
    """log(1 + exp(x)) without overflow and with log1p accuracy for very negative x."""
    e = tl.exp(-tl.abs(x))
    return tl.maximum(x, 0.0) + tl.where(e < 1e-4, e * (1.0 - 0.5 * e), tl.log(1.0 + e))


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def linear_combine(a1, x1, a2, x2):
    """Composition of the affine maps h -> a1 h + x1 then h -> a2 h + x2."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def linear_combine_excl(a1, x1, p1, y1, a2, x2, p2, y2):
    """Pairs (full map, map without the last step) of two adjacent segments, composed.

    ``(a, x)`` is the composition of all steps of a segment, ``(p, y)`` of all but its last;
    a single step ``h -> a h + x`` is ``(a, x, 1, 0)``.
    """
    return a1 * a2, a2 * x1 + x2, a1 * p2, p2 * x1 + y2
