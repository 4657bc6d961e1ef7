r"""Kalman filter, Rauch-Tung-Striebel smoother and forecasts for linear-Gaussian state-space models.

The model (``t = 1..T`` within each sequence)::

    x_1 ~ N(m0, P0)
    x_t = A x_{t-1} + B u_t + w_t,     w_t ~ N(0, Q)      (t >= 2)
    y_t = C x_t     + D u_t + v_t,     v_t ~ N(0, R)

with optional inputs ``u_t`` (``B`` and ``D`` absent without them; ``u_1`` enters only
through ``D``). Parameters travel as a :class:`LinearGaussianParams`.

Sequences are stacked along the first axis with ``lengths`` (hmmlearn's sense), as in the
HMM kernels of :mod:`probkit.inference`. A NaN entry of ``observations`` is missing: the
update uses the observed entries only (the marginal of ``N(C x + D u, R)`` on them, so a
full ``R`` couples them correctly), and a row with every entry missing is a pure
prediction step.

Numerics: the filtered covariance is updated in Joseph form
``(I - K C) P (I - K C)' + K R K'`` and the smoothed one as
``(I - J A) P_f (I - J A)' + J (Q + P_s) J'``, both sums of positive semi-definite terms,
and every covariance is symmetrised after each step, so covariances stay symmetric
positive definite over arbitrarily long sequences. Innovation and predicted covariances
are factored by Cholesky; a factorisation that fails raises ``ValueError`` naming the
sequence and step.

Backends: ``"numba"`` runs compiled loops over the concatenated layout on the CPU
(float64; sequences in blocks on worker threads); ``"torch"`` runs all sequences in
lockstep as padded batches on the tensors' device (CUDA included, differentiable);
``"auto"`` picks numba for CPU tensors without gradients. With time-invariant parameters
and fully observed rows both filters stop recomputing the covariances once they reach the
steady state (``steady_state_tol``; see :mod:`probkit.inference._kalman_numba`); the torch
backend always computes every step.
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import numpy as np
import torch

from probkit.inference._checks import as_float_tensor, check_choice
from probkit.inference.padded import pad_sequences, unpad_sequences
from probkit.utils._docstrings import DocFragments
from probkit.utils.threads import torch_threads
from probkit.utils.validation import check_int, check_lengths

try:  # numba is a declared dependency; the torch backend keeps working without it.
    from probkit.inference import _kalman_numba as _kn
    from probkit.inference._numba_backend import _block_bounds, _offsets, _run_blocks
except ImportError:  # pragma: no cover - exercised only where numba is missing
    _kn = None

__all__ = [
    "KalmanFilterResult",
    "KalmanForecastResult",
    "KalmanSmootherResult",
    "LinearGaussianParams",
    "check_linear_gaussian_params",
    "kalman_filter",
    "kalman_forecast",
    "kalman_smoother",
]

_BACKENDS = ("auto", "numba", "torch")
_LOG_2PI = math.log(2.0 * math.pi)
#: Relative change of the predicted covariance below which the filter is in steady state.
DEFAULT_STEADY_STATE_TOL = 1e-13


class LinearGaussianParams(NamedTuple):
    """Parameters of a linear-Gaussian state-space model (numpy arrays or tensors).

    Attributes
    ----------
    transition_matrix : (n, n)
        ``A``.
    observation_matrix : (p, n)
        ``C``.
    transition_covariance : (n, n)
        ``Q``, symmetric positive definite.
    observation_covariance : (p, p)
        ``R``, symmetric positive definite.
    initial_state_mean : (n,)
        ``m0``.
    initial_state_covariance : (n, n)
        ``P0``, symmetric positive definite.
    input_matrix : (n, m) or None
        ``B``; None (or ``m = 0``) without inputs.
    feedthrough_matrix : (p, m) or None
        ``D``; None (or ``m = 0``) without inputs.

    Examples
    --------
    >>> import numpy as np
    >>> params = LinearGaussianParams(np.eye(2), np.ones((1, 2)), np.eye(2), np.eye(1), np.zeros(2), np.eye(2))
    >>> params.input_matrix is None
    True
    """

    transition_matrix: object
    observation_matrix: object
    transition_covariance: object
    observation_covariance: object
    initial_state_mean: object
    initial_state_covariance: object
    input_matrix: object = None
    feedthrough_matrix: object = None


class KalmanFilterResult(NamedTuple):
    """Result of :func:`kalman_filter` (tensors, sequences stacked).

    Attributes
    ----------
    log_likelihood : Tensor (n_sequences,)
        ``log p(y_1..T)`` of every sequence (observed entries only).
    step_log_likelihood : Tensor (n_samples,)
        ``log p(y_t | y_1..t-1)``; 0 for a row with every entry missing.
    predicted_means, predicted_covariances : Tensor (n_samples, n), (n_samples, n, n)
        Moments of ``x_t | y_1..t-1``.
    filtered_means, filtered_covariances : Tensor (n_samples, n), (n_samples, n, n)
        Moments of ``x_t | y_1..t``.
    """

    log_likelihood: torch.Tensor
    step_log_likelihood: torch.Tensor
    predicted_means: torch.Tensor
    predicted_covariances: torch.Tensor
    filtered_means: torch.Tensor
    filtered_covariances: torch.Tensor


class KalmanSmootherResult(NamedTuple):
    """Result of :func:`kalman_smoother` (tensors, sequences stacked).

    Attributes
    ----------
    filter : KalmanFilterResult
        The forward pass.
    smoothed_means, smoothed_covariances : Tensor (n_samples, n), (n_samples, n, n)
        Moments of ``x_t | y_1..T``.
    lag_one_covariances : Tensor (n_samples, n, n)
        ``Cov(x_t, x_{t-1} | y_1..T)``; zero at the first step of every sequence.
    """

    filter: KalmanFilterResult
    smoothed_means: torch.Tensor
    smoothed_covariances: torch.Tensor
    lag_one_covariances: torch.Tensor

    @property
    def log_likelihood(self):
        """``log p(y_1..T)`` of every sequence (the filter's)."""
        return self.filter.log_likelihood


class KalmanForecastResult(NamedTuple):
    """Result of :func:`kalman_forecast` (``n_steps`` rows per sequence, stacked).

    Attributes
    ----------
    state_means, state_covariances : Tensor (n_sequences * n_steps, n), (..., n, n)
        Moments of ``x_{T+h} | y_1..T``, ``h = 1..n_steps``.
    observation_means, observation_covariances : Tensor (n_sequences * n_steps, p), (..., p, p)
        Moments of ``y_{T+h} | y_1..T``.
    """

    state_means: torch.Tensor
    state_covariances: torch.Tensor
    observation_means: torch.Tensor
    observation_covariances: torch.Tensor


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------


def _check_matrix(value, name, shape, dtype, device):
    t = as_float_tensor(value, name).to(dtype=dtype, device=device)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinity")
    return t


def _check_covariance(value, name, size, dtype, device):
    t = _check_matrix(value, name, (size, size), dtype, device)
    scale = float(t.abs().max()) if t.numel() else 0.0
    if float((t - t.T).abs().max()) > 1e-8 * max(scale, 1e-300):
        raise ValueError(f"{name} must be symmetric")
    t = 0.5 * (t + t.T)
    # The check runs in float64 on the CPU: a cheap, exact-enough test for small matrices.
    if int(torch.linalg.cholesky_ex(t.detach().to("cpu", torch.float64)).info) != 0:
        raise ValueError(f"{name} must be positive definite (its Cholesky factorisation failed)")
    return t


def check_linear_gaussian_params(params, *, dtype=torch.float64, device="cpu"):
    """Validate a :class:`LinearGaussianParams` and convert it to tensors.

    Shapes must agree, every value must be finite, and ``Q``, ``R``, ``P0`` symmetric
    positive definite; the input matrices must both be given (or both absent) with the
    same number of columns. The covariances are returned exactly symmetric.

    Parameters
    ----------
    params : LinearGaussianParams
    dtype : torch.dtype, default=torch.float64
    device : str or torch.device, default="cpu"

    Returns
    -------
    LinearGaussianParams
        Tensors; ``input_matrix`` and ``feedthrough_matrix`` are None without inputs.

    Examples
    --------
    >>> import numpy as np
    >>> bad = LinearGaussianParams(np.eye(2), np.ones((1, 2)), -np.eye(2), np.eye(1), np.zeros(2), np.eye(2))
    >>> check_linear_gaussian_params(bad)
    Traceback (most recent call last):
    ...
    ValueError: transition_covariance must be positive definite (its Cholesky factorisation failed)
    """
    if not isinstance(params, LinearGaussianParams):
        raise TypeError(f"params must be a LinearGaussianParams, got {type(params).__name__}")
    A = as_float_tensor(params.transition_matrix, "transition_matrix")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"transition_matrix must be a non-empty square matrix, got shape {tuple(A.shape)}")
    n = A.shape[0]
    A = _check_matrix(A, "transition_matrix", (n, n), dtype, device)
    C = as_float_tensor(params.observation_matrix, "observation_matrix")
    if C.ndim != 2 or C.shape[1] != n or C.shape[0] == 0:
        raise ValueError(f"observation_matrix must have shape (n_features, {n}), got {tuple(C.shape)}")
    p = C.shape[0]
    C = _check_matrix(C, "observation_matrix", (p, n), dtype, device)
    Q = _check_covariance(params.transition_covariance, "transition_covariance", n, dtype, device)
    R = _check_covariance(params.observation_covariance, "observation_covariance", p, dtype, device)
    m0 = _check_matrix(params.initial_state_mean, "initial_state_mean", (n,), dtype, device)
    P0 = _check_covariance(params.initial_state_covariance, "initial_state_covariance", n, dtype, device)
    B, D = params.input_matrix, params.feedthrough_matrix
    if (B is None) != (D is None):
        raise ValueError("input_matrix and feedthrough_matrix must both be given or both be None")
    if B is not None:
        B = as_float_tensor(B, "input_matrix")
        if B.ndim != 2 or B.shape[0] != n:
            raise ValueError(f"input_matrix must have shape ({n}, n_inputs), got {tuple(B.shape)}")
        m = B.shape[1]
        B = _check_matrix(B, "input_matrix", (n, m), dtype, device)
        D = _check_matrix(D, "feedthrough_matrix", (p, m), dtype, device)
        if m == 0:
            B = D = None
    return LinearGaussianParams(A, C, Q, R, m0, P0, B, D)


