"""BaseHMM: Baum-Welch on the generic EM engine, with hmmlearn's names and habits.

The E-step is the forward-backward kernel of :mod:`probkit.inference` over all sequences
at once; the M-step re-estimates the start and transition distributions (Dirichlet MAP,
structural zeros kept) and hands the emission statistics to the emission model.
Subclasses describe their emission model through a few hooks (see :class:`BaseHMM`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
from scipy import linalg
from sklearn.exceptions import NotFittedError
from sklearn.utils._available_if import available_if

from probkit.base import COMPUTE_CONSTRAINTS, ProbkitEstimator, StrOptions, non_negative_int, positive_int
from probkit.distributions.dirichlet import dirichlet_map_rows
from probkit.em.engine import EStepResult, fit_sequence_em
from probkit.em.online import DEFAULT_LEARNING_DECAY, DEFAULT_LEARNING_OFFSET, StepwiseEM, check_schedule
from probkit.hmm._docs import HMM_DOCS
from probkit.inference import sample_markov_chain
from probkit.inference._decoding import DECODER_ALGORITHMS, map_decode, resolve_decoder
from probkit.inference._lazy_numba import numba_backend
from probkit.inference.concatenated import ForwardBackwardResult, _forward_backward, _forward_filter, _viterbi
from probkit.utils._array import to_numpy
from probkit.utils.monitor import ConvergenceMonitor
from probkit.utils.random import check_random_state
from probkit.utils.sequences import check_sequences, check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import (
    check_int,
    check_nonnegative_integers,
    check_parameters_set,
    check_probabilities,
    check_stochastic,
)
from probkit.utils._warnings import warn_user

__all__ = ["BaseHMM", "HMMData", "EmptyStateWarning", "SequenceEMMixin"]

IMPLEMENTATIONS = ("log", "scaling")
MISSING_MODES = ("error", "marginalize")


class EmptyStateWarning(UserWarning):
    """A state received no expected data; its parameters were kept from the previous iteration."""


@dataclass
class HMMData:
    """Validated sequences as the EM hooks see them (checked once per public call).

    ``x``, ``observed`` and ``label_mask`` are numpy arrays on the CPU fast path (float64,
    numba kernels) and torch tensors on the compute device otherwise.
    """

    X: np.ndarray                  # (n_samples, n_features) numpy, NaN where missing
    x: object                      # the same, NaN replaced by 0, as numpy float64 or a torch tensor
    lengths: np.ndarray            # (n_sequences,)
    observed: object               # (n_samples, n_features) bool, None when nothing is missing
    label_mask: object             # (n_samples, K) 0 / -inf from state_labels, None without labels

    @property
    def numpy(self):
        return isinstance(self.x, np.ndarray)


def _log_probs(p):
    """``log p`` with ``log 0 = -inf`` (structural zeros), without numpy's divide warning."""
    p = np.asarray(p, dtype=np.float64)
    if p.min() > 0:
        return np.log(p)
    with np.errstate(divide="ignore"):
        return np.log(p)


def _normalize_rows(counts, previous, name):
    """Normalise rows of non-negative counts; a row with no mass keeps its previous values."""
    sums = counts.sum(-1, keepdims=True)
    if sums.min() > 0:
        return counts / sums
    out = np.where(sums > 0, counts / np.where(sums > 0, sums, 1.0), previous)
    _warn_empty_rows(name, int((sums.reshape(-1) == 0).sum()))
    return out


def _check_log_likelihoods(ll):
    """Refuse an E-step in which some sequence is impossible (its log-likelihood is not finite)."""
    if not np.isfinite(ll).all():
        bad = int(np.flatnonzero(~np.isfinite(ll))[0])
        raise ValueError(
            f"sequence {bad} has zero probability under the current parameters (a structural zero or a "
            "state label makes it impossible)"
        )


def _warn_empty_rows(name, n_empty):
    if n_empty:
        warn_user(
            f"{name}: {n_empty} row(s) received no expected counts and kept their previous values "
            "(a state that is never visited)",
            EmptyStateWarning
        )


def _filled(value, shape):
    """A new C-contiguous float64 array of ``shape`` holding ``value`` broadcast (``ValueError``
    where it does not broadcast)."""
    out = np.empty(shape)
    out[...] = value
    return out


