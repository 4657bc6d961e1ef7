"""One EM loop for every latent-assignment model.

A model plugs in through five hooks (the template-method pattern of scikit-learn's
``BaseMixture`` and hmmlearn's ``BaseHMM``, written once):

``_em_initialize(data, random_state)``
    Set initial parameters.
``_em_expectation(data) -> EStepResult``
    Log-likelihood of the data under the current parameters and the expected
    sufficient statistics (additive: summed over chunks, sequences and processes).
``_em_maximization(stats)``
    New parameters from the statistics.
``_em_get_state() / _em_set_state(state)``
    Snapshot and restore parameters (``n_init`` keeps the best run).
``_em_fused_iteration(data) -> callable or None`` (optional)
    Asked once per initialisation: a callable that runs one E-step and the M-step that
    follows and returns the E-step's :class:`EStepResult` (its ``stats`` may be ``None``),
    for models with a faster fused form of the two hooks. Not used when the statistics
    are all-reduced between the two steps.

Distributed EM plugs in without touching the estimators: inside :func:`em_hooks`
(used by :func:`probkit.distributed.distributed_em`) every :func:`run_em` sums its E-step
results over processes and synchronises the initial parameters across them.

The objective reported to the monitor is the log-likelihood of the E-step, i.e. of
the parameters *before* the M-step of that iteration, as in scikit-learn and hmmlearn;
it is divided by the total sample weight when ``objective="mean"`` (scikit-learn's
``lower_bound_``) and kept as a sum when ``objective="total"`` (hmmlearn's ``monitor_``).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from sklearn.exceptions import ConvergenceWarning

from probkit.utils._warnings import warn_user
from probkit.utils.monitor import ConvergenceMonitor
from probkit.utils.progress import progress_bar

__all__ = ["EMHooks", "EStepResult", "EMResult", "em_hooks", "run_em"]


@dataclass
class EStepResult:
    """What an E-step returns.

    Attributes
    ----------
    log_likelihood : float
        Total (sample-weighted) log-likelihood, or evidence lower bound, of the data
        under the parameters the E-step used.
    n_samples : float
        Total sample weight (divides the objective when it is reported as a mean).
    stats : Any
        Additive expected sufficient statistics consumed by the M-step.
    """

    log_likelihood: float
    n_samples: float
    stats: Any


@dataclass
class EMResult:
    """Outcome of :func:`run_em` for the best of the ``n_init`` runs.

    Attributes
    ----------
    objective : float
        Final objective of the best run (``-inf`` if ``max_iter == 0``).
    n_iter : int
        Iterations run by the best run.
    converged : bool
        Whether the best run met ``tol`` before ``max_iter``.
    history : list of float
        The objective after each iteration of the best run.
    monitor : ConvergenceMonitor
        The monitor of the best run.
    """

    objective: float
    n_iter: int
    converged: bool
    history: list = field(default_factory=list)
    monitor: ConvergenceMonitor | None = None


@dataclass(frozen=True)
class EMHooks:
    """Callbacks that :func:`run_em` applies to every fit run inside :func:`em_hooks`.

    Attributes
    ----------
    all_reduce : callable or None
        ``all_reduce(estep) -> estep``, used when ``run_em`` is not given one.
    after_init : callable or None
        ``after_init(model)``: called after each initialisation (and before a warm-started
        run), e.g. to make the initial parameters identical on every process.

    Examples
    --------
    >>> EMHooks(after_init=print).all_reduce is None
    True
    """

    all_reduce: Callable | None = None
    after_init: Callable | None = None


_HOOKS: contextvars.ContextVar = contextvars.ContextVar("probkit_em_hooks", default=None)


@contextlib.contextmanager
def em_hooks(all_reduce=None, after_init=None):
    """Apply ``all_reduce`` and ``after_init`` to every :func:`run_em` call in the block.

    Parameters
    ----------
    all_reduce : callable, optional
        ``all_reduce(estep) -> estep`` (see :func:`run_em`).
    after_init : callable, optional
        ``after_init(model)``, called once the initial parameters are set.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import GaussianMixture
    >>> calls = []
    >>> X = np.random.RandomState(0).normal(size=(40, 1))
    >>> with em_hooks(after_init=lambda model: calls.append(type(model).__name__)):
    ...     _ = GaussianMixture(2, n_init=2, random_state=0).fit(X)
    >>> calls
    ['GaussianMixture', 'GaussianMixture']
    """
    token = _HOOKS.set(EMHooks(all_reduce=all_reduce, after_init=after_init))
    try:
        yield
    finally:
        _HOOKS.reset(token)


def run_em(model, data, *, max_iter, tol, n_init=1, random_state=None, warm_start=False,
           initial_objective=-math.inf, objective="mean", verbose=0, desc="EM",
           all_reduce=None, monitor_factory=ConvergenceMonitor, warn_not_converged=True, signed_gain=False,
           warning_lead=None):
    """Run EM ``n_init`` times on ``model`` and leave it in the state of the best run.

    Parameters
    ----------
    model : object
        Implements the ``_em_*`` hooks described in the module docstring.
    data : Any
        Passed unchanged to the hooks (validated tensors, lengths, weights, ...).
    max_iter : int
        Maximum number of EM iterations per run (0 keeps the initial parameters).
    tol : float
        Convergence threshold on the objective gain.
    n_init : int, default=1
        Number of initialisations; the run with the highest final objective is kept.
    random_state : numpy.random.RandomState
        Passed to ``_em_initialize``.
    warm_start : bool, default=False
        Skip initialisation and continue from the model's current parameters (one run).
    initial_objective : float, default=-inf
        Objective the first gain is measured against (the previous fit's, when warm starting).
    objective : {"mean", "total"}, default="mean"
    verbose : int, default=0
        1 prints one line per iteration; 2 also shows a progress bar.
    all_reduce : callable, optional
        ``all_reduce(estep) -> estep``: sums statistics and log-likelihood over processes
        (distributed EM); ``None`` for a single process.
    monitor_factory : callable, default=ConvergenceMonitor
        ``monitor_factory(tol, max_iter, verbose, signed)``, called once per
        initialisation (``None``: the default). A monitor with an ``end_run(converged)``
        method is told when its initialisation ends.
    warn_not_converged : bool, default=True
        Emit a ``ConvergenceWarning`` when the best run did not converge.
    signed_gain : bool, default=False
        ``False``: converged when ``|gain| < tol`` (scikit-learn). ``True``: converged when
        ``gain < tol``, so a (numerical) decrease also stops the fit (hmmlearn).
    warning_lead : str, optional
        A sentence put before the ``ConvergenceWarning``'s account of the stop (a peer's
        wording that users filter on).

    Returns
    -------
    EMResult

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import GaussianMixture
    >>> X = np.r_[np.random.RandomState(0).normal(0, 1, (50, 1)), np.random.RandomState(1).normal(6, 1, (50, 1))]
    >>> GaussianMixture(2, random_state=0).fit(X).converged_
    True
    """
    if objective not in ("mean", "total"):
        raise ValueError(f"objective must be 'mean' or 'total', got {objective!r}")
    hooks = _HOOKS.get()
    after_init = None
    if hooks is not None:
        all_reduce = hooks.all_reduce if all_reduce is None else all_reduce
        after_init = hooks.after_init
    n_runs = 1 if warm_start else n_init
    best = None
    best_state = None
    for run in range(n_runs):
        if not warm_start:
            model._em_initialize(data, random_state)
        if after_init is not None:
            after_init(model)
        monitor = (monitor_factory or ConvergenceMonitor)(tol, max_iter, verbose, signed_gain)
        fused = getattr(model, "_em_fused_iteration", None)
        iteration = fused(data) if fused is not None and all_reduce is None and max_iter > 0 else None
        value = initial_objective if warm_start else -math.inf
        converged = False
        n_iter = 0
        with progress_bar(max_iter, verbose, f"{desc} (init {run + 1}/{n_runs})") as bar:
            for n_iter in range(1, max_iter + 1):
                previous = value
                if iteration is not None:
                    estep = iteration()
                else:
                    estep = model._em_expectation(data)
                    if all_reduce is not None:
                        estep = all_reduce(estep)
                    model._em_maximization(estep.stats)
                value = estep.log_likelihood / estep.n_samples if objective == "mean" else estep.log_likelihood
                monitor.report(value)
                bar.update(1)
                gain = value - previous
                if (gain if signed_gain else abs(gain)) < tol:
                    converged = True
                    break
        if hasattr(monitor, "end_run"):
            monitor.end_run(converged)
        if max_iter == 0:
            n_iter = 0
        if best is None or value > best.objective or best.objective == -math.inf:
            best = EMResult(objective=value, n_iter=n_iter, converged=converged,
                            history=list(monitor.history), monitor=monitor)
            best_state = model._em_get_state() if n_runs > 1 else None
    if best_state is not None:
        model._em_set_state(best_state)
    if warn_not_converged and not best.converged and max_iter > 0:
        gain = best.monitor.gain if best.monitor is not None else math.nan
        last = (f"the last gain of the objective was {gain:.4g}, above tol={tol}" if math.isfinite(gain)
                else "one iteration measures no gain")
        detail = (f"{desc} did not converge in {max_iter} iteration{'s' if max_iter > 1 else ''}: {last}; "
                  "increase max_iter/n_iter or tol, try other initial parameters, or check for degenerate data")
        warn_user(f"{warning_lead} ({detail})" if warning_lead else detail, ConvergenceWarning)
    return best


def fit_sequence_em(model, data, random_state, *, n_init=None):
    """:func:`run_em` with a sequence model's own options; store its ``monitor_``, ``n_iter_`` and ``converged_``.

    The HMMs, the HSMM and the linear-Gaussian state-space model share this: ``n_iter``
    iterations at the most, stopping when the gain of the *total* log-likelihood falls
    below ``tol`` (hmmlearn's convention, with the sign of the gain kept), ``n_init``
    restarts (the model's, unless given) and a progress bar named after the class.

    Parameters
    ----------
    model : object
        Implements the ``_em_*`` hooks and has ``n_iter``, ``tol``, ``n_init`` and ``verbose``.
    data : Any
        Passed unchanged to the hooks.
    random_state : numpy.random.RandomState
    n_init : int, optional
        Restarts instead of ``model.n_init``.

    Returns
    -------
    EMResult
        The run kept (its monitor is also ``model.monitor_``).

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.hmm import GaussianHMM
    >>> X = np.r_[np.zeros((20, 1)), np.full((20, 1), 5.0)] + np.random.RandomState(0).randn(40, 1)
    >>> model = GaussianHMM(2, n_iter=5, random_state=0)
    >>> model._check_options()
    >>> data = model._validate_sequences(X, None, reset=True, training=True)
    >>> result = fit_sequence_em(model, data, np.random.RandomState(0))
    >>> model.n_iter_ == result.n_iter and model.monitor_ is result.monitor
    True
    """
    result = run_em(model, data, max_iter=model.n_iter, tol=model.tol,
                    n_init=model.n_init if n_init is None else n_init, random_state=random_state,
                    objective="total", verbose=model.verbose, desc=type(model).__name__, signed_gain=True)
    model.monitor_ = result.monitor
    model.n_iter_ = result.n_iter
    model.converged_ = result.converged
    return result
