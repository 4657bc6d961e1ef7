"""S4 with HiPPO-LegS: A and B against the paper's closed form and their normal-plus-low-rank
structure, the LegS ODE against Legendre projections, bilinear and zero-order-hold
discretisations against scipy.signal.cont2discrete, convolution mode == recurrent mode."""

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre
from scipy.integrate import solve_ivp
from scipy.signal import cont2discrete

from probkit.neural import build_backbone
from probkit.neural.layers import S4, S4Layer
from probkit.neural.layers.s4 import discretize, hippo_legs

from test_layers_common import perturb_, randn, step_all
from test_layers_s4d import direct_conv


@pytest.mark.parametrize("N", [1, 2, 7, 32])
def test_hippo_legs_closed_form(N):
    A, B = hippo_legs(N)
    ref_A, ref_B = np.zeros((N, N)), np.zeros(N)
    for n in range(N):
        ref_B[n] = math.sqrt(2 * n + 1)
        for k in range(N):
            if n > k:
                ref_A[n, k] = -math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1)
            elif n == k:
                ref_A[n, k] = -(n + 1)
    np.testing.assert_allclose(A.numpy(), ref_A, rtol=1e-15, atol=0)  # float64 square roots
    np.testing.assert_allclose(B.numpy(), ref_B, rtol=1e-15, atol=0)


def test_hippo_legs_normal_plus_low_rank():
    """S4's structure: A + P P^T = -I/2 + S with S skew-symmetric, P_n = sqrt(n + 1/2)."""
    A, _ = hippo_legs(16)
    P = torch.sqrt(torch.arange(16, dtype=torch.float64) + 0.5)
    S = A + torch.outer(P, P) + 0.5 * torch.eye(16, dtype=torch.float64)
    torch.testing.assert_close(S, -S.T, rtol=0, atol=1e-12)
    assert float(S.abs().max()) > 1  # not trivially zero


def test_hippo_legs_ode_tracks_legendre_projection():
    """c' = (A c + B f) / t keeps c_n(t) = (1/t) int_0^t f(s) sqrt(2n+1) P_n(2s/t - 1) ds."""
    N = 6
    A, B = (x.numpy() for x in hippo_legs(N))
    f = np.polynomial.Polynomial([0.3, -1.0, 0.5, 0.2, -0.05])  # degree 4 < N: exact in the basis
    nodes, weights = legendre.leggauss(20)
    scale = np.sqrt(2 * np.arange(N) + 1)

    def projection(t):
        s = (nodes + 1) * t / 2
        basis = legendre.legvander(nodes, N - 1) * scale  # (20, N) at 2s/t - 1 = nodes
        return (weights * f(s)) @ basis / 2

    t0, t1 = 0.5, 3.0
    sol = solve_ivp(lambda t, c: (A @ c + B * f(t)) / t, (t0, t1), projection(t0), rtol=1e-11, atol=1e-12,
                    method="DOP853")
    np.testing.assert_allclose(sol.y[:, -1], projection(t1), rtol=0, atol=1e-8)


