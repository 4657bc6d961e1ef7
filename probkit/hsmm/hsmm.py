"""HSMM: the explicit-duration hidden semi-Markov model, fitted by EM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from probkit.base import COMPUTE_CONSTRAINTS, ProbkitEstimator, StrOptions, positive_int
from probkit.distributions import Categorical
from probkit.distributions.base import ExponentialFamily
from probkit.distributions.dirichlet import dirichlet_map_rows
from probkit.em.engine import EStepResult, fit_sequence_em
from probkit.em.init import INIT_METHODS, initial_responsibilities
from probkit.hsmm._durations import (fit_durations, n_duration_parameters, resolve_duration,
                                     truncated_log_pmf)
from probkit.hmm._base import SequenceEMMixin
from probkit.hmm._docs import HMM_DOCS
from probkit.hsmm._emission import EmissionFamily
from probkit.inference.semi_markov import semi_markov_forward, semi_markov_forward_backward, semi_markov_viterbi
from probkit.components import EmptyComponentWarning, map_dist
from probkit.inference._decoding import map_decode, resolve_decoder
from probkit.utils._array import to_numpy
from probkit.utils._warnings import warn_user
from probkit.utils.random import check_random_state
from probkit.utils.sequences import check_sequences, check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_parameters_set, check_probabilities

__all__ = ["HSMM"]

# Initial duration counts: the run lengths of the initial hard assignment, blended with
# this much of a uniform distribution over 1..max_duration (a categorical duration model
# must not start with zeros: EM keeps zero probabilities at zero).
DURATION_INIT_BLEND = 0.5


@dataclass
class _Sequences:
    """Validated sequences as the EM hooks see them."""

    X: np.ndarray           # (n_samples, n_features) float64
    x: torch.Tensor         # the same on the compute device / dtype
    lengths: np.ndarray     # (n_sequences,)


@HMM_DOCS.fill
class HSMM(SequenceEMMixin, ProbkitEstimator):
    r"""Hidden semi-Markov model: explicit state durations, emissions from any probkit family.

    The hidden state moves through segments. A segment of state :math:`j` lasts
    :math:`d \in \{1, \dots, D\}` steps (``D = max_duration``) with probability
    :math:`p_j(d)`, emits each of its observations independently from the state's emission
    distribution, and is followed by a segment of another state :math:`k` with probability
    ``transmat_[j, k]`` (the diagonal is zero: how long a state lasts is its duration
    distribution, not a self-transition). The first segment's state follows ``startprob_``.
    An HMM is the special case of geometric durations; an HSMM can give a state a typical
    length (e.g. Poisson or negative binomial durations) or any distribution on
    ``1..D`` (categorical).

    Inference runs in :math:`O(T K (D + K))` (:mod:`probkit.inference.semi_markov`), and
    EM re-estimates the start and transition probabilities, the duration models and the
    emission distributions from the expected segment counts and state posteriors.

    Parameters
    ----------
    emission : str, ExponentialFamily class or instance
        Emission family, as ``HMM(emission=...)``: e.g. ``"normal"`` (a product over the
        columns), ``"gaussian"`` (full-covariance multivariate normal), ``"poisson"``,
        ``Gamma``, ``MultivariateNormal(covariance_type="diag")``.
    n_components : int, default=2
        Number of hidden states.
    duration : {"poisson", "negative_binomial", "geometric", "categorical"} or a distribution, default="poisson"
        Family of ``duration - 1``: a Poisson shifted by one, a negative binomial
        (``NegativeBinomial(fixed_total_count=r)`` fixes ``r``), a geometric, or a
        categorical over ``0..max_duration - 1`` (non-parametric). Parametric families are
        truncated to ``1..max_duration`` and renormalised.
    max_duration : int, default=50
        Longest segment ``D``. Inference costs grow linearly with it.
    right_censoring : bool, default=True
        The last segment of each sequence may continue past its end (its observed length
        contributes its survival probability :math:`P(\text{duration} \ge d)`), as in
        hsmmlearn and pyhsmm. ``False`` makes every sequence end at a segment boundary.
    init : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        Initial assignment of rows to states, from which the emissions are first fitted
        (and the initial durations taken from its run lengths).
    %(hmm_options)s
    params, init_params : str, default="stde"
        Parameters updated by EM / initialised before it: ``s`` start, ``t`` transitions,
        ``d`` durations, ``e`` emissions. Parameters left out of ``init_params`` must be set
        by hand before :meth:`fit`.

    Attributes
    ----------
    %(chain_attrs)s
        Zero diagonal (``[[1.0]]`` for one state: a renewal process).
    duration_ : distribution
        Distribution of ``duration - 1`` of each state, batch shape ``(n_components,)``
        (categorical: ``probs`` of shape ``(n_components, max_duration)``), before truncation.
    durationprob_ : ndarray of shape (n_components, max_duration)
        The duration probabilities in use, ``durationprob_[k, d - 1] = p_k(d)`` (read-only).
    duration_params_ : dict of ndarray
        ``duration_``'s parameters (assign a dict to set ``duration_``).
    emission_ : distribution
        Emission distributions, batch shape ``(n_components,)`` or ``(n_components, n_features)``.
    emission_params_ : dict of ndarray
        ``emission_``'s parameters (assign a dict to set ``emission_``).
    %(fit_attrs)s

    See Also
    --------
    probkit.HMM : geometric durations (self-transitions).
    probkit.inference.semi_markov_forward_backward : the inference kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import HSMM
    >>> true = HSMM(emission="normal", n_components=2, duration="poisson", max_duration=30)
    >>> true.startprob_ = np.array([0.5, 0.5])
    >>> true.transmat_ = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> true.duration_params_ = {"rate": np.array([4.0, 14.0])}
    >>> true.emission_params_ = {"loc": np.array([0.0, 2.0]), "scale": np.array([1.0, 1.0])}
    >>> X, states = true.sample(3000, random_state=0)
    >>> model = HSMM(emission="normal", n_components=2, duration="poisson", max_duration=30,
    ...              n_iter=50, random_state=0).fit(X)
    >>> order = np.argsort(model.emission_params_["loc"])
    >>> np.round(model.duration_params_["rate"][order])   # mean durations 5 and 15
    array([ 4., 14.])
    """

    _parameter_constraints = {
        **SequenceEMMixin._parameter_constraints,
        "emission": "no_validation",  # resolved (and checked) by the family registry (EmissionFamily)
        "duration": "no_validation",  # a family name or distribution, resolved and checked by resolve_duration
        "max_duration": positive_int,
        "right_censoring": ["boolean"],
        "init": [StrOptions(set(INIT_METHODS))],
        **COMPUTE_CONSTRAINTS,
    }

    def __init__(self, emission=None, n_components=2, duration="poisson", max_duration=50, *, right_censoring=True,
                 init="kmeans", startprob_prior=1.0, transmat_prior=1.0, algorithm="viterbi", random_state=None,
                 n_iter=10, tol=1e-2, n_init=1, verbose=False, params="stde", init_params="stde", device=None,
                 dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior, transmat_prior=transmat_prior,
                         algorithm=algorithm, random_state=random_state, n_iter=n_iter, tol=tol, n_init=n_init,
                         verbose=verbose, params=params, init_params=init_params)
        self.emission = emission
        self.duration = duration
        self.max_duration = max_duration
        self.right_censoring = right_censoring
        self.init = init
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ options and parameters
    def _check_options(self):
        """The constraints (``_parameter_constraints``), then what they cannot say: the letters of
        ``params``, and the duration and emission families (resolved by their registries)."""
        self._validate_params()
        d = self.max_duration
        for name in ("params", "init_params"):
            value = getattr(self, name)
            unknown = sorted(set(value) - set("stde"))
            if unknown:
                raise ValueError(f"{name} has unknown letters {unknown}; HSMM knows s (start), t (transitions), "
                                 "d (durations) and e (emissions)")
        template = self._duration_template()
        if isinstance(template, Categorical) and template.n_categories is not None \
                and template.n_categories != d:
            raise ValueError(self._categorical_width_message(template.n_categories))
        self._emission_family()

    def _categorical_width_message(self, width):
        over = " (durations over the maximum)" if width > self.max_duration else ""
        return (f"the categorical duration model covers {width} lengths but max_duration={self.max_duration}{over}; "
                f"it needs one probability per length 1..{self.max_duration}")

    def _duration_template(self):
        return resolve_duration(self.duration)

    def _emission_family(self):
        return EmissionFamily(self.emission)

    @property
    def duration_params_(self):
        """Parameters of ``duration_`` as numpy arrays; assigning a dict sets ``duration_``."""
        return self.duration_.params

    @duration_params_.setter
    def duration_params_(self, params):
        self.duration_ = self._duration_template()._new(**params)

    @property
    def emission_params_(self):
        """Parameters of ``emission_`` as numpy arrays; assigning a dict sets ``emission_``."""
        return self.emission_.params

    @emission_params_.setter
    def emission_params_(self, params):
        self.emission_ = self._emission_family().template._new(**params)

    @property
    def durationprob_(self):
        """``p_k(d)`` for ``d = 1..max_duration``: the truncated duration probabilities in use, (K, D)."""
        self._check_fitted_or_set()
        return np.exp(truncated_log_pmf(self.duration_, self.max_duration))

    def _check(self):
        """Validate the parameters (fitted or set by hand) before they are used."""
        k, d = self.n_components, self.max_duration
        check_parameters_set(self, ("startprob_", "transmat_", "duration_", "emission_"))
        check_probabilities(self.startprob_, (k,), "startprob_")
        trans = check_probabilities(self.transmat_, (k, k), "transmat_")
        if k > 1 and np.any(np.diag(trans) != 0):
            raise ValueError("transmat_ must have a zero diagonal: a segment is followed by a segment of another "
                             "state (how long a state lasts is its duration distribution)")
        dur = self.duration_
        template = self._duration_template()
        if type(dur) is not type(template):
            raise ValueError(f"duration_ must be a {type(template).__name__} (duration={self.duration!r}), got "
                             f"{type(dur).__name__}")
        if not dur.is_fitted or tuple(dur.batch_shape) != (k,):
            shape = tuple(dur.batch_shape) if dur.is_fitted else None
            raise ValueError(f"duration_ must hold one duration model per state (batch shape ({k},)), got {shape}")
        if isinstance(dur, Categorical) and dur.n_categories != d:
            raise ValueError(self._categorical_width_message(dur.n_categories))
        truncated_log_pmf(dur, d)
        emis = self.emission_
        if not isinstance(emis, ExponentialFamily) or not emis.is_fitted:
            raise ValueError("emission_ must be a probkit distribution with parameters")
        if len(emis.batch_shape) < 1 or emis.batch_shape[0] != k:
            raise ValueError(f"emission_ must have batch shape ({k}, ...), got {tuple(emis.batch_shape)}")

    def _io_check_state(self):
        """Check parameters restored by :func:`probkit.load` as hand-set ones are checked (once any is set)."""
        if any(hasattr(self, name) for name in ("startprob_", "transmat_", "duration_", "emission_")):
            self._check_fitted_or_set()

    # ------------------------------------------------------------------ data
    def _validate_sequences(self, X, lengths, *, reset, training=False):
        if isinstance(X, (list, tuple)) or np.ndim(X) == 3:
            # a list of sequences or a padded array: the layout first, then the rows
            batch = check_sequences(X, lengths)
            values = self._validate_X(batch.values, reset=reset, dtype=np.float64)
        else:
            # scikit-learn's validation first, for its messages (1-D or sparse input, NaN, ...)
            values = self._validate_X(X, reset=reset, dtype=np.float64)
            batch = check_sequences(values, lengths)
        if training and values.shape[0] < max(2, self.n_components):
            raise ValueError(f"Expected n_samples >= max(2, n_components) to fit but got n_components = "
                             f"{self.n_components}, n_samples = {values.shape[0]}")
        family = self._emission_family()
        if reset and hasattr(self, "emission_") and not (training and "e" in self.init_params):
            width = family.n_features(self.emission_)
            if values.shape[1] != width:
                raise ValueError(f"X has {values.shape[1]} features, but emission_ models {width}")
        family.validate(values)
        device, dtype = self._compute_setup()
        return _Sequences(X=values, x=torch.as_tensor(values, dtype=dtype, device=device),
                          lengths=np.asarray(batch.lengths, dtype=np.int64))

    def _log_parameters(self, device, dtype):
        with np.errstate(divide="ignore"):
            values = (np.log(np.asarray(self.startprob_, dtype=np.float64)),
                      np.log(np.asarray(self.transmat_, dtype=np.float64)),
                      truncated_log_pmf(self.duration_, self.max_duration))
        return tuple(torch.as_tensor(v, dtype=dtype, device=device) for v in values)

    def _log_emission(self, data):
        family = self._emission_family()
        return family.log_prob(family.on(self.emission_, data.x.device, data.x.dtype), data.x)

    def _kernel_args(self, data):
        return (*self._log_parameters(data.x.device, data.x.dtype), self._log_emission(data), data.lengths)

    # ------------------------------------------------------------------ EM hooks
    def _em_initialize(self, data, random_state):
        k, d = self.n_components, self.max_duration
        family = self._emission_family()
        resp = initial_responsibilities(data.X, k, self.init, random_state)
        if self._needs_init("s", "startprob_"):
            self.startprob_ = random_state.dirichlet(np.full(k, 1.0 / k))
        if self._needs_init("t", "transmat_"):
            if k == 1:
                self.transmat_ = np.ones((1, 1))
            else:
                trans = random_state.dirichlet(np.full(k - 1, 1.0 / (k - 1)) if k > 2 else np.ones(1), size=k)
                full = np.zeros((k, k))
                for i in range(k):
                    full[i, np.arange(k) != i] = trans[i]
                self.transmat_ = full
        if self._needs_init("d", "duration_"):
            self.duration_, _ = fit_durations(self._duration_template(), self._initial_duration_counts(resp, data))
        if self._needs_init("e", "emission_"):
            resp_t = torch.as_tensor(resp, dtype=data.x.dtype, device=data.x.device)
            self.emission_ = self._to_host(family.initial(data.X, data.x, resp_t))
        self._check()

    def _initial_duration_counts(self, resp, data):
        """Run lengths of the hard initial assignment per state (clipped at D), blended with a uniform histogram."""
        k, d = self.n_components, self.max_duration
        labels = resp.argmax(1)
        counts = np.zeros((k, d))
        offsets = np.concatenate([[0], np.cumsum(data.lengths)])
        for a, b in zip(offsets[:-1], offsets[1:]):
            seq = labels[a:b]
            cuts = np.flatnonzero(np.diff(seq)) + 1
            starts = np.concatenate([[0], cuts])
            runs = np.diff(np.concatenate([starts, [len(seq)]]))
            np.add.at(counts, (seq[starts], np.minimum(runs, d) - 1), 1.0)
        totals = counts.sum(1, keepdims=True)
        shares = np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), 1.0 / d)
        return (1 - DURATION_INIT_BLEND) * shares + DURATION_INIT_BLEND / d

    @staticmethod
    def _to_host(dist):
        return map_dist(dist, lambda v: v.detach().to(device="cpu", dtype=torch.float64))

    def _em_expectation(self, data):
        family = self._emission_family()
        emission = family.on(self.emission_, data.x.device, data.x.dtype)
        log_start, log_trans, log_dur = self._log_parameters(data.x.device, data.x.dtype)
        post = semi_markov_forward_backward(log_start, log_trans, log_dur, family.log_prob(emission, data.x),
                                            data.lengths, right_censoring=bool(self.right_censoring))
        ll = post.log_likelihood
        if not bool(torch.isfinite(ll).all()):
            bad = int(torch.nonzero(~torch.isfinite(ll))[0])
            raise ValueError(f"sequence {bad} has zero probability under the current parameters (a structural zero, "
                             "or a sequence the durations cannot cover: right_censoring=False needs a segmentation "
                             "that ends with the sequence)")
        stats = {"start": to_numpy(post.expected_start), "trans": to_numpy(post.expected_transitions),
                 "durations": to_numpy(post.expected_durations),
                 "emission": family.summarize(emission, data.x, post.posteriors)}
        return EStepResult(log_likelihood=float(ll.sum()), n_samples=float(data.x.shape[0]), stats=stats)

    def _em_maximization(self, stats):
        if "s" in self.params:
            self.startprob_ = _map_rows(self.startprob_, stats["start"], self.startprob_prior, "startprob_")
        if "t" in self.params and self.n_components > 1:
            self.transmat_ = _map_rows(self.transmat_, stats["trans"], self.transmat_prior, "transmat_")
        if "d" in self.params:
            self.duration_, empty = fit_durations(self._duration_template(), stats["durations"], self.duration_)
            if empty:
                warn_user(f"state(s) {empty} had no expected segment in this E-step and kept their duration "
                          "models", EmptyComponentWarning)
        if "e" in self.params:
            family = self._emission_family()
            self.emission_ = self._to_host(family.refit(self.emission_, stats["emission"]))

    # ------------------------------------------------------------------ public API
    @limit_torch_threads
    def fit(self, X, y=None, *, lengths=None):
        """Estimate the parameters by EM.

        %(sequences_to_self)s
        """
        data = self._training_sequences(X, y, lengths)
        fit_sequence_em(self, data, check_random_state(self.random_state))
        return self

    def _prepare_predict(self, X, lengths):
        self._check_fitted_or_set()
        return self._validate_sequences(X, lengths, reset=not hasattr(self, "n_features_in_"))

    @limit_torch_threads
    def score(self, X, y=None, *, lengths=None):
        """Total log-likelihood of the sequences in ``X``.

        %(sequences_to_log_likelihood)s
        """
        check_y_slot(self, "score", X, y)
        data = self._prepare_predict(X, lengths)
        with torch.no_grad():
            fwd = semi_markov_forward(*self._kernel_args(data), right_censoring=bool(self.right_censoring))
        return float(fwd.log_likelihood.sum())

    @keyword_lengths
    @limit_torch_threads
    def score_samples(self, X, *, lengths=None):
        """One-step predictive log-likelihood of each row, ``log p(x_t | x_1..x_{t-1})``.

        The segment in progress at step t is censored there; the rows of a sequence sum
        to its log-likelihood.

        Returns
        -------
        log_prob : numpy.ndarray of shape (n_samples,)
        """
        data = self._prepare_predict(X, lengths)
        with torch.no_grad():
            fwd = semi_markov_forward(*self._kernel_args(data), right_censoring=bool(self.right_censoring))
        return to_numpy(fwd.predictive)

    @keyword_lengths
    @limit_torch_threads
    def predict_proba(self, X, *, lengths=None):
        """Posterior probability of each state at each step.

        Returns
        -------
        posteriors : numpy.ndarray of shape (n_samples, n_components)
        """
        return to_numpy(self._posteriors(X, lengths).posteriors)

    def _posteriors(self, X, lengths):
        data = self._prepare_predict(X, lengths)
        with torch.no_grad():
            return semi_markov_forward_backward(*self._kernel_args(data), right_censoring=bool(self.right_censoring))

    @keyword_lengths
    @limit_torch_threads
    def predict_segment_starts(self, X, *, lengths=None):
        """Posterior probability that a segment of each state starts at each step.

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_components)
            Row sums are the probability of a segment boundary before the step (1 at the
            first step of every sequence).
        """
        return to_numpy(self._posteriors(X, lengths).segment_starts)

    @keyword_lengths
    @limit_torch_threads
    def decode(self, X, *, lengths=None, algorithm=None, return_segments=False):
        """Most likely state sequence.

        Parameters
        ----------
        X, lengths
            As in :meth:`fit`.
        algorithm : {"viterbi", "map"}, optional
            ``viterbi``: the most likely segmentation (states and durations jointly);
            ``map``: the most likely state of each step. Defaults to ``algorithm``.
        return_segments : bool, default=False
            Also return the first step of every decoded segment (Viterbi only).

        Returns
        -------
        log_prob : float
            Viterbi: log-probability of the segmentation and the data. MAP: sum of the log
            posterior probabilities of the chosen states.
        state_sequence : numpy.ndarray of shape (n_samples,)
        segment_starts : numpy.ndarray of bool of shape (n_samples,)
            Only with ``return_segments=True``.
        """
        algorithm = resolve_decoder(algorithm, self.algorithm)
        if return_segments and algorithm != "viterbi":
            raise ValueError("return_segments=True needs algorithm='viterbi' (MAP decoding has no segments)")
        data = self._prepare_predict(X, lengths)
        with torch.no_grad():
            if algorithm == "viterbi":
                res = semi_markov_viterbi(*self._kernel_args(data), right_censoring=bool(self.right_censoring))
                out = (float(res.log_prob.sum()), to_numpy(res.path).astype(np.int64))
                return out + (to_numpy(res.segment_starts).astype(bool),) if return_segments else out
            post = semi_markov_forward_backward(*self._kernel_args(data),
                                                right_censoring=bool(self.right_censoring)).posteriors
        return map_decode(to_numpy(post))

    @keyword_lengths
    def predict(self, X, *, lengths=None):
        """Most likely state of each step, decoded with ``algorithm``.

        Returns
        -------
        state_sequence : numpy.ndarray of shape (n_samples,)
        """
        return self.decode(X, lengths=lengths)[1]

    @limit_torch_threads
    def sample(self, n_samples=1, random_state=None, currstate=None, return_durations=False):
        """Draw one sequence of ``n_samples`` steps: states, segment durations and observations.

        Parameters
        ----------
        %(sample_options)s
        return_durations : bool, default=False
            Also return the drawn durations of the segments.

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, n_features)
        state_sequence : numpy.ndarray of shape (n_samples,)
        durations : numpy.ndarray of int
            Only with ``return_durations=True``: the drawn duration of every segment, in
            order; the last one may run past ``n_samples`` (it is cut there).
        """
        self._check_fitted_or_set()
        n_samples, start = self._sampling_start(n_samples, currstate)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        k = self.n_components
        trans = np.asarray(self.transmat_, dtype=np.float64)
        pmf = self.durationprob_
        states = np.empty(int(n_samples), dtype=np.int64)
        durations = []
        state = int(rng.choice(k, p=start))
        pos = 0
        while pos < n_samples:
            d = int(rng.choice(self.max_duration, p=pmf[state])) + 1
            durations.append(d)
            states[pos:pos + d] = state
            pos += d
            state = int(rng.choice(k, p=trans[state]))
        X = self._emission_family().sample(self.emission_, states, rng)
        if return_durations:
            return X, states, np.asarray(durations, dtype=np.int64)
        return X, states

    def _n_parameters(self):
        k = self.n_components
        return {"s": k - 1, "t": k * max(k - 2, 0), "d": n_duration_parameters(self.duration_, self.max_duration),
                "e": self.emission_._n_free_parameters_total()}


def _map_rows(previous, counts, prior, name):
    """Dirichlet-MAP rows from expected counts (:func:`~probkit.distributions.dirichlet.dirichlet_map_rows`),
    warning when a row received no mass."""
    out, empty = dirichlet_map_rows(previous, counts, prior)
    if empty:
        warn_user(f"{name}: {empty} row(s) received no expected counts and kept their previous values "
                  "(a state that is never left or never visited)", EmptyComponentWarning)
    return out
