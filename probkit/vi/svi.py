"""A stochastic variational inference runner for Pyro models: :func:`fit_svi`.

One call runs Pyro's SVI loop with the choices that every probkit estimator (and a user
with a Pyro model of their own) needs settled: which ELBO, which guide, which optimiser,
when to stop, how to seed, and where the parameters live.

* Losses: ``"Trace_ELBO"``, ``"TraceEnum_ELBO"`` (discrete latent sites are summed out
  exactly; the model is wrapped in ``config_enumerate`` so unmarked discrete sites are
  enumerated too) and ``"TraceMeanField_ELBO"`` (analytic KL terms where Pyro has them).
  ``num_particles`` > 1 averages several samples of the guide, vectorised over an extra
  plate dimension when ``vectorize_particles=True``.
* Guides: a callable (the user's own guide), or the name of an autoguide: ``"normal"``
  (:class:`~pyro.infer.autoguide.AutoNormal`), ``"diag_normal"``, ``"multivariate_normal"``,
  ``"lowrank"`` (low-rank plus diagonal covariance) and ``"delta"`` (a point estimate,
  i.e. MAP). With ``TraceEnum_ELBO`` the autoguide is built on the model with its
  enumerated sites hidden.
* Optimiser: :class:`~pyro.optim.ClippedAdam` (gradient-norm clipping and learning-rate
  decay); ``optim`` gives its arguments (``{"lr": 0.01, "clip_norm": 10.0, "lrd": 1.0}``)
  or is any ``pyro.optim`` optimiser.
* Stopping: after ``num_steps`` steps, or earlier when ``tol`` is given and the
  relative change between the mean losses of the last two windows of ``window`` steps is
  below ``tol`` (the ELBO of a single step is noisy; a window mean is not).
* NaN: a loss that is NaN or infinite stops the fit with :class:`FloatingPointError`
  naming the step, so no NaN parameters are ever returned.
* Isolation: the parameters live in a :class:`~probkit.vi.ParamScope` (a private
  parameter store), never in Pyro's global one, and the random generators are seeded
  from ``random_state`` inside :func:`~probkit.utils.random.forked_rng` and restored afterwards.

Subsampling: a model that declares ``pyro.plate(..., subsample_size=B)`` over
conditionally independent data (mixture rows, HMM sequences) gets an unbiased estimate of
the ELBO and its gradient from each mini-batch; Pyro scales the log-likelihood of the
batch by ``N / B``. Latent variables local to the data (mixture assignments, HMM states)
must then be summed out (``TraceEnum_ELBO``) or have per-row guides, and global latents
must sit outside the subsampled plate.
"""

from __future__ import annotations

import difflib
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO, config_enumerate
from pyro.infer import autoguide
from pyro.infer.elbo import ELBO
from pyro.optim import PyroOptim

from probkit.utils.progress import progress_bar
from probkit.utils.random import forked_rng
from probkit.utils.threads import torch_threads
from probkit.utils.validation import check_int
from probkit.vi._pyro import ParamScope, model_args, pyro_lock

__all__ = ["GUIDES", "LOSSES", "SVIResult", "fit_svi", "make_elbo", "make_guide"]

LOSSES = {
    "trace_elbo": Trace_ELBO,
    "traceenum_elbo": TraceEnum_ELBO,
    "tracemeanfield_elbo": TraceMeanField_ELBO,
}

GUIDES = {
    "normal": autoguide.AutoNormal,
    "diag_normal": autoguide.AutoDiagonalNormal,
    "multivariate_normal": autoguide.AutoMultivariateNormal,
    "lowrank": autoguide.AutoLowRankMultivariateNormal,
    "delta": autoguide.AutoDelta,
}

DEFAULT_OPTIM = {"lr": 0.01, "clip_norm": 10.0}


def _loss_key(loss):
    return str(loss).lower().replace("-", "_")


