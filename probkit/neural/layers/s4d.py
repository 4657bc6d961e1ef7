"""S4D: diagonal linear time-invariant state space layer (Gu, Gupta, Goel & Re, 2022).

Per channel, a complex diagonal SSM with ``n = d_state / 2`` modes (each standing for a
conjugate pair, hence the real output ``2 Re(.)``): the continuous system
``s'(t) = A s(t) + B u(t)``, ``y = 2 Re(C s) + D u`` (``B = 1``, folded into ``C``),
discretised with a learned step ``dt = exp(log_dt)`` by zero-order hold (``"zoh"``, the
default, as in S4D) or the bilinear (Tustin) transform (``"bilinear"``, as in S4)::

    zoh:       A_bar = exp(dt A)                       B_bar = (exp(dt A) - 1) / A
    bilinear:  A_bar = (1 + dt A / 2) / (1 - dt A / 2)  B_bar = dt / (1 - dt A / 2)
    s_t   = A_bar * s_{t-1} + B_bar * u_t
    y_t   = 2 Re(sum_n C_n s_t[n]) + D u_t

Both map the open left half-plane into the unit disc, so a stable ``A`` gives a stable
recurrence; they agree to second order in ``dt A``. (This is the transition equation of
:class:`probkit.LinearGaussianSSM` without noise, with ``A_bar`` diagonal and ``u`` as the
input; see the user guide's state-space page.)

Convolution mode (training): the kernel ``K_l = 2 Re(sum_n C_n B_bar_n A_bar_n ** l)``,
``l < L`` (a Vandermonde product, see :meth:`S4D.kernel`), is applied by FFT, ``y = irfft(rfft(u) rfft(K)) + D u``
with zero padding to ``2 L`` so the circular convolution is causal.  Recurrent mode
(:meth:`S4D.step`) runs the recurrence; both give the same outputs.

``A = -exp(log_A_real) + i A_imag`` with the S4D-Lin (``A_n = -1/2 + i pi n``) or S4D-Inv
(``A_n = -1/2 + i (N / pi) (N / (2 n + 1) - 1)``, ``N = d_state``) initialisation;
``C`` standard complex normal; ``log_dt`` uniform in ``[log dt_min, log dt_max]``;
``D`` standard normal.

The layer (:class:`S4DLayer`) wraps the SSM in a gated block, ``x + dropout(block(norm(x)))``::

    u, z = split(in_proj(h))                    # E = expand * d_model channels each
    out  = out_proj(gelu(S4D(u)) * sigmoid(z))  # GLU-style gate

Parameters per layer (``d = d_model``, ``n = d_state / 2``, projections without bias):
``2 d E + E d + E (4 n + 2) + d`` (= ``131,712`` for ``d = 128`` with the defaults
``expand = 2``, ``d_state = 64``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from probkit.utils.validation import check_int

from ._docs import LAYER_DOCS
from .base import RMSNorm, SequenceLayer, check_dropout, log_uniform_

__all__ = ["S4D", "S4DLayer"]

INITS = ("lin", "inv")
DISCRETIZATIONS = ("zoh", "bilinear")


class S4D(nn.Module):
    r"""Diagonal state space convolution over ``channels`` independent channels.

    Parameters
    ----------
    channels : int
    d_state : int, default 64
        Real state size ``N``; even, stored as ``N / 2`` complex modes.
    init : {"lin", "inv"}, default "lin"
        S4D-Lin or S4D-Inv initialisation of ``A``.
    dt_min, dt_max : float, default 1e-3, 1e-1
        Range of the log-uniform initial steps.
    discretization : {"zoh", "bilinear"}, default "zoh"
        Zero-order hold or bilinear (Tustin) transform of the continuous system.

    Notes
    -----
    ``forward(u)`` takes ``(batch, channels, L)``; :meth:`step` takes ``(batch, channels)`` and
    a state of shape ``(batch, channels, N / 2, 2)`` (real and imaginary parts of the complex
    modes).  The convolution mode needs ``O(channels * L)`` memory for the kernel and the FFTs.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import S4D
    >>> _ = torch.manual_seed(0)
    >>> ssm = S4D(3, d_state=8).double()
    >>> u = torch.randn(2, 3, 6, dtype=torch.float64)
    >>> state, ys = ssm.init_state(2), []
    >>> for t in range(6):
    ...     y, state = ssm.step(u[..., t], state)
    ...     ys.append(y)
    >>> torch.allclose(torch.stack(ys, -1), ssm(u), atol=1e-12)
    True
    """

    def __init__(self, channels, d_state=64, init="lin", dt_min=1e-3, dt_max=1e-1, discretization="zoh"):
        super().__init__()
        self.channels = check_int(channels, "channels")
        d_state = check_int(d_state, "d_state")
        if d_state % 2:
            raise ValueError(f"d_state must be even (conjugate pairs), got {d_state}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if discretization not in DISCRETIZATIONS:
            raise ValueError(f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}")
        self.discretization = discretization
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_state, self.init = d_state, init
        n = d_state // 2
        modes = torch.arange(n, dtype=torch.float32)
        if init == "lin":
            imag = math.pi * modes
        else:
            imag = d_state / math.pi * (d_state / (2 * modes + 1) - 1)
        self.log_dt = nn.Parameter(log_uniform_(torch.empty(self.channels), dt_min, dt_max).log())
        self.log_A_real = nn.Parameter(torch.full((self.channels, n), math.log(0.5)))
        self.A_imag = nn.Parameter(imag.repeat(self.channels, 1))
        # complex standard normal: real and imaginary parts with variance 1/2
        self.C = nn.Parameter(torch.randn(self.channels, n, 2) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(self.channels))
        # Decay would shrink the step sizes and pull the poles towards the imaginary axis.
        for p in (self.log_dt, self.log_A_real, self.A_imag):
            p._no_weight_decay = True

    def _discrete(self, dtype):
        """``(log A_bar, A_bar, B_bar, C)``, each complex ``(channels, n)``, float64 for float64.

        ``A_bar ** l = exp(l log A_bar)`` for integer ``l`` with any branch of the logarithm;
        ``Re(log A_bar) = log |A_bar| < 0`` for both discretisations.
        """
        real = dtype if dtype == torch.float64 else torch.float32
        A = torch.complex(-torch.exp(self.log_A_real.to(real)), self.A_imag.to(real))
        dt = torch.exp(self.log_dt.to(real))[:, None]
        dtA = dt * A
        if self.discretization == "zoh":
            A_bar = torch.exp(dtA)
            return dtA, A_bar, (A_bar - 1) / A, torch.view_as_complex(self.C.to(real))
        denom = 1 - dtA / 2
        A_bar = (1 + dtA / 2) / denom
        return torch.log(A_bar), A_bar, dt / denom, torch.view_as_complex(self.C.to(real))

    def kernel(self, L, dtype=torch.float32):
        """Convolution kernel ``K`` of shape ``(channels, L)``: ``y = K * u + D u``.

        ``A_bar ** l`` is factored as ``A_bar ** (q b) * A_bar ** r`` with ``l = q b + r`` and a
        block ``b ~ sqrt(L)``, so only ``channels * n * (b + L / b)`` complex exponentials are
        taken and the sum over modes becomes a batched matrix product (forming all
        ``channels * n * L`` powers by ``exp`` was ~10x slower on CPU).  ``Re(A) < 0``, so the
        factors never overflow.
        """
        log_A_bar, _, B_bar, C = self._discrete(dtype)
        block = 1 << (max(L - 1, 1).bit_length() // 2)  # about sqrt(L), a power of two
        n_blocks = -(-L // block)
        real = log_A_bar.real.dtype
        within = torch.arange(block, device=log_A_bar.device, dtype=real)
        starts = torch.arange(n_blocks, device=log_A_bar.device, dtype=real) * block
        inner = torch.exp(log_A_bar[..., None] * within)  # (channels, n, block): A_bar ** r
        outer = torch.exp(log_A_bar[..., None] * starts) * (C * B_bar)[..., None]  # (channels, n, n_blocks)
        K = torch.bmm(outer.transpose(1, 2), inner)  # (channels, n_blocks, block)
        return 2 * K.real.reshape(self.channels, n_blocks * block)[:, :L]

    def forward(self, u, return_state=False):
        """Convolution mode: ``u`` ``(batch, channels, L)`` -> ``y`` of the same shape.

        With ``return_state=True`` also the state after the last step (as :meth:`step`
        would leave it).
        """
        L = u.shape[-1]
        K = self.kernel(L, u.dtype)
        real = K.dtype
        uf = torch.fft.rfft(u.to(real), n=2 * L)
        y = torch.fft.irfft(uf * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]
        y = (y + self.D.to(real)[:, None] * u.to(real)).to(u.dtype)
        return (y, self.final_state(u)) if return_state else y

    def final_state(self, u):
        """State after running the recurrence over ``u`` ``(batch, channels, L)`` from zero.

        ``s_L = B_bar * sum_j A_bar ** (L - 1 - j) u_j``, with the powers factored in blocks
        as in :meth:`kernel` (no ``(channels, n, L)`` tensor is formed).
        """
        b, c, L = u.shape
        log_A_bar, _, B_bar, _ = self._discrete(u.dtype)
        real = log_A_bar.real.dtype
        block = 1 << (max(L - 1, 1).bit_length() // 2)
        n_blocks = -(-L // block)
        # reversed inputs, zero-padded at the far end: m = L - 1 - j = q * block + r
        u_rev = F.pad(u.to(real).flip(-1), (0, n_blocks * block - L))
        u_rev = u_rev.view(b, c, n_blocks, block).permute(1, 0, 2, 3).reshape(c, b * n_blocks, block)
        within = torch.arange(block, device=u.device, dtype=real)
        starts = torch.arange(n_blocks, device=u.device, dtype=real) * block
        inner = torch.exp(log_A_bar[:, None, :] * within[None, :, None])  # (c, block, n)
        partial = torch.bmm(u_rev.to(inner.dtype), inner).view(c, b, n_blocks, -1)
        outer = torch.exp(log_A_bar[:, None, :] * starts[None, :, None])  # (c, n_blocks, n)
        s = (partial * outer[:, None]).sum(2) * B_bar[:, None, :]  # (c, b, n)
        return torch.view_as_real(s.transpose(0, 1).contiguous())

    def init_state(self, batch_size, device=None, dtype=None):
        """Zero state ``(batch, channels, N / 2, 2)``."""
        device = self.D.device if device is None else device
        dtype = self.D.dtype if dtype is None else dtype
        real = dtype if dtype == torch.float64 else torch.float32
        return torch.zeros(batch_size, self.channels, self.d_state // 2, 2, device=device, dtype=real)

    def step(self, u_t, state):
        """One step: ``u_t`` ``(batch, channels)`` -> ``(y_t, new_state)``."""
        _, A_bar, B_bar, C = self._discrete(u_t.dtype)
        real = A_bar.real.dtype
        uu = u_t.to(real)
        s = A_bar * torch.view_as_complex(state.to(real).contiguous()) + B_bar * uu[..., None]
        y = 2 * (s * C).sum(-1).real + self.D.to(real) * uu
        return y.to(u_t.dtype), torch.view_as_real(s).to(state.dtype)


@LAYER_DOCS.fill
class S4DLayer(SequenceLayer):
    r"""Pre-norm residual S4D block: ``out_proj(gelu(S4D(u)) * sigmoid(z))``.

    Parameters
    ----------
    %(d_model)s
    d_state : int, default 64
        Real state size per channel (``d_state / 2`` complex modes).
    %(expand)s
    init : {"lin", "inv"}, default "lin"
        S4D-Lin or S4D-Inv initialisation.
    dt_min, dt_max : float, default 1e-3, 1e-1
    discretization : {"zoh", "bilinear"}, default "zoh"
        See :class:`S4D`.
    %(block_dropout)s

    Notes
    -----
    ``forward`` uses the FFT convolution, :meth:`step` the recurrence.  State: ``(ssm_state,)``
    of shape ``(batch, E, d_state / 2, 2)`` (real and imaginary parts; float32 for 16-bit
    models).

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import S4DLayer
    >>> _ = torch.manual_seed(0)
    >>> layer = S4DLayer(8, d_state=4, init="inv")
    >>> layer(torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    >>> layer.init_state(2)[0].shape
    torch.Size([2, 16, 2, 2])
    """

    def __init__(self, d_model, d_state=64, expand=2, init="lin", dt_min=1e-3, dt_max=1e-1,
                 dropout=0.0, discretization="zoh"):
        super().__init__(check_int(d_model, "d_model"))
        self._init_block(expand, dropout, lambda E: S4D(E, d_state=d_state, init=init, dt_min=dt_min,
                                                        dt_max=dt_max, discretization=discretization))

    def _init_block(self, expand, dropout, make_ssm):
        """The norm, projections and dropout of the gated block around ``make_ssm(E)``."""
        self.expand = check_int(expand, "expand")
        E = self.expand * self.d_model
        self.norm = RMSNorm(self.d_model)
        self.in_proj = nn.Linear(self.d_model, 2 * E, bias=False)
        self.ssm = make_ssm(E)
        self.out_proj = nn.Linear(E, self.d_model, bias=False)
        self.dropout = nn.Dropout(check_dropout(dropout))

    def forward(self, x, lengths=None, return_state=False):
        u, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)
        y = self.ssm(u.transpose(1, 2), return_state=return_state)
        y, state = y if return_state else (y, None)
        out = x + self.dropout(self.out_proj(F.gelu(y.transpose(1, 2)) * torch.sigmoid(z)))
        return (out, (state,)) if return_state else out

    def init_state(self, batch_size, device=None, dtype=None):
        """Zero state ``(ssm_state,)``, ``(batch, E, d_state / 2, 2)``."""
        device, dtype = self._device_dtype(device, dtype)
        return (self.ssm.init_state(batch_size, device, dtype),)

    def step(self, x_t, state):
        """One position: ``x_t`` ``(batch, d_model)`` -> ``(y_t, (ssm_state,))``."""
        u, z = self.in_proj(self.norm(x_t)).chunk(2, dim=-1)
        y, ssm_state = self.ssm.step(u, state[0])
        return x_t + self.dropout(self.out_proj(F.gelu(y) * torch.sigmoid(z))), (ssm_state,)
