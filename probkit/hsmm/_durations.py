"""Duration distributions of a hidden semi-Markov model: families, truncation and the M-step.

A segment lasts ``d = 1 .. max_duration`` steps. The duration model of each state is a
probkit count distribution of ``d - 1`` (so a Poisson duration is a Poisson shifted by one),
truncated to ``1 .. D`` and renormalised there:
``p(d) = q(d - 1) / sum_{d'=1}^{D} q(d' - 1)``. The families:

* ``"poisson"`` -- :class:`~probkit.distributions.Poisson`, one rate per state;
* ``"negative_binomial"`` -- :class:`~probkit.distributions.NegativeBinomial`, over-dispersed
  (``fixed_total_count`` may fix ``r``);
* ``"geometric"`` -- :class:`~probkit.distributions.Geometric` (the HMM's implicit durations);
* ``"categorical"`` -- :class:`~probkit.distributions.Categorical` over ``0 .. D - 1``: any
  distribution on ``1 .. D`` (non-parametric).

The M-step maximises the expected complete-data log-likelihood of the *truncated* model,
``sum_d c_d log p(d)``, exactly: a one-parameter family with ``T(x) = x`` on the finite
support ``0 .. D - 1`` (Poisson, geometric, negative binomial with fixed ``r``) is an
exponential family whose maximum is the root of ``E[x] = mean of the counts``, monotone in
the natural parameter; the two-parameter negative binomial maximises the profile
likelihood over ``log r`` (bounded Brent, the exact root in ``log(1 - p)`` for each ``r``)
and keeps the previous parameters if they are better, so EM never decreases the likelihood.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch
from scipy import optimize, special

from probkit.distributions import Categorical, Geometric, NegativeBinomial, Poisson

__all__ = ["DURATION_FAMILIES", "fit_durations", "n_duration_parameters", "resolve_duration",
           "truncated_log_pmf"]

#: Duration family names accepted by ``HSMM(duration=...)``.
DURATION_FAMILIES = {
    "poisson": Poisson,
    "negative_binomial": NegativeBinomial,
    "negbin": NegativeBinomial,
    "geometric": Geometric,
    "categorical": Categorical,
}
_CLASSES = (Poisson, NegativeBinomial, Geometric, Categorical)

# Parameter ranges of the M-step. Poisson rates beyond RATE_SPAN * D are indistinguishable
# from the limit (all mass at D) and would lose the truncated pmf to cancellation; success
# probabilities stay inside (0, 1) so that every truncated pmf is strictly positive.
RATE_MIN, RATE_SPAN = 1e-300, 1e4
PROB_MIN = 1e-12
TOTAL_COUNT_BOUNDS = (1e-8, 1e8)


def _supported():
    return "'poisson', 'negative_binomial', 'geometric' or 'categorical' (or those probkit distribution classes)"


def resolve_duration(duration):
    """An unfitted template of the duration family (its options kept), or a clear error.

    Examples
    --------
    >>> resolve_duration("poisson")
    Poisson(min_rate=0.0)
    >>> resolve_duration("normal")
    Traceback (most recent call last):
    ...
    ValueError: duration must be a distribution of the segment length minus one over 0 .. max_duration - 1: 'poisson', 'negative_binomial', 'geometric' or 'categorical' (or those probkit distribution classes); got 'normal'
    """
    if isinstance(duration, str):
        cls = DURATION_FAMILIES.get(duration.lower())
        if cls is None:
            raise ValueError("duration must be a distribution of the segment length minus one over 0 .. "
                             f"max_duration - 1: {_supported()}; got {duration!r}")
        return cls()
    if inspect.isclass(duration):
        if issubclass(duration, _CLASSES):
            return duration()
        support = getattr(duration, "support_description", "an unsupported support")
        raise ValueError(f"duration family {duration.__name__} (support: {support}) cannot describe segment lengths "
                         f"1 .. max_duration; use {_supported()}")
    if isinstance(duration, _CLASSES):
        return duration._new()
    support = getattr(duration, "support_description", None)
    what = type(duration).__name__ + (f" (support: {support})" if support else "")
    raise ValueError(f"duration {what} cannot describe segment lengths 1 .. max_duration; use {_supported()}")


def _raw_log_pmf(dist, max_duration):
    """log q(d - 1) for d = 1..D, shape (K, D), float64 numpy (untruncated)."""
    x = torch.arange(max_duration, dtype=torch.float64)
    if isinstance(dist, Categorical):
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(dist.params["probs"], dtype=np.float64))
    params = {k: v.to(torch.float64) for k, v in dist.torch_params().items()}
    member = dist._new(**params)
    return member._log_prob(x[:, None]).T.detach().cpu().numpy().astype(np.float64)


def truncated_log_pmf(dist, max_duration):
    """``log p_k(d)`` of the truncated durations, ``(K, D)``: row k sums to one over ``d = 1..D``.

    Parameters
    ----------
    dist : Poisson, NegativeBinomial, Geometric or Categorical with batch shape (K,)
    max_duration : int

    Returns
    -------
    numpy.ndarray of shape (K, max_duration)

    Examples
    --------
    >>> lp = truncated_log_pmf(Poisson(rate=[2.0]), 4)
    >>> np.round(np.exp(lp), 3)
    array([[0.158, 0.316, 0.316, 0.211]])
    """
    raw = _raw_log_pmf(dist, max_duration)
    norm = special.logsumexp(raw, axis=1, keepdims=True)
    if not np.all(np.isfinite(norm)):
        bad = int(np.flatnonzero(~np.isfinite(norm.ravel()))[0])
        raise ValueError(f"the duration distribution of state {bad} puts no probability on the lengths 1 .. "
                         f"{max_duration}")
    return raw - norm


def n_duration_parameters(dist, max_duration):
    """Free parameters of the duration models of all states."""
    k = dist.batch_shape[0]
    if isinstance(dist, Categorical):
        return k * (max_duration - 1)
    if isinstance(dist, NegativeBinomial) and dist.fixed_total_count is None:
        return 2 * k
    return k


# ---------------------------------------------------------------------------- M-step
def _moment_root(log_base, target, low, high):
    """Natural parameter eta of ``p(x) ~ exp(log_base(x) + eta x)`` on ``0..D-1`` with ``E[x] = target``.

    The mean is increasing in eta (its derivative is the variance), so the maximiser of
    the concave log-likelihood over ``[low, high]`` is the root, or the bound it is beyond.
    """
    x = np.arange(log_base.shape[0], dtype=np.float64)

    def mean(eta):
        a = log_base + eta * x
        w = np.exp(a - a.max())
        return float(w @ x / w.sum())

    if target <= mean(low):
        return low
    if target >= mean(high):
        return high
    return optimize.brentq(lambda eta: mean(eta) - target, low, high, xtol=1e-13, rtol=4 * np.finfo(float).eps,
                           maxiter=500)


def _nb_log_base(r, max_duration):
    """log Gamma(x + r) / (Gamma(r) x!) for x = 0..D-1, and its derivative in r, as sums (exact for large r)."""
    i = np.arange(max_duration - 1, dtype=np.float64)
    x = np.arange(max_duration, dtype=np.float64)
    log_rising = np.concatenate([[0.0], np.cumsum(np.log(r + i))])
    d_rising = np.concatenate([[0.0], np.cumsum(1.0 / (r + i))])
    return log_rising - special.gammaln(x + 1), d_rising


def _ef_value(log_base, eta, counts):
    """Expected log-likelihood ``sum_x c_x log p(x)`` of ``p(x) ~ exp(log_base(x) + eta x)`` on ``0..D-1``."""
    a = log_base + eta * np.arange(log_base.shape[0])
    return float(counts @ a - counts.sum() * special.logsumexp(a))


def _eta_bounds_prob():
    return math.log(PROB_MIN), math.log1p(-PROB_MIN)


def _fit_row(template, counts, previous, max_duration):
    """Parameters (dict of floats / arrays) of one state's duration model from its expected counts."""
    x = np.arange(max_duration, dtype=np.float64)
    mean = float(counts @ x / counts.sum())
    if isinstance(template, Categorical):
        return {"probs": counts / counts.sum()}
    if isinstance(template, Poisson):
        low = math.log(max(RATE_MIN, template.min_rate))
        high = math.log(RATE_SPAN * max_duration)
        eta = _moment_root(-special.gammaln(x + 1), mean, low, high)
        return {"rate": math.exp(eta)}
    low, high = _eta_bounds_prob()
    if isinstance(template, Geometric):
        eta = _moment_root(np.zeros(max_duration), mean, low, high)
        return {"probs": -math.expm1(eta)}
    fixed = template.fixed_total_count
    if fixed is not None:
        eta = _moment_root(_nb_log_base(fixed, max_duration)[0], mean, low, high)
        return {"total_count": fixed, "probs": -math.expm1(eta)}
    # Two parameters: the profile likelihood over log r (eta at its exact optimum for each r),
    # maximised by bounded Brent; kept only if it beats the previous parameters.
    def profile(log_r):
        log_base = _nb_log_base(math.exp(log_r), max_duration)[0]
        eta = _moment_root(log_base, mean, low, high)
        return _ef_value(log_base, eta, counts), eta

    bounds = (math.log(TOTAL_COUNT_BOUNDS[0]), math.log(TOTAL_COUNT_BOUNDS[1]))
    res = optimize.minimize_scalar(lambda u: -profile(u)[0], bounds=bounds, method="bounded",
                                   options={"xatol": 1e-8})
    log_r = float(res.x)
    value, eta = profile(log_r)
    if previous is not None:
        r_old, p_old = float(previous["total_count"]), float(previous["probs"])
        if _ef_value(_nb_log_base(r_old, max_duration)[0], math.log1p(-p_old), counts) > value:
            return {"total_count": r_old, "probs": p_old}
    return {"total_count": math.exp(log_r), "probs": -math.expm1(eta)}