def make_elbo(loss="Trace_ELBO", *, num_particles=1, vectorize_particles=False, max_plate_nesting=None):
    """Build a Pyro ELBO object from its name.

    Parameters
    ----------
    loss : {"Trace_ELBO", "TraceEnum_ELBO", "TraceMeanField_ELBO"} or pyro.infer.ELBO
        Case-insensitive name, or an ELBO instance returned unchanged.
    num_particles : int, default=1
        Samples of the guide averaged per step.
    vectorize_particles : bool, default=False
        Draw the particles in one vectorised pass (an extra batch dimension).
    max_plate_nesting : int, optional
        Plates nested in the model; guessed by Pyro from one run when omitted.

    Returns
    -------
    pyro.infer.ELBO

    Examples
    --------
    >>> type(make_elbo("traceenum_elbo", max_plate_nesting=1)).__name__
    'TraceEnum_ELBO'
    """
    if isinstance(loss, ELBO):
        return loss
    key = _loss_key(loss)
    if key not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of ['Trace_ELBO', 'TraceEnum_ELBO', "
                         "'TraceMeanField_ELBO'] or a pyro.infer.ELBO instance")
    num_particles = check_int(num_particles, "num_particles")
    nesting = float("inf") if max_plate_nesting is None else int(max_plate_nesting)
    return LOSSES[key](num_particles=int(num_particles), vectorize_particles=bool(vectorize_particles),
                       max_plate_nesting=nesting)


def _hide_enumerated(msg):
    return msg["type"] == "sample" and bool(msg.get("infer", {}).get("enumerate"))


def _autoguide_classes():
    """Pyro's autoguide classes by name (``AutoNormal``, ``AutoDelta``, ...) that build from a model alone."""
    out = {}
    for name in dir(autoguide):
        cls = getattr(autoguide, name)
        if (isinstance(cls, type) and issubclass(cls, autoguide.AutoGuide) and name.startswith("Auto")
                and cls not in (autoguide.AutoGuide, autoguide.AutoGuideList, autoguide.AutoContinuous,
                                autoguide.AutoCallable)):
            out[name] = cls
    return out


def make_guide(guide, model, *, enumerated=False, **kwargs):
    """Resolve a guide: a callable is returned as is, a name or an autoguide class becomes an autoguide of ``model``.

    Parameters
    ----------
    guide : callable, autoguide class or str
        Short names ``"normal"``, ``"diag_normal"``, ``"multivariate_normal"``,
        ``"lowrank"``, ``"delta"``; Pyro's class names (``"AutoNormal"``,
        ``"AutoDiagonalNormal"``, ``"AutoLowRankMultivariateNormal"``, ...); an autoguide
        class itself (``pyro.infer.autoguide.AutoNormal``); or a guide function / built
        autoguide, used as is.
    model : callable
    enumerated : bool, default=False
        Hide the model's enumerated sites from the autoguide (for ``TraceEnum_ELBO``).
    **kwargs
        Passed to the autoguide's constructor (e.g. ``rank=2`` for ``"lowrank"``,
        ``init_scale=0.05``).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> from pyro.infer.autoguide import AutoDelta
    >>> def model():
    ...     pyro.sample("x", dist.Normal(0.0, 1.0))
    >>> type(make_guide("lowrank", model)).__name__
    'AutoLowRankMultivariateNormal'
    >>> type(make_guide("AutoNormal", model)).__name__, type(make_guide(AutoDelta, model)).__name__
    ('AutoNormal', 'AutoDelta')
    """
    if isinstance(guide, type):
        if not issubclass(guide, autoguide.AutoGuide):
            raise TypeError(f"guide classes must be Pyro autoguides (pyro.infer.autoguide), got {guide.__name__}")
        cls = guide
    elif callable(guide) and not isinstance(guide, str):
        if kwargs:
            raise TypeError("guide keyword arguments apply to autoguides given by name or class, not to a "
                            "callable guide")
        return guide
    elif isinstance(guide, str):
        classes = _autoguide_classes()
        cls = GUIDES.get(guide.lower()) or classes.get(guide)
        if cls is None:
            by_lower = {name.lower(): c for name, c in classes.items()}
            cls = by_lower.get(guide.lower())
        if cls is None:
            close = difflib.get_close_matches(guide, sorted(GUIDES) + sorted(classes), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown guide {guide!r}{hint}; expected a callable, a pyro.infer.autoguide class or "
                             f"name ({', '.join(sorted(classes))}) or one of {sorted(GUIDES)}")
    else:
        raise ValueError(f"unknown guide {guide!r}; expected a callable, a pyro.infer.autoguide class or name, or "
                         f"one of {sorted(GUIDES)}")
    target = poutine.block(model, hide_fn=_hide_enumerated) if enumerated else model
    return cls(target, **kwargs)


