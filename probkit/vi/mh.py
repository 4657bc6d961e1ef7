"""Random-walk Metropolis-Hastings for small custom models: :func:`random_walk_metropolis`.

The model is any log-density (up to a constant) of a flat parameter vector. The
proposal is ``theta' = theta + s L z`` with ``z ~ N(0, I)``; during warm-up the scale
``s`` is tuned by a Robbins-Monro recursion on ``log s`` towards a target acceptance
rate (0.44 in one dimension, 0.234 in more: Roberts, Gelman and Gilks 1997), and, half
way through the warm-up, the shape ``L`` becomes the Cholesky factor of the draws'
covariance (regularised towards a small multiple of the identity, as Stan does for its
metric) and ``s`` restarts at ``2.38 / sqrt(d)`` (Haario, Saksman and Tamminen 2001).
After the warm-up the proposal is fixed, so the kept draws form a valid Markov chain
whose stationary distribution is the target.
"""

from __future__ import annotations

import math

import numpy as np

from probkit.utils.random import check_random_state
from probkit.vi.mcmc_result import MCMCResult
from probkit.utils.validation import check_int

__all__ = ["random_walk_metropolis"]


def _evaluate(log_density, points, vectorized):
    """Log-densities of ``points`` (C, d) as a float64 array (C,); NaN is an error, -inf a zero density."""
    if vectorized:
        values = np.asarray(log_density(points), dtype=np.float64).reshape(-1)
        if values.shape[0] != points.shape[0]:
            raise ValueError(f"a vectorized log_density must return one value per row: got {values.shape[0]} "
                             f"values for {points.shape[0]} points")
    else:
        values = np.array([float(log_density(p)) for p in points], dtype=np.float64)
    if np.isnan(values).any() or np.isposinf(values).any():
        bad = points[np.isnan(values) | np.isposinf(values)][0]
        raise ValueError(f"log_density returned NaN or +inf at {bad.tolist()} (return -inf for zero density)")
    return values