def _fused_chain_priors(model, k):
    """The start and transition priors of an HMM as the (1, K) and (K, K) arrays of the
    whole-iteration kernels, or ``None`` for prior shapes that only the general path
    broadcasts."""
    start_prior = np.asarray(model.startprob_prior, dtype=np.float64)
    trans_prior = np.asarray(model.transmat_prior, dtype=np.float64)
    if start_prior.ndim > 1 or trans_prior.ndim > 2:
        return None
    try:
        return {"start_prior": _filled(start_prior, (1, k)), "trans_prior": _filled(trans_prior, (k, k))}
    except ValueError:
        return None


# The hooks a whole-iteration kernel (``_em_fused_iteration``) stands in for.
_FUSED_HOOKS = ("_em_expectation", "_em_maximization", "_mstep_emission", "_emission_model", "_log_emission",
                "_log_start_trans", "_forward_backward")


def _replaces_fused_hooks(model, owner):
    """Whether ``model``'s class replaces one of the hooks that ``owner``'s whole-iteration
    kernel stands in for: then the kernel would not compute what the model defines, and
    the general path runs."""
    cls = type(model)
    return any(getattr(cls, hook) is not getattr(owner, hook) for hook in _FUSED_HOOKS)

class SequenceEMMixin:
    """What the sequence models fitted by :func:`~probkit.em.engine.fit_sequence_em` share.

    The engine's snapshot hooks over the fitted attributes (``n_init`` keeps the best
    run), the ``init_params`` rule, the check of fitted or hand-set parameters, and the
    information criteria from ``score`` and the subclass's ``_n_parameters()`` (free
    parameters by letter).

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import PoissonHMM
    >>> X = np.random.RandomState(0).poisson(3.0, size=(200, 1))
    >>> model = PoissonHMM(2, random_state=0).fit(X)
    >>> isinstance(model, SequenceEMMixin)
    True
    >>> n_free = sum(model._n_parameters().values())      # 1 start + 2 transition + 2 rates
    >>> bool(np.isclose(model.bic(X) - model.aic(X), n_free * (np.log(200) - 2)))
    True
    """

    #: Constraints of the options stored by ``__init__`` (each subclass adds its own).
    _parameter_constraints = {
        "n_components": positive_int,
        # Real first: the cheaper check, and the one the default scalars pass
        "startprob_prior": [Real, "array-like"],
        "transmat_prior": [Real, "array-like"],
        "algorithm": [StrOptions(set(DECODER_ALGORITHMS))],
        "random_state": ["random_state"],
        "n_iter": non_negative_int,
        "tol": [Real],  # any real: tol=-inf runs every iteration
        "n_init": positive_int,
        "verbose": ["verbose"],
        "params": [str],
        "init_params": [str],
    }

    def __init__(self, *, n_components, startprob_prior, transmat_prior, algorithm, random_state, n_iter, tol,
                 n_init, verbose, params, init_params):
        # The options of the chain and of the EM loop, stored once for every sequence model
        # (each subclass's own ``__init__`` names them, with its defaults, for scikit-learn's get_params).
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.n_init = n_init
        self.verbose = verbose
        self.params = params
        self.init_params = init_params

    def _sampling_start(self, n_samples, currstate):
        """``(n_samples, start)`` of ``sample``: the checked number of steps and the distribution of the
        first state (``startprob_``, or all of its mass on ``currstate``)."""
        n_samples = check_int(n_samples, "n_samples")
        k = self.n_components
        if currstate is None:
            return n_samples, np.asarray(self.startprob_, dtype=np.float64)
        currstate = check_int(currstate, "currstate", minimum=0)
        if currstate >= k:
            raise ValueError(f"currstate must be an integer in [0, {k}), got {currstate!r}")
        return n_samples, np.eye(k)[currstate]

    def _needs_init(self, code, name):
        """Whether EM initialises the parameter ``name`` (letter ``code``): named in ``init_params``, or unset."""
        return code in self.init_params or not hasattr(self, name)

    def _check_fitted_or_set(self):
        self._check_options()
        self._check()

    def _training_sequences(self, X, y, lengths, **options):
        """How every ``fit`` starts: nothing in scikit-learn's ``y`` slot, valid constructor
        options, and the training sequences validated (``options``: the subclass's extra
        arguments of ``_validate_sequences``, e.g. ``state_labels``)."""
        check_y_slot(self, "fit", X, y)
        self._check_options()
        return self._validate_sequences(X, lengths, reset=True, training=True, **options)

    def _em_get_state(self):
        return {k: v for k, v in vars(self).items()
                if k.endswith("_") and not k.startswith("__") and k != "monitor_"}

    def _em_set_state(self, state):
        for k, v in state.items():
            setattr(self, k, v)

    @keyword_lengths
    def aic(self, X, *, lengths=None):
        """Akaike information criterion: ``-2 log L + 2 n_free_parameters`` (lower is better)."""
        return -2 * self.score(X, lengths=lengths) + 2 * sum(self._n_parameters().values())

    @keyword_lengths
    def bic(self, X, *, lengths=None):
        """Bayesian information criterion: ``-2 log L + n_free_parameters log(n_samples)`` (lower is better)."""
        n = check_sequences(X, lengths).n_samples
        return -2 * self.score(X, lengths=lengths) + sum(self._n_parameters().values()) * np.log(n)