def _check_observations(observations):
    y = as_float_tensor(observations, "observations")
    if y.ndim != 2 or y.shape[0] == 0 or y.shape[1] == 0:
        raise ValueError(f"observations must have shape (n_samples, n_features), got {tuple(y.shape)}")
    if bool(torch.isinf(y).any()):
        raise ValueError("observations contains infinity (NaN marks a missing entry; infinity is not allowed)")
    return y


def _check_inputs(inputs, params, n_samples, dtype, device, name="inputs"):
    m = 0 if params.input_matrix is None else params.input_matrix.shape[1]
    if inputs is None:
        if m:
            raise ValueError(f"the model has {m} input column(s) (input_matrix is ({params.input_matrix.shape[0]}, "
                             f"{m})): pass {name} of shape ({n_samples}, {m})")
        return None
    u = as_float_tensor(inputs, name).to(dtype=dtype, device=device)
    if u.ndim == 1:
        u = u[:, None]
    if u.ndim != 2 or u.shape[0] != n_samples:
        raise ValueError(f"{name} must have shape ({n_samples}, n_inputs), one row per observation row, got "
                         f"{tuple(u.shape)}")
    if u.shape[1] != m:
        raise ValueError(f"{name} has {u.shape[1]} column(s) but the model's input_matrix has {m}")
    if not bool(torch.isfinite(u).all()):
        raise ValueError(f"{name} contains NaN or infinity")
    return u if m else None