def random_walk_metropolis(log_density, initial, *, n_samples=1000, warmup=1000, n_chains=4, thin=1,
                           step_size=None, target_accept=None, adapt_covariance=True, names=None,
                           vectorized=False, random_state=None):
    """Sample a log-density on a flat parameter vector by adaptive random-walk Metropolis.

    Parameters
    ----------
    log_density : callable
        ``log_density(theta) -> float``, the log of an unnormalised density of a 1-D array
        ``theta`` of length ``d``; ``-inf`` outside the support. With ``vectorized=True`` it
        takes a ``(n_chains, d)`` array and returns ``n_chains`` values.
    initial : array-like of shape (d,) or (n_chains, d)
        Starting points, all with a finite log-density. Give one row per chain, spread out
        over the posterior, for R-hat to be meaningful.
    n_samples : int, default=1000
        Draws kept per chain.
    warmup : int, default=1000
        Adaptation iterations per chain (discarded).
    n_chains : int, default=4
    thin : int, default=1
        Keep every ``thin``-th draw after the warm-up.
    step_size : float, optional
        Initial proposal scale ``s``; ``2.38 / sqrt(d)`` by default (with ``L = I``).
    target_accept : float, optional
        Acceptance rate the warm-up aims at; 0.44 for ``d = 1``, else 0.234.
    adapt_covariance : bool, default=True
        Learn the proposal's shape from the first half of the warm-up.
    names : list of str, optional
        One name per coordinate: the result then holds one scalar parameter per name
        instead of a single vector parameter ``"theta"``.
    vectorized : bool, default=False
        Whether ``log_density`` evaluates all chains in one call.
    random_state : None, int or numpy.random.RandomState

    Returns
    -------
    MCMCResult
        ``samples["theta"]`` of shape ``(n_chains, n_samples, d)`` (or one entry per name);
        ``sample_stats``: ``accept_prob`` (the Metropolis acceptance probability of each
        kept iteration) and ``log_density``; ``info``: the tuned ``step_size``, the
        ``proposal_cholesky``, the ``acceptance_rate`` of each chain after warm-up and the
        settings.

    Examples
    --------
    The posterior of a normal mean with known unit variance and a N(0, 10^2) prior,
    given three observations:

    >>> import numpy as np
    >>> y = np.array([0.8, 1.3, 1.1])
    >>> def log_post(theta):
    ...     return -0.5 * np.sum((y - theta[0]) ** 2) - 0.5 * theta[0] ** 2 / 100.0
    >>> res = random_walk_metropolis(log_post, [[-2.0], [0.0], [2.0], [4.0]], n_samples=1000,
    ...                              warmup=500, names=["mu"], random_state=0)
    >>> exact = y.sum() / (len(y) + 0.01)
    >>> bool(abs(res.mean("mu") - exact) < 4 * res.mcse("mu")), bool(res.rhat("mu") < 1.05)
    (True, True)
    """
    if not callable(log_density):
        raise TypeError(f"log_density must be callable, got {type(log_density).__name__}")
    n_samples = check_int(n_samples, "n_samples", 1)
    warmup = check_int(warmup, "warmup", 0)
    n_chains = check_int(n_chains, "n_chains", 1)
    thin = check_int(thin, "thin", 1)
    start = np.asarray(initial, dtype=np.float64)
    if start.ndim == 1:
        start = np.repeat(start[None, :], n_chains, axis=0)
    if start.ndim != 2 or start.shape[0] != n_chains or start.shape[1] < 1:
        raise ValueError(f"initial must have shape (d,) or (n_chains, d) = ({n_chains}, d), got {np.shape(initial)}")
    if not np.all(np.isfinite(start)):
        raise ValueError("initial contains NaN or infinity")
    dim = start.shape[1]
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != dim or len(set(names)) != dim:
            raise ValueError(f"names must hold {dim} distinct names (one per coordinate), got {names!r}")
    target = (0.44 if dim == 1 else 0.234) if target_accept is None else float(target_accept)
    if not 0.0 < target < 1.0:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}")
    default_scale = 2.38 / math.sqrt(dim)
    scale = default_scale if step_size is None else float(step_size)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    rng = check_random_state(random_state)

    current = start.copy()
    current_lp = _evaluate(log_density, current, vectorized)
    if not np.all(np.isfinite(current_lp)):
        raise ValueError("log_density must be finite at every initial point")
    chol = np.eye(dim)
    log_scale = math.log(scale)
    adapt_count = 0
    covariance_at = warmup // 2 if adapt_covariance and warmup >= 20 else -1
    history = []  # warm-up draws kept for the covariance estimate

    n_total = warmup + n_samples * thin
    kept = np.empty((n_chains, n_samples, dim))
    kept_accept = np.empty((n_chains, n_samples))
    kept_lp = np.empty((n_chains, n_samples))
    accepted_after_warmup = np.zeros(n_chains)
    for it in range(n_total):
        if it == covariance_at and history:
            draws = np.concatenate(history[len(history) // 2:], axis=0)
            n = draws.shape[0]
            cov = np.atleast_2d(np.cov(draws, rowvar=False))
            # Stan's regularisation of an estimated metric: shrink towards 1e-3 I with weight 5 / (n + 5).
            cov = (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * np.eye(dim)
            try:
                chol = np.linalg.cholesky(cov)
                log_scale = math.log(default_scale)
                adapt_count = 0
            except np.linalg.LinAlgError:  # degenerate warm-up draws: keep the previous shape
                pass
        proposal = current + math.exp(log_scale) * rng.standard_normal((n_chains, dim)) @ chol.T
        proposal_lp = _evaluate(log_density, proposal, vectorized)
        with np.errstate(over="ignore", invalid="ignore"):
            log_ratio = proposal_lp - current_lp
        accept_prob = np.where(np.isfinite(log_ratio), np.exp(np.minimum(log_ratio, 0.0)), 0.0)
        accept = rng.random_sample(n_chains) < accept_prob
        current = np.where(accept[:, None], proposal, current)
        current_lp = np.where(accept, proposal_lp, current_lp)
        if it < warmup:
            adapt_count += 1
            log_scale += (accept_prob.mean() - target) / adapt_count ** 0.6
            if covariance_at > 0 and it < covariance_at:
                history.append(current.copy())
            continue
        accepted_after_warmup += accept
        j, r = divmod(it - warmup, thin)
        if r == thin - 1:
            kept[:, j] = current
            kept_accept[:, j] = accept_prob
            kept_lp[:, j] = current_lp
    samples = {name: kept[:, :, i] for i, name in enumerate(names)} if names is not None else {"theta": kept}
    info = {"sampler": "random_walk_metropolis", "step_size": math.exp(log_scale), "proposal_cholesky": chol,
            "acceptance_rate": accepted_after_warmup / (n_samples * thin), "target_accept": target,
            "warmup": warmup, "thin": thin}
    return MCMCResult(samples, {"accept_prob": kept_accept, "log_density": kept_lp}, info)
