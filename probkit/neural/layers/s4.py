r"""S4 with a dense HiPPO-LegS state matrix (Gu, Goel & Re, 2022), discretised by the bilinear
transform (as in S4) or by zero-order hold.

Per channel, the continuous system ``s'(t) = A s(t) + B u(t)``, ``y = C s + D u`` with a real
state of size ``N``. ``A`` and ``B`` start at HiPPO-LegS (Gu, Dao, Ermon, Rudra & Re, 2020;
equation (2) of the S4 paper)::

    A[n, k] = -sqrt(2n + 1) sqrt(2k + 1)   n > k          B[n] = sqrt(2n + 1)
              -(n + 1)                     n = k
              0                            n < k

the matrix whose state holds, at every time, the coefficients of the input's history in the
Legendre basis scaled to that history (see :func:`hippo_legs`). ``A`` and ``B`` are learned
and shared by all channels; each channel has its own step ``dt = exp(log_dt)``, output
vector ``C`` and skip ``D``. The discretisations (the matrix forms of :class:`S4D`'s)::

    bilinear:  A_bar = (I - dt A / 2)^{-1} (I + dt A / 2)     B_bar = (I - dt A / 2)^{-1} dt B
    zoh:       A_bar = exp(dt A)                              B_bar = int_0^dt exp(s A) ds B

(:func:`discretize`; zero-order hold through the exponential of the block matrix
``[[A, B], [0, 0]] dt``, which needs no inverse of ``A``).

Convolution mode: the kernel ``K_l = C A_bar^l B_bar``, ``l < L``, comes from the Krylov
sequence ``A_bar^l B_bar`` built by doubling (``[X, A_bar^m X]`` with ``m`` the current
length, ``log2 L`` matrix products), applied by FFT as in :class:`S4D`. The dense state costs
``O(channels N^2 L)`` for the kernel: S4's own layer reaches ``O(channels N L)`` through
the normal-plus-low-rank form of this ``A`` (``A + P P^T`` is ``-I/2`` plus a skew-symmetric
matrix, ``P[n] = sqrt(n + 1/2)``) and a Cauchy kernel; this module keeps the plain dense form,
meant for ``N`` up to a few hundred.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from probkit.utils.validation import check_int

from ._docs import LAYER_DOCS
from .base import SequenceLayer, log_uniform_
from .s4d import DISCRETIZATIONS, S4DLayer

__all__ = ["S4", "S4Layer", "discretize", "hippo_legs"]


def hippo_legs(N, dtype=torch.float64):
    """HiPPO-LegS matrices ``(A, B)`` of state size ``N`` (equation (2) of the S4 paper).

    With ``c'(t) = (A c(t) + B f(t)) / t``, ``c_n(t)`` is the coefficient of the input's
    history ``f`` on ``[0, t]`` along the orthonormal scaled Legendre polynomial
    ``sqrt(2n + 1) P_n(2 s / t - 1)`` (uniform measure on ``[0, t]``).

    Parameters
    ----------
    N : int
    dtype : torch.dtype, default float64

    Returns
    -------
    A : torch.Tensor, shape (N, N)
        Lower triangular.
    B : torch.Tensor, shape (N,)

    Examples
    --------
    >>> A, B = hippo_legs(3)
    >>> A
    tensor([[-1.0000,  0.0000,  0.0000],
            [-1.7321, -2.0000,  0.0000],
            [-2.2361, -3.8730, -3.0000]], dtype=torch.float64)
    >>> B
    tensor([1.0000, 1.7321, 2.2361], dtype=torch.float64)
    """
    N = check_int(N, "N")
    n = torch.arange(N, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    A = torch.tril(-root[:, None] * root[None, :], diagonal=-1) - torch.diag(n + 1)
    return A.to(dtype), root.to(dtype)


def discretize(A, B, dt, method="bilinear"):
    """Discrete ``(A_bar, B_bar)`` of ``s' = A s + B u`` for steps ``dt`` (held input).

    Parameters
    ----------
    A : torch.Tensor, shape (N, N)
    B : torch.Tensor, shape (N,)
    dt : torch.Tensor, shape (H,)
        One step per channel.
    method : {"bilinear", "zoh"}
        Bilinear (Tustin) transform or zero-order hold (see the module docstring).

    Returns
    -------
    A_bar : torch.Tensor, shape (H, N, N)
    B_bar : torch.Tensor, shape (H, N)

    Examples
    --------
    For a scalar system ``s' = -s + u`` these are S4D's scalar formulas:

    >>> import torch
    >>> A, B, dt = -torch.ones(1, 1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), torch.tensor([0.5])
    >>> [round(float(x), 6) for x in discretize(A, B, dt, "zoh")]
    [0.606531, 0.393469]
    >>> [round(float(x), 6) for x in discretize(A, B, dt, "bilinear")]
    [0.6, 0.4]
    """
    if method not in DISCRETIZATIONS:
        raise ValueError(f"method must be one of {DISCRETIZATIONS}, got {method!r}")
    N = A.shape[-1]
    dt = dt.to(A.dtype)[:, None, None]
    if method == "zoh":
        # exp([[A, B], [0, 0]] dt) = [[exp(dt A), int_0^dt exp(sA) ds B], [0, 1]]
        block = F.pad(torch.cat([A, B[:, None]], 1), (0, 0, 0, 1))  # (N + 1, N + 1)
        E = torch.linalg.matrix_exp(dt * block)
        return E[:, :N, :N], E[:, :N, N]
    eye = torch.eye(N, dtype=A.dtype, device=A.device)
    lhs = eye - dt * A / 2
    rhs = torch.cat([eye + dt * A / 2, (dt[..., 0] * B)[..., None]], -1)  # (H, N, N + 1)
    sol = torch.linalg.solve(lhs, rhs)
    return sol[..., :N], sol[..., N]


class S4(nn.Module):
    r"""Dense-state S4 convolution over ``channels`` channels, HiPPO-LegS initialisation.

    Parameters
    ----------
    channels : int
    d_state : int, default 64
        State size ``N``.
    dt_min, dt_max : float, default 1e-3, 1e-1
        Range of the log-uniform initial steps.
    discretization : {"bilinear", "zoh"}, default "bilinear"

    Notes
    -----
    ``forward(u)`` takes ``(batch, channels, L)``; :meth:`step` takes ``(batch, channels)``
    and a state ``(batch, channels, N)``. Parameters: ``A`` ``(N, N)`` and ``B`` ``(N,)``
    (shared), ``C`` ``(channels, N)`` standard normal, ``D``, ``log_dt``. The kernel's powers
    are computed in float64 for float64 inputs and in float32 otherwise.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import S4
    >>> _ = torch.manual_seed(0)
    >>> ssm = S4(3, d_state=8).double()
    >>> u = torch.randn(2, 3, 6, dtype=torch.float64)
    >>> state, ys = ssm.init_state(2), []
    >>> for t in range(6):
    ...     y, state = ssm.step(u[..., t], state)
    ...     ys.append(y)
    >>> torch.allclose(torch.stack(ys, -1), ssm(u), atol=1e-12)
    True
    """

    def __init__(self, channels, d_state=64, dt_min=1e-3, dt_max=1e-1, discretization="bilinear"):
        super().__init__()
        self.channels = check_int(channels, "channels")
        self.d_state = check_int(d_state, "d_state")
        if discretization not in DISCRETIZATIONS:
            raise ValueError(f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.discretization = discretization
        A, B = hippo_legs(self.d_state, torch.float32)
        self.A = nn.Parameter(A)
        self.B = nn.Parameter(B)
        self.C = nn.Parameter(torch.randn(self.channels, self.d_state))
        self.D = nn.Parameter(torch.randn(self.channels))
        self.log_dt = nn.Parameter(log_uniform_(torch.empty(self.channels), dt_min, dt_max).log())
        for p in (self.A, self.B, self.log_dt):
            p._no_weight_decay = True

    def _real(self, dtype):
        return dtype if dtype == torch.float64 else torch.float32

    def discrete(self, dtype=torch.float32):
        """``(A_bar, B_bar)``, ``(channels, N, N)`` and ``(channels, N)``."""
        real = self._real(dtype)
        return discretize(self.A.to(real), self.B.to(real), torch.exp(self.log_dt.to(real)), self.discretization)

    def krylov(self, L, dtype=torch.float32):
        """``X[h, :, l] = A_bar_h^l B_bar_h`` for ``l < L``: ``(channels, N, L)``, by doubling."""
        A_bar, B_bar = self.discrete(dtype)
        X, power = B_bar[..., None], A_bar
        while X.shape[-1] < L:
            X = torch.cat([X, power @ X], -1)
            if X.shape[-1] < L:
                power = power @ power
        return X[..., :L]

    def kernel(self, L, dtype=torch.float32):
        """Convolution kernel ``K`` of shape ``(channels, L)``: ``y = K * u + D u``."""
        X = self.krylov(L, dtype)
        return torch.einsum("hn,hnl->hl", self.C.to(X.dtype), X)

    def forward(self, u, return_state=False):
        """Convolution mode: ``u`` ``(batch, channels, L)`` -> ``y`` of the same shape.

        With ``return_state=True`` also the state after the last step,
        ``s_L = sum_j A_bar^(L-1-j) B_bar u_j``.
        """
        L = u.shape[-1]
        X = self.krylov(L, u.dtype)
        real = X.dtype
        K = torch.einsum("hn,hnl->hl", self.C.to(real), X)
        uf = torch.fft.rfft(u.to(real), n=2 * L)
        y = torch.fft.irfft(uf * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]
        y = (y + self.D.to(real)[:, None] * u.to(real)).to(u.dtype)
        if not return_state:
            return y
        return y, torch.einsum("hnl,bhl->bhn", X.flip(-1), u.to(real))

    def init_state(self, batch_size, device=None, dtype=None):
        """Zero state ``(batch, channels, N)``."""
        device = self.D.device if device is None else device
        real = self._real(self.D.dtype if dtype is None else dtype)
        return torch.zeros(batch_size, self.channels, self.d_state, device=device, dtype=real)

    def step(self, u_t, state):
        """One step: ``u_t`` ``(batch, channels)`` -> ``(y_t, new_state)``."""
        A_bar, B_bar = self.discrete(u_t.dtype)
        real = A_bar.dtype
        uu = u_t.to(real)
        s = torch.einsum("hnk,bhk->bhn", A_bar, state.to(real)) + B_bar * uu[..., None]
        y = (s * self.C.to(real)).sum(-1) + self.D.to(real) * uu
        return y.to(u_t.dtype), s.to(state.dtype)


@LAYER_DOCS.fill
class S4Layer(S4DLayer):
    r"""Pre-norm residual S4 block: ``out_proj(gelu(S4(u)) * sigmoid(z))`` (:class:`S4DLayer`'s
    block around a dense HiPPO-LegS :class:`S4`).

    Parameters
    ----------
    %(d_model)s
    %(ssm_sizes)s
    dt_min, dt_max : float, default 1e-3, 1e-1
    discretization : {"bilinear", "zoh"}, default "bilinear"
    %(block_dropout)s

    Notes
    -----
    Parameters per layer (``d = d_model``): ``3 d E + N^2 + N + E (N + 2) + d``
    (``119,488`` for ``d = 128`` with the defaults). State: ``(ssm_state,)`` of shape
    ``(batch, E, N)``.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import S4Layer
    >>> _ = torch.manual_seed(0)
    >>> layer = S4Layer(8, d_state=4)
    >>> layer(torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    >>> layer.init_state(2)[0].shape
    torch.Size([2, 16, 4])
    """

    def __init__(self, d_model, d_state=64, expand=2, dt_min=1e-3, dt_max=1e-1, dropout=0.0,
                 discretization="bilinear"):
        SequenceLayer.__init__(self, check_int(d_model, "d_model"))
        self._init_block(expand, dropout, lambda E: S4(E, d_state=d_state, dt_min=dt_min, dt_max=dt_max,
                                                       discretization=discretization))