def _resolve_backend(backend, *tensors):
    check_choice(backend, "backend", _BACKENDS)
    if backend == "numba":
        if _kn is None:
            raise ValueError("backend='numba' was requested but numba is not installed")
        return "numba"
    if backend == "torch" or _kn is None:
        return "torch"
    for t in tensors:
        if t is not None and (t.device.type != "cpu" or t.requires_grad):
            return "torch"
    return "numba"


def _prepare(observations, params, inputs, lengths, backend, steady_state_tol):
    """The public functions' arguments checked: ``(y, params, u, lengths, backend, steady_state_tol)``."""
    tol = _check_tol(steady_state_tol)
    y = _check_observations(observations)
    dtype, device = y.dtype, y.device
    if dtype in (torch.float16, torch.bfloat16):
        y = y.to(torch.float32)
        dtype = torch.float32
    params = check_linear_gaussian_params(params, dtype=dtype, device=device)
    if params.observation_matrix.shape[0] != y.shape[1]:
        raise ValueError(f"observations have {y.shape[1]} feature(s) but observation_matrix has "
                         f"{params.observation_matrix.shape[0]} rows")
    u = _check_inputs(inputs, params, y.shape[0], dtype, device)
    lengths = check_lengths(lengths, y.shape[0])
    chosen = _resolve_backend(backend, y, u, *params[:6])
    return y, params, u, lengths, chosen, tol