def _row_params(dist, k):
    params = dist.params
    return {name: (np.asarray(value)[k] if np.ndim(value) else float(value)) for name, value in params.items()}


def fit_durations(template, counts, previous=None):
    """Duration models of every state from expected duration counts (the M-step).

    Parameters
    ----------
    template : Poisson, NegativeBinomial, Geometric or Categorical
        The family (and its options).
    counts : numpy.ndarray of shape (K, D)
        Expected number of segments of each state lasting d = 1..D steps.
    previous : distribution, optional
        The current duration models: a state without counts keeps its own, and the
        negative binomial climbs from them.

    Returns
    -------
    distribution with batch shape (K,)
        ``previous`` is returned unchanged for states with no counts.
    empty : list of int
        The states that had no counts.

    Examples
    --------
    >>> counts = np.array([[0.0, 3.0, 1.0, 0.0]])   # three segments of 2 steps, one of 3
    >>> dist, empty = fit_durations(Categorical(), counts)
    >>> dist.probs, empty
    (array([[0.  , 0.75, 0.25, 0.  ]]), [])
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_states, max_duration = counts.shape
    totals = counts.sum(1)
    empty = [k for k in range(n_states) if not totals[k] > 1e-12 * max(totals.max(), 1e-300)]
    if len(empty) == n_states:
        raise ValueError("no segment received any expected count: the duration models cannot be estimated")
    rows = []
    for k in range(n_states):
        prev = _row_params(previous, k) if previous is not None else None
        if k in empty and prev is not None:
            rows.append(prev)
        elif k in empty:  # nothing to keep: start from equal counts of every length
            rows.append(_fit_row(template, np.ones(max_duration), None, max_duration))
        else:
            rows.append(_fit_row(template, counts[k], prev, max_duration))
    names = rows[next(k for k in range(n_states) if k not in empty)].keys()
    params = {name: np.stack([np.asarray(row[name], dtype=np.float64) for row in rows]) for name in names}
    return template._new(**params), empty