@HMM_DOCS.fill
class BaseHMM(SequenceEMMixin, ProbkitEstimator):
    """Hidden Markov model base class: Baum-Welch EM, decoding, scoring and sampling.

    The parameters shared by every HMM keep hmmlearn's names and order.

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states.
    %(hmm_options)s
    params, init_params : str, default=string.ascii_letters
        Letters of the parameters updated by EM / initialised before it (``s`` start,
        ``t`` transitions, and emission letters of the subclass).
    missing : {"error", "marginalize"}, default="error"
        ``"marginalize"``, where the subclass's emission evaluates each feature on its
        own: NaN features drop out of a step's likelihood and of the statistics.

    Attributes
    ----------
    %(chain_attrs)s
    %(fit_attrs)s

    Notes
    -----
    Subclass hooks: ``_emission_letters``, ``_validate_emission_X``, ``_init_emission``,
    ``_check_emission``, ``_emission_model``, ``_mstep_emission``,
    ``_sample_emissions``, ``_emission_n_parameters``.
    """

    _parameter_constraints = {
        **SequenceEMMixin._parameter_constraints,
        "implementation": [StrOptions(set(IMPLEMENTATIONS))],
        "missing": [StrOptions(set(MISSING_MODES))],
        **COMPUTE_CONSTRAINTS,
    }

    _emission_letters = ""
    _supports_missing = False
    # The running statistics of partial_fit are not saved: a loaded model starts a new online run.
    _io_exclude = ("_stepwise",)
    #: Whether the emission model also runs on numpy arrays (the CPU float64 fast path).
    _numpy_emissions = False

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, algorithm="viterbi",
                 random_state=None, n_iter=10, tol=1e-2, n_init=1, verbose=False, params=string.ascii_letters,
                 init_params=string.ascii_letters, implementation="scaling", missing="error", device=None,
                 dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior, transmat_prior=transmat_prior,
                         algorithm=algorithm, random_state=random_state, n_iter=n_iter, tol=tol, n_init=n_init,
                         verbose=verbose, params=params, init_params=init_params)
        self.implementation = implementation
        self.missing = missing
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ validation
    def _check_options(self):
        """The constraints (``_parameter_constraints``), then what depends on several parameters."""
        self._validate_params()
        if self.missing == "marginalize" and not self._marginalizes_missing():
            raise ValueError(
                f"missing='marginalize' is not supported by {type(self).__name__} with these options; "
                "it needs a per-feature emission (diag/spherical Gaussian, Poisson, or a product family)"
            )
        allowed = set("st" + self._emission_letters)
        for name in ("params", "init_params"):
            value = getattr(self, name)
            if value != string.ascii_letters:
                unknown = sorted(set(value) - allowed)
                if unknown:
                    raise ValueError(
                        f"{name} has unknown letters {unknown}; {type(self).__name__} knows {sorted(allowed)}"
                    )

    def _marginalizes_missing(self):
        return self._supports_missing

    def _validate_counts_X(self, X, reset, allow_nan=False):
        """Rows of counts or symbols: non-negative integers (NaN where missing, if allowed), as float64."""
        X = self._validate_X(X, reset=reset, dtype="numeric", ensure_all_finite="allow-nan" if allow_nan else True)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X must be numeric, got dtype {X.dtype}")
        finite = X[~np.isnan(X)] if (allow_nan and X.dtype.kind == "f") else X
        check_nonnegative_integers(finite, "X")
        return X.astype(np.float64)

    def _missing_values_hint(self):
        if self.missing == "marginalize":
            return None
        if self._marginalizes_missing():
            return (f"{type(self).__name__} can sum missing values out of the likelihood: pass missing='marginalize'"
                    " (a NaN then contributes nothing to the likelihood or the statistics of its feature), or "
                    "impute them first.")
        return (f"{type(self).__name__} with these options cannot sum missing values out (missing='marginalize' "
                "needs a per-feature emission: diagonal or spherical GaussianHMM, PoissonHMM, or HMM with a scalar "
                "family or an Independent product); impute them first or drop those rows.")

    def _validate_sequences(self, X, lengths, *, reset, state_labels=None, training=False):
        allow_nan = self.missing == "marginalize"
        batch = check_sequences(X, lengths)
        X = self._validate_emission_X(batch.values, reset=reset, allow_nan=allow_nan)
        if training and X.shape[0] < max(2, self.n_components):
            raise ValueError(
                f"Expected n_samples >= max(2, n_components) to fit but got n_components = {self.n_components}, "
                f"n_samples = {X.shape[0]}"
            )
        lengths = batch.lengths
        device, dtype = self._compute_setup()
        use_numpy = (self._numpy_emissions and device.type == "cpu" and dtype == torch.float64
                     and numba_backend() is not None)
        x = np.ascontiguousarray(X, dtype=np.float64) if use_numpy else torch.as_tensor(X, dtype=dtype, device=device)
        observed = None
        if allow_nan:
            # A row with every feature missing is allowed: it constrains only the state chain.
            nan = np.isnan(X)
            if nan.any():
                if use_numpy:
                    observed = ~nan
                    x = np.where(observed, x, 0.0)
                else:
                    observed = torch.as_tensor(~nan, device=device)
                    x = torch.where(observed, x, torch.zeros((), dtype=x.dtype, device=device))
        label_mask = None
        if state_labels is not None:
            labels = np.asarray(state_labels)
            if labels.shape != (X.shape[0],):
                raise ValueError(f"state_labels must have shape ({X.shape[0]},), got {labels.shape}")
            if labels.dtype.kind not in "iu":
                raise TypeError(f"state_labels must hold integers (-1 for unknown), got dtype {labels.dtype}")
            if np.any(labels < -1) or np.any(labels >= self.n_components):
                raise ValueError(f"state_labels must be -1 (unknown) or in [0, {self.n_components}), got "
                                 f"values in [{labels.min()}, {labels.max()}]")
            mask = np.zeros((X.shape[0], self.n_components))
            known = labels >= 0
            mask[known] = -np.inf
            mask[np.flatnonzero(known), labels[known]] = 0.0
            label_mask = mask if use_numpy else torch.as_tensor(mask, dtype=dtype, device=device)
        return HMMData(X=X, x=x, lengths=lengths, observed=observed, label_mask=label_mask)

    def _check(self):
        """Validate the parameters (fitted or set by hand) before they are used."""
        k = self.n_components
        check_parameters_set(self, ("startprob_", "transmat_"))
        check_probabilities(self.startprob_, (k,), "startprob_")
        check_probabilities(self.transmat_, (k, k), "transmat_")
        self._check_emission()

    def _checked_state_rows(self, name):
        """The parameter ``name`` as a float64 ``(n_components, n_features)`` array, one row per state.

        Raises a ValueError naming ``name`` when it is not 2-D with ``n_components`` rows, or
        when a fitted model (``n_features_in_`` set) has a different number of columns.
        """
        values = np.asarray(getattr(self, name), dtype=np.float64)
        k = self.n_components
        if values.ndim != 2 or values.shape[0] != k:
            raise ValueError(f"{name} must have shape ({k}, n_features), got {values.shape}")
        if hasattr(self, "n_features_in_") and values.shape[1] != self.n_features_in_:
            raise ValueError(f"{name} has {values.shape[1]} features but the model was fitted on "
                             f"{self.n_features_in_}")
        return values

    def _io_check_state(self):
        """Check parameters restored by :func:`probkit.load` as hand-set ones are checked (once any is set)."""
        if hasattr(self, "startprob_") or hasattr(self, "transmat_"):
            self._check_fitted_or_set()

    # ------------------------------------------------------------------ E-step pieces
    @staticmethod
    def _as_like(a, like):
        """``a`` as a numpy float64 array (CPU fast path) or a tensor on ``like``'s device and dtype."""
        a = np.asarray(a, dtype=np.float64)
        return a if isinstance(like, np.ndarray) else torch.as_tensor(a, dtype=like.dtype, device=like.device)

    def _log_start_trans(self, like):
        return self._as_like(_log_probs(self.startprob_), like), self._as_like(_log_probs(self.transmat_), like)

    def _log_emission(self, data, model=None):
        model = self._emission_model(data.x) if model is None else model
        if data.observed is not None:
            log_emis = model.log_prob(data.x, data.observed)
        else:
            log_emis = model.log_prob(data.x)
        if data.label_mask is not None:
            log_emis = log_emis + data.label_mask
        return log_emis

    def _use_log(self):
        return self.implementation == "log"

    def _forward_backward(self, data, model=None):
        """Forward-backward on checked data (the kernels' private entry points: no re-validation)."""
        log_start, log_trans = self._log_start_trans(data.x)
        log_emis = self._log_emission(data, model)
        if data.numpy:
            loglik, post, xi, start, _ = numba_backend().forward_backward(
                log_start, log_trans, np.ascontiguousarray(log_emis), data.lengths, self._use_log())
            return ForwardBackwardResult(loglik, post, xi, start)
        return _forward_backward(log_start, log_trans, log_emis, data.lengths,
                                 "log" if self._use_log() else "scaling")

    def _forward_filter(self, data, log_emis, log_start=None):
        # log_start: the state distribution of every sequence's first step (startprob_ by default)
        default_start, log_trans = self._log_start_trans(data.x)
        log_start = default_start if log_start is None else self._as_like(log_start, data.x)
        if data.numpy:
            loglik, filtered, _ = numba_backend().forward(log_start, log_trans, np.ascontiguousarray(log_emis),
                                                          data.lengths, self._use_log())
            return loglik, filtered
        res = _forward_filter(log_start, log_trans, log_emis, data.lengths, "log" if self._use_log() else "scaling")
        return res.log_likelihood, res.filtered

    # ------------------------------------------------------------------ EM hooks
    def _em_initialize(self, data, random_state):
        k = self.n_components
        if self._needs_init("s", "startprob_"):
            self.startprob_ = random_state.dirichlet(np.full(k, 1.0 / k))
        if self._needs_init("t", "transmat_"):
            self.transmat_ = random_state.dirichlet(np.full(k, 1.0 / k), size=k)
        self._init_emission(data, random_state)
        self._check()

    def _em_expectation(self, data):
        model = self._emission_model(data.x)
        fused = None
        if data.numpy and data.observed is None and data.label_mask is None and hasattr(
                model, "forward_backward_and_summarize"):
            # small problems: forward-backward and the emission statistics in one compiled call
            log_start, log_trans = self._log_start_trans(data.x)
            fused = model.forward_backward_and_summarize(data.x, log_start, log_trans, data.lengths,
                                                         self._use_log())
        if fused is not None:
            (loglik, post, xi, start, _), emission_stats = fused
            fb = ForwardBackwardResult(loglik, post, xi, start)
        else:
            fb = self._forward_backward(data, model)
        ll = to_numpy(fb.log_likelihood)
        _check_log_likelihoods(ll)
        post = fb.posteriors
        if fused is None:
            if data.observed is not None:
                emission_stats = model.summarize(data.x, post, data.observed)
            else:
                emission_stats = model.summarize(data.x, post)
        stats = {"start": to_numpy(fb.expected_start), "trans": to_numpy(fb.expected_transitions),
                 "emission": emission_stats, "post_sum": post.sum(0)}
        return EStepResult(log_likelihood=float(ll.sum()), n_samples=float(data.X.shape[0]), stats=stats)

    def _em_maximization(self, stats):
        # Dirichlet MAP (prior - 1 + expected counts), structural zeros kept
        if "s" in self.params:
            self.startprob_, n_empty = dirichlet_map_rows(self.startprob_, stats["start"], self.startprob_prior)
            _warn_empty_rows("startprob_", n_empty)
        if "t" in self.params:
            self.transmat_, n_empty = dirichlet_map_rows(self.transmat_, stats["trans"], self.transmat_prior)
            _warn_empty_rows("transmat_", n_empty)
        self._mstep_emission(stats["emission"], stats["post_sum"])

    def _em_fused_iteration(self, data):
        """A callable running one whole EM iteration (E-step and M-step) at once, or ``None``.

        The EM engine calls it once per initialisation (without distributed all-reduce);
        models whose iteration has a faster fused form (a small Gaussian HMM: one compiled
        call) return it here, and the others use the two hooks above.
        """
        return None

    # ------------------------------------------------------------------ public API
    @limit_torch_threads
    def fit(self, X, y=None, *, lengths=None, state_labels=None):
        """Estimate the parameters with the Baum-Welch (EM) algorithm.

        Parameters
        ----------
        %(sequences)s
        state_labels : array-like of int of shape (n_samples,), optional
            Partial supervision: the known state of each step, or -1 where unknown.
            Labelled steps are constrained to their state in every E-step.

        Returns
        -------
        self
        """
        data = self._training_sequences(X, y, lengths, state_labels=state_labels)
        fit_sequence_em(self, data, check_random_state(self.random_state))
        return self

    def _fits_by_base_em(self):
        # Stepwise EM reuses the hooks of the base's Baum-Welch; an estimator with a fit of
        # its own (variational posteriors, another API) has no partial_fit.
        return type(self).fit is BaseHMM.fit

    @available_if(_fits_by_base_em)
    @limit_torch_threads
    def partial_fit(self, X, y=None, *, lengths=None, learning_offset=DEFAULT_LEARNING_OFFSET,
                    learning_decay=DEFAULT_LEARNING_DECAY):
        """One step of stepwise (online) Baum-Welch on a mini-batch of sequences.

        The running expected statistics -- start counts per sequence, transition counts
        and emission statistics per row -- are averaged with the batch's,
        ``s <- (1 - rho_t) s + rho_t s(batch) / n_batch``, and the parameters become the
        M-step of the statistics scaled to the rows (sequences) seen so far, with
        ``rho_t = (learning_offset + t) ** -learning_decay`` for the ``t``-th batch (see
        :mod:`probkit.em.online`). The first call initialises the parameters from its
        batch as ``fit`` does (``init_params``; parameters set by hand and left out of
        ``init_params`` are kept), unless the model has seen data (fitted, loaded, or
        used for prediction: ``n_features_in_`` is set): then it continues from its
        parameters. Parameters changed between two calls (a ``fit``, a hand-set value)
        start a new online run from them. Sequences do not continue across calls: every
        batch holds whole sequences.

        Parameters
        ----------
        %(sequences)s
        %(stepwise_options)s

        %(stepwise_returns)s

        Examples
        --------
        >>> import numpy as np
        >>> from probkit import GaussianHMM
        >>> truth = GaussianHMM(2)
        >>> truth.startprob_ = np.array([0.5, 0.5])
        >>> truth.transmat_ = np.array([[0.95, 0.05], [0.1, 0.9]])
        >>> truth.means_ = np.array([[-3.0], [3.0]])
        >>> truth.covars_ = np.array([[1.0], [1.0]])
        >>> model = GaussianHMM(2, random_state=0)
        >>> for seed in range(30):
        ...     X, _ = truth.sample(200, random_state=seed)
        ...     model = model.partial_fit(X)
        >>> np.round(np.sort(model.means_[:, 0]))
        array([-3.,  3.])
        >>> model.n_iter_, len(model.monitor_.history)
        (30, 30)
        """
        check_y_slot(self, "partial_fit", X, y)
        self._check_options()
        check_schedule(learning_offset, learning_decay, f"{type(self).__name__}.partial_fit")
        state = getattr(self, "_stepwise", None)
        resume = state is not None and state.owns(self)
        fitted = hasattr(self, "n_features_in_")
        data = self._validate_sequences(X, lengths, reset=not fitted, training=not resume)
        if not resume:
            state = StepwiseEM()
            if fitted:
                self._check()
            else:
                self._em_initialize(data, check_random_state(self.random_state))
            self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose, signed=True)
        units = {"start": float(len(data.lengths)), None: float(data.X.shape[0])}
        estep, _ = state.step(self, data, units, learning_offset=learning_offset, learning_decay=learning_decay)
        self.monitor_.report(estep.log_likelihood)
        self.n_iter_ = state.n_steps
        self.converged_ = False
        state.bind(self)
        self._stepwise = state
        return self

    def _filters_like_base(self):
        # The stream filter continues the base's forward pass row by row; a model whose rows
        # depend on earlier rows or on inputs (its own sequence validation) or that scores
        # otherwise (variational posteriors) has no filter_stream.
        cls = type(self)
        return cls._validate_sequences is BaseHMM._validate_sequences and cls.score is BaseHMM.score

    @available_if(_filters_like_base)
    def filter_stream(self):
        """A running forward filter: feed observations one at a time (or in blocks of rows).

        ``stream.update(x)`` returns the filtered state probabilities
        ``p(z_t | x_1..x_t)`` of the new steps and keeps the running log-likelihood
        ``log p(x_1..x_t)``: the same numbers as the forward pass over the whole sequence
        (:meth:`score`, :meth:`score_samples`), without keeping the past.

        Returns
        -------
        probkit.hmm.HMMStreamFilter

        Examples
        --------
        >>> import numpy as np
        >>> from probkit import PoissonHMM
        >>> model = PoissonHMM(2)
        >>> model.startprob_ = np.array([0.5, 0.5])
        >>> model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
        >>> model.lambdas_ = np.array([[1.0], [10.0]])
        >>> stream = model.filter_stream()
        >>> np.round(stream.update([12]), 4)
        array([0., 1.])
        >>> X = np.array([[12], [0], [1]])
        >>> _ = stream.update(X[1:])
        >>> bool(np.isclose(stream.log_likelihood, model.score(X)))
        True
        """
        from probkit.hmm._streaming import HMMStreamFilter

        return HMMStreamFilter(self)

    def _prepare_predict(self, X, lengths, state_labels=None):
        self._check_fitted_or_set()
        reset = not hasattr(self, "n_features_in_")
        return self._validate_sequences(X, lengths, reset=reset, state_labels=state_labels)

    @limit_torch_threads
    def score(self, X, y=None, *, lengths=None):
        """Total log-likelihood of the sequences in ``X`` (as hmmlearn's ``score``).

        %(sequences_to_log_likelihood)s
        """
        check_y_slot(self, "score", X, y)
        data = self._prepare_predict(X, lengths)
        with torch.no_grad():
            loglik, _ = self._forward_filter(data, self._log_emission(data))
        return float(to_numpy(loglik).sum())

    @keyword_lengths
    @limit_torch_threads
    def score_samples(self, X, *, lengths=None):
        """One-step predictive log-likelihood of each row, ``log p(x_t | x_1..x_{t-1})``.

        The rows of a sequence sum to its log-likelihood. (hmmlearn's ``score_samples``
        returns ``(score, posteriors)``; here ``score`` and :meth:`predict_proba` give those.)

        Returns
        -------
        log_prob : numpy.ndarray of shape (n_samples,)
        """
        data = self._prepare_predict(X, lengths)
        with torch.no_grad():
            log_emis = self._log_emission(data)
            _, filtered = self._forward_filter(data, log_emis)
            filtered, log_emis = to_numpy(filtered).astype(np.float64), to_numpy(log_emis).astype(np.float64)
        start = np.asarray(self.startprob_, dtype=np.float64)
        starts = np.concatenate([[0], np.cumsum(data.lengths)[:-1]])
        # predictive state distribution of each step: start for first steps, else filtered_{t-1} @ A
        predicted = np.empty_like(filtered)
        predicted[1:] = filtered[:-1] @ np.asarray(self.transmat_, dtype=np.float64)
        predicted[starts] = start
        # log sum_k predicted_k exp(log_emis_k), shifted by the row maximum of the emissions
        shift = np.max(np.where(np.isfinite(log_emis), log_emis, -np.inf), axis=1, keepdims=True)
        shift = np.where(np.isfinite(shift), shift, 0.0)
        with np.errstate(divide="ignore", under="ignore"):
            return np.log((predicted * np.exp(log_emis - shift)).sum(1)) + shift[:, 0]

    @keyword_lengths
    @limit_torch_threads
    def predict_proba(self, X, *, lengths=None, state_labels=None):
        """Posterior probability of each state at each step (forward-backward smoothing).

        Returns
        -------
        posteriors : numpy.ndarray of shape (n_samples, n_components)
        """
        data = self._prepare_predict(X, lengths, state_labels)
        with torch.no_grad():
            fb = self._forward_backward(data)
        return to_numpy(fb.posteriors).astype(np.float64, copy=False)

    @keyword_lengths
    @limit_torch_threads
    def decode(self, X, *, lengths=None, algorithm=None, state_labels=None):
        """Most likely state sequence.

        Parameters
        ----------
        X, lengths
            As in :meth:`fit`.
        algorithm : {"viterbi", "map"}, optional
            ``viterbi``: the jointly most likely path; ``map``: the most likely state of
            each step. Defaults to the estimator's ``algorithm``.
        state_labels : array-like of int, optional
            Known states (-1 where unknown) that the decoded path must respect.

        Returns
        -------
        log_prob : float
            Viterbi: log-probability of the path and the data. MAP: sum of the log
            posterior probabilities of the chosen states (hmmlearn 0.3.3 sums the
            probabilities themselves, which is not a log-probability).
        state_sequence : numpy.ndarray of shape (n_samples,)
        """
        algorithm = resolve_decoder(algorithm, self.algorithm)
        data = self._prepare_predict(X, lengths, state_labels)
        with torch.no_grad():
            if algorithm == "viterbi":
                log_start, log_trans = self._log_start_trans(data.x)
                log_emis = self._log_emission(data)
                if data.numpy:
                    log_prob, path = numba_backend().viterbi(log_start, log_trans, np.ascontiguousarray(log_emis),
                                                             data.lengths)
                else:
                    log_prob, path = _viterbi(log_start, log_trans, log_emis, data.lengths)
                return float(to_numpy(log_prob).sum()), to_numpy(path).astype(np.int64)
            post = to_numpy(self._forward_backward(data).posteriors)
        return map_decode(post)

    @keyword_lengths
    def predict(self, X, *, lengths=None, state_labels=None):
        """Most likely state of each step, decoded with ``algorithm``.

        Returns
        -------
        state_sequence : numpy.ndarray of shape (n_samples,)
        """
        return self.decode(X, lengths=lengths, state_labels=state_labels)[1]

    @limit_torch_threads
    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw one sequence of ``n_samples`` steps.

        Parameters
        ----------
        %(sample_options)s

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, n_features)
        state_sequence : numpy.ndarray of shape (n_samples,)
        """
        self._check_fitted_or_set()
        n_samples, start = self._sampling_start(n_samples, currstate)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        states = sample_markov_chain(start, np.asarray(self.transmat_, dtype=np.float64), n_samples,
                                     random_state=rng)
        states = np.asarray(to_numpy(states), dtype=np.int64)
        X = self._sample_emissions(states, rng)
        return X, states

    def get_stationary_distribution(self):
        """Stationary distribution of the state chain (left eigenvector of ``transmat_`` for eigenvalue 1).

        Returns
        -------
        numpy.ndarray of shape (n_components,)
        """
        # Only transmat_ is needed (hmmlearn asks no more), so a chain without emissions works too.
        if not hasattr(self, "transmat_"):
            raise NotFittedError(f"this {type(self).__name__} has no transmat_: call fit or set it by hand")
        k = self.n_components
        if np.shape(self.transmat_) != (k, k):
            raise ValueError(f"transmat_ must have shape ({k}, {k}), got {np.shape(self.transmat_)}")
        check_stochastic(np.asarray(self.transmat_, dtype=np.float64), "transmat_")
        vals, vecs = linalg.eig(np.asarray(self.transmat_).T)
        vec = np.real_if_close(vecs[:, np.argmax(vals.real)])
        vec = np.real(vec)
        return vec / vec.sum()

    def _n_parameters(self):
        k = self.n_components
        counts = {"s": k - 1, "t": k * (k - 1)}
        counts.update(self._emission_n_parameters())
        return counts