def _check_tol(steady_state_tol):
    if not isinstance(steady_state_tol, (int, float)) or not 0 <= steady_state_tol < 1:
        raise ValueError(f"steady_state_tol must be a number in [0, 1), got {steady_state_tol!r}")
    return float(steady_state_tol)


def _raise_filter_failure(status, lengths):
    bad = np.flatnonzero(status >= 0)
    if bad.size:
        s = int(bad[0])
        step = int(status[s] - np.concatenate([[0], np.cumsum(lengths)])[s])
        raise ValueError(f"the innovation covariance C P C' + R is not positive definite at step {step} of "
                         f"sequence {s} (the parameters make the observations degenerate, or the state "
                         "covariance overflowed)")


def _raise_smoother_failure(status, lengths):
    bad = np.flatnonzero(status >= 0)
    if bad.size:
        s = int(bad[0])
        step = int(status[s] - np.concatenate([[0], np.cumsum(lengths)])[s]) + 1
        raise ValueError(f"the predicted state covariance is not positive definite at step {step} of sequence {s}")


# ---------------------------------------------------------------------------------------
# numba backend
# ---------------------------------------------------------------------------------------


def _np64(t):
    return np.ascontiguousarray(t.detach().to(device="cpu", dtype=torch.float64).numpy())


def _offset_rows(u, matrix, size):
    if u is None:
        return np.zeros((0, size))
    return np.ascontiguousarray(_np64(u) @ _np64(matrix).T)


def _filter_numba(y, params, u, lengths, tol):
    A, C, Q, R, m0, P0, B, D = (None if v is None else _np64(v) for v in params)
    N, p = y.shape
    n = A.shape[0]
    offsets = _offsets(lengths)
    bounds = _block_bounds(offsets, n)
    y64 = _np64(y)
    state_offset = _offset_rows(u, params.input_matrix, n)
    obs_offset = _offset_rows(u, params.feedthrough_matrix, p)
    pred_mean = np.empty((N, n))
    pred_cov = np.empty((N, n, n))
    filt_mean = np.empty((N, n))
    filt_cov = np.empty((N, n, n))
    step_ll = np.empty(N)
    seq_ll = np.empty(len(lengths))
    steady = np.zeros(N, dtype=np.int8)
    status = np.empty(len(lengths), dtype=np.int64)

    def args(b, s_begin, s_end):
        return (y64, state_offset, obs_offset, A, C, Q, R, m0, P0, offsets, s_begin, s_end, tol,
                pred_mean, pred_cov, filt_mean, filt_cov, step_ll, seq_ll, steady, status)

    _run_blocks(_kn.kalman_filter_block, bounds, args)
    _raise_filter_failure(status, lengths)
    return (seq_ll, step_ll, pred_mean, pred_cov, filt_mean, filt_cov), (A, Q, offsets, bounds, steady)


