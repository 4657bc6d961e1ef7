"""S4D: convolution mode == recurrent mode, kernel from its definition, discretisations
against scipy.signal.cont2discrete, initialisations."""

import math

import numpy as np
import pytest
import torch
from scipy.signal import cont2discrete

from probkit.neural.layers import S4D, S4DLayer

from test_layers_common import perturb_, randn, step_all


def scipy_discretization(ssm):
    """(A_bar, B_bar) of every channel and mode from scipy.signal.cont2discrete (B = 1)."""
    A = torch.complex(-torch.exp(ssm.log_A_real), ssm.A_imag).detach().numpy()
    dt = torch.exp(ssm.log_dt).detach().numpy()
    A_bar, B_bar = np.empty_like(A), np.empty_like(A)
    one = np.ones((1, 1), dtype=complex)
    for c in range(A.shape[0]):
        for k in range(A.shape[1]):
            Ad, Bd, *_ = cont2discrete((A[c, k] * one, one, one, 0 * one), dt[c], method=ssm.discretization)
            A_bar[c, k], B_bar[c, k] = Ad[0, 0], Bd[0, 0]
    return torch.as_tensor(A_bar), torch.as_tensor(B_bar)


def kernel_by_powers(ssm, L):
    """K_l = 2 Re(sum_n C_n B_bar_n A_bar_n ** l) with A_bar ** l by repeated products."""
    A_bar, B_bar = scipy_discretization(ssm)
    C = torch.view_as_complex(ssm.C.detach())
    power = torch.ones_like(A_bar)
    cols = []
    for _ in range(L):
        cols.append(2 * (C * B_bar * power).sum(-1).real)
        power = power * A_bar
    return torch.stack(cols, -1)


def direct_conv(K, u, D):
    b, c, L = u.shape
    y = torch.zeros_like(u)
    for t in range(L):
        for s in range(t + 1):
            y[..., t] += K[:, t - s] * u[..., s]
    return y + D[:, None] * u


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", ["lin", "inv"])
@pytest.mark.parametrize("L", [1, 5, 16, 37])
def test_convolution_mode_equals_recurrent_mode(init, L, discretization):
    torch.manual_seed(0)
    ssm = perturb_(S4D(3, d_state=8, init=init, discretization=discretization).double())
    u = randn(2, 3, L)
    y_conv = ssm(u)
    state, ys = ssm.init_state(2), []
    for t in range(L):
        y, state = ssm.step(u[..., t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, -1), y_conv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y_conv, direct_conv(ssm.kernel(L, torch.float64), u, ssm.D),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("L", [1, 2, 7, 64, 100])
def test_final_state_equals_recurrence(L, discretization):
    torch.manual_seed(2)
    ssm = perturb_(S4D(3, d_state=6, init="inv", discretization=discretization).double())
    u = randn(2, 3, L, seed=L)
    state = ssm.init_state(2)
    for t in range(L):
        _, state = ssm.step(u[..., t], state)
    y, final = ssm(u, return_state=True)
    torch.testing.assert_close(final, state, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y, ssm(u), rtol=0, atol=0)


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_kernel_matches_repeated_powers_of_scipy_discretization(discretization):
    torch.manual_seed(1)
    ssm = S4D(4, d_state=6, init="inv", dt_min=0.01, dt_max=0.5, discretization=discretization).double()
    torch.testing.assert_close(ssm.kernel(50, torch.float64), kernel_by_powers(ssm, 50),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_discretization_matches_scipy_cont2discrete(discretization):
    torch.manual_seed(3)
    ssm = perturb_(S4D(3, d_state=10, init="lin", dt_min=0.01, dt_max=0.9, discretization=discretization).double())
    _, A_bar, B_bar, _ = ssm._discrete(torch.float64)
    ref_A, ref_B = scipy_discretization(ssm)
    torch.testing.assert_close(A_bar.detach(), ref_A, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(B_bar.detach(), ref_B, rtol=1e-12, atol=1e-14)


def test_discretizations_agree_to_second_order_in_the_step():
    # exp(z) - (1 + z/2)/(1 - z/2) = -z^3/12 + O(z^4): shrinking dt 10x shrinks the gap ~1000x
    gaps = []
    for dt in (1e-2, 1e-3):
        a_bars = []
        for discretization in ("zoh", "bilinear"):
            torch.manual_seed(0)
            ssm = S4D(2, d_state=4, dt_min=dt, dt_max=dt, discretization=discretization).double()
            a_bars.append(ssm._discrete(torch.float64)[1].detach())
        gaps.append(float((a_bars[0] - a_bars[1]).abs().max()))
    assert 500 < gaps[0] / gaps[1] < 2000


def test_initialisations():
    torch.manual_seed(0)
    N = 16
    lin = S4D(200, d_state=N, init="lin")
    inv = S4D(2, d_state=N, init="inv")
    n = torch.arange(N // 2, dtype=torch.float32)
    for ssm in (lin, inv):
        torch.testing.assert_close(-torch.exp(ssm.log_A_real), torch.full((ssm.channels, N // 2), -0.5))
    torch.testing.assert_close(lin.A_imag, (math.pi * n).repeat(200, 1))
    torch.testing.assert_close(inv.A_imag, (N / math.pi * (N / (2 * n + 1) - 1)).repeat(2, 1))
    dt = torch.exp(lin.log_dt)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    assert (dt < 1e-2).sum() > 50 and (dt > 1e-2).sum() > 50
    # C is complex standard normal: E|C|^2 = 1
    assert abs(float(torch.view_as_complex(lin.C.detach()).abs().pow(2).mean()) - 1.0) < 0.1


def test_errors():
    with pytest.raises(ValueError, match="d_state must be even"):
        S4D(2, d_state=5)
    with pytest.raises(ValueError, match="init"):
        S4D(2, init="legs")
    with pytest.raises(ValueError, match="dt_min"):
        S4DLayer(4, dt_min=0.0)
    with pytest.raises(ValueError, match="discretization must be one of"):
        S4DLayer(4, discretization="euler")


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_layer_step_and_count(discretization):
    torch.manual_seed(0)
    layer = perturb_(S4DLayer(4, d_state=4, expand=3, discretization=discretization).double())
    x = randn(2, 9, 4)
    stepped, (state,) = step_all(layer, x)
    torch.testing.assert_close(stepped, layer(x), rtol=1e-10, atol=1e-12)
    assert state.shape == (2, 12, 2, 2) and state.dtype == torch.float64
    d, E, n = 128, 256, 32
    count = sum(p.numel() for p in S4DLayer(d).parameters())
    assert count == 2 * d * E + E * d + E * (4 * n + 2) + d == 131_712


def test_float32_kernel_is_accurate():
    torch.manual_seed(0)
    ssm = S4D(8, d_state=16)
    u = torch.randn(2, 8, 300)
    y32 = ssm(u)
    y64 = ssm.double()(u.double())
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)