def _make_optim(optim):
    if optim is None:
        return pyro.optim.ClippedAdam(dict(DEFAULT_OPTIM))
    if isinstance(optim, PyroOptim):
        return optim
    if isinstance(optim, dict):
        args = dict(DEFAULT_OPTIM, **optim)
        lr = args.get("lr")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"optim['lr'] must be a positive number, got {lr!r}")
        return pyro.optim.ClippedAdam(args)
    raise TypeError(f"optim must be a dict of ClippedAdam arguments or a pyro.optim optimiser, got {type(optim).__name__}")


@dataclass
class SVIResult:
    """What :func:`fit_svi` returns.

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        The learned parameters in their constrained space.
    elbo_history : numpy.ndarray of shape (n_steps,)
        The ELBO estimate of every step (minus Pyro's loss).
    n_steps : int
        Steps taken.
    converged : bool
        Whether the smoothed relative change fell below ``tol`` before ``num_steps``.
    scope : ParamScope
        The private parameter store; ``with result.scope:`` makes the parameters visible to
        Pyro again (e.g. to call an autoguide's ``median()`` or ``pyro.infer.Predictive``).
    guide : callable
        The guide that was optimised.
    seconds : float
        Wall time of the optimisation loop.

    Examples
    --------
    >>> import torch, pyro, pyro.distributions as dist
    >>> def model():
    ...     pyro.sample("z", dist.Normal(0.0, 1.0))
    >>> res = fit_svi(model, "delta", num_steps=20, random_state=0)
    >>> res.n_steps, res.elbo_history.shape, sorted(res.params)
    (20, (20,), ['AutoDelta.z'])
    """

    params: dict
    elbo_history: np.ndarray
    n_steps: int
    converged: bool
    scope: ParamScope
    guide: object = None
    seconds: float = 0.0
    loss_name: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def steps_per_second(self):
        """Optimisation steps per second of wall time."""
        return self.n_steps / self.seconds if self.seconds > 0 else math.inf

    @property
    def elbo(self):
        """Mean ELBO over the last ``min(50, n_steps)`` steps (a smoothed final value)."""
        tail = self.elbo_history[-min(50, len(self.elbo_history)):]
        return float(np.mean(tail)) if len(tail) else -math.inf


