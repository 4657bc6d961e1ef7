"""Wishart and inverse Wishart distributions over symmetric positive definite matrices."""

from __future__ import annotations

import math

import torch

from probkit.distributions._sampling import standard_gamma
from probkit.distributions.base import ExponentialFamily, _last_axis_size

__all__ = ["InverseWishart", "Wishart", "wishart_bartlett", "wishart_expected_log_det", "wishart_log_normaliser"]

LOG_2 = math.log(2.0)


def _multi_digamma(x, p):
    """``psi_p(x) = sum_{i=0..p-1} digamma(x - i/2)``, elementwise in ``x``."""
    offsets = torch.arange(p, dtype=x.dtype, device=x.device) * 0.5
    return torch.digamma(x.unsqueeze(-1) - offsets).sum(-1)


def wishart_log_normaliser(df, log_det_scale, p):
    """``log Z`` of a ``p x p`` Wishart with ``df`` degrees of freedom and scale ``S``:
    ``(df p / 2) log 2 + (df / 2) log|S| + log Gamma_p(df / 2)``.

    The normaliser of an inverse Wishart with inverse scale ``Psi`` is the same with
    ``log|S| = -log|Psi|``.

    Examples
    --------
    >>> import math
    >>> df = torch.tensor(3.0)
    >>> bool(torch.isclose(wishart_log_normaliser(df, torch.tensor(0.0), 1),
    ...                    1.5 * math.log(2.0) + torch.lgamma(df / 2)))   # chi-square with 3 dof
    True
    """
    return 0.5 * df * p * LOG_2 + 0.5 * df * log_det_scale + torch.mvlgamma(0.5 * df, p)


def wishart_expected_log_det(df, log_det_scale, p):
    """``E[log|W|] = psi_p(df / 2) + p log 2 + log|S|`` for ``W ~ Wishart(df, S)`` of size ``p x p``.

    Examples
    --------
    >>> df = torch.tensor(3.0)
    >>> bool(torch.isclose(wishart_expected_log_det(df, torch.tensor(0.0), 1),
    ...                    torch.digamma(df / 2) + math.log(2.0)))   # E[log chi-square(3)]
    True
    """
    return _multi_digamma(0.5 * df, p) + p * LOG_2 + log_det_scale


def _log_det(chol):
    return 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)


def _spd_inverse(matrix):
    chol = torch.linalg.cholesky(matrix)
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    inv = torch.cholesky_solve(eye.expand_as(matrix), chol)
    return 0.5 * (inv + inv.mT)


def wishart_bartlett(df, scale_tril, shape, generator):
    """Draw Wishart matrices by Bartlett's decomposition.

    ``W = L A A^T L^T`` with ``scale = L L^T`` and ``A`` lower triangular,
    ``A_ii = sqrt(chi2(df - i))`` (``i = 0 .. p-1``) and standard normal entries below the diagonal.

    Parameters
    ----------
    df : torch.Tensor
        Degrees of freedom (``> p - 1``), broadcastable to ``shape``.
    scale_tril : torch.Tensor of shape (..., p, p)
        Cholesky factor of the scale matrix, broadcastable to ``(*shape, p, p)``.
    shape : tuple
        Leading shape of the draws (sample shape and batch shape).
    generator : torch.Generator

    Returns
    -------
    torch.Tensor of shape (*shape, p, p)

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> W = wishart_bartlett(torch.tensor(5.0, dtype=torch.float64), torch.eye(2, dtype=torch.float64), (20000,), g)
    >>> bool((W.mean(0) - 5.0 * torch.eye(2, dtype=torch.float64)).abs().max() < 0.1)
    True
    """
    p = scale_tril.shape[-1]
    dtype, device = scale_tril.dtype, scale_tril.device
    dof = df.expand(shape).unsqueeze(-1) - torch.arange(p, dtype=dtype, device=device)
    diag = torch.sqrt(2.0 * standard_gamma((0.5 * dof).contiguous(), generator))
    A = torch.randn(*shape, p, p, dtype=dtype, device=device, generator=generator).tril(-1)
    LA = scale_tril @ (A + torch.diag_embed(diag))
    W = LA @ LA.mT
    return 0.5 * (W + W.mT)