def _smoother_numba(filtered, extra, lengths, tol):
    seq_ll, step_ll, pred_mean, pred_cov, filt_mean, filt_cov = filtered
    A, Q, offsets, bounds, steady = extra
    N, n = filt_mean.shape
    smooth_mean = np.empty((N, n))
    smooth_cov = np.empty((N, n, n))
    lag_cov = np.empty((N, n, n))
    status = np.empty(len(lengths), dtype=np.int64)
    At = np.ascontiguousarray(A.T)

    def args(b, s_begin, s_end):
        return (A, At, Q, offsets, s_begin, s_end, tol, pred_mean, pred_cov, filt_mean, filt_cov, steady,
                smooth_mean, smooth_cov, lag_cov, status)

    _run_blocks(_kn.rts_smoother_block, bounds, args)
    _raise_smoother_failure(status, lengths)
    return smooth_mean, smooth_cov, lag_cov


def _as_result(arrays, like):
    return [torch.from_numpy(a).to(dtype=like.dtype, device=like.device) for a in arrays]


# ---------------------------------------------------------------------------------------
# torch backend: all sequences in lockstep, padded
# ---------------------------------------------------------------------------------------


def _sym(P):
    return 0.5 * (P + P.transpose(-1, -2))


def _filter_torch(y, params, u, lengths):
    A, C, Q, R, m0, P0, B, D = params
    n, p = A.shape[0], C.shape[0]
    dtype, device = y.dtype, y.device
    y_pad, valid = pad_sequences(y, lengths, fill=float("nan"))
    S, L = valid.shape
    observed = ~torch.isnan(y_pad)  # padding is NaN, hence unobserved
    y_pad = torch.where(observed, y_pad, torch.zeros((), dtype=dtype, device=device))
    state_offset = obs_offset = None
    if u is not None:
        u_pad, _ = pad_sequences(u, lengths)
        state_offset = u_pad @ B.T
        obs_offset = u_pad @ D.T
    lengths_t = torch.as_tensor(lengths, device=device)
    eye_n = torch.eye(n, dtype=dtype, device=device)
    pred_mean = y.new_zeros((S, L, n))
    pred_cov = y.new_zeros((S, L, n, n))
    filt_mean = y.new_zeros((S, L, n))
    filt_cov = y.new_zeros((S, L, n, n))
    step_ll = y.new_zeros((S, L))
    m_f = P_f = None
    for t in range(L):
        active = (t < lengths_t)
        if t == 0:
            mp = m0.expand(S, n)
            Pp = P0.expand(S, n, n)
        else:
            mp = m_f @ A.T
            if state_offset is not None:
                mp = mp + state_offset[:, t]
            Pp = _sym(A @ P_f @ A.T + Q)
        o = observed[:, t].to(dtype)
        Cm = C * o[:, :, None]
        Rt = R * (o[:, :, None] * o[:, None, :]) + torch.diag_embed(1.0 - o)
        resid = y_pad[:, t] - mp @ C.T
        if obs_offset is not None:
            resid = resid - obs_offset[:, t]
        v = resid * o
        PCt = Pp @ Cm.transpose(-1, -2)
        Sm = _sym(Cm @ PCt + Rt)
        Lc, info = torch.linalg.cholesky_ex(Sm)
        failed = (info != 0) & active
        if bool(failed.any()):
            s = int(torch.nonzero(failed)[0])
            raise ValueError(f"the innovation covariance C P C' + R is not positive definite at step {t} of "
                             f"sequence {s} (the parameters make the observations degenerate, or the state "
                             "covariance overflowed)")
        Kt = torch.cholesky_solve(PCt.transpose(-1, -2), Lc)  # (S, p, n): the gain, transposed
        new_mean = mp + (v[:, None, :] @ Kt)[:, 0]
        M = eye_n - Kt.transpose(-1, -2) @ Cm
        new_cov = _sym(M @ Pp @ M.transpose(-1, -2) + Kt.transpose(-1, -2) @ Rt @ Kt)
        w = torch.linalg.solve_triangular(Lc, v[:, :, None], upper=False)[:, :, 0]
        logdet = 2.0 * torch.log(torch.diagonal(Lc, dim1=-2, dim2=-1)).sum(-1)
        ll = -0.5 * (o.sum(-1) * _LOG_2PI + logdet + (w * w).sum(-1))
        keep = active[:, None]
        m_f = new_mean if m_f is None else torch.where(keep, new_mean, m_f)
        P_f = new_cov if P_f is None else torch.where(keep[:, :, None], new_cov, P_f)
        pred_mean[:, t] = mp
        pred_cov[:, t] = Pp
        filt_mean[:, t] = m_f
        filt_cov[:, t] = P_f
        step_ll[:, t] = torch.where(active, ll, torch.zeros((), dtype=dtype, device=device))
    seq_ll = step_ll.sum(1)
    return seq_ll, (step_ll, pred_mean, pred_cov, filt_mean, filt_cov)


