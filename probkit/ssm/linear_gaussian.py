r"""LinearGaussianSSM: the linear-Gaussian state-space model (linear dynamical system), fitted by EM.

The continuous-latent twin of the Gaussian HMM::

    x_1 ~ N(m0, P0)
    x_t = A x_{t-1} + B u_t + w_t,     w_t ~ N(0, Q)      (t >= 2)
    y_t = C x_t     + D u_t + v_t,     v_t ~ N(0, R)

The E-step is the Kalman filter and Rauch-Tung-Striebel smoother of
:mod:`probkit.inference.kalman`; the M-step solves two linear regressions in closed form
(Shumway & Stoffer, 1982; Ghahramani & Hinton, 1996): ``x_t`` on ``(x_{t-1}, u_t)`` for
``[A B]`` and ``Q``, ``y_t`` on ``(x_t, u_t)`` for ``[C D]`` and ``R``, each from expected
sufficient statistics. Missing observations (NaN entries) are latent variables of the
complete data as well, so EM stays exact with missing entries and a full ``R``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg
from sklearn.base import TransformerMixin
from sklearn.exceptions import NotFittedError

from probkit.base import (COMPUTE_CONSTRAINTS, ProbkitEstimator, StrOptions, non_negative_int, non_negative_real,
                          positive_int)
from probkit.em.engine import EStepResult, fit_sequence_em
from probkit.inference.kalman import (
    LinearGaussianParams,
    _filter_validated,
    _smoother_validated,
    check_linear_gaussian_params,
    kalman_forecast,
)
from probkit.utils._array import to_numpy
from probkit.utils.random import check_random_state
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_inputs, check_int, check_lengths, check_parameters_set
from probkit.utils.sequences import check_y_slot, keyword_lengths

__all__ = ["KalmanStreamFilter", "LinearGaussianSSM"]

COVARIANCE_TYPES = ("full", "diag")
PARAM_LETTERS = "abcdqrmp"
_ATTRIBUTES = {
    "a": "transition_matrix_",
    "b": "input_matrix_",
    "c": "observation_matrix_",
    "d": "feedthrough_matrix_",
    "q": "transition_covariance_",
    "r": "observation_covariance_",
    "m": "initial_state_mean_",
    "p": "initial_state_covariance_",
}


@dataclass
class _MissingGroup:
    """Rows that share one pattern of missing entries (some, not all, observed or none)."""

    observed: np.ndarray  # indices of observed features
    missing: np.ndarray   # indices of missing features
    rows: torch.Tensor    # row indices on the compute device


@dataclass
class SSMData:
    """Validated sequences as the EM hooks and the kernels see them."""

    X: np.ndarray                 # (n_samples, n_features), NaN where missing
    y: torch.Tensor               # the same on the compute device / dtype
    inputs: torch.Tensor | None   # (n_samples, n_inputs) or None
    lengths: np.ndarray           # (n_sequences,)
    missing_groups: list          # _MissingGroup for every pattern of rows with a missing entry
    first_rows: torch.Tensor      # index of each sequence's first row
    last_rows: torch.Tensor       # index of each sequence's last row


def _solve_psd(lhs, rhs):
    """``rhs @ inv(lhs)`` for a symmetric positive semi-definite ``lhs`` (minimum-norm if singular)."""
    try:
        return linalg.solve(lhs, rhs.T, assume_a="pos").T
    except (linalg.LinAlgError, ValueError):
        return np.linalg.lstsq(lhs, rhs.T, rcond=None)[0].T


def _regression_mstep(Szz, Syz, Syy, count, W, free, cov, cov_type, cov_free, reg):
    """One block of the M-step: ``y = W z + noise`` from expected sums.

    ``Szz = sum E[z z']``, ``Syz = sum E[y z']``, ``Syy = sum E[y y']`` over ``count``
    terms. ``free`` is a boolean mask over the columns of ``W`` that EM updates; the other
    columns keep their values and the free ones are the least-squares solution given them.
    The covariance (if ``cov_free``) is the expected residual covariance under the new
    ``W``, made diagonal for ``"diag"``, plus ``reg`` on the diagonal.
    """
    W = W.copy()
    if free.any():
        fixed = ~free
        rhs = Syz[:, free] - W[:, fixed] @ Szz[np.ix_(fixed, free)]
        W[:, free] = _solve_psd(Szz[np.ix_(free, free)], rhs)
    if cov_free:
        WS = W @ Syz.T
        resid = (Syy - WS - WS.T + W @ Szz @ W.T) / count
        resid = 0.5 * (resid + resid.T)
        if cov_type == "diag":
            resid = np.diag(np.diag(resid))
        cov = resid + reg * np.eye(resid.shape[0])
    return W, cov


# Expected sums of one regression ``target = [M, N] [state; input] + noise`` of the M-step, in the order
# (state state', state input', input input', target state', target input', target target', count).
_TRANSITION_SUMS = ("xx_prev", "x_prev_u", "uu_cur", "x_cur_prev", "x_cur_u", "xx_cur", "n_transitions")
_OBSERVATION_SUMS = ("xx", "xu", "uu", "yx", "yu", "yy", "n_samples")


def _state_input_mstep(stats, sums, state_matrix, input_matrix, cov, cov_type, free, reg):
    """:func:`_regression_mstep` of ``target = M state + N input + noise`` (``input_matrix`` None
    without inputs): the new ``(M, N, covariance)``. ``sums`` names the expected sums in ``stats``;
    ``free`` says whether ``M``, ``N`` and the covariance are updated."""
    zz, zu, uu, yz, yu, yy, count = (stats.get(k) for k in sums)  # no input sums without inputs
    n = np.shape(state_matrix)[1]
    m = 0 if input_matrix is None else np.shape(input_matrix)[1]
    if m:
        Szz = np.block([[zz, zu], [zu.T, uu]])
        Syz = np.hstack([yz, yu])
        W = np.hstack([state_matrix, input_matrix])
    else:
        Szz, Syz, W = zz, yz, np.asarray(state_matrix)
    columns = np.array([free[0]] * n + [free[1]] * m)
    W, cov = _regression_mstep(Szz, Syz, yy, count, np.asarray(W, float), columns, cov, cov_type, free[2], reg)
    return W[:, :n], (W[:, n:] if m else None), cov


class LinearGaussianSSM(TransformerMixin, ProbkitEstimator):
    r"""Linear-Gaussian state-space model (Kalman filter / smoother, EM for every parameter).

    ``x_t = A x_{t-1} + B u_t + w_t`` with ``w_t ~ N(0, Q)``, ``y_t = C x_t + D u_t + v_t``
    with ``v_t ~ N(0, R)`` and ``x_1 ~ N(m0, P0)``; ``u_t`` are optional known inputs
    (pass a column of ones to give the observations an intercept ``D``).

    Parameters
    ----------
    n_components : int, default=1
        Dimension ``n`` of the latent state (as ``n_components`` of scikit-learn's PCA or
        FactorAnalysis, and of probkit's HMMs).
    transition_covariance_type : {"full", "diag"}, default="full"
        Structure of ``Q``.
    observation_covariance_type : {"full", "diag"}, default="diag"
        Structure of ``R``. ``"diag"`` makes the model a dynamic factor analyser: the
        states explain every correlation between the observed features.
    n_iter : int, default=10
        Maximum number of EM iterations.
    tol : float, default=1e-2
        Convergence threshold on the gain of the *total* log-likelihood (as probkit's HMMs).
    params, init_params : str, default="abcdqrmp"
        Letters of the parameters EM updates / initialises from the data before fitting:
        ``a`` transition matrix ``A``, ``b`` input matrix ``B``, ``c`` observation matrix
        ``C``, ``d`` feedthrough matrix ``D``, ``q`` transition covariance ``Q``, ``r``
        observation covariance ``R``, ``m`` initial state mean ``m0``, ``p`` initial
        state covariance ``P0``. A parameter missing from ``params`` stays at its initial
        (or hand-set) value; one missing from ``init_params`` keeps the value set by hand
        before ``fit`` (and is initialised from the data only if it has none).
    reg_covar : float, default=1e-6
        Added to the diagonal of ``Q``, ``R`` and ``P0`` after each M-step, so they stay
        positive definite.
    random_state : int, RandomState or None
        Draws the observation loadings of the states beyond ``n_features`` at
        initialisation (the others come from a PCA of the data), and is the default
        generator of :meth:`sample`.
    verbose : bool, default=False
    device : str or torch.device, optional
        Where the filter and smoother run (``"cuda"`` works; the CPU uses compiled loops).
    dtype : str or torch.dtype, optional
        Compute precision (default float64).

    Attributes
    ----------
    transition_matrix_ : ndarray (n, n)
    input_matrix_ : ndarray (n, n_inputs)
    observation_matrix_ : ndarray (n_features, n)
    feedthrough_matrix_ : ndarray (n_features, n_inputs)
    transition_covariance_ : ndarray (n, n)
    observation_covariance_ : ndarray (n_features, n_features)
    initial_state_mean_ : ndarray (n,)
    initial_state_covariance_ : ndarray (n, n)
    n_features_in_ : int
    n_inputs_ : int
        Columns of ``inputs`` seen in ``fit`` (0 without inputs).
    monitor_ : ConvergenceMonitor
        Total log-likelihood of the training data before each M-step.
    n_iter_ : int
    converged_ : bool

    Notes
    -----
    The likelihood is invariant under ``x -> T x`` for any invertible ``T`` (``A -> T A
    T^-1``, ``C -> C T^-1``, ...): compare fitted models through the eigenvalues of ``A``,
    the observation covariances they imply, or their likelihoods, not entry by entry.

    Missing entries (NaN) are allowed everywhere; a row with every entry missing only
    propagates the state. A ``ConvergenceWarning`` is emitted when EM stops at ``n_iter``
    before the gain fell below ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import LinearGaussianSSM
    >>> truth = LinearGaussianSSM(1)
    >>> truth.transition_matrix_ = np.array([[0.9]])
    >>> truth.observation_matrix_ = np.array([[1.0], [0.5]])
    >>> truth.transition_covariance_ = np.array([[0.2]])
    >>> truth.observation_covariance_ = np.diag([0.1, 0.1])
    >>> truth.initial_state_mean_, truth.initial_state_covariance_ = np.zeros(1), np.eye(1)
    >>> X, states = truth.sample(500, random_state=0)
    >>> model = LinearGaussianSSM(1, n_iter=100, tol=1e-6).fit(X)
    >>> round(float(model.transition_matrix_[0, 0]), 1)
    0.9
    >>> model.transform(X).shape, model.predict(X).shape
    ((500, 1), (500, 2))
    """

    _parameter_constraints = {
        "n_components": positive_int,
        "transition_covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "observation_covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "n_iter": non_negative_int,
        "tol": non_negative_real,
        "params": [str],
        "init_params": [str],
        "reg_covar": non_negative_real,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        **COMPUTE_CONSTRAINTS,
    }

    def __init__(self, n_components=1, transition_covariance_type="full", observation_covariance_type="diag",
                 n_iter=10, tol=1e-2, params=PARAM_LETTERS, init_params=PARAM_LETTERS, reg_covar=1e-6,
                 random_state=None, verbose=False, device=None, dtype=None):
        self.n_components = n_components
        self.transition_covariance_type = transition_covariance_type
        self.observation_covariance_type = observation_covariance_type
        self.n_iter = n_iter
        self.tol = tol
        self.params = params
        self.init_params = init_params
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # ------------------------------------------------------------------ options and parameters
    def _check_options(self):
        """The constraints (``_parameter_constraints``), then the letters of ``params`` and ``init_params``."""
        self._validate_params()
        for name in ("params", "init_params"):
            value = getattr(self, name)
            unknown = sorted(set(value) - set(PARAM_LETTERS))
            if unknown:
                raise ValueError(f"{name} has unknown letters {unknown}; LinearGaussianSSM knows "
                                 f"{list(PARAM_LETTERS)} (a=A, b=B, c=C, d=D, q=Q, r=R, m=m0, p=P0)")

    def _n_inputs(self):
        if hasattr(self, "n_inputs_"):
            return int(self.n_inputs_)
        if hasattr(self, "input_matrix_"):
            return int(np.shape(self.input_matrix_)[1]) if np.ndim(self.input_matrix_) == 2 else 0
        return 0

    def _params(self):
        """The current parameters as a LinearGaussianParams of float64 numpy arrays."""
        n, p, m = self.n_components, int(np.shape(self.observation_matrix_)[0]), self._n_inputs()
        B = np.asarray(getattr(self, "input_matrix_", np.zeros((n, 0))), dtype=np.float64)
        D = np.asarray(getattr(self, "feedthrough_matrix_", np.zeros((p, 0))), dtype=np.float64)
        return LinearGaussianParams(
            *(np.asarray(getattr(self, name), dtype=np.float64) for name in (
                "transition_matrix_", "observation_matrix_", "transition_covariance_", "observation_covariance_",
                "initial_state_mean_", "initial_state_covariance_")),
            B if m else None, D if m else None)

    def _check_params(self):
        """Validate the fitted or hand-set parameters (shapes, finiteness, covariances)."""
        check_parameters_set(self, ("transition_matrix_", "observation_matrix_", "transition_covariance_",
                                    "observation_covariance_", "initial_state_mean_", "initial_state_covariance_"))
        n = self.n_components
        A = np.asarray(self.transition_matrix_)
        if A.shape != (n, n):
            raise ValueError(f"transition_matrix_ must have shape ({n}, {n}) for n_components={n}, got {A.shape}")
        C = np.asarray(self.observation_matrix_)
        if C.ndim != 2 or C.shape[1] != n:
            raise ValueError(f"observation_matrix_ must have shape (n_features, {n}), got {C.shape}")
        if hasattr(self, "n_features_in_") and C.shape[0] != self.n_features_in_:
            raise ValueError(f"observation_matrix_ has {C.shape[0]} rows but the model has "
                             f"{self.n_features_in_} features")
        m = self._n_inputs()
        for name, rows in (("input_matrix_", n), ("feedthrough_matrix_", C.shape[0])):
            value = getattr(self, name, None)
            if value is None:
                if m:
                    raise ValueError(f"{name} must be set for a model with {m} input(s)")
                continue
            if np.shape(value) != (rows, m):
                raise ValueError(f"{name} must have shape ({rows}, {m}), got {np.shape(value)}")
        params = check_linear_gaussian_params(self._params())
        for name, kind in (("transition_covariance_", self.transition_covariance_type),
                           ("observation_covariance_", self.observation_covariance_type)):
            value = np.asarray(getattr(self, name))
            if kind == "diag" and np.any(value - np.diag(np.diag(value))):
                raise ValueError(f"{name} must be diagonal when {name[:-1]}_type='diag'")
        return params

    def _check_fitted_or_set(self):
        self._check_options()
        return self._check_params()

    # ------------------------------------------------------------------ sequences
    def _validate_sequences(self, X, lengths, inputs, *, reset, training=False):
        """Check ``X``, ``lengths`` and ``inputs`` together and bring them to the compute device.

        Every public method that reads sequences goes through here.
        """
        if reset and hasattr(self, "n_inputs_"):
            del self.n_inputs_
        X = self._validate_X(X, reset=reset, ensure_all_finite="allow-nan")
        n_samples, n_features = X.shape
        if training:
            if n_samples < 2:
                raise ValueError(f"Expected n_samples >= 2 to fit a state-space model, got n_samples = {n_samples}")
            if np.isnan(X).all():
                raise ValueError("X has no observed entry (every value is NaN); nothing to fit")
        lengths = check_lengths(lengths, n_samples)
        u = None if inputs is None else check_inputs(inputs, n_samples)
        n_inputs = 0 if u is None else u.shape[1]
        if reset:
            self.n_inputs_ = n_inputs
        elif n_inputs != self._n_inputs():
            expected = self._n_inputs()
            raise ValueError(f"the model has {expected} input column(s) but inputs has {n_inputs}"
                             if expected else "the model was fitted without inputs; do not pass inputs")
        device, dtype = self._compute_setup()
        y = torch.as_tensor(X, dtype=dtype, device=device)
        u_t = None if u is None or n_inputs == 0 else torch.as_tensor(u, dtype=dtype, device=device)
        observed = ~np.isnan(X)
        groups = []
        partial = np.flatnonzero(~observed.all(1))
        if partial.size:
            patterns, inverse = np.unique(observed[partial], axis=0, return_inverse=True)
            for g, pattern in enumerate(patterns):
                rows = partial[inverse.reshape(-1) == g]
                groups.append(_MissingGroup(np.flatnonzero(pattern), np.flatnonzero(~pattern),
                                            torch.as_tensor(rows, device=device)))
        ends = np.cumsum(lengths)
        return SSMData(X=X, y=y, inputs=u_t, lengths=lengths, missing_groups=groups,
                       first_rows=torch.as_tensor(ends - lengths, device=device),
                       last_rows=torch.as_tensor(ends - 1, device=device))

    def _tensor_params(self, data, params=None):
        params = self._params() if params is None else params
        return check_linear_gaussian_params(params, dtype=data.y.dtype, device=data.y.device)

    def _smooth(self, data, params=None):
        return _smoother_validated(data.y, self._tensor_params(data, params), data.inputs, data.lengths)

    def _filter(self, data):
        return _filter_validated(data.y, self._tensor_params(data), data.inputs, data.lengths)

    # ------------------------------------------------------------------ initialisation
    def _initial_guess(self, data, rng):
        """Parameters from the data: PCA states, least-squares dynamics, residual covariances."""
        n, m = self.n_components, self._n_inputs()
        X = data.X
        N, p = X.shape
        col_mean = np.nanmean(np.where(np.isnan(X).all(0), 0.0, X), axis=0) if np.isnan(X).any() else X.mean(0)
        col_mean = np.nan_to_num(col_mean)
        Xf = np.where(np.isnan(X), col_mean, X)
        U = None if data.inputs is None else to_numpy(data.inputs).astype(np.float64)
        if U is not None:
            D = np.linalg.lstsq(U, Xf, rcond=None)[0].T
            E = Xf - U @ D.T
        else:
            D = np.zeros((p, 0))
            E = Xf
        k = min(n, p, N)
        left, sing, right = np.linalg.svd(E, full_matrices=False)
        scale = math.sqrt(N)
        states = np.zeros((N, n))
        states[:, :k] = left[:, :k] * scale
        C = np.zeros((p, n))
        C[:, :k] = right[:k].T * (sing[:k] / scale)
        if n > k:
            spread = math.sqrt(max(float(np.mean(E * E)), 1e-12))
            C[:, k:] = rng.normal(0.0, 0.1 * spread, size=(p, n - k))
        # dynamics by ridge regression of x_t on (x_{t-1}, u_t) within sequences
        first = np.zeros(N, dtype=bool)
        first[np.cumsum(data.lengths) - data.lengths] = True
        cur = np.flatnonzero(~first)
        Z = states[cur - 1] if U is None else np.hstack([states[cur - 1], U[cur]])
        if cur.size:
            ridge = 1e-3 * max(cur.size, 1)
            W = np.linalg.solve(Z.T @ Z + ridge * np.eye(Z.shape[1]), Z.T @ states[cur]).T
            resid = states[cur] - Z @ W.T
            Q = resid.T @ resid / cur.size
        else:
            W = np.zeros((n, n + m))
            Q = np.eye(n)
        A, B = W[:, :n], W[:, n:]
        for i in range(k, n):
            A[i, i] = 0.5
        radius = max(abs(np.linalg.eigvals(A))) if n else 0.0
        if radius > 0.99:
            A = A * (0.99 / radius)
        Q = 0.5 * (Q + Q.T) + 1e-2 * np.eye(n)
        if self.transition_covariance_type == "diag":
            Q = np.diag(np.diag(Q))
        resid = E - states @ C.T
        R = resid.T @ resid / N
        R = 0.5 * (R + R.T) + np.diag(0.05 * np.mean(E * E, axis=0) + 1e-6)
        if self.observation_covariance_type == "diag":
            R = np.diag(np.diag(R))
        m0 = states[first].mean(0)
        P0 = np.eye(n)
        return {"a": A, "b": B, "c": C, "d": D, "q": Q, "r": R, "m": m0, "p": P0}

    def _em_initialize(self, data, random_state):
        guess = None
        m = self._n_inputs()
        for letter, name in _ATTRIBUTES.items():
            if letter in "bd" and m == 0:
                rows = self.n_components if letter == "b" else self.n_features_in_
                setattr(self, name, np.zeros((rows, 0)))
                continue
            if letter in self.init_params or not hasattr(self, name):
                if guess is None:
                    guess = self._initial_guess(data, random_state)
                setattr(self, name, guess[letter])
        self._check_params()

    # ------------------------------------------------------------------ EM hooks
    def _em_expectation(self, data):
        params = self._params()
        tensors = self._tensor_params(data, params)
        result = _smoother_validated(data.y, tensors, data.inputs, data.lengths)
        stats = self._expected_statistics(data, result, tensors)
        return EStepResult(log_likelihood=float(result.log_likelihood.sum()), n_samples=float(data.y.shape[0]),
                           stats=stats)

    def _expected_statistics(self, data, result, params):
        """Additive expected sufficient statistics of one E-step (float64 numpy)."""
        x = result.smoothed_means
        V = result.smoothed_covariances
        lag = result.lag_one_covariances
        u = data.inputs
        first, last = data.first_rows, data.last_rows
        N = x.shape[0]
        not_first = torch.ones(N, dtype=torch.bool, device=x.device)
        not_first[first] = False
        cur = torch.nonzero(not_first)[:, 0]
        Sxx = V.sum(0) + x.T @ x
        Sxx_first = V[first].sum(0) + x[first].T @ x[first]
        Sxx_last = V[last].sum(0) + x[last].T @ x[last]
        stats = {
            "n_sequences": float(len(data.lengths)),
            "n_transitions": float(cur.numel()),
            "n_samples": float(N),
            "x1": x[first].sum(0),
            "x1x1": Sxx_first,
            "xx": Sxx,
            "xx_cur": Sxx - Sxx_first,
            "xx_prev": Sxx - Sxx_last,
            "x_cur_prev": lag.sum(0) + x[cur].T @ x[cur - 1],
        }
        # observations: missing entries are imputed by their posterior moments
        y = data.y
        y_hat = torch.nan_to_num(y, nan=0.0)
        yy_extra = torch.zeros((y.shape[1], y.shape[1]), dtype=y.dtype, device=y.device)
        yx_extra = torch.zeros((y.shape[1], x.shape[1]), dtype=y.dtype, device=y.device)
        C, R, D = params.observation_matrix, params.observation_covariance, params.feedthrough_matrix
        for group in data.missing_groups:
            o, mis, rows = group.observed, group.missing, group.rows
            o_t = torch.as_tensor(o, device=y.device)
            m_t = torch.as_tensor(mis, device=y.device)
            R_mo = R[m_t][:, o_t]
            if o.size:
                G = torch.linalg.solve(R[o_t][:, o_t], R_mo.T).T  # R_mo R_oo^{-1}
            else:
                G = R_mo
            L = C[m_t] - G @ C[o_t]
            fill = x[rows] @ L.T + y_hat[rows][:, o_t] @ G.T
            if D is not None:
                fill = fill + u[rows] @ (D[m_t] - G @ D[o_t]).T
            block = y_hat[rows]
            block[:, m_t] = fill
            y_hat[rows] = block
            SV = V[rows].sum(0)
            cond = R[m_t][:, m_t] - G @ R_mo.T
            yy_extra[m_t.unsqueeze(1), m_t.unsqueeze(0)] += L @ SV @ L.T + rows.numel() * cond
            yx_extra[m_t] += L @ SV
        stats["yy"] = y_hat.T @ y_hat + yy_extra
        stats["yx"] = y_hat.T @ x + yx_extra
        if u is not None:
            stats.update({"uu": u.T @ u, "xu": x.T @ u, "yu": y_hat.T @ u, "uu_cur": u[cur].T @ u[cur],
                          "x_cur_u": x[cur].T @ u[cur], "x_prev_u": x[cur - 1].T @ u[cur]})
        return {k: (v if isinstance(v, float) else to_numpy(v).astype(np.float64)) for k, v in stats.items()}

    def _em_maximization(self, stats):
        n, m = self.n_components, self._n_inputs()
        reg = float(self.reg_covar)
        params = self.params
        if stats["n_transitions"] > 0:
            A, B, self.transition_covariance_ = _state_input_mstep(
                stats, _TRANSITION_SUMS, self.transition_matrix_, self.input_matrix_ if m else None,
                self.transition_covariance_, self.transition_covariance_type, [c in params for c in "abq"], reg)
            self.transition_matrix_ = A
            if m:
                self.input_matrix_ = B
        C, D, self.observation_covariance_ = _state_input_mstep(
            stats, _OBSERVATION_SUMS, self.observation_matrix_, self.feedthrough_matrix_ if m else None,
            self.observation_covariance_, self.observation_covariance_type, [c in params for c in "cdr"], reg)
        self.observation_matrix_ = C
        if m:
            self.feedthrough_matrix_ = D
        S = stats["n_sequences"]
        if "m" in params:
            self.initial_state_mean_ = stats["x1"] / S
        if "p" in params:
            m0 = np.asarray(self.initial_state_mean_, dtype=np.float64)
            P0 = (stats["x1x1"] - np.outer(m0, stats["x1"]) - np.outer(stats["x1"], m0)) / S + np.outer(m0, m0)
            self.initial_state_covariance_ = 0.5 * (P0 + P0.T) + reg * np.eye(n)
        for name in ("transition_covariance_", "observation_covariance_", "initial_state_covariance_"):
            if np.linalg.eigvalsh(getattr(self, name))[0] <= 0:
                raise ValueError(f"EM made {name} singular (a degenerate direction in the data); increase reg_covar "
                                 "or reduce n_components")

    def _em_get_state(self):
        return {k: v for k, v in vars(self).items() if k in _ATTRIBUTES.values()}

    def _em_set_state(self, state):
        for k, v in state.items():
            setattr(self, k, v)

    # ------------------------------------------------------------------ fitting
    @limit_torch_threads
    def fit(self, X, y=None, *, lengths=None, inputs=None):
        """Estimate the parameters by EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Sequences stacked along the first axis; NaN marks a missing entry.
        y : None
            Unused (kept so scikit-learn tooling works).
        lengths : array-like of int, optional
            Lengths of the sequences in ``X``; they must sum to ``n_samples``.
        inputs : array-like of shape (n_samples, n_inputs), optional
            Known inputs ``u_t``, one row per row of ``X``; every later call then needs them.

        Returns
        -------
        self
        """
        self._check_options()
        data = self._validate_sequences(X, lengths, inputs, reset=True, training=True)
        check_y_slot(self, "fit", data.X, y)
        fit_sequence_em(self, data, check_random_state(self.random_state), n_init=1)
        return self

    def _prepare(self, X, lengths, inputs):
        self._check_options()
        reset = not hasattr(self, "n_features_in_")
        if reset:
            # a hand-set model: its shapes come from the parameters
            self._check_params_shapes_only(X)
        data = self._validate_sequences(X, lengths, inputs, reset=False)
        self._check_params()
        return data

    def _check_params_shapes_only(self, X):
        if not hasattr(self, "observation_matrix_"):
            raise NotFittedError("this LinearGaussianSSM is not fitted: call fit or set the parameters by hand")
        self.n_features_in_ = int(np.shape(self.observation_matrix_)[0])
        if not hasattr(self, "n_inputs_"):
            self.n_inputs_ = self._n_inputs()

    # ------------------------------------------------------------------ inference
    @limit_torch_threads
    def score(self, X, y=None, *, lengths=None, inputs=None):
        """Total log-likelihood ``log p(y)`` of the sequences in ``X`` (observed entries only).

        Returns
        -------
        log_likelihood : float
        """
        data = self._prepare(X, lengths, inputs)
        check_y_slot(self, "score", data.X, y)
        with torch.no_grad():
            return float(self._filter(data).log_likelihood.sum())

    @keyword_lengths
    @limit_torch_threads
    def score_samples(self, X, *, lengths=None, inputs=None):
        """One-step predictive log-density of each row, ``log p(y_t | y_1..t-1)``.

        The rows of a sequence sum to its log-likelihood; a row with every entry missing
        gets 0.

        Returns
        -------
        log_prob : numpy.ndarray of shape (n_samples,)
        """
        data = self._prepare(X, lengths, inputs)
        with torch.no_grad():
            return to_numpy(self._filter(data).step_log_likelihood)

    @keyword_lengths
    @limit_torch_threads
    def filter(self, X, *, lengths=None, inputs=None):
        """Filtered state moments ``x_t | y_1..t`` (Kalman filter).

        Returns
        -------
        means : numpy.ndarray of shape (n_samples, n_components)
        covariances : numpy.ndarray of shape (n_samples, n_components, n_components)
        """
        return self._state_moments(X, lengths, inputs, smoothed=False)

    def filter_stream(self):
        """A running Kalman filter: feed observations one at a time (or in blocks of rows).

        ``stream.update(y)`` returns the filtered moments of ``x_t | y_1..y_t`` of the new
        steps and keeps the running log-likelihood ``log p(y_1..y_t)``: the same numbers as
        :meth:`filter` and :meth:`score` over the whole sequence, without keeping the past.

        Returns
        -------
        KalmanStreamFilter

        Examples
        --------
        >>> import numpy as np
        >>> from probkit import LinearGaussianSSM
        >>> model = LinearGaussianSSM(1)
        >>> model.transition_matrix_, model.transition_covariance_ = np.eye(1), 0.1 * np.eye(1)
        >>> model.observation_matrix_, model.observation_covariance_ = np.eye(1), np.eye(1)
        >>> model.initial_state_mean_, model.initial_state_covariance_ = np.zeros(1), np.eye(1)
        >>> stream = model.filter_stream()
        >>> mean, cov = stream.update([2.0])
        >>> round(float(mean[0]), 6), round(float(cov[0, 0]), 6)
        (1.0, 0.5)
        >>> Y = np.array([[2.0], [1.0], [1.5]])
        >>> _ = stream.update(Y[1:])
        >>> bool(np.isclose(stream.log_likelihood, model.score(Y)))
        True
        """
        return KalmanStreamFilter(self)

    @keyword_lengths
    @limit_torch_threads
    def smooth(self, X, *, lengths=None, inputs=None):
        """Smoothed state moments ``x_t | y_1..T`` (Rauch-Tung-Striebel smoother).

        Returns
        -------
        means : numpy.ndarray of shape (n_samples, n_components)
        covariances : numpy.ndarray of shape (n_samples, n_components, n_components)
        """
        return self._state_moments(X, lengths, inputs, smoothed=True)

    def _state_moments(self, X, lengths, inputs, smoothed):
        data = self._prepare(X, lengths, inputs)
        with torch.no_grad():
            if smoothed:
                res = self._smooth(data)
                return to_numpy(res.smoothed_means), to_numpy(res.smoothed_covariances)
            res = self._filter(data)
        return to_numpy(res.filtered_means), to_numpy(res.filtered_covariances)

    def fit_transform(self, X, y=None, *, lengths=None, inputs=None):
        """Fit, then return the smoothed state means of ``X`` (see :meth:`transform`).

        Returns
        -------
        states : numpy.ndarray of shape (n_samples, n_components)
        """
        return self.fit(X, y, lengths=lengths, inputs=inputs).transform(X, lengths=lengths, inputs=inputs)

    @keyword_lengths
    def transform(self, X, *, lengths=None, inputs=None):
        """Smoothed state means ``E[x_t | y_1..T]``.

        Returns
        -------
        states : numpy.ndarray of shape (n_samples, n_components)
        """
        return self.smooth(X, lengths=lengths, inputs=inputs)[0]

    @keyword_lengths
    @limit_torch_threads
    def predict(self, X, *, lengths=None, inputs=None):
        """Smoothed observation means ``E[y_t | y_1..T] = C E[x_t | y_1..T] + D u_t``.

        The denoised signal at observed entries and the imputation of missing ones (a
        NaN entry gets its conditional mean given everything observed; with a full ``R``
        this also uses the observed entries of the same row). For forecasts beyond the
        data use :meth:`forecast`.

        Returns
        -------
        means : numpy.ndarray of shape (n_samples, n_features)
        """
        data = self._prepare(X, lengths, inputs)
        with torch.no_grad():
            params = self._tensor_params(data)
            res = _smoother_validated(data.y, params, data.inputs, data.lengths)
            out = res.smoothed_means @ params.observation_matrix.T
            if data.inputs is not None:
                out = out + data.inputs @ params.feedthrough_matrix.T
            y = data.y
            R, C = params.observation_covariance, params.observation_matrix
            if self.observation_covariance_type == "full":
                # E[y_m | y] = E[C_m x + D_m u | y] + R_mo R_oo^-1 (y_o - E[C_o x + D_o u | y])
                for group in data.missing_groups:
                    if group.observed.size == 0:
                        continue
                    o_t = torch.as_tensor(group.observed, device=y.device)
                    m_t = torch.as_tensor(group.missing, device=y.device)
                    G = torch.linalg.solve(R[o_t][:, o_t], R[m_t][:, o_t].T).T
                    block = out[group.rows]
                    resid = y[group.rows][:, o_t] - block[:, o_t]
                    block[:, m_t] = block[:, m_t] + resid @ G.T
                    out[group.rows] = block
        return to_numpy(out)

    @limit_torch_threads
    def forecast(self, X, n_steps, *, lengths=None, inputs=None, future_inputs=None):
        """Predict the next ``n_steps`` observations after the end of every sequence.

        Parameters
        ----------
        X, lengths, inputs
            The observed sequences, as in :meth:`fit`.
        n_steps : int
            Forecast horizon.
        future_inputs : array-like of shape (n_sequences * n_steps, n_inputs), optional
            Inputs of the forecast steps, ``n_steps`` rows per sequence in sequence order;
            required for a model with inputs.

        Returns
        -------
        means : numpy.ndarray of shape (n_sequences * n_steps, n_features)
            ``E[y_{T+h} | y_1..T]``, ``h = 1..n_steps``, for each sequence in turn.
        covariances : numpy.ndarray of shape (n_sequences * n_steps, n_features, n_features)
            The predictive covariances ``C P_{T+h} C' + R``.
        """
        data = self._prepare(X, lengths, inputs)
        n_steps = check_int(n_steps, "n_steps")
        S = len(data.lengths)
        if future_inputs is not None:
            fu = np.asarray(to_numpy(future_inputs) if isinstance(future_inputs, torch.Tensor) else future_inputs,
                            dtype=np.float64)
            if fu.ndim == 1:
                fu = fu[:, None]
            if fu.ndim != 2 or fu.shape[0] != S * n_steps:
                raise ValueError(f"future_inputs must have shape ({S * n_steps}, n_inputs): n_steps={n_steps} rows for "
                                 f"each of the {S} sequence(s), got shape {fu.shape}")
            future_inputs = fu
        elif self._n_inputs():
            raise ValueError(f"the model has {self._n_inputs()} input(s): pass future_inputs of shape "
                             f"({S * n_steps}, {self._n_inputs()})")
        with torch.no_grad():
            res = self._filter(data)
            last = data.last_rows
            fc = kalman_forecast(res.filtered_means[last], res.filtered_covariances[last],
                                 self._tensor_params(data), int(n_steps), inputs=future_inputs)
        return to_numpy(fc.observation_means), to_numpy(fc.observation_covariances)

    def sample(self, n_samples=1, random_state=None, *, inputs=None):
        """Draw one sequence of ``n_samples`` steps.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : None, int or RandomState
            Defaults to the estimator's ``random_state``.
        inputs : array-like of shape (n_samples, n_inputs), optional
            Required for a model with inputs.

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, n_features)
        states : numpy.ndarray of shape (n_samples, n_components)
        """
        self._check_options()
        n_samples = check_int(n_samples, "n_samples")
        if not hasattr(self, "n_features_in_") and hasattr(self, "observation_matrix_"):
            self._check_params_shapes_only(None)
        A, C, Q, R, m0, P0, B, D = self._check_params()
        A, C, Q, R, m0, P0 = (to_numpy(v) for v in (A, C, Q, R, m0, P0))
        m = self._n_inputs()
        if m:
            if inputs is None:
                raise ValueError(f"the model has {m} input(s): pass inputs of shape ({n_samples}, {m})")
            u = np.asarray(inputs, dtype=np.float64).reshape(n_samples, -1) if np.size(inputs) == n_samples * m \
                else None
            if u is None or not np.isfinite(u).all():
                raise ValueError(f"inputs must be finite with shape ({n_samples}, {m}), got shape {np.shape(inputs)}")
            Bu, Du = u @ to_numpy(B).T, u @ to_numpy(D).T
        elif inputs is not None:
            raise ValueError("the model has no inputs; do not pass inputs")
        rng = check_random_state(self.random_state if random_state is None else random_state)
        n, p = A.shape[0], C.shape[0]
        LQ, LR = np.linalg.cholesky(Q), np.linalg.cholesky(R)
        states = np.empty((n_samples, n))
        states[0] = m0 + np.linalg.cholesky(P0) @ rng.standard_normal(n)
        noise = rng.standard_normal((n_samples, n)) @ LQ.T
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(1, n_samples):
                states[t] = A @ states[t - 1] + noise[t] + (Bu[t] if m else 0.0)
            X = states @ C.T + rng.standard_normal((n_samples, p)) @ LR.T + (Du if m else 0.0)
        if not (np.isfinite(states).all() and np.isfinite(X).all()):
            raise ValueError("the sampled states overflowed: transition_matrix_ is unstable (spectral radius "
                             f"{max(abs(np.linalg.eigvals(A))):.4g} >= 1) and n_samples is too large to represent")
        return X, states

    def get_stationary_covariance(self):
        """Covariance of the state under the stationary distribution (no inputs): ``P = A P A' + Q``.

        Returns
        -------
        numpy.ndarray of shape (n_components, n_components)

        Raises
        ------
        ValueError
            If ``transition_matrix_`` has an eigenvalue of modulus >= 1 (no stationary distribution).
        """
        self._check_options()
        A, _, Q = (to_numpy(v) for v in self._check_params()[:3])
        radius = max(abs(np.linalg.eigvals(A)))
        if radius >= 1:
            raise ValueError(f"transition_matrix_ is not stable (spectral radius {radius:.6g} >= 1): the state has no "
                             "stationary distribution")
        P = linalg.solve_discrete_lyapunov(A, Q)
        return 0.5 * (P + P.T)

    # ------------------------------------------------------------------ model selection
    def _n_parameters(self):
        n, p, m = self.n_components, self.n_features_in_, self._n_inputs()
        full = {"full": lambda k: k * (k + 1) // 2, "diag": lambda k: k}
        counts = {"a": n * n, "b": n * m, "c": p * n, "d": p * m,
                  "q": full[self.transition_covariance_type](n), "r": full[self.observation_covariance_type](p),
                  "m": n, "p": n * (n + 1) // 2}
        total = sum(v for k, v in counts.items() if k in self.params)
        # x -> T x leaves the likelihood unchanged when every state-side parameter is free
        if set("acqmp") <= set(self.params) and (m == 0 or "b" in self.params):
            total -= n * n
        return total

    @keyword_lengths
    def aic(self, X, *, lengths=None, inputs=None):
        """Akaike information criterion ``-2 log L + 2 k`` (lower is better).

        ``k`` counts the entries of the parameters in ``params``, less ``n^2`` when the
        state-side parameters are all free (the likelihood is invariant under ``x -> T x``).
        """
        return -2 * self.score(X, lengths=lengths, inputs=inputs) + 2 * self._n_parameters()

    @keyword_lengths
    def bic(self, X, *, lengths=None, inputs=None):
        """Bayesian information criterion ``-2 log L + k log(n_samples)`` (lower is better); ``k`` as in :meth:`aic`."""
        n = X.shape[0] if hasattr(X, "shape") else len(X)
        return -2 * self.score(X, lengths=lengths, inputs=inputs) + self._n_parameters() * np.log(n)


class KalmanStreamFilter:
    """Running Kalman filter of a linear-Gaussian state-space model (see :meth:`LinearGaussianSSM.filter_stream`).

    Every :meth:`update` continues one sequence: the first row is predicted from
    ``N(m0, P0)``, each later row from the previous filtered moments through ``A``, ``B``
    and ``Q``; a block of rows goes through the same filter kernel as
    :meth:`LinearGaussianSSM.filter`, started from the predicted moments. Missing entries
    (NaN) are skipped as in :meth:`LinearGaussianSSM.filter`. The model's parameters are
    read at every update (re-validated only when they were replaced); with fixed
    parameters the outputs equal the filter over the whole sequence.

    Parameters
    ----------
    model : LinearGaussianSSM
        A fitted model (or one whose parameters were set by hand).

    Attributes
    ----------
    mean : numpy.ndarray of shape (n_components,) or None
        Filtered mean ``E[x_t | y_1..y_t]`` after the latest step (None before the first).
    covariance : numpy.ndarray of shape (n_components, n_components) or None
        Filtered covariance after the latest step.
    log_likelihood : float
        ``log p(y_1..y_t)`` of the steps seen so far (observed entries only).
    n_steps : int
        Steps seen so far.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import LinearGaussianSSM
    >>> model = LinearGaussianSSM(1)
    >>> model.transition_matrix_, model.transition_covariance_ = 0.9 * np.eye(1), np.eye(1)
    >>> model.observation_matrix_, model.observation_covariance_ = np.eye(1), np.eye(1)
    >>> model.initial_state_mean_, model.initial_state_covariance_ = np.zeros(1), np.eye(1)
    >>> Y = np.array([[1.0], [0.5], [np.nan], [2.0]])
    >>> stream = model.filter_stream()
    >>> means = np.array([stream.update(y)[0] for y in Y])
    >>> bool(np.allclose(means, model.filter(Y)[0]))
    True
    """

    def __init__(self, model):
        from probkit.em.online import FittedSnapshot

        model._check_fitted_or_set()
        self.model = model
        self._snapshot = FittedSnapshot
        self._checked = FittedSnapshot(model)
        self._params = None  # the validated parameter tensors, while the fitted attributes stay the same
        self.reset()

    def reset(self):
        """Forget the steps seen: the next update starts a new sequence from ``N(m0, P0)``.

        Returns
        -------
        self
        """
        self.mean = None
        self.covariance = None
        self.log_likelihood = 0.0
        self.n_steps = 0
        return self

    @limit_torch_threads
    def update(self, y, inputs=None):
        """Filter one more observation, or a block of consecutive rows.

        Parameters
        ----------
        y : array-like of shape (n_features,) or (n_rows, n_features)
            One observation (NaN where an entry is missing), or the next rows of the sequence.
        inputs : array-like of shape (n_inputs,) or (n_rows, n_inputs), optional
            The known inputs of these steps (required for a model with inputs).

        Returns
        -------
        means : numpy.ndarray of shape (n_components,) or (n_rows, n_components)
            Filtered means of the new steps (one row for one observation).
        covariances : numpy.ndarray of shape (n_components, n_components) or (n_rows, n_components, n_components)
            Filtered covariances of the new steps.
        """
        model = self.model
        ndim = y.ndim if isinstance(y, (np.ndarray, torch.Tensor)) else np.ndim(y)
        one_row = ndim <= 1
        if one_row:
            y = y.reshape(1, -1) if isinstance(y, (np.ndarray, torch.Tensor)) else np.reshape(y, (1, -1))
            if inputs is not None:
                inputs = np.reshape(to_numpy(inputs) if isinstance(inputs, torch.Tensor) else inputs, (1, -1))
        if not hasattr(model, "n_features_in_"):
            model._check_params_shapes_only(y)  # a model set by hand: its shapes come from the parameters
        if not self._checked.matches(model):
            # parameters replaced since the last check (fit, set by hand)
            model._check_fitted_or_set()
            self._checked = self._snapshot(model)
            self._params = None
        data = model._validate_sequences(y, None, inputs, reset=False)
        with torch.no_grad():
            if self._params is None:
                self._params = model._tensor_params(data)
            params = self._params
            if self.mean is not None:
                A, Q = params.transition_matrix, params.transition_covariance
                mean = torch.as_tensor(self.mean, dtype=A.dtype, device=A.device)
                cov = torch.as_tensor(self.covariance, dtype=A.dtype, device=A.device)
                predicted_mean = A @ mean
                if data.inputs is not None:
                    predicted_mean = predicted_mean + params.input_matrix @ data.inputs[0]
                predicted_cov = A @ cov @ A.T + Q
                params = params._replace(initial_state_mean=predicted_mean,
                                         initial_state_covariance=0.5 * (predicted_cov + predicted_cov.T))
            res = _filter_validated(data.y, params, data.inputs, data.lengths)
        means = np.asarray(to_numpy(res.filtered_means), dtype=np.float64)
        covariances = np.asarray(to_numpy(res.filtered_covariances), dtype=np.float64)
        self.log_likelihood += float(res.log_likelihood.sum())
        self.n_steps += means.shape[0]
        self.mean, self.covariance = means[-1].copy(), covariances[-1].copy()
        if one_row:
            return means[0], covariances[0]
        return means, covariances
