"""S4D: convolution mode == recurrent mode, kernel from its definition, initialisations."""

import math

import pytest
import torch

from probkit.neural.layers import S4D, S4DLayer

from test_layers_common import perturb_, randn, step_all


def kernel_by_powers(ssm, L):
    """K_l = 2 Re(sum_n C_n B_bar_n A_bar_n ** l) with A_bar ** l by repeated products."""
    A = torch.complex(-torch.exp(ssm.log_A_real), ssm.A_imag)
    dt = torch.exp(ssm.log_dt)[:, None]
    A_bar = torch.exp(dt * A)
    B_bar = (A_bar - 1) / A
    C = torch.view_as_complex(ssm.C)
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


@pytest.mark.parametrize("init", ["lin", "inv"])
@pytest.mark.parametrize("L", [1, 5, 16, 37])
def test_convolution_mode_equals_recurrent_mode(init, L):
    torch.manual_seed(0)
    ssm = perturb_(S4D(3, d_state=8, init=init).double())
    u = randn(2, 3, L)
    y_conv = ssm(u)
    state, ys = ssm.init_state(2), []
    for t in range(L):
        y, state = ssm.step(u[..., t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, -1), y_conv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y_conv, direct_conv(ssm.kernel(L, torch.float64), u, ssm.D),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("L", [1, 2, 7, 64, 100])
def test_final_state_equals_recurrence(L):
    torch.manual_seed(2)
    ssm = perturb_(S4D(3, d_state=6, init="inv").double())
    u = randn(2, 3, L, seed=L)
    state = ssm.init_state(2)
    for t in range(L):
        _, state = ssm.step(u[..., t], state)
    y, final = ssm(u, return_state=True)
    torch.testing.assert_close(final, state, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y, ssm(u), rtol=0, atol=0)


def test_kernel_matches_repeated_powers():
    torch.manual_seed(1)
    ssm = S4D(4, d_state=6, init="inv", dt_min=0.01, dt_max=0.5).double()
    torch.testing.assert_close(ssm.kernel(50, torch.float64), kernel_by_powers(ssm, 50),
                               rtol=1e-10, atol=1e-12)


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


def test_layer_step_and_count():
    torch.manual_seed(0)
    layer = perturb_(S4DLayer(4, d_state=4, expand=3).double())
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
