"""hmmlearn's base layer: its convergence monitor, its calling conventions, and ``BaseHMM``.

Every class of :mod:`probkit.compat.hmmlearn` is a probkit estimator with
:class:`_HMMLearnAPI` in front of it. The mixin changes *how* the estimator is called,
never *what* it computes: each public method validates or converts its arguments the
way hmmlearn does and then runs the probkit method it wraps.

hmmlearn's conventions that differ from probkit's:

* ``fit(X, lengths)``, ``score(X, lengths)``: ``lengths`` is positional (probkit keeps
  the second slot for scikit-learn's ``y``);
* ``score_samples`` returns ``(log_prob, posteriors)``;
* ``monitor_`` exists from construction; a monitor assigned before ``fit`` receives the
  fit's objective values (and prints them when its ``verbose`` is set);
* ``init_params`` overwriting a parameter set by hand logs a warning, and so does
  fitting more free parameters than there are data values;
* ``covars_`` of the Gaussian models reads back as full matrices (the compact array is
  ``_covars_``), and ``n_features`` can be assigned;
* ``_init(X, lengths)`` and ``_check()`` exist (hmmlearn's tests and some user code call
  them).

The probkit methods keep their own conventions inside: while one runs, ``covars_``
holds the compact covariances probkit reads and writes (:meth:`_HMMLearnAPI._probkit_call`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import string
import sys

import numpy as np
import torch
from sklearn.utils import check_array

from probkit.hmm import BaseHMM as _ProbkitBaseHMM
from probkit.hmm._docs import HMM_DOCS
from probkit.utils._array import to_numpy
from probkit.utils.monitor import ConvergenceMonitor as _ProbkitConvergenceMonitor
from probkit.utils.random import check_random_state

__all__ = ["BaseHMM", "ConvergenceMonitor", "DECODER_ALGORITHMS"]

_log = logging.getLogger(__name__)

#: Supported decoder algorithms (hmmlearn's name for them).
DECODER_ALGORITHMS = frozenset(("viterbi", "map"))

_SQRT_EPS = np.finfo(float).eps ** 0.5


def _signature_constraints(probkit_class, init):
    """``probkit_class``'s ``_parameter_constraints`` for the parameters of ``init`` (a compat
    class's ``__init__``, hmmlearn's signature): probkit's options that hmmlearn lacks
    (``n_init``, ``device``, ...) are not parameters there, and hmmlearn's are all probkit's.
    """
    names = [name for name in inspect.signature(init).parameters if name != "self"]
    return {name: probkit_class._parameter_constraints[name] for name in names}


class ConvergenceMonitor(_ProbkitConvergenceMonitor):
    """hmmlearn's convergence monitor: records the objective of each EM iteration.

    Same constructor, attributes (``tol``, ``n_iter``, ``verbose``, ``history``, ``iter``)
    and reports as ``hmmlearn.base.ConvergenceMonitor``. ``converged`` uses the signed
    gain, as hmmlearn: a decrease of the objective counts as converged, and it logs a
    warning when the objective decreases by more than floating-point noise.

    Subclass it and override ``converged`` to change what ``converged`` reports (as in
    hmmlearn's documentation); the fit itself stops when the gain falls below the
    estimator's ``tol`` or after ``n_iter`` iterations.

    Parameters
    ----------
    tol : float
        Convergence threshold on the gain of the objective.
    n_iter : int
        Maximum number of iterations.
    verbose : bool
        Print one line per iteration to ``sys.stderr``.

    Examples
    --------
    >>> m = ConvergenceMonitor(tol=1e-2, n_iter=10, verbose=False)
    >>> for log_prob in [-10.0, -9.0, -8.995]:
    ...     m.report(log_prob)
    >>> m.iter, m.converged
    (3, True)
    """

    _template = "{iter:>10d} {log_prob:>16.8f} {delta:>+16.8f}"

    def __init__(self, tol, n_iter, verbose):
        super().__init__(tol, n_iter, verbose)

    def report(self, log_prob):
        """Record the objective of one iteration (printed to ``sys.stderr`` when verbose)."""
        if self.verbose:
            delta = log_prob - self.history[-1] if self.history else np.nan
            print(self._template.format(iter=self.iter + 1, log_prob=log_prob, delta=delta), file=sys.stderr)
        if self.history and (log_prob - self.history[-1]) < -_SQRT_EPS:
            _log.warning("Model is not converging.  Current: %s is not greater than %s. Delta is %s",
                         log_prob, self.history[-1], log_prob - self.history[-1])
        self.history.append(log_prob)
        self.iter += 1

    def _reset(self):
        """Forget the recorded iterations (hmmlearn calls this at the start of every fit)."""
        self.iter = 0
        self.history = []

    @property
    def converged(self):
        """Whether ``n_iter`` iterations ran or the last gain is below ``tol`` (signed)."""
        return self.iter == self.n_iter or (
            len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol)


def _letters(value):
    return "".join(dict.fromkeys(value))


class _HMMLearnAPI:
    """hmmlearn's calling conventions in front of a probkit HMM (see the module docstring).

    Subclasses put this mixin first in their bases and the probkit estimator second.
    """

    #: hmmlearn parameter letter -> probkit parameter letter (letters not listed map to themselves).
    _letter_map: dict = {}
    #: Whether ``init_params`` is handled by hmmlearn's recipe in :meth:`_init` (then probkit
    #: receives ``init_params=""`` and reads every starting value from the attributes).
    _hmmlearn_initialises = False
    #: Whether ``fit`` and ``_init`` check ``X`` with :meth:`_check_and_set_n_features` first
    #: (hmmlearn's input rules for symbols and counts).
    _checks_input_on_fit = False

    def _hmmlearn_setup(self):
        """The end of every compat ``__init__``: hmmlearn creates ``monitor_`` with the model."""
        self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)

    # ------------------------------------------------------------------ probkit-side calls
    def _in_probkit(self):
        return self.__dict__.get("_probkit_depth", 0) > 0

    def _hmmlearn_letters(self):
        """``(params, init_params)`` as the user set them (also while a probkit method runs)."""
        return self.__dict__.get("_hmmlearn_letters_saved") or (self.params, self.init_params)

    def _translate(self, letters):
        return _letters("".join(self._letter_map.get(c, c) for c in letters))

    @contextlib.contextmanager
    def _probkit_call(self):
        """Run probkit code: probkit's parameter letters, compact ``covars_``, a silent monitor.

        hmmlearn's monitor (``monitor_``) prints the objective itself, so the probkit fit
        runs with ``verbose=False``. Re-entrant; the attributes are restored on exit, also
        when the probkit method raises.
        """
        depth = self.__dict__.get("_probkit_depth", 0)
        if depth == 0:
            saved = (self.params, self.init_params, self.verbose)
            self.__dict__["_hmmlearn_letters_saved"] = (self.params, self.init_params)
            if isinstance(self.params, str):
                self.params = self._translate(self.params)
            if isinstance(self.init_params, str):
                self.init_params = "" if self._hmmlearn_initialises else self._translate(self.init_params)
            self.verbose = False
        self.__dict__["_probkit_depth"] = depth + 1
        try:
            yield
        finally:
            self.__dict__["_probkit_depth"] = depth
            if depth == 0:
                self.params, self.init_params, self.verbose = saved
                del self.__dict__["_hmmlearn_letters_saved"]

    # ------------------------------------------------------------------ input conversion
    def _hmmlearn_X(self, X):
        """``X`` as hmmlearn's ``check_array`` returns it (lists become arrays)."""
        if isinstance(X, torch.Tensor):
            X = to_numpy(X)
        return check_array(X)

    @staticmethod
    def _hmmlearn_lengths(lengths):
        # hmmlearn's ``_init(X, lengths)`` ignores a scalar ``lengths`` (its tests pass ``len(X)``).
        return None if lengths is None or np.ndim(lengths) == 0 else lengths

    def _check_and_set_n_features(self, X):
        """Check ``X`` has ``n_features`` columns, or set ``n_features`` from it (hmmlearn's hook)."""
        n_features = np.shape(X)[1]
        if hasattr(self, "n_features") and self.n_features is not None:
            if self.n_features != n_features:
                raise ValueError(f"Unexpected number of dimensions, got {n_features} but expected "
                                 f"{self.n_features}")
        else:
            self.n_features = n_features

    def _sync_n_features(self):
        """Set ``n_features`` from the parameters, as hmmlearn's ``_check`` does (no-op by default)."""

    # ------------------------------------------------------------------ hmmlearn's hooks
    @staticmethod
    def _warn_overwrite(code, name):
        _log.warning("Even though the %r attribute is set, it will be overwritten during initialization "
                     "because 'init_params' contains %r", name, code)

    def _needs_init(self, code, name):
        if code in self.init_params and hasattr(self, name):
            self._warn_overwrite(code, name)
        return super()._needs_init(code, name)

    def _n_fit_scalars(self):
        counts = self._n_parameters()
        return sum(counts.get(letter, 0) for letter in set(self.params))

    def _warn_if_degenerate(self, X):
        n_fit_scalars = self._n_fit_scalars()
        if np.size(X) < n_fit_scalars:
            _log.warning("Fitting a model with %d free scalar parameters with only %d data points will result "
                         "in a degenerate solution.", n_fit_scalars, np.size(X))

    def _em_initialize(self, data, random_state):
        super()._em_initialize(data, random_state)
        self._warn_if_degenerate(data.X)

    def _init(self, X, lengths=None):
        """Initialise the parameters named in ``init_params`` (and any not set) from ``X``, as ``fit`` does."""
        self._validate_params()
        X = self._hmmlearn_X(X)
        if self._checks_input_on_fit:
            self._check_and_set_n_features(X)
        lengths = self._hmmlearn_lengths(lengths)
        with self._probkit_call():
            self._check_options()
            data = self._validate_sequences(X, lengths, reset=True)
            self._em_initialize(data, check_random_state(self.random_state))
        self._sync_n_features()

    def _check(self):
        """Validate the parameters (hmmlearn's hook): ``ValueError`` naming what is wrong."""
        self._validate_params()
        with self._probkit_call():
            self._check_options()
            for name in ("startprob_", "transmat_"):
                if hasattr(self, name):
                    setattr(self, name, np.asarray(getattr(self, name)))
            super()._check()
        self._sync_n_features()

    # ------------------------------------------------------------------ public API
    def fit(self, X, lengths=None):
        """Estimate the parameters with EM (hmmlearn's signature: ``lengths`` positional).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Sequences stacked along the first axis.
        lengths : array-like of int, optional
            Lengths of the sequences in ``X``; they sum to ``n_samples``.

        Returns
        -------
        self
        """
        # the constructor options as the user set them, before X and lengths are read (inside the
        # probkit fit the parameter letters are translated and verbose is silenced)
        self._validate_params()
        X = self._hmmlearn_X(X)
        if self._checks_input_on_fit:
            self._check_and_set_n_features(X)
        monitor = self.__dict__.get("monitor_")
        if monitor is None:
            monitor = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
        with self._probkit_call():
            super().fit(X, lengths=lengths)
        # The probkit fit leaves its own record in monitor_; hand the values to the user's monitor.
        history = list(getattr(self.monitor_, "history", []))
        self.monitor_ = monitor
        monitor._reset()
        for value in history:
            monitor.report(value)
        self._sync_n_features()
        return self

    def score(self, X, lengths=None):
        """Total log-likelihood of the sequences in ``X``.

        Returns
        -------
        log_prob : float
        """
        with self._probkit_call():
            return super().score(self._hmmlearn_X(X), lengths=lengths)

    def score_samples(self, X, lengths=None):
        """Log-likelihood of ``X`` and the posterior probability of each state at each step.

        Returns
        -------
        log_prob : float
        posteriors : ndarray of shape (n_samples, n_components)
        """
        X = self._hmmlearn_X(X)
        return self.score(X, lengths), self.predict_proba(X, lengths)

    def predict_proba(self, X, lengths=None):
        """Posterior probability of each state at each step.

        Returns
        -------
        posteriors : ndarray of shape (n_samples, n_components)
        """
        with self._probkit_call():
            return super().predict_proba(self._hmmlearn_X(X), lengths=lengths)

    def decode(self, X, lengths=None, algorithm=None):
        """Most likely state sequence, by ``algorithm`` ("viterbi" or "map", default ``self.algorithm``).

        Returns
        -------
        log_prob : float
        state_sequence : ndarray of shape (n_samples,)
        """
        with self._probkit_call():
            return super().decode(self._hmmlearn_X(X), lengths=lengths, algorithm=algorithm)

    def predict(self, X, lengths=None):
        """Most likely state of each step (decoded with ``self.algorithm``).

        Returns
        -------
        state_sequence : ndarray of shape (n_samples,)
        """
        return self.decode(X, lengths)[1]

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw ``n_samples`` steps of one sequence.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        state_sequence : ndarray of shape (n_samples,)
        """
        with self._probkit_call():
            return super().sample(n_samples, random_state=random_state, currstate=currstate)

    def get_stationary_distribution(self):
        """Stationary distribution of the state chain.

        Returns
        -------
        ndarray of shape (n_components,)
        """
        with self._probkit_call():
            return super().get_stationary_distribution()

    def aic(self, X, lengths=None):
        """Akaike information criterion of the model on ``X`` (lower is better)."""
        with self._probkit_call():
            return super().aic(self._hmmlearn_X(X), lengths=lengths)

    def bic(self, X, lengths=None):
        """Bayesian information criterion of the model on ``X`` (lower is better)."""
        with self._probkit_call():
            return super().bic(self._hmmlearn_X(X), lengths=lengths)


class _CallbackEmission:
    """Emission model of :class:`BaseHMM`: per-state log-likelihoods from the subclass's method."""

    def __init__(self, model):
        self.model = model

    def log_prob(self, x):
        values = np.asarray(self.model._compute_log_likelihood(to_numpy(x)), dtype=np.float64)
        if values.shape != (x.shape[0], self.model.n_components):
            raise ValueError(f"_compute_log_likelihood must return shape ({x.shape[0]}, "
                             f"{self.model.n_components}), got {values.shape}")
        return torch.as_tensor(values, dtype=x.dtype, device=x.device)

    def summarize(self, x, post):
        return None


@HMM_DOCS.fill
class BaseHMM(_HMMLearnAPI, _ProbkitBaseHMM):
    """hmmlearn's ``BaseHMM``: an HMM whose emissions a subclass defines.

    A subclass implements ``_compute_log_likelihood(X)`` (or ``_compute_likelihood(X)``),
    returning the ``(n_samples, n_components)`` emission log-likelihoods (likelihoods),
    and optionally ``_generate_sample_from_state(state, random_state)``. Scoring,
    decoding, posteriors and sampling then run on probkit's kernels, and ``fit`` learns
    ``startprob_`` and ``transmat_`` with the emissions held fixed. hmmlearn's
    statistics hooks (``_initialize_sufficient_statistics``,
    ``_accumulate_sufficient_statistics``, ``_do_mstep``) are not called: a subclass that
    defines them is refused by ``fit`` rather than fitted without them. For emissions
    learned by EM use :class:`probkit.HMM` with a probkit family.

    Parameters
    ----------
    %(n_components)s
    %(hmm_options)s
    params, init_params : str, default=string.ascii_letters
        Letters of the parameters updated by ``fit`` / initialised before it (``s`` start,
        ``t`` transitions; the emissions are the subclass's and stay fixed).

    Examples
    --------
    >>> import numpy as np
    >>> class FixedEmissions(BaseHMM):
    ...     def _compute_log_likelihood(self, X):
    ...         return X          # each column: log p(x_t | state)
    >>> model = FixedEmissions(2)
    >>> model.startprob_ = np.array([0.5, 0.5])
    >>> model.transmat_ = np.array([[0.7, 0.3], [0.3, 0.7]])
    >>> log_frameprob = np.log([[0.9, 0.2], [0.9, 0.2], [0.1, 0.8], [0.9, 0.2], [0.9, 0.2]])
    >>> log_prob, posteriors = model.score_samples(log_frameprob)
    >>> round(log_prob, 4)
    -3.3725
    >>> model.predict(log_frameprob)
    array([0, 0, 1, 0, 0])
    """

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, algorithm="viterbi",
                 random_state=None, n_iter=10, tol=1e-2, verbose=False, params=string.ascii_letters,
                 init_params=string.ascii_letters, implementation="log"):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior,
                         transmat_prior=transmat_prior, algorithm=algorithm, random_state=random_state,
                         n_iter=n_iter, tol=tol, verbose=verbose, params=params, init_params=init_params,
                         implementation=implementation)
        self._hmmlearn_setup()

    _parameter_constraints = _signature_constraints(_ProbkitBaseHMM, __init__)

    def _compute_log_likelihood(self, X):
        return self._from_subclass_hook("_compute_likelihood", np.log, X)

    def _compute_likelihood(self, X):
        return self._from_subclass_hook("_compute_log_likelihood", np.exp, X)

    def _from_subclass_hook(self, hook, convert, X):
        """``convert`` of what the subclass's ``hook`` returns for ``X`` (each of the two
        emission hooks is answered from the other, which the subclass implements)."""
        if getattr(type(self), hook) is getattr(BaseHMM, hook):
            raise NotImplementedError(f"{type(self).__name__} must implement _compute_log_likelihood(X) "
                                      "or _compute_likelihood(X)")
        # a zero likelihood has log-likelihood -inf, and a tiny one underflows to 0: both intended
        with np.errstate(divide="ignore", under="ignore"):
            return convert(getattr(self, hook)(X))

    def _generate_sample_from_state(self, state, random_state):
        return ()

    # probkit's emission hooks, answered from the hmmlearn-style methods
    def _validate_emission_X(self, X, reset, allow_nan):
        return self._validate_X(X, reset=reset)

    def _check_emission(self):
        pass

    def _emission_model(self, like):
        return _CallbackEmission(self)

    def _init_emission(self, data, random_state):
        pass

    def _mstep_emission(self, stats, post_sum):
        pass

    def _emission_n_parameters(self):
        return {}

    def _sample_emissions(self, states, rng):
        draws = [np.atleast_1d(np.asarray(self._generate_sample_from_state(int(s), rng), dtype=np.float64))
                 for s in states]
        return np.asarray(draws).reshape(len(states), -1)

    def fit(self, X, lengths=None):
        """Learn ``startprob_`` and ``transmat_`` by EM, the emissions held fixed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int, optional

        Returns
        -------
        self
        """
        hooks = [name for name in ("_initialize_sufficient_statistics", "_accumulate_sufficient_statistics",
                                   "_do_mstep") if hasattr(type(self), name)]
        if hooks:
            raise TypeError(f"{type(self).__name__} defines hmmlearn's statistics hooks {hooks}, which probkit "
                            "does not call; fit emissions with probkit.HMM(emission=...) or an emission class "
                            "of probkit.compat.hmmlearn.hmm")
        return super().fit(X, lengths)