@pytest.mark.parametrize("method", ["bilinear", "zoh"])
def test_discretize_matches_scipy_cont2discrete(method):
    N = 8
    A, B = hippo_legs(N)
    A = A + 0.1 * torch.randn(N, N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dts = torch.tensor([1e-3, 0.05, 0.3, 1.2], dtype=torch.float64)
    A_bar, B_bar = discretize(A, B, dts, method)
    for h, dt in enumerate(dts.tolist()):
        Ad, Bd, *_ = cont2discrete((A.numpy(), B.numpy()[:, None], np.eye(N), np.zeros((N, 1))), dt, method=method)
        np.testing.assert_allclose(A_bar[h].numpy(), Ad, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(B_bar[h].numpy(), Bd[:, 0], rtol=1e-10, atol=1e-12)


def test_discretize_singular_A_and_errors():
    # zero-order hold needs no inverse of A: A = 0 gives A_bar = I, B_bar = dt B
    A, B = torch.zeros(3, 3, dtype=torch.float64), torch.arange(1.0, 4.0, dtype=torch.float64)
    A_bar, B_bar = discretize(A, B, torch.tensor([0.25]), "zoh")
    torch.testing.assert_close(A_bar[0], torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(B_bar[0], 0.25 * B)
    with pytest.raises(ValueError, match="method must be one of"):
        discretize(A, B, torch.tensor([0.1]), "euler")


@pytest.mark.parametrize("discretization", ["bilinear", "zoh"])
@pytest.mark.parametrize("L", [1, 5, 16, 37])
def test_convolution_mode_equals_recurrent_mode(discretization, L):
    torch.manual_seed(0)
    ssm = perturb_(S4(3, d_state=8, dt_min=0.01, dt_max=0.5, discretization=discretization).double())
    u = randn(2, 3, L)
    state, ys = ssm.init_state(2), []
    for t in range(L):
        y, state = ssm.step(u[..., t], state)
        ys.append(y)
    y_conv, final = ssm(u, return_state=True)
    torch.testing.assert_close(torch.stack(ys, -1), y_conv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final, state, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y_conv, direct_conv(ssm.kernel(L, torch.float64), u, ssm.D), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("discretization", ["bilinear", "zoh"])
def test_kernel_from_matrix_powers_of_scipy_discretization(discretization):
    torch.manual_seed(1)
    ssm = S4(2, d_state=6, dt_min=0.05, dt_max=0.5, discretization=discretization).double()
    A, B, C = (p.detach().numpy() for p in (ssm.A, ssm.B, ssm.C))
    dt = torch.exp(ssm.log_dt).detach().numpy()
    ref = np.zeros((2, 40))
    for h in range(2):
        Ad, Bd, *_ = cont2discrete((A, B[:, None], C[h][None], np.zeros((1, 1))), dt[h], method=discretization)
        for ell in range(40):
            ref[h, ell] = (C[h] @ np.linalg.matrix_power(Ad, ell) @ Bd)[0]
    np.testing.assert_allclose(ssm.kernel(40, torch.float64).detach().numpy(), ref, rtol=1e-9, atol=1e-12)


def test_initialisation_and_parameters():
    torch.manual_seed(0)
    ssm = S4(300, d_state=5)
    A, B = hippo_legs(5, torch.float32)
    torch.testing.assert_close(ssm.A.detach(), A)
    torch.testing.assert_close(ssm.B.detach(), B)
    dt = torch.exp(ssm.log_dt)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    # stable: the discrete spectra lie inside the unit disc for both discretisations
    for method in ("bilinear", "zoh"):
        A_bar, _ = discretize(ssm.A.detach().double(), ssm.B.detach().double(), dt.detach(), method)
        assert float(torch.linalg.eigvals(A_bar).abs().max()) < 1
    layer = S4Layer(128)
    d, E, N = 128, 256, 64
    assert sum(p.numel() for p in layer.parameters()) == 3 * d * E + N * N + N + E * (N + 2) + d == 119_488


@pytest.mark.parametrize("discretization", ["bilinear", "zoh"])
def test_layer_and_backbone_step_equals_forward(discretization):
    torch.manual_seed(2)
    layer = perturb_(S4Layer(6, d_state=4, discretization=discretization).double())
    x = randn(2, 9, 6)
    ys, state = step_all(layer, x)
    out, final = layer(x, return_state=True)
    torch.testing.assert_close(ys, out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final[0], state[0], rtol=1e-10, atol=1e-12)
    net = build_backbone("s4", 6, 2, d_state=4, discretization=discretization).double()
    state, ys = net.init_state(2), []
    for t in range(9):
        y, state = net.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), net(x), rtol=1e-10, atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="discretization must be one of"):
        S4(2, discretization="euler")
    with pytest.raises(ValueError, match="d_state"):
        S4(2, d_state=0)
    with pytest.raises(ValueError, match="dt_min"):
        S4Layer(4, dt_min=0.0)