def _solve_df(target, p, n_iter=200):
    """Solve ``psi_p(df/2) - p log(df/2) = target`` (``target < 0``) for ``df > p - 1``, elementwise.

    The left side increases from ``-inf`` (at ``df = p - 1``) to 0; bisection on
    ``log(df - p + 1)`` over ``[-40, 40]`` reaches machine precision well within ``n_iter`` halvings.
    """
    lo = torch.full_like(target, -40.0)
    hi = torch.full_like(target, 40.0)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        df = torch.exp(mid) + (p - 1)
        below = _multi_digamma(0.5 * df, p) - p * torch.log(0.5 * df) < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return torch.exp(0.5 * (lo + hi)) + (p - 1)


class _MatrixFamily(ExponentialFamily):
    """What the Wishart and inverse Wishart share: parameters, support, and the exponential-family identities."""

    param_names = ("df", "scale_matrix")
    _param_event_ndims = {"df": 0, "scale_matrix": 2}
    event_ndim = 2
    support_description = "symmetric positive definite matrices"
    conjugate_prior_family = None

    def __init__(self, df=None, scale_matrix=None):
        self._set_params(df=df, scale_matrix=scale_matrix)

    n_features = _last_axis_size("scale_matrix", "Dimension ``p`` of the ``p x p`` matrices.")

    def _check_params(self):
        df, scale = self._params["df"], self._params["scale_matrix"]
        p = scale.shape[-1]
        name = type(self).__name__
        if scale.shape[-2] != p:
            raise ValueError(f"{name}: scale_matrix must be square, got shape {tuple(scale.shape)}")
        if bool((df <= p - 1).any()):
            raise ValueError(f"{name}: df must exceed p - 1 = {p - 1}")
        if not bool(torch.allclose(scale, scale.mT, rtol=1e-8, atol=1e-10)):
            raise ValueError(f"{name}: scale_matrix must be symmetric")
        chol, info = torch.linalg.cholesky_ex(scale)
        if bool((info != 0).any()):
            raise ValueError(f"{name}: scale_matrix must be positive definite")
        self._cache["scale_chol"] = chol

    def _scale_chol(self):
        chol = self._cache.get("scale_chol")
        if chol is None:
            chol = torch.linalg.cholesky(self._params["scale_matrix"])
            self._cache["scale_chol"] = chol
        return chol

    def _check_event_shape(self, x, name):
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"{name} must hold square matrices, got trailing shape {tuple(x.shape[-2:])}")
        if self.is_fitted and x.shape[-1] != self.n_features:
            raise ValueError(f"{name} holds {x.shape[-1]}x{x.shape[-1]} matrices but this {type(self).__name__} "
                             f"is over {self.n_features}x{self.n_features} matrices")

    def _support_mask(self, x):
        self._check_event_shape(x, "X")
        symmetric = ((x - x.mT).abs() <= 1e-10 + 1e-8 * x.abs()).flatten(-2).all(-1)
        _, info = torch.linalg.cholesky_ex(torch.where(symmetric[..., None, None], x, self._support_placeholder(x)))
        return symmetric & (info == 0)

    def _support_placeholder(self, x):
        return torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)

    def _validate_support(self, x, name="X"):
        self._check_event_shape(x, name)
        if not bool(self._support_mask(x).all()):
            raise ValueError(f"{name} must hold symmetric positive definite matrices for {type(self).__name__}")

    def _log_base_measure(self, x):
        return torch.zeros(x.shape[:-2], dtype=x.dtype, device=x.device)

    def _log_partition(self):
        # _log_partition_tensor(df, p): the family's log-normaliser for these parameters.
        df = self._params["df"]
        return self._log_partition_tensor(df, self.n_features).expand(self._batch_shape)

    def _inner(self, eta, mean):
        """``<eta, mean>`` summed over the statistics (a trace for the matrix statistic)."""
        return sum((eta[k] * mean[k]).sum((-2, -1)) if eta[k].ndim - len(self._batch_shape) == 2
                   else eta[k] * mean[k] for k in eta)

    def _entropy(self):
        # h = 1: H = A(eta) - <eta, E[T]>.
        return self._log_partition() - self._inner(self._natural_parameters(), self._mean_parameters())

    def _kl(self, other):
        if other.n_features != self.n_features:
            raise ValueError(f"KL divergence needs matrices of one size, got {self.n_features} and {other.n_features}")
        eta1, eta2 = self._natural_parameters(), other._natural_parameters()
        mean1 = self._mean_parameters()
        diff = {k: eta2[k] - eta1[k] for k in eta1}
        return other._log_partition() - self._log_partition() - self._inner(diff, mean1)

    def _n_free_parameters(self):
        p = self._params["scale_matrix"].shape[-1]
        return 1 + p * (p + 1) // 2

    def _mle_df_and_mean_matrix(self, mean, matrix_key, sign):
        """``df`` from ``psi_p(df/2) - p log(df/2) = sign * (E[log|X|] - log|mean matrix statistic|)``."""
        m = mean[matrix_key]
        p = m.shape[-1]
        chol, info = torch.linalg.cholesky_ex(0.5 * (m + m.mT))
        if bool((info != 0).any()):
            raise ValueError(f"{type(self).__name__}: the weighted mean matrix statistic is not positive definite")
        target = sign * mean["log_det"] - _log_det(chol)
        if bool((target >= 0).any()):
            raise ValueError(f"{type(self).__name__}: the sample matrices have no spread (all equal); the MLE of df diverges")
        return _solve_df(target, p), m