def _smoother_torch(padded_filter, params, lengths):
    A, C, Q = params[0], params[1], params[2]
    step_ll, pred_mean, pred_cov, filt_mean, filt_cov = padded_filter
    S, L, n = filt_mean.shape
    dtype, device = filt_mean.dtype, filt_mean.device
    lengths_t = torch.as_tensor(lengths, device=device)
    eye_n = torch.eye(n, dtype=dtype, device=device)
    smooth_mean = torch.zeros_like(filt_mean)
    smooth_cov = torch.zeros_like(filt_cov)
    lag_cov = torch.zeros_like(filt_cov)
    m_next = filt_mean[:, L - 1]
    P_next = filt_cov[:, L - 1]
    smooth_mean[:, L - 1] = m_next
    smooth_cov[:, L - 1] = P_next
    for t in range(L - 2, -1, -1):
        is_last = (t == lengths_t - 1)
        inner = (t < lengths_t - 1)  # has a successor inside its sequence
        Pp = torch.where(inner[:, None, None], pred_cov[:, t + 1], eye_n)
        Lp, info = torch.linalg.cholesky_ex(Pp)
        if bool((info != 0).any()):
            s = int(torch.nonzero(info != 0)[0])
            raise ValueError(f"the predicted state covariance is not positive definite at step {t + 1} of "
                             f"sequence {s}")
        Jt = torch.cholesky_solve(A @ filt_cov[:, t], Lp)  # J transposed
        J = Jt.transpose(-1, -2)
        m_s = filt_mean[:, t] + ((m_next - pred_mean[:, t + 1])[:, None, :] @ Jt)[:, 0]
        IJA = eye_n - J @ A
        P_s = _sym(IJA @ filt_cov[:, t] @ IJA.transpose(-1, -2) + J @ (Q + P_next) @ Jt)
        lag = P_next @ Jt
        sel = inner[:, None]
        m_s = torch.where(sel, m_s, filt_mean[:, t])
        P_s = torch.where(sel[:, :, None], P_s, filt_cov[:, t])
        lag_cov[:, t + 1] = torch.where(sel[:, :, None], lag, torch.zeros((), dtype=dtype, device=device))
        smooth_mean[:, t] = m_s
        smooth_cov[:, t] = P_s
        m_next = torch.where(is_last[:, None] | sel, m_s, m_next)
        P_next = torch.where((is_last[:, None] | sel)[:, :, None], P_s, P_next)
    return smooth_mean, smooth_cov, lag_cov


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------

# The parameters of kalman_filter and kalman_smoother, substituted for "%(parameters)s" in their docstrings.
_PARAMETERS = """Parameters
----------
observations : array-like or Tensor, (n_samples, p)
    Sequences stacked along the first axis; NaN marks a missing entry.
params : LinearGaussianParams
inputs : array-like or Tensor, (n_samples, m), optional
    ``u_t``, one row per observation row; required when the model has inputs.
lengths : array-like of int, optional
    Sequence lengths (sum ``n_samples``); None means one sequence.
backend : {"auto", "numba", "torch"}, default="auto"
steady_state_tol : float, default=1e-13
    Relative change of the predicted covariance below which the numba filter treats
    the covariances as converged; 0 recomputes every step.
"""
_DOCS = DocFragments(sections={"parameters": _PARAMETERS})