def fit_svi(model, guide, data=None, *, num_steps=1000, optim=None, loss="Trace_ELBO", num_particles=1,
            vectorize_particles=False, max_plate_nesting=None, tol=None, window=50, min_steps=0,
            random_state=None, verbose=0, scope=None, guide_kwargs=None, num_threads=1, desc="SVI"):
    """Fit a Pyro guide to a Pyro model by stochastic variational inference.

    Parameters
    ----------
    model : callable
        A Pyro model taking the arguments in ``data``.
    guide : callable or str
        The user's guide, or an autoguide name (see :func:`make_guide`).
    data : tuple, dict, array or tensor, optional
        Arguments of ``model`` and ``guide``: a tuple (positional), a dict (keywords) or a
        single value. numpy arrays become torch tensors (their dtype is kept).
    num_steps : int, default=1000
        Maximum number of optimisation steps.
    optim : dict or pyro.optim.PyroOptim, optional
        ClippedAdam arguments (default ``{"lr": 0.01, "clip_norm": 10.0}``) or an optimiser.
    loss : str or pyro.infer.ELBO, default="Trace_ELBO"
        ``"Trace_ELBO"``, ``"TraceEnum_ELBO"`` or ``"TraceMeanField_ELBO"``.
    num_particles : int, default=1
    vectorize_particles : bool, default=False
    max_plate_nesting : int, optional
        Needed by ``TraceEnum_ELBO`` and vectorised particles; guessed when omitted.
    tol : float, optional
        Stop when ``|mean(L_new) - mean(L_old)| / |mean(L_old)| < tol`` for the mean
        losses of the last two windows of ``window`` steps. ``None``: run ``num_steps``.
    window : int, default=50
        Smoothing window of the stopping rule.
    min_steps : int, default=0
        Never stop before this many steps.
    random_state : None, int or RandomState
        Seeds Pyro's sampling (``random``, numpy and torch, restored after the fit).
        ``None`` leaves the global generators as they are (not reproducible).
    verbose : int, default=0
        2 shows a progress bar (1 as well, for more than 50 steps).
    scope : ParamScope, optional
        Continue from these parameters (warm start); a new empty scope by default.
    guide_kwargs : dict, optional
        Arguments of the autoguide's constructor.
    num_threads : int or None, default=1
        torch intra-op threads during the fit (restored afterwards); small Pyro steps run
        faster on one thread. ``None`` keeps the current setting.
    desc : str
        Label of the progress bar and of error messages.

    Returns
    -------
    SVIResult

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or infinite; the message names the step.

    Examples
    --------
    A normal mean with a conjugate prior N(0, 1) and ten observations 2.2 of noise sd 0.3:
    the exact posterior mean is ``(10 * 2.2 / 0.09) / (1 + 10 / 0.09) = 2.1804``.

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):
    ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("obs", dist.Normal(mu, 0.3), obs=x)
    >>> x = torch.full((10,), 2.2)
    >>> res = fit_svi(model, "normal", x, num_steps=600, optim={"lr": 0.05, "lrd": 0.02 ** (1 / 600)},
    ...               random_state=0)
    >>> bool(abs(res.params["AutoNormal.locs.mu"] - 2.1804) < 0.03)   # posterior sd 0.095
    True
    """
    num_steps = check_int(num_steps, "num_steps")
    if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number or None, got {tol!r}")
    window = check_int(window, "window")
    elbo = make_elbo(loss, num_particles=num_particles, vectorize_particles=vectorize_particles,
                     max_plate_nesting=max_plate_nesting)
    enumerated = isinstance(elbo, TraceEnum_ELBO)
    if enumerated:
        model = config_enumerate(model, default="parallel")
    pyro_optim = _make_optim(optim)
    args, kwargs = model_args(data)
    scope = ParamScope() if scope is None else scope
    losses = []
    converged = False
    with pyro_lock, torch_threads(num_threads), forked_rng(random_state), scope:
        guide_fn = make_guide(guide, model, enumerated=enumerated, **(guide_kwargs or {}))
        svi = SVI(model, guide_fn, pyro_optim, loss=elbo)
        t0 = time.perf_counter()
        with progress_bar(int(num_steps), verbose, desc) as bar:
            for step in range(1, int(num_steps) + 1):
                try:
                    value = svi.step(*args, **kwargs)
                except torch.linalg.LinAlgError as exc:
                    raise FloatingPointError(
                        f"{desc}: a matrix of the model or guide stopped being positive definite at step {step} "
                        f"({str(exc).splitlines()[0]}); lower the learning rate or check the data for extreme values"
                    ) from exc
                except ValueError as exc:
                    # Pyro's argument validation reports NaN (or otherwise invalid) parameters
                    # of a distribution: the parameters left their domain during the previous step.
                    text = str(exc).lower()
                    if "nan" not in text and "invalid values" not in text:
                        raise
                    raise FloatingPointError(
                        f"{desc}: invalid (NaN) values appeared in the model or guide at step {step} "
                        f"({str(exc).splitlines()[0]}); lower the learning rate or check the data for extreme values"
                    ) from exc
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"{desc}: the ELBO became {value} at step {step}; lower the learning rate, check the "
                        "data for extreme values or give the guide a smaller initial scale"
                    )
                losses.append(value)
                bar.update(1)
                if tol is not None and step >= max(2 * window, min_steps):
                    old = float(np.mean(losses[-2 * window:-window]))
                    new = float(np.mean(losses[-window:]))
                    if abs(new - old) <= tol * max(abs(old), np.finfo(float).tiny):
                        converged = True
                        break
        seconds = time.perf_counter() - t0
    params = {name: value.cpu().numpy() for name, value in scope.constrained().items()}
    for name, value in params.items():
        if not np.all(np.isfinite(value)):
            raise FloatingPointError(f"{desc}: parameter {name!r} is not finite after step {len(losses)}")
    return SVIResult(params=params, elbo_history=-np.asarray(losses, dtype=np.float64), n_steps=len(losses),
                     converged=converged, scope=scope, guide=guide_fn, seconds=seconds,
                     loss_name=type(elbo).__name__)