class Wishart(_MatrixFamily):
    """Wishart distribution over ``p x p`` positive definite matrices: ``df`` degrees of freedom, scale ``V``.

    Density ``|X|^{(df-p-1)/2} exp(-tr(V^{-1} X) / 2) / (2^{df p/2} |V|^{df/2} Gamma_p(df/2))``
    (``scipy.stats.wishart(df, V)``), mean ``df V``. ``T(X) = (X, log|X|)``, natural
    parameters ``(-V^{-1} / 2, (df - p - 1) / 2)``, log-partition
    ``df p/2 log 2 + df/2 log|V| + log Gamma_p(df/2)``. The MLE takes ``V = mean(X) / df``
    with ``df`` the root of ``psi_p(df/2) - p log(df/2) = mean(log|X|) - log|mean(X)|``.
    In mixtures and HMMs a sample is a row of ``p * p`` values (the matrix flattened).

    Parameters
    ----------
    df : float or array-like, optional
        ``df > p - 1``.
    scale_matrix : array-like of shape (..., p, p), optional
        Symmetric positive definite.

    Examples
    --------
    >>> import numpy as np
    >>> d = Wishart(df=4.0, scale_matrix=np.eye(2))
    >>> round(float(d.log_prob(np.eye(2)[None])[0]), 6)
    -4.224171
    >>> fit = Wishart().fit(d.sample(5000, random_state=0))
    >>> abs(float(fit.df) - 4.0) < 0.25   # maximum likelihood from 5000 draws
    True
    """

    def _log_prob(self, x):
        df, scale = self._params["df"], self._params["scale_matrix"]
        p = scale.shape[-1]
        log_det_x = _log_det(torch.linalg.cholesky(x))
        precision = self._cache.get("scale_inv")
        if precision is None:
            precision = self._cache["scale_inv"] = _spd_inverse(scale)
        trace = (precision * x).sum((-2, -1))
        return 0.5 * (df - p - 1) * log_det_x - 0.5 * trace - self._log_partition_tensor(df, p)

    def _log_partition_tensor(self, df, p):
        return wishart_log_normaliser(df, _log_det(self._scale_chol()), p)

    def _sufficient_statistics(self, x):
        return {"x": x, "log_det": _log_det(torch.linalg.cholesky(x))}

    def _natural_parameters(self):
        df, scale = self._params["df"], self._params["scale_matrix"]
        p = scale.shape[-1]
        return {"x": (-0.5 * _spd_inverse(scale)).expand(*self._batch_shape, p, p),
                "log_det": (0.5 * (df - p - 1)).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        p = eta["x"].shape[-1]
        return {"df": 2 * eta["log_det"] + p + 1, "scale_matrix": _spd_inverse(-2.0 * eta["x"])}

    def _mean_parameters(self):
        df, scale = self._params["df"], self._params["scale_matrix"]
        p = scale.shape[-1]
        return {"x": (df[..., None, None] * scale).expand(*self._batch_shape, p, p),
                "log_det": wishart_expected_log_det(df, _log_det(self._scale_chol()), p).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        df, m = self._mle_df_and_mean_matrix(mean, "x", 1.0)
        scale = m / df[..., None, None]
        return {"df": df, "scale_matrix": 0.5 * (scale + scale.mT)}

    def _sample(self, shape, gen):
        df = self._params["df"]
        full = (*shape, *self._batch_shape)
        return wishart_bartlett(df, self._scale_chol(), full, gen)


class InverseWishart(_MatrixFamily):
    """Inverse Wishart distribution over ``p x p`` positive definite matrices: ``df`` degrees of freedom, scale ``Psi``.

    ``X^{-1} ~ Wishart(df, Psi^{-1})``; density
    ``|Psi|^{df/2} |X|^{-(df+p+1)/2} exp(-tr(Psi X^{-1}) / 2) / (2^{df p/2} Gamma_p(df/2))``
    (``scipy.stats.invwishart(df, Psi)``), mean ``Psi / (df - p - 1)`` for ``df > p + 1``.
    ``T(X) = (X^{-1}, log|X|)``, natural parameters ``(-Psi / 2, -(df + p + 1) / 2)``. The MLE
    takes ``Psi = df * inv(mean(X^{-1}))`` with ``df`` the root of
    ``psi_p(df/2) - p log(df/2) = -mean(log|X|) - log|mean(X^{-1})|``.

    Parameters
    ----------
    df : float or array-like, optional
        ``df > p - 1``.
    scale_matrix : array-like of shape (..., p, p), optional
        Symmetric positive definite ``Psi``.

    Examples
    --------
    >>> import numpy as np
    >>> d = InverseWishart(df=5.0, scale_matrix=np.eye(2))
    >>> round(float(d.log_prob(np.eye(2)[None])[0]), 6)
    -5.322784
    >>> fit = InverseWishart().fit(d.sample(5000, random_state=0))
    >>> abs(float(fit.df) - 5.0) < 0.25   # maximum likelihood from 5000 draws
    True
    """

    def _log_prob(self, x):
        df, scale = self._params["df"], self._params["scale_matrix"]
        p = scale.shape[-1]
        chol = torch.linalg.cholesky(x)
        x_inv = torch.cholesky_inverse(chol)
        trace = (scale * x_inv).sum((-2, -1))
        return -0.5 * (df + p + 1) * _log_det(chol) - 0.5 * trace - self._log_partition_tensor(df, p)

    def _log_partition_tensor(self, df, p):
        return wishart_log_normaliser(df, -_log_det(self._scale_chol()), p)

    def _sufficient_statistics(self, x):
        chol = torch.linalg.cholesky(x)
        x_inv = torch.cholesky_inverse(chol)
        return {"x_inv": 0.5 * (x_inv + x_inv.mT), "log_det": _log_det(chol)}

    def _natural_parameters(self):
        df, scale = self._params["df"], self._params["scale_matrix"]
        p = scale.shape[-1]
        return {"x_inv": (-0.5 * scale).expand(*self._batch_shape, p, p),
                "log_det": (-0.5 * (df + p + 1)).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        p = eta["x_inv"].shape[-1]
        return {"df": -2 * eta["log_det"] - p - 1, "scale_matrix": -2.0 * eta["x_inv"]}

    def _mean_parameters(self):
        df, scale = self._params["df"], self._params["scale_matrix"]
        p = scale.shape[-1]
        return {"x_inv": (df[..., None, None] * _spd_inverse(scale)).expand(*self._batch_shape, p, p),
                "log_det": (_log_det(self._scale_chol()) - p * LOG_2 - _multi_digamma(0.5 * df, p)).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        df, m = self._mle_df_and_mean_matrix(mean, "x_inv", -1.0)
        return {"df": df, "scale_matrix": df[..., None, None] * _spd_inverse(m)}

    def _sample(self, shape, gen):
        df = self._params["df"]
        full = (*shape, *self._batch_shape)
        # X = W^{-1} with W ~ Wishart(df, Psi^{-1}).
        precision_chol = torch.linalg.cholesky(_spd_inverse(self._params["scale_matrix"]))
        return _spd_inverse(wishart_bartlett(df, precision_chol, full, gen))