@_DOCS.fill
def kalman_filter(observations, params, *, inputs=None, lengths=None, backend="auto",
                  steady_state_tol=DEFAULT_STEADY_STATE_TOL):
    """Kalman filter: log-likelihood, predicted and filtered state moments.

    %(parameters)s
    Returns
    -------
    KalmanFilterResult
        Tensors with the dtype and device of ``observations``.

    Examples
    --------
    A random walk observed with unit noise: the first filtered mean is the average of
    the prior mean 0 and the observation 2 (variance 1/2); the missing second value only
    adds the step variance (1.5); the third update gives ``2.5 / (2.5 + 1)``.

    >>> import numpy as np
    >>> params = LinearGaussianParams(np.eye(1), np.eye(1), np.eye(1), np.eye(1), np.zeros(1), np.eye(1))
    >>> res = kalman_filter(np.array([[2.0], [np.nan], [1.0]]), params)
    >>> res.filtered_means[:, 0]
    tensor([1.0000, 1.0000, 1.0000], dtype=torch.float64)
    >>> res.filtered_covariances[:, 0, 0]
    tensor([0.5000, 1.5000, 0.7143], dtype=torch.float64)
    >>> res.step_log_likelihood[1].item()
    0.0
    """
    y, params, u, lengths, chosen, tol = _prepare(observations, params, inputs, lengths, backend, steady_state_tol)
    return _filter_validated(y, params, u, lengths, backend=chosen, steady_state_tol=tol)


@_DOCS.fill
def kalman_smoother(observations, params, *, inputs=None, lengths=None, backend="auto",
                    steady_state_tol=DEFAULT_STEADY_STATE_TOL):
    """Rauch-Tung-Striebel smoother: smoothed state moments and lag-one cross-covariances.

    %(parameters)s
    Returns
    -------
    KalmanSmootherResult
        ``filter`` (the forward pass), ``smoothed_means`` (n_samples, n),
        ``smoothed_covariances`` and ``lag_one_covariances`` (n_samples, n, n), tensors
        with the dtype and device of ``observations``.

    Examples
    --------
    >>> import numpy as np
    >>> params = LinearGaussianParams(np.eye(1), np.eye(1), np.eye(1), np.eye(1), np.zeros(1), np.eye(1))
    >>> res = kalman_smoother(np.array([[2.0], [np.nan], [1.0]]), params)
    >>> res.smoothed_means[:, 0]
    tensor([1.0000, 1.0000, 1.0000], dtype=torch.float64)
    >>> res.lag_one_covariances[:, 0, 0]
    tensor([0.0000, 0.2857, 0.4286], dtype=torch.float64)
    """
    y, params, u, lengths, chosen, tol = _prepare(observations, params, inputs, lengths, backend, steady_state_tol)
    return _smoother_validated(y, params, u, lengths, backend=chosen, steady_state_tol=tol)


def _small_op_threads(like):
    """One torch thread for the per-step CPU ops of the torch backend.

    Each step runs a few tiny batched products; handing them to torch's OpenMP pool costs
    more than the arithmetic, and far more when other processes share the cores.
    """
    return torch_threads(1) if like.device.type == "cpu" else contextlib.nullcontext()


def _filter_validated(y, params, u, lengths, *, backend="auto", steady_state_tol=DEFAULT_STEADY_STATE_TOL):
    """:func:`kalman_filter` on inputs that are already checked (tensors of one dtype and device)."""
    chosen = _resolve_backend(backend, y, u, *params[:6])
    if chosen == "numba":
        arrays, _ = _filter_numba(y, params, u, lengths, steady_state_tol)
        return KalmanFilterResult(*_as_result(arrays, y))
    with _small_op_threads(y):
        seq_ll, padded = _filter_torch(y, params, u, lengths)
    return KalmanFilterResult(seq_ll, *(unpad_sequences(a, lengths) for a in padded))


