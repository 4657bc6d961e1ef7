r"""Input-driven HMM (GLM-HMM): transitions and emissions that are GLMs in covariates.

With known inputs :math:`u_t` (one row per step), the state chain and the observations
depend on them:

.. math::

    p(z_t = j \mid z_{t-1} = i, u_t) = \operatorname{softmax}_j(W_{ij} \cdot u_t + b_{ij}),
    \qquad p(x_t \mid z_t = k, u_t) = \text{GLM}_k(x_t;\ V_k u_t + c_k),

a multinomial-logistic regression per previous state for the transitions (or an ordinary
stochastic matrix) and, per state, a linear-Gaussian, logistic, softmax or Poisson
regression for the observations. The E-step is forward-backward with one transition
matrix per step (:func:`probkit.inference.time_varying.forward_backward_time_varying`);
the M-step maximises the expected complete log-likelihood plus the log of a Gaussian
prior on the regression weights (``alpha``): damped Newton steps warm-started from the
current weights for the logistic, softmax and Poisson regressions (the posteriors, or the
pairwise posteriors for the transitions, as weights; probkit.glm's losses and line
search), closed forms for the rest. Every update does not decrease its part of the
objective, so EM never decreases the penalised log-likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special
from sklearn.exceptions import NotFittedError

from probkit.base import StrOptions, non_negative_real, positive_int, positive_real
from probkit.distributions.base import LOG_2PI
from probkit.distributions.dirichlet import dirichlet_map_rows
from probkit.em.engine import EStepResult, fit_sequence_em
from probkit.glm._classifier import MultinomialLoss
from probkit.glm._design import Design
from probkit.glm._families import resolve_glm_family
from probkit.glm._fit import GLMLoss
from probkit.glm._links import LogLink
from probkit.glm._solver import penalized_newton
from probkit.hmm._base import BaseHMM, EmptyStateWarning, SequenceEMMixin, _log_probs, _warn_empty_rows
from probkit.hmm._docs import HMM_DOCS
from probkit.inference._decoding import map_decode, resolve_decoder
from probkit.inference.time_varying import forward_backward_time_varying, viterbi_time_varying
from probkit.utils.random import check_random_state
from probkit.utils.sequences import check_sequences, check_y_slot, keyword_lengths
from probkit.utils.validation import (
    check_inputs,
    check_nonnegative_integers,
    check_parameters_set,
    check_probabilities,
)
from probkit.utils._warnings import warn_user

__all__ = ["InputDrivenHMM"]

EMISSIONS = ("gaussian", "bernoulli", "categorical", "poisson")
TRANSITION_MODELS = ("input", "fixed")
# Initial hard clusters are blended with this much uniform weight (every state's first
# regression sees all of the data).
INIT_BLEND = 0.1
# Stickiness of the initial transition matrices: states that persist are the usual prior belief.
INIT_STAY = 0.8
_NEWTON_TOL = 1e-10


@dataclass
class _InputData:
    """Checked sequences: observations, inputs and lengths (numpy float64)."""

    X: np.ndarray        # (n_samples, n_features)
    inputs: np.ndarray   # (n_samples, n_inputs)
    lengths: np.ndarray  # (n_sequences,)
    starts: np.ndarray   # (n_samples,) bool, the first step of each sequence


def _check_inputs(inputs, n_samples, expected):
    """``inputs`` as a finite ``(n_samples, n_inputs)`` float64 array (``None``: no covariates)."""
    if inputs is None:
        if expected:
            raise ValueError(f"inputs is required: the model was fitted with {expected} input column(s); pass "
                             f"inputs= of shape ({n_samples}, {expected})")
        return np.zeros((n_samples, 0))
    u = check_inputs(inputs, n_samples)
    if expected is not None and u.shape[1] != expected:
        raise ValueError(f"inputs has {u.shape[1]} column(s) but the model was fitted with {expected}")
    return u


def _free_mask(n_classes, n_columns, alpha, fit_intercept, reference):
    """Free entries of a softmax regression's (classes, columns) coefficients.

    The softmax is unchanged when one vector is added to every class: with a reference
    class (binary logistic regression, or no penalty) its whole row is fixed at 0;
    otherwise the penalty pins the weights and only the first class's intercept is fixed.
    """
    free = np.ones((n_classes, n_columns), dtype=bool)
    if reference or alpha == 0:
        free[0] = False
    elif fit_intercept:
        free[0, 0] = False
    return free


def _softmax_regression(design, labels, weights, coef, alpha, free, max_iter):
    """Penalised softmax regression warm-started at ``coef`` (classes, columns); returns new coefficients.

    Minimises ``sum_i w_i (logsumexp(eta_i) - eta_{i, y_i}) + alpha / 2 * |weights|^2`` (the
    intercept column unpenalised); the line search keeps it from increasing.
    """
    total = float(weights.sum())
    n_classes = coef.shape[0]
    # move the warm start onto the constrained coordinates (the softmax does not change)
    shift = np.where(free[0], 0.0, coef[0])
    coef = coef - shift[None, :]
    loss = MultinomialLoss(design, labels, weights, None, n_classes, free)
    l2 = np.full(free.shape, alpha / total)
    if design.fit_intercept:
        l2[:, 0] = 0.0
    result = penalized_newton(loss, coef[free], l2[free], np.zeros(int(free.sum())), tol=_NEWTON_TOL,
                              max_iter=max_iter, value=loss.value)
    return loss.full(result.theta)


def _poisson_regression(design, y, weights, coef, alpha, max_iter):
    """Penalised Poisson (log link) regression warm-started at ``coef`` (columns,)."""
    total = float(weights.sum())
    loss = GLMLoss(design, y, weights, None, resolve_glm_family("poisson"), LogLink())
    l2 = np.full(coef.shape[0], alpha / total)
    if design.fit_intercept:
        l2[0] = 0.0
    # GLMLoss is half the mean deviance: the negative log-likelihood / total weight up to a constant
    result = penalized_newton(loss, coef, l2, np.zeros_like(l2), tol=_NEWTON_TOL, max_iter=max_iter, value=loss.value)
    return result.theta


@HMM_DOCS.fill
class InputDrivenHMM(BaseHMM):
    r"""Input-driven hidden Markov model (GLM-HMM): covariates drive the transitions and the emissions.

    Each step has known inputs :math:`u_t` (``inputs=``, one row per row of ``X``). With
    ``transition_model="input"``,

    .. math:: p(z_t = j \mid z_{t-1} = i, u_t) = \frac{\exp(W_{ij} \cdot u_t + b_{ij})}
              {\sum_l \exp(W_{il} \cdot u_t + b_{il})},

    and with ``"fixed"`` an ordinary transition matrix ``transmat_``. In state :math:`k`
    the observation follows a GLM with linear predictor
    :math:`\eta_{kt} = V_k u_t + c_k` (``emission_inputs=False``: :math:`\eta_{kt} = c_k`):

    * ``"gaussian"``: :math:`x_{tf} \sim \mathcal{N}(\eta_{ktf}, \sigma^2_{kf})` per feature;
    * ``"bernoulli"``: :math:`P(x_{tf} = 1) = \sigma(\eta_{ktf})` per binary feature;
    * ``"poisson"``: :math:`x_{tf} \sim \text{Poisson}(e^{\eta_{ktf}})` per count feature;
    * ``"categorical"``: one column of symbols, :math:`P(x_t = c) = \operatorname{softmax}_c(\eta_{kt})`.

    ``alpha`` is the precision of a zero-mean Gaussian prior on every regression weight
    (not the intercepts), i.e. the penalty :math:`\tfrac{\alpha}{2}\lVert W\rVert^2` on
    the summed log-likelihood (scikit-learn's ``LogisticRegression(C=1/alpha)``), which
    keeps separable data finite. EM maximises the penalised log-likelihood and
    ``monitor_`` records it.

    Parameters
    ----------
    %(n_components)s
    transition_model : {"input", "fixed"}, default="input"
    emission : {"gaussian", "bernoulli", "categorical", "poisson"}, default="gaussian"
    emission_inputs : bool, default=True
        Whether the emissions depend on the inputs (``False``: ordinary per-state emissions).
    fit_intercept : bool, default=True
        Intercepts :math:`b, c` in every regression.
    alpha : float, default=1.0
        Precision of the Gaussian prior on the weights (L2 penalty).
    n_categories : int, optional
        Number of symbols of a categorical emission (default: the largest symbol in ``fit`` + 1).
    reg_covar : float, default=1e-6
        Added to every fitted Gaussian variance.
    startprob_prior, transmat_prior : float, default=1.0
        Dirichlet concentrations of ``startprob_`` and (fixed transitions) ``transmat_``.
    max_newton_iter : int, default=20
        Newton steps per M-step for each logistic, softmax or Poisson regression.
    %(em_options)s
    params, init_params : str, default="stec"
        ``s`` start, ``t`` transitions, ``e`` emission weights and intercepts, ``c`` Gaussian variances.

    Attributes
    ----------
    %(chain_attrs)s
        ``transition_model="fixed"`` only.
    transition_weights_ : ndarray of shape (n_components, n_components, n_inputs)
        ``transition_weights_[i, j]`` is :math:`W_{ij}` (``"input"`` only).
    transition_intercepts_ : ndarray of shape (n_components, n_components)
    emission_weights_ : ndarray of shape (n_components, n_outputs, n_emission_inputs)
        :math:`V_k`; ``n_outputs`` is ``n_features`` (or ``n_categories_`` for a categorical
        emission), ``n_emission_inputs`` is ``n_inputs_`` (0 with ``emission_inputs=False``).
    emission_intercepts_ : ndarray of shape (n_components, n_outputs)
    covars_ : ndarray of shape (n_components, n_features)
        Gaussian variances (``emission="gaussian"`` only).
    n_inputs_ : int
        Columns of ``inputs`` seen in ``fit`` (0 without inputs: then every regression is
        intercept-only and the model is an ordinary HMM).
    n_categories_ : int
        Categorical emission only.
    %(fit_attrs)s

    Examples
    --------
    Two states that respond oppositely to an input (a switching linear regression):

    >>> import numpy as np
    >>> from probkit.hmm import InputDrivenHMM
    >>> truth = InputDrivenHMM(2, transition_model="fixed", emission="gaussian")
    >>> truth.startprob_ = np.array([0.5, 0.5])
    >>> truth.transmat_ = np.array([[0.95, 0.05], [0.05, 0.95]])
    >>> truth.emission_weights_ = np.array([[[2.0]], [[-1.0]]])
    >>> truth.emission_intercepts_ = np.array([[0.0], [1.0]])
    >>> truth.covars_ = np.full((2, 1), 0.3)
    >>> u = np.random.RandomState(0).normal(size=(1000, 1))
    >>> X, states = truth.sample(1000, inputs=u, random_state=1)
    >>> model = InputDrivenHMM(2, emission="gaussian", alpha=0.1, random_state=0).fit(X, inputs=u)
    >>> np.round(np.sort(model.emission_weights_[:, 0, 0]), 1)
    array([-1.,  2.])
    """

    _parameter_constraints = {
        **SequenceEMMixin._parameter_constraints,
        "transition_model": [StrOptions(set(TRANSITION_MODELS))],
        "emission": [StrOptions(set(EMISSIONS))],
        "emission_inputs": ["boolean"],
        "fit_intercept": ["boolean"],
        "alpha": non_negative_real,
        "n_categories": [*positive_int, None],
        "reg_covar": non_negative_real,
        # scalar Dirichlet concentrations here (the base's priors may also be arrays)
        "startprob_prior": positive_real,
        "transmat_prior": positive_real,
        "max_newton_iter": positive_int,
    }
    _emission_letters = "ec"
    # not parameters here (the recursions run in log space with numpy): the base's class defaults
    implementation = "log"
    missing = "error"
    device = None
    dtype = None

    def __init__(self, n_components=2, transition_model="input", emission="gaussian", emission_inputs=True,
                 fit_intercept=True, alpha=1.0, n_categories=None, reg_covar=1e-6, startprob_prior=1.0,
                 transmat_prior=1.0, max_newton_iter=20, algorithm="viterbi", random_state=None, n_iter=50, tol=1e-3,
                 n_init=1, verbose=False, params="stec", init_params="stec"):
        # the chain and EM-loop options only: BaseHMM's backend options are fixed class attributes here
        SequenceEMMixin.__init__(self, n_components=n_components, startprob_prior=startprob_prior,
                                 transmat_prior=transmat_prior, algorithm=algorithm, random_state=random_state,
                                 n_iter=n_iter, tol=tol, n_init=n_init, verbose=verbose, params=params,
                                 init_params=init_params)
        self.transition_model = transition_model
        self.emission = emission
        self.emission_inputs = emission_inputs
        self.fit_intercept = fit_intercept
        self.alpha = alpha
        self.n_categories = n_categories
        self.reg_covar = reg_covar
        self.max_newton_iter = max_newton_iter

    # ------------------------------------------------------------------ validation
    def _check_options(self):
        self._validate_params()
        for name in ("params", "init_params"):
            extra = set(getattr(self, name)) - set("stec")
            if extra:
                raise ValueError(f"{name} may hold the letters 's', 't', 'e', 'c'; got {sorted(extra)}")

    def _n_inputs(self):
        """Input columns of the model: from ``fit``, or from hand-set weights."""
        if hasattr(self, "n_inputs_"):
            return int(self.n_inputs_)
        for name in ("transition_weights_", "emission_weights_"):
            if hasattr(self, name) and (name == "transition_weights_" or self.emission_inputs):
                return int(np.shape(getattr(self, name))[-1])
        return 0

    def _validate_observations(self, X, reset):
        if self.emission == "gaussian":
            return self._validate_X(X, reset=reset)
        X = self._validate_X(X, reset=reset)
        if self.emission == "bernoulli":
            if not np.isin(X, (0.0, 1.0)).all():
                raise ValueError("X must hold 0/1 outcomes for emission='bernoulli'")
            return X
        check_nonnegative_integers(X, "X")
        if self.emission == "categorical":
            if X.shape[1] != 1:
                raise ValueError(f"X must have one column of symbols for emission='categorical', got {X.shape[1]}")
            n_cat = self._n_categories(X if reset else None)
            if X.max() >= n_cat:
                raise ValueError(f"X holds symbol {int(X.max())} but the model emits symbols 0 .. {n_cat - 1}")
        return X

    def _n_categories(self, X=None):
        if hasattr(self, "n_categories_") and X is None:
            return int(self.n_categories_)
        if self.n_categories is not None:
            return int(self.n_categories)
        if X is not None:
            return int(X.max()) + 1
        if hasattr(self, "emission_intercepts_"):
            return int(np.shape(self.emission_intercepts_)[1])
        raise NotFittedError("the number of categories is unknown: fit, or set n_categories")

    def _validate_sequences(self, X, lengths, inputs=None, *, reset, training=False):
        batch = check_sequences(X, lengths)
        X = self._validate_observations(batch.values, reset)
        n = X.shape[0]
        if training and n < max(2, self.n_components):
            raise ValueError(f"Expected n_samples >= max(2, n_components) to fit but got n_components = "
                             f"{self.n_components}, n_samples = {n}")
        u = _check_inputs(inputs, n, None if training else self._n_inputs())
        if training:
            self.n_inputs_ = u.shape[1]
            if self.emission == "categorical":
                self.n_categories_ = self._n_categories(X)
        starts = np.zeros(n, dtype=bool)
        starts[np.concatenate([[0], np.cumsum(batch.lengths)[:-1]])] = True
        return _InputData(X=X, inputs=u, lengths=batch.lengths, starts=starts)

    def _n_outputs(self):
        return self._n_categories() if self.emission == "categorical" else int(self.n_features_in_)

    def _check(self):
        k = self.n_components
        required = ["startprob_", "emission_weights_", "emission_intercepts_"]
        required += ["transmat_"] if self.transition_model == "fixed" else ["transition_weights_",
                                                                            "transition_intercepts_"]
        required += ["covars_"] if self.emission == "gaussian" else []
        check_parameters_set(self, required)
        check_probabilities(self.startprob_, (k,), "startprob_")
        m = self._n_inputs()
        if self.transition_model == "fixed":
            check_probabilities(self.transmat_, (k, k), "transmat_")
        else:
            self._check_array("transition_weights_", (k, k, m))
            self._check_array("transition_intercepts_", (k, k))
        b = np.asarray(self.emission_intercepts_, dtype=np.float64)
        if b.ndim != 2 or b.shape[0] != k:
            raise ValueError(f"emission_intercepts_ must have shape ({k}, n_outputs), got {b.shape}")
        if self.emission != "categorical" and hasattr(self, "n_features_in_") and b.shape[1] != self.n_features_in_:
            raise ValueError(f"emission_intercepts_ has {b.shape[1]} outputs but X has {self.n_features_in_} features")
        self._check_array("emission_intercepts_", b.shape)
        self._check_array("emission_weights_", (k, b.shape[1], m if self.emission_inputs else 0))
        if self.emission == "gaussian":
            covars = self._check_array("covars_", b.shape)
            if np.any(covars <= 0):
                raise ValueError("covars_ must be positive")

    def _check_array(self, name, shape):
        a = np.asarray(getattr(self, name), dtype=np.float64)
        if a.shape != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite")
        return a

    def _io_check_state(self):
        if hasattr(self, "startprob_"):
            self._check_fitted_or_set()

    # ------------------------------------------------------------------ model pieces
    def _emission_design(self, data):
        return data.inputs if self.emission_inputs else data.inputs[:, :0]

    def _coef(self, intercepts, weights):
        """Coefficient rows ``[c, V]`` (``V`` alone without an intercept) in the layout of :class:`Design`."""
        intercepts = np.asarray(intercepts, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.float64)
        return np.concatenate([intercepts[..., None], weights], -1) if self.fit_intercept else weights

    def _set_coef(self, coef, intercept_name, weight_name):
        if self.fit_intercept:
            setattr(self, intercept_name, coef[..., 0].copy())
            setattr(self, weight_name, coef[..., 1:].copy())
        else:
            setattr(self, weight_name, coef.copy())

    def _emission_eta(self, data):
        """Linear predictors (n_samples, K, n_outputs)."""
        u = self._emission_design(data)
        return (np.asarray(self.emission_intercepts_, dtype=np.float64)[None]
                + np.einsum("tm,kom->tko", u, np.asarray(self.emission_weights_, dtype=np.float64)))

    def _log_emission(self, data):
        eta = self._emission_eta(data)
        X = data.X
        if self.emission == "gaussian":
            var = np.asarray(self.covars_, dtype=np.float64)[None]
            resid = X[:, None, :] - eta
            return -0.5 * (resid * resid / var + np.log(var) + LOG_2PI).sum(-1)
        if self.emission == "bernoulli":
            return (X[:, None, :] * eta - np.logaddexp(0.0, eta)).sum(-1)
        if self.emission == "poisson":
            return (X[:, None, :] * eta - np.exp(eta) - special.gammaln(X[:, None, :] + 1.0)).sum(-1)
        log_p = eta - special.logsumexp(eta, axis=2, keepdims=True)
        return log_p[np.arange(X.shape[0]), :, X[:, 0].astype(np.int64)]

    def _log_transitions(self, data):
        """Log transition matrices into every step (n_samples, K, K), or the fixed (K, K) matrix."""
        if self.transition_model == "fixed":
            return _log_probs(self.transmat_)
        logits = (np.asarray(self.transition_intercepts_, dtype=np.float64)[None]
                  + np.einsum("tm,ijm->tij", data.inputs, np.asarray(self.transition_weights_, dtype=np.float64)))
        return logits - special.logsumexp(logits, axis=2, keepdims=True)

    def _log_prior(self):
        """Log of the priors at the current parameters (up to constants): Gaussian on weights, Dirichlet."""
        value = -0.5 * self.alpha * float(np.sum(np.square(self.emission_weights_)))
        if self.transition_model == "input":
            value -= 0.5 * self.alpha * float(np.sum(np.square(self.transition_weights_)))
        for prior, name in ((self.startprob_prior, "startprob_"), (self.transmat_prior, "transmat_")):
            if prior != 1.0 and hasattr(self, name) and (name != "transmat_" or self.transition_model == "fixed"):
                p = np.asarray(getattr(self, name), dtype=np.float64)
                with np.errstate(divide="ignore"):
                    value += float(np.sum(np.where(p > 0, (prior - 1.0) * np.log(np.where(p > 0, p, 1.0)), 0.0)))
        return value

    def _posteriors(self, data):
        return forward_backward_time_varying(_log_probs(self.startprob_), self._log_transitions(data),
                                             self._log_emission(data), data.lengths)

    # ------------------------------------------------------------------ EM hooks
    def _em_initialize(self, data, random_state):
        k = self.n_components
        if self._needs_init("s", "startprob_"):
            self.startprob_ = random_state.dirichlet(np.ones(k))
        if self._needs_init("t", "transmat_" if self.transition_model == "fixed" else "transition_weights_"):
            trans = INIT_STAY * np.eye(k) + (1 - INIT_STAY) * random_state.dirichlet(np.ones(k), size=k)
            if self.transition_model == "fixed":
                self.transmat_ = trans
            else:
                self.transition_intercepts_ = np.log(trans) if self.fit_intercept else np.zeros((k, k))
                self.transition_weights_ = np.zeros((k, k, data.inputs.shape[1]))
        if self._needs_init("e", "emission_weights_") or (self.emission == "gaussian"
                                                          and self._needs_init("c", "covars_")):
            self._init_emission_from_clusters(data, random_state)
        self._check()

    def _init_emission_from_clusters(self, data, random_state):
        from sklearn.cluster import KMeans  # slow to import; needed at fit time only

        k, n_out = self.n_components, self._n_outputs()
        u = self._emission_design(data)
        y = np.eye(n_out)[data.X[:, 0].astype(np.int64)] if self.emission == "categorical" else data.X
        # clusters of (observation, observation x input): states differ in how x_t relates to u_t
        features = np.hstack([y, (y[:, :, None] * u[:, None, :]).reshape(len(y), -1)])
        scale = features.std(0)
        features = (features - features.mean(0)) / np.where(scale > 0, scale, 1.0)
        labels = KMeans(n_clusters=k, random_state=random_state, n_init=1).fit_predict(features)
        resp = (1 - INIT_BLEND) * np.eye(k)[labels] + INIT_BLEND / k
        init_e = self._needs_init("e", "emission_weights_")
        if init_e:
            self.emission_intercepts_ = np.zeros((k, n_out))
            self.emission_weights_ = np.zeros((k, n_out, u.shape[1]))
        if self.emission == "gaussian" and (init_e or self._needs_init("c", "covars_")):
            self.covars_ = np.tile(data.X.var(0) + self.reg_covar + 1e-12, (k, 1))
        self._mstep_emission(data, resp, update_weights=init_e, update_covars=True, warn=False)

    def _em_expectation(self, data):
        fb = self._posteriors(data)
        ll = fb.log_likelihood
        if not np.isfinite(ll).all():
            bad = int(np.flatnonzero(~np.isfinite(ll))[0])
            raise ValueError(f"sequence {bad} has zero probability under the current parameters")
        stats = {"post": fb.posteriors, "pairwise": fb.pairwise, "data": data}
        return EStepResult(log_likelihood=float(ll.sum()) + self._log_prior(), n_samples=float(data.X.shape[0]),
                           stats=stats)

    def _em_maximization(self, stats):
        data, post, pairwise = stats["data"], stats["post"], stats["pairwise"]
        if "s" in self.params:
            self.startprob_, n_empty = dirichlet_map_rows(self.startprob_, post[data.starts].sum(0),
                                                          self.startprob_prior)
            _warn_empty_rows("startprob_", n_empty)
        if "t" in self.params:
            if self.transition_model == "fixed":
                self.transmat_, n_empty = dirichlet_map_rows(self.transmat_, pairwise.sum(0), self.transmat_prior)
                _warn_empty_rows("transmat_", n_empty)
            else:
                self._mstep_transitions(data, pairwise)
        self._mstep_emission(data, post, update_weights="e" in self.params, update_covars="c" in self.params)

    def _mstep_transitions(self, data, pairwise):
        """Per previous state i: softmax regression of the next state on u_t, soft targets xi_t(i, .)."""
        k = self.n_components
        rows = ~data.starts
        design = Design(np.repeat(data.inputs[rows], k, axis=0), self.fit_intercept)
        labels = np.tile(np.arange(k), int(rows.sum()))
        coef = self._coef(self.transition_intercepts_, self.transition_weights_)
        free = _free_mask(k, design.n_columns, self.alpha, self.fit_intercept, reference=False)
        empty = []
        for i in range(k):
            weights = pairwise[rows, i, :].reshape(-1)
            if weights.sum() <= 1e-12 * max(pairwise.sum(), 1e-300):
                empty.append(i)
                continue
            coef[i] = _softmax_regression(design, labels, weights, coef[i], self.alpha, free, self.max_newton_iter)
        _warn_empty_rows("transition_weights_", len(empty))
        self._set_coef(coef, "transition_intercepts_", "transition_weights_")

    def _mstep_emission(self, data, post, *, update_weights, update_covars, warn=True):
        if not (update_weights or (update_covars and self.emission == "gaussian")):
            return
        u = self._emission_design(data)
        design = Design(u, self.fit_intercept)
        coef = self._coef(self.emission_intercepts_, self.emission_weights_)
        counts = post.sum(0)
        empty = counts <= 1e-12 * max(counts.sum(), 1e-300)
        if warn and empty.any():
            warn_user(f"state(s) {np.flatnonzero(empty).tolist()} received no data and kept their previous "
                      "emission parameters", EmptyStateWarning)
        X = data.X
        for s in np.flatnonzero(~empty):
            w = post[:, s]
            if self.emission == "gaussian":
                var = np.asarray(self.covars_, dtype=np.float64)[s]
                coef[s], covars = self._gaussian_mstep(design, X, w, coef[s], var, update_weights)
                if update_covars:
                    self.covars_ = np.asarray(self.covars_, dtype=np.float64).copy()
                    self.covars_[s] = covars
            elif not update_weights:
                continue
            elif self.emission == "categorical":
                free = _free_mask(coef.shape[1], design.n_columns, self.alpha, self.fit_intercept, reference=False)
                coef[s] = _softmax_regression(design, X[:, 0].astype(np.int64), w, coef[s], self.alpha, free,
                                              self.max_newton_iter)
            elif self.emission == "bernoulli":
                free = _free_mask(2, design.n_columns, self.alpha, self.fit_intercept, reference=True)
                for f in range(X.shape[1]):
                    pair = np.stack([np.zeros_like(coef[s, f]), coef[s, f]])
                    coef[s, f] = _softmax_regression(design, X[:, f].astype(np.int64), w, pair, self.alpha, free,
                                                     self.max_newton_iter)[1]
            else:
                for f in range(X.shape[1]):
                    coef[s, f] = _poisson_regression(design, X[:, f], w, coef[s, f], self.alpha,
                                                     self.max_newton_iter)
        if update_weights:
            self._set_coef(coef, "emission_intercepts_", "emission_weights_")

    def _gaussian_mstep(self, design, X, w, coef, var, update_weights):
        """Per feature: ridge-weighted least squares at the current variance ``var``, then the residual variance.

        Each half is the exact maximiser of the penalised expected log-likelihood given the
        other (coordinate ascent), so neither decreases it.
        """
        gram = design.gram(w)
        moments = design.rmatvec(w[:, None] * X)  # (q, d)
        penalty = np.ones(design.n_columns)
        if design.fit_intercept:
            penalty[0] = 0.0
        covars = np.empty(X.shape[1])
        for f in range(X.shape[1]):
            if update_weights:
                # the MAP weights given the variance: (Z' W Z + alpha var P)^-1 Z' W x
                lhs = gram + self.alpha * var[f] * np.diag(penalty)
                coef[f] = np.linalg.lstsq(lhs, moments[:, f], rcond=None)[0]
            resid = X[:, f] - design.linear(coef[f])
            covars[f] = float(w @ (resid * resid)) / float(w.sum()) + self.reg_covar
        return coef, covars

    # ------------------------------------------------------------------ public API
    def fit(self, X, y=None, *, lengths=None, inputs=None):
        """Estimate the parameters by EM on the penalised log-likelihood.

        ``X`` holds 0/1 values for Bernoulli emissions, counts for Poisson, and one column
        of symbols for categorical emissions.

        Parameters
        ----------
        %(sequences)s
        inputs : array-like of shape (n_samples, n_inputs), optional
            Covariates :math:`u_t`, one row per row of ``X``. ``None``: no covariates (every
            regression is intercept-only); every later call then needs inputs with the same columns.

        Returns
        -------
        self
        """
        data = self._training_sequences(X, y, lengths, inputs=inputs)
        fit_sequence_em(self, data, check_random_state(self.random_state))
        return self

    def _prepare(self, X, lengths, inputs):
        self._check_options()
        self._check()
        reset = not hasattr(self, "n_features_in_")
        return self._validate_sequences(X, lengths, inputs, reset=reset)

    def score(self, X, y=None, *, lengths=None, inputs=None):
        """Total log-likelihood of the sequences given the inputs.

        Returns
        -------
        log_likelihood : float
        """
        check_y_slot(self, "score", X, y)
        return float(self._posteriors(self._prepare(X, lengths, inputs)).log_likelihood.sum())

    @keyword_lengths
    def score_samples(self, X, *, lengths=None, inputs=None):
        """One-step predictive log-likelihood of each row, ``log p(x_t | x_<t, u_1..u_t)``.

        Returns
        -------
        log_prob : numpy.ndarray of shape (n_samples,)
        """
        return self._posteriors(self._prepare(X, lengths, inputs)).log_predictive

    @keyword_lengths
    def predict_proba(self, X, *, lengths=None, inputs=None):
        """Posterior probability of each state at each step.

        Returns
        -------
        posteriors : numpy.ndarray of shape (n_samples, n_components)
        """
        return self._posteriors(self._prepare(X, lengths, inputs)).posteriors

    @keyword_lengths
    def decode(self, X, *, lengths=None, inputs=None, algorithm=None):
        """Most likely state sequence (``viterbi``: jointly; ``map``: per step).

        Returns
        -------
        log_prob : float
        state_sequence : numpy.ndarray of shape (n_samples,)
        """
        algorithm = resolve_decoder(algorithm, self.algorithm)
        data = self._prepare(X, lengths, inputs)
        if algorithm == "viterbi":
            res = viterbi_time_varying(_log_probs(self.startprob_), self._log_transitions(data),
                                       self._log_emission(data), data.lengths)
            return float(res.log_prob.sum()), res.path
        return map_decode(self._posteriors(data).posteriors)

    @keyword_lengths
    def predict(self, X, *, lengths=None, inputs=None):
        """Most likely state of each step, decoded with ``algorithm``.

        Returns
        -------
        state_sequence : numpy.ndarray of shape (n_samples,)
        """
        return self.decode(X, lengths=lengths, inputs=inputs)[1]

    def sample(self, n_samples=1, random_state=None, currstate=None, *, inputs=None):
        """Draw one sequence of ``n_samples`` steps driven by ``inputs``.

        Parameters
        ----------
        %(sample_options)s
        inputs : array-like of shape (n_samples, n_inputs)
            Required when the model has inputs.

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, n_features)
        state_sequence : numpy.ndarray of shape (n_samples,)
        """
        self._check_options()
        self._check()
        n, start = self._sampling_start(n_samples, currstate)
        u = _check_inputs(inputs, n, self._n_inputs())
        rng = check_random_state(self.random_state if random_state is None else random_state)
        k = self.n_components
        data = _InputData(X=np.zeros((n, 0)), inputs=u, lengths=np.array([n]), starts=np.eye(1, n, dtype=bool)[0])
        trans = np.exp(np.broadcast_to(self._log_transitions(data), (n, k, k)))
        draws = rng.random_sample(n)
        states = np.empty(n, dtype=np.int64)
        probs = start
        for t in range(n):
            if t > 0:
                probs = trans[t, states[t - 1]]
            states[t] = min(int(np.searchsorted(np.cumsum(probs), draws[t] * probs.sum(), side="right")), k - 1)
        eta = self._emission_eta(data)[np.arange(n), states]  # (n, n_outputs)
        if self.emission == "gaussian":
            X = eta + np.sqrt(np.asarray(self.covars_, dtype=np.float64)[states]) * rng.standard_normal(eta.shape)
        elif self.emission == "bernoulli":
            X = (rng.random_sample(eta.shape) < special.expit(eta)).astype(np.float64)
        elif self.emission == "poisson":
            X = rng.poisson(np.exp(eta)).astype(np.float64)
        else:
            p = special.softmax(eta, axis=1)
            cdf = np.cumsum(p, axis=1)
            X = np.minimum((rng.random_sample((n, 1)) * cdf[:, -1:] >= cdf).sum(1), p.shape[1] - 1)
            X = X[:, None].astype(np.float64)
        return X, states

    def get_stationary_distribution(self):
        """Stationary distribution of a fixed transition matrix (``transition_model="fixed"`` only)."""
        if self.transition_model != "fixed":
            raise ValueError("the transitions depend on the inputs (transition_model='input'): there is no single "
                             "stationary distribution")
        return super().get_stationary_distribution()

    def _n_parameters(self):
        k, m = self.n_components, self._n_inputs()
        counts = {"s": k - 1}
        counts["t"] = k * (k - 1) if self.transition_model == "fixed" else k * (k - 1) * (m + self.fit_intercept)
        q = (m if self.emission_inputs else 0) + self.fit_intercept
        n_out = self._n_outputs()
        counts["e"] = k * (n_out - 1) * q if self.emission == "categorical" else k * n_out * q
        if self.emission == "gaussian":
            counts["c"] = k * n_out
        return counts

    @keyword_lengths
    def aic(self, X, *, lengths=None, inputs=None):
        """Akaike information criterion ``-2 log L + 2 n_free_parameters`` (lower is better)."""
        return -2 * self.score(X, lengths=lengths, inputs=inputs) + 2 * sum(self._n_parameters().values())

    @keyword_lengths
    def bic(self, X, *, lengths=None, inputs=None):
        """Bayesian information criterion ``-2 log L + n_free_parameters log(n_samples)`` (lower is better)."""
        n = X.shape[0] if hasattr(X, "shape") else len(X)
        return (-2 * self.score(X, lengths=lengths, inputs=inputs)
                + sum(self._n_parameters().values()) * np.log(n))
