"""Causal depthwise conv: against a float64 tap loop, gradcheck, rolling-state steps."""

import pytest
import torch

from probkit.neural.ops import causal_conv1d, causal_conv1d_update
from probkit.neural.ops._reference import causal_conv1d_ref


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def inputs(seed, b, d, L, W, bias=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, L, generator=g, dtype=torch.float64)
    w = torch.randn(d, W, generator=g, dtype=torch.float64)
    bb = torch.randn(d, generator=g, dtype=torch.float64) if bias else None
    return [t if t is None else t.to(dtype) for t in (x, w, bb)]


@pytest.mark.parametrize("b,d,L,W", [(2, 3, 10, 4), (1, 1, 1, 4), (2, 5, 3, 4), (1, 2, 7, 1),
                                     (3, 4, 9, 2)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_matches_tap_loop_with_gradients(b, d, L, W, bias, activation):
    x, w, bb = inputs(b * 100 + L, b, d, L, W, bias)
    ref_args = [t.clone().requires_grad_() if t is not None else None for t in (x, w, bb)]
    got_args = [t.float().clone().requires_grad_() if t is not None else None for t in (x, w, bb)]
    ref = causal_conv1d_ref(*ref_args, activation=activation)
    got = causal_conv1d(*got_args, activation=activation)
    assert got.dtype == torch.float32
    assert rel_err(got, ref) <= 1e-5
    gw = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rg = torch.autograd.grad((ref * gw).sum(), [t for t in ref_args if t is not None])
    gg = torch.autograd.grad((got.double() * gw).sum(), [t for t in got_args if t is not None])
    for a, r in zip(gg, rg):
        assert rel_err(a, r) <= 1e-5


def test_gradcheck_with_initial_state():
    x, w, bb = inputs(0, 2, 3, 6, 3)
    s0 = torch.randn(2, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    args = [t.clone().requires_grad_() for t in (x, w, bb, s0)]
    f = lambda x, w, b, s: causal_conv1d(x, w, b, "silu", initial_state=s,  # noqa: E731
                                         return_final_state=True)
    assert torch.autograd.gradcheck(f, args)


def test_bfloat16():
    x, w, bb = inputs(3, 2, 4, 12, 4)
    x16, w16, b16 = x.bfloat16(), w.bfloat16(), bb.bfloat16()
    ref = causal_conv1d_ref(x16.double(), w16.double(), b16.double(), "silu")
    got = causal_conv1d(x16, w16, b16, "silu")
    assert got.dtype == torch.bfloat16 and rel_err(got, ref) <= 1e-2


@pytest.mark.parametrize("W", [1, 2, 4])
def test_rolling_state_steps_and_chaining(W):
    x, w, bb = inputs(4, 2, 3, 9, W)
    full, final = causal_conv1d(x, w, bb, "silu", return_final_state=True)
    state = torch.zeros(2, 3, W - 1, dtype=torch.float64)
    ys = []
    for t in range(9):
        y, state = causal_conv1d_update(x[..., t], state, w, bb, "silu")
        ys.append(y)
    assert rel_err(torch.stack(ys, -1), full) <= 1e-12
    assert torch.equal(state, final)
    y1, s1 = causal_conv1d(x[..., :4], w, bb, "silu", return_final_state=True)
    y2 = causal_conv1d(x[..., 4:], w, bb, "silu", initial_state=s1)
    assert rel_err(torch.cat([y1, y2], -1), full) <= 1e-12
    if W > 1:  # the state is the last W - 1 inputs, oldest first
        assert torch.equal(final, x[..., 9 - (W - 1):])


def test_bad_arguments():
    x, w, bb = inputs(0, 2, 3, 5, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match="weight must have shape"):
        causal_conv1d(x, w[:2], bb)
    with pytest.raises(ValueError, match="bias must have shape"):
        causal_conv1d(x, w, bb[:2])
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, w, bb, activation="relu")
    with pytest.raises(ValueError, match="L=0"):
        causal_conv1d(x[..., :0], w, bb)
    with pytest.raises(TypeError, match="x must have a floating"):
        causal_conv1d(x.int(), w, bb)
    with pytest.raises(ValueError, match="initial_state must have shape"):
        causal_conv1d(x, w, bb, initial_state=torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="conv_state must have shape"):
        causal_conv1d_update(x[..., 0], torch.zeros(2, 3, 4), w, bb)
    with pytest.raises(ValueError, match="weight is on device meta"):
        causal_conv1d(x, torch.zeros(3, 4, device="meta"), bb)
