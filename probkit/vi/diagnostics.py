"""Convergence diagnostics of Markov chains: R-hat, effective sample size, Monte Carlo error.

The definitions are those of Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC" (Bayesian Analysis 16(2)), as implemented by Stan and its R package
``posterior``. For ``M`` chains of ``N`` draws of a scalar:

* **split chains**: every chain is cut into its first and second halves (the middle draw
  of an odd-length chain is dropped), so a chain that drifts looks like two chains that
  disagree;
* **rank normalisation**: draws are replaced by ``Phi^{-1}((r - 3/8) / (S + 1/4))``, with
  ``r`` their rank among all ``S = M N`` draws (ties averaged), which makes the
  diagnostics invariant to monotone transformations and usable for heavy tails;
* **R-hat**: with ``W`` the mean within-chain variance and ``B / N`` the variance of the
  chain means, ``R = sqrt(((N - 1) / N W + B / N) / W)``; the *rank* R-hat is the larger
  of the R-hats of the rank-normalised split draws and of the rank-normalised *folded*
  split draws ``|x - median(x)|`` (which detects chains with equal locations but different
  scales);
* **effective sample size**: ``S / tau`` with the integrated autocorrelation time
  ``tau = -1 + 2 sum_t rho_t`` estimated from the multi-chain autocorrelations
  ``rho_t = 1 - (W - mean_m acov_m(t)) / var_plus`` (``var_plus = (N - 1) / N W + B / N``),
  truncated by Geyer's initial positive sequence, made monotone (initial monotone
  sequence) and bounded by ``tau >= 1 / log10(S)``; *bulk* ESS uses rank-normalised split
  draws, *tail* ESS the smaller ESS of the indicators ``x <= q_0.05`` and ``x <= q_0.95``,
  *mean* ESS the raw split draws;
* **Monte Carlo standard error** of the mean: ``sd(x) / sqrt(ESS_mean)``.

Every function takes draws shaped ``(n_chains, n_draws, *param_shape)`` (a 1-D array is
one chain) and returns one value per parameter element (a float for a scalar).

Examples
--------
>>> import numpy as np
>>> draws = np.random.RandomState(0).normal(size=(4, 500))
>>> bool(abs(rhat(draws) - 1.0) < 0.01), bool(1500 < ess(draws) < 2500)
(True, True)
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

__all__ = ["ess", "mcse", "rank_normalize", "rhat", "split_chains"]

RHAT_METHODS = ("rank", "split", "basic")
ESS_METHODS = ("bulk", "tail", "mean", "sd", "basic")
MCSE_METHODS = ("mean", "sd")

_MIN_DRAWS = 4


def _as_draws(draws, name="draws"):
    """``draws`` as float64 (n_chains, n_draws, P) plus the parameter shape."""
    arr = np.asarray(draws, dtype=np.float64) if not hasattr(draws, "detach") else draws.detach().cpu().numpy()
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (n_chains, n_draws, ...), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < _MIN_DRAWS:
        raise ValueError(f"{name} needs at least one chain of at least {_MIN_DRAWS} draws, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    shape = arr.shape[2:]
    return arr.reshape(arr.shape[0], arr.shape[1], -1), shape


def _per_parameter(func, arr, shape):
    values = np.array([func(arr[:, :, p]) for p in range(arr.shape[2])], dtype=np.float64)
    return float(values[0]) if shape == () else values.reshape(shape)


def split_chains(draws):
    """Cut every chain into halves: ``(M, N, ...) -> (2M, N // 2, ...)``.

    The middle draw of an odd-length chain is left out, as in Stan.

    Examples
    --------
    >>> split_chains(np.arange(10).reshape(2, 5))
    array([[0, 1],
           [5, 6],
           [3, 4],
           [8, 9]])
    """
    arr = np.asarray(draws)
    if arr.ndim < 2:
        raise ValueError(f"draws must have shape (n_chains, n_draws, ...), got shape {arr.shape}")
    n = arr.shape[1]
    half = n // 2
    return np.concatenate([arr[:, :half], arr[:, n - half:]], axis=0)


def _z_scale(x):
    """Rank-normalise the (M, N) draws of one scalar jointly over all chains."""
    ranks = rankdata(x, method="average", axis=None).reshape(x.shape)
    return ndtri((ranks - 0.375) / (x.size + 0.25))


def rank_normalize(draws):
    """Rank-normalised draws ``Phi^{-1}((r - 3/8) / (S + 1/4))``, per parameter over all chains.

    Parameters
    ----------
    draws : array-like of shape (n_chains, n_draws, ...)

    Returns
    -------
    numpy.ndarray of the same shape.

    Examples
    --------
    >>> np.round(rank_normalize(np.array([[3.0, 1.0, 2.0, 10.0]])), 4)
    array([[ 0.2993, -1.0491, -0.2993,  1.0491]])
    """
    arr, shape = _as_draws(draws)
    out = np.stack([_z_scale(arr[:, :, p]) for p in range(arr.shape[2])], axis=-1)
    return out.reshape(*arr.shape[:2], *shape)


def _rhat_core(x):
    """Gelman-Rubin potential scale reduction of (M, N) draws (not split)."""
    m, n = x.shape
    if m < 2 and n < 2:
        return math.nan
    within = x.var(axis=1, ddof=1).mean()
    between_over_n = x.mean(axis=1).var(ddof=1) if m > 1 else 0.0
    if within <= 0:
        return math.nan
    return math.sqrt(((n - 1) / n * within + between_over_n) / within)


def _rank_rhat(x):
    split = split_chains(x)
    bulk = _rhat_core(_z_scale(split))
    folded = np.abs(x - np.median(x))
    tail = _rhat_core(_z_scale(split_chains(folded)))
    if math.isnan(bulk) or math.isnan(tail):
        return math.nan
    return max(bulk, tail)


def rhat(draws, method="rank"):
    """Potential scale reduction factor R-hat of each parameter.

    Parameters
    ----------
    draws : array-like of shape (n_chains, n_draws, ...)
        At least 4 finite draws per chain.
    method : {"rank", "split", "basic"}, default="rank"
        ``rank``: the rank-normalised split R-hat of Vehtari et al. (2021), the maximum of
        its bulk and folded (tail) versions -- Stan's and ArviZ's default. ``split``:
        split R-hat of the raw draws (Gelman et al., BDA3). ``basic``: the original
        Gelman-Rubin R-hat of the raw, unsplit chains.

    Returns
    -------
    float or numpy.ndarray of shape ``param_shape``
        NaN where the draws have no variation within chains (R-hat is undefined).

    Examples
    --------
    Two chains stuck at different places are far from converged:

    >>> rng = np.random.RandomState(1)
    >>> stuck = np.stack([rng.normal(0, 1, 200), rng.normal(3, 1, 200)])
    >>> bool(rhat(stuck) > 1.5)
    True
    >>> round(rhat(rng.normal(size=(4, 1000))), 2)
    1.0
    """
    if method not in RHAT_METHODS:
        raise ValueError(f"method must be one of {RHAT_METHODS}, got {method!r}")
    arr, shape = _as_draws(draws)
    func = {"rank": _rank_rhat, "split": lambda x: _rhat_core(split_chains(x)), "basic": _rhat_core}[method]
    return _per_parameter(func, arr, shape)


def _autocovariance(x):
    """Biased autocovariances ``sum_t (x_t - m)(x_{t+k} - m) / N`` of every row, by FFT."""
    n = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    size = 1 << int(2 * n - 1).bit_length()  # zero padding >= 2N - 1: no circular wrap-around
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    return np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n] / n


def _ess_core(x):
    """Effective sample size of (M, N) draws of one scalar (no splitting, no normalising)."""
    m, n = x.shape
    total = m * n
    if np.ptp(x) < np.finfo(np.float64).resolution:
        return float(total)  # constant draws: every draw is as good as independent
    acov = _autocovariance(x)
    within = acov[:, 0].mean() * n / (n - 1)
    var_plus = within * (n - 1) / n
    if m > 1:
        var_plus += x.mean(axis=1).var(ddof=1)
    rho = 1.0 - (within - acov.mean(axis=0)) / var_plus
    kept = np.zeros(n)
    kept[0] = 1.0
    kept[1] = rho[1]
    even, odd = 1.0, rho[1]
    # Geyer's initial positive sequence: sums of consecutive pairs until one is negative.
    t = 1
    while t < n - 3 and even + odd > 0:
        even, odd = rho[t + 1], rho[t + 2]
        if even + odd >= 0:
            kept[t + 1], kept[t + 2] = even, odd
        t += 2
    last = t - 2
    if even > 0:  # the first rejected pair still has a positive even term (Stan's refinement)
        kept[last + 1] = even
    # Geyer's initial monotone sequence: pair sums may not increase.
    t = 1
    while t <= last - 2:
        if kept[t + 1] + kept[t + 2] > kept[t - 1] + kept[t]:
            kept[t + 1] = kept[t + 2] = (kept[t - 1] + kept[t]) / 2.0
        t += 2
    tau = -1.0 + 2.0 * kept[:last + 1].sum() + kept[last + 1]
    # Antithetic chains could give tau < 1 without bound; Stan caps ESS at S log10(S).
    tau = max(tau, 1.0 / math.log10(total))
    return total / tau


def _ess_tail(x):
    split = split_chains(x)
    values = []
    for prob in (0.05, 0.95):
        indicator = (split <= np.quantile(split, prob)).astype(np.float64)
        values.append(_ess_core(indicator))
    return min(values)


def ess(draws, method="bulk", relative=False):
    """Effective sample size of each parameter.

    Parameters
    ----------
    draws : array-like of shape (n_chains, n_draws, ...)
        At least 4 finite draws per chain.
    method : {"bulk", "tail", "mean", "sd", "basic"}, default="bulk"
        ``bulk``: rank-normalised split draws (the ESS of the centre of the distribution);
        ``tail``: the smaller ESS of the 5% and 95% quantile indicators (split); ``mean``:
        raw split draws (the ESS that the Monte Carlo error of the mean uses); ``sd``: the
        split ESS of the squared deviations ``(x - mean)**2`` (``posterior`` 1.6); ``basic``: raw unsplit draws.
    relative : bool, default=False
        Divide by the number of draws (efficiency per draw).

    Returns
    -------
    float or numpy.ndarray of shape ``param_shape``

    Examples
    --------
    An AR(1) chain with coefficient 0.9 is worth about ``(1 - 0.9) / (1 + 0.9)`` of its length:

    >>> rng = np.random.RandomState(0)
    >>> x = np.zeros((4, 5000))
    >>> for t in range(1, 5000):
    ...     x[:, t] = 0.9 * x[:, t - 1] + rng.normal(size=4)
    >>> bool(0.04 < ess(x, method="mean", relative=True) < 0.07)
    True
    """
    if method not in ESS_METHODS:
        raise ValueError(f"method must be one of {ESS_METHODS}, got {method!r}")
    arr, shape = _as_draws(draws)
    funcs = {
        "bulk": lambda x: _ess_core(_z_scale(split_chains(x))),
        "tail": _ess_tail,
        "mean": lambda x: _ess_core(split_chains(x)),
        "sd": lambda x: _ess_core(split_chains((x - x.mean()) ** 2)),
        "basic": _ess_core,
    }
    out = _per_parameter(funcs[method], arr, shape)
    if relative:
        out = out / (arr.shape[0] * arr.shape[1])
    return out


def mcse(draws, method="mean"):
    """Monte Carlo standard error of the posterior mean (or standard deviation) estimate.

    Parameters
    ----------
    draws : array-like of shape (n_chains, n_draws, ...)
    method : {"mean", "sd"}, default="mean"
        ``mean``: ``sd(x) / sqrt(ESS_mean)``. ``sd``: the error of the standard deviation
        estimate, by the delta method from the mean ESS of ``x**2`` (Vehtari et al. 2021, as
        in ``posterior`` 1.x).

    Returns
    -------
    float or numpy.ndarray of shape ``param_shape``

    Examples
    --------
    Independent draws: the error of the mean is ``sd / sqrt(S)``.

    >>> x = np.random.RandomState(0).normal(size=(4, 2500))
    >>> bool(abs(mcse(x) - 0.01) < 0.001)
    True
    """
    if method not in MCSE_METHODS:
        raise ValueError(f"method must be one of {MCSE_METHODS}, got {method!r}")
    arr, shape = _as_draws(draws)

    def mean_error(x):
        return float(np.std(x, ddof=1) / math.sqrt(_ess_core(split_chains(x))))

    def sd_error(x):
        # The delta method on sd = sqrt(v): Var(sd) ~ Var(v) / (4 v), with Var(v) from the
        # variance of the squared deviations and their own effective sample size.
        sq = (x - x.mean()) ** 2
        var = sq.mean()
        if var <= 0:
            return 0.0
        var_of_var = (np.mean(sq * sq) - var * var) / _ess_core(split_chains(sq))
        return float(math.sqrt(var_of_var / var / 4.0))

    return _per_parameter(mean_error if method == "mean" else sd_error, arr, shape)