def _smoother_validated(y, params, u, lengths, *, backend="auto", steady_state_tol=DEFAULT_STEADY_STATE_TOL):
    """:func:`kalman_smoother` on inputs that are already checked (tensors of one dtype and device)."""
    chosen = _resolve_backend(backend, y, u, *params[:6])
    if chosen == "numba":
        filtered, extra = _filter_numba(y, params, u, lengths, steady_state_tol)
        smoothed = _smoother_numba(filtered, extra, lengths, steady_state_tol)
        return KalmanSmootherResult(KalmanFilterResult(*_as_result(filtered, y)), *_as_result(smoothed, y))
    with _small_op_threads(y):
        seq_ll, padded = _filter_torch(y, params, u, lengths)
        smoothed = _smoother_torch(padded, params, lengths)
    filt = KalmanFilterResult(seq_ll, *(unpad_sequences(a, lengths) for a in padded))
    return KalmanSmootherResult(filt, *(unpad_sequences(a, lengths) for a in smoothed))


def kalman_forecast(state_mean, state_covariance, params, n_steps, *, inputs=None):
    """Moments of the next ``n_steps`` states and observations from a filtered state.

    For every sequence ``s`` with filtered moments ``x_T | y ~ N(state_mean[s],
    state_covariance[s])``: ``x_{T+h} = A x_{T+h-1} + B u_{T+h}`` (means) and
    ``P_{T+h} = A P_{T+h-1} A' + Q``; ``y_{T+h}`` has mean ``C x + D u`` and covariance
    ``C P C' + R``.

    Parameters
    ----------
    state_mean : array-like or Tensor, (n_sequences, n)
    state_covariance : array-like or Tensor, (n_sequences, n, n)
    params : LinearGaussianParams
    n_steps : int
        Forecast horizon (>= 1).
    inputs : array-like or Tensor, (n_sequences * n_steps, m), optional
        Future inputs ``u_{T+1..T+n_steps}`` of each sequence, stacked; required when the
        model has inputs.

    Returns
    -------
    KalmanForecastResult
        ``n_steps`` rows per sequence, stacked in sequence order.

    Examples
    --------
    >>> import numpy as np
    >>> params = LinearGaussianParams(0.5 * np.eye(1), np.eye(1), np.eye(1), np.eye(1), np.zeros(1), np.eye(1))
    >>> res = kalman_forecast(np.array([[4.0]]), np.zeros((1, 1, 1)), params, 3)
    >>> res.observation_means[:, 0]
    tensor([2.0000, 1.0000, 0.5000], dtype=torch.float64)
    >>> res.state_covariances[:, 0, 0]
    tensor([1.0000, 1.2500, 1.3125], dtype=torch.float64)
    """
    n_steps = check_int(n_steps, "n_steps")
    mean = as_float_tensor(state_mean, "state_mean")
    dtype, device = mean.dtype, mean.device
    params = check_linear_gaussian_params(params, dtype=dtype, device=device)
    A, C, Q, R, _, _, B, D = params
    n, p = A.shape[0], C.shape[0]
    if mean.ndim != 2 or mean.shape[1] != n:
        raise ValueError(f"state_mean must have shape (n_sequences, {n}), got {tuple(mean.shape)}")
    S = mean.shape[0]
    cov = _check_matrix(state_covariance, "state_covariance", (S, n, n), dtype, device)
    u = _check_inputs(inputs, params, S * n_steps, dtype, device)
    if u is not None:
        u = u.reshape(S, n_steps, -1)
    state_means, state_covs, obs_means, obs_covs = [], [], [], []
    for h in range(n_steps):
        mean = mean @ A.T
        if u is not None:
            mean = mean + u[:, h] @ B.T
        cov = _sym(A @ cov @ A.T + Q)
        obs = mean @ C.T
        if u is not None:
            obs = obs + u[:, h] @ D.T
        state_means.append(mean)
        state_covs.append(cov)
        obs_means.append(obs)
        obs_covs.append(_sym(C @ cov @ C.T + R))
    stack = [torch.stack(v, 1) for v in (state_means, state_covs, obs_means, obs_covs)]
    return KalmanForecastResult(stack[0].reshape(S * n_steps, n), stack[1].reshape(S * n_steps, n, n),
                                stack[2].reshape(S * n_steps, p), stack[3].reshape(S * n_steps, p, p))
