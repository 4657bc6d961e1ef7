"""Shared machinery of the EM-fitted mixtures (the estimator side of the EM engine)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import DensityMixin

from probkit.base import COMPUTE_CONSTRAINTS, ProbkitEstimator, StrOptions, non_negative_int, non_negative_real, positive_int
from probkit.em.engine import EStepResult, run_em
from probkit.em.init import INIT_METHODS, initial_responsibilities
from probkit.em.online import DEFAULT_LEARNING_DECAY, DEFAULT_LEARNING_OFFSET, StepwiseEM, check_schedule
from probkit.components import add_stats
from probkit.utils._docstrings import COMMON_DOCS, DocFragments, stepwise_returns
from probkit.utils._array import to_numpy
from probkit.utils.monitor import mixture_monitor_factory
from probkit.utils.random import check_random_state, torch_generator
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_sample_weight, check_stochastic

__all__ = ["MIXTURE_LOOP_CONSTRAINTS", "BaseMixture", "MixtureDensityMixin", "mixture_estep", "sample_mixture"]

# Rows per E-step block: bounds the (rows, K, d) temporaries of the batched
# log-density and statistics products, so peak memory does not grow with n_samples * K.
DEFAULT_CHUNK_SIZE = 8192

_DOCS = DocFragments(parameters=COMMON_DOCS.parameters, sections={
    **COMMON_DOCS.sections,
    "stepwise_returns": stepwise_returns(
        "``lower_bound_`` is the mean log-likelihood of the latest batch under the parameters\n"
        "before its step and ``lower_bounds_`` holds one such value per batch."),
})


@dataclass
class MixtureData:
    """Validated training data as the hooks see it."""

    X: np.ndarray            # validated numpy array (for initialisers working in numpy)
    x: torch.Tensor          # the same data on the compute device/dtype
    weight: torch.Tensor | None
    total_weight: float


def mixture_estep(components, log_weights, x, weight=None, chunk_size=DEFAULT_CHUNK_SIZE, with_stats=True):
    """One mixture E-step over row blocks.

    Parameters
    ----------
    components : BatchedComponents or ComponentList
    log_weights : torch.Tensor of shape (K,)
    x : torch.Tensor of shape (n, ...)
    weight : torch.Tensor of shape (n,), optional
        Sample weights.
    chunk_size : int
        Rows per block.
    with_stats : bool
        Also accumulate responsibilities' sums and component statistics.

    Returns
    -------
    log_likelihood : float
        Total weighted log-likelihood.
    resp_sum : torch.Tensor of shape (K,) or None
    stats : component statistics or None
    """
    n = x.shape[0]
    total_ll = 0.0
    resp_sum = None
    stats = None
    for start in range(0, n, chunk_size):
        xb = x[start:start + chunk_size]
        weighted = components.log_prob(xb) + log_weights
        lse = torch.logsumexp(weighted, dim=1)
        wb = None if weight is None else weight[start:start + chunk_size]
        total_ll += float(lse.sum() if wb is None else (lse * wb).sum())
        if with_stats:
            resp = torch.exp(weighted - lse.unsqueeze(1))
            if wb is not None:
                resp = resp * wb.unsqueeze(1)
            rs = resp.sum(0)
            resp_sum = rs if resp_sum is None else resp_sum + rs
            stats = add_stats(stats, components.summarize(xb, resp))
    return total_ll, resp_sum, stats


def sample_mixture(weights, sample_member, n_samples, random_state, device=None):
    """Draw ``n_samples`` from a mixture, grouped by component (scikit-learn's layout).

    Parameters
    ----------
    weights : numpy.ndarray of shape (K,)
        Mixture weights (normalised here).
    sample_member : callable
        ``sample_member(k, n, generator)`` returns ``n`` draws of component ``k`` as a tensor.
    n_samples : int
    random_state : None, int or RandomState
        Draws the component counts and seeds the torch generator of the components' draws.
    device : torch.device, optional
        Device of the components' parameters (the generator must live there).

    Returns
    -------
    X : numpy.ndarray of shape (n_samples, n_features)
    y : numpy.ndarray of shape (n_samples,)

    Examples
    --------
    >>> from probkit.distributions import Poisson
    >>> rates = [1.0, 50.0]
    >>> X, y = sample_mixture(np.array([0.5, 0.5]), lambda k, n, g: Poisson(rate=rates[k])._sample((n,), g), 6, 0)
    >>> X.shape, sorted(set(y.tolist()))
    ((6, 1), [0, 1])
    """
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires at least one sample.")
    rng = check_random_state(random_state)
    weights = np.asarray(weights, dtype=np.float64)
    counts = rng.multinomial(n_samples, weights / weights.sum())
    gen = torch_generator(rng, device=device)
    parts, labels = [], []
    with torch.no_grad():
        for k, c in enumerate(counts):
            if c > 0:
                parts.append(sample_member(k, int(c), gen).reshape(int(c), -1))
                labels.append(np.full(c, k, dtype=int))
    return to_numpy(torch.cat(parts, 0)), np.concatenate(labels)

# scikit-learn's sentence, which its users filter warnings on
_SKLEARN_NOT_CONVERGED = ("Best performing initialization did not converge. Try different init parameters, or "
                          "increase max_iter, tol, or check for degenerate data.")


#: The constraints of the options every mixture's fitting loop takes (EM or CAVI).
MIXTURE_LOOP_CONSTRAINTS = {
    "n_components": positive_int,
    "tol": non_negative_real,
    "max_iter": non_negative_int,
    "n_init": positive_int,
    "init_params": [StrOptions(set(INIT_METHODS))],
    "random_state": ["random_state"],
    "warm_start": ["boolean"],
    "verbose": ["verbose"],
}


class MixtureDensityMixin(DensityMixin):
    """Prediction, scoring and sampling of a fitted mixture, written once for every mixture.

    A subclass provides two hooks:

    * ``_weighted_log_prob_draws(X)``: validates ``X`` and returns a tensor of shape
      ``(n_draws, n_samples, n_components)`` of ``log pi_k + log p(x | theta_k)``: one draw
      for a point estimate (EM, or the expectations of a variational fit), one per
      posterior sample for a sampled fit (the predictive averages over draws);
    * ``_sampling_parts()``: ``(weights, sample_member, device)`` for :func:`sample_mixture`.
    """

    @limit_torch_threads
    def score_samples(self, X):
        """Log-likelihood of each row under the mixture (averaged over posterior draws if sampled).

        Returns
        -------
        log_prob : numpy.ndarray of shape (n_samples,)
        """
        lp = torch.logsumexp(self._weighted_log_prob_draws(X), dim=-1)
        if lp.shape[0] == 1:
            return to_numpy(lp[0])
        return to_numpy(torch.logsumexp(lp, 0) - math.log(lp.shape[0]))

    def score(self, X, y=None):
        """Mean log-likelihood per row of ``X`` (the mean of :meth:`score_samples`)."""
        return float(np.mean(self.score_samples(X)))

    @limit_torch_threads
    def predict_proba(self, X):
        """Posterior probability of each component for each row (responsibilities).

        Returns
        -------
        resp : numpy.ndarray of shape (n_samples, n_components)
        """
        return to_numpy(torch.softmax(self._weighted_log_prob_draws(X), dim=-1).mean(0))

    @limit_torch_threads
    def predict(self, X):
        """Most probable component of each row.

        Returns
        -------
        labels : numpy.ndarray of shape (n_samples,)
        """
        lp = self._weighted_log_prob_draws(X)
        # One draw: the argmax of the log-probabilities (no tie from underflowing probabilities).
        best = lp[0] if lp.shape[0] == 1 else torch.softmax(lp, dim=-1).mean(0)
        return to_numpy(best.argmax(1))

    @limit_torch_threads
    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : None, int or RandomState, optional
            Defaults to the estimator's ``random_state`` (scikit-learn's behaviour).

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, n_features)
            Samples grouped by component.
        y : numpy.ndarray of shape (n_samples,)
            Component labels.
        """
        weights, sample_member, device = self._sampling_parts()
        return sample_mixture(weights, sample_member, n_samples,
                              self.random_state if random_state is None else random_state, device=device)


@_DOCS.fill
class BaseMixture(MixtureDensityMixin, ProbkitEstimator):
    """Base class of EM-fitted mixtures: the E-step, M-step, prediction and sampling.

    Subclasses provide ``_check_parameters``, ``_template_components``,
    ``_initialize_components``, ``_components_from_attributes``, ``_set_attributes``
    and ``_n_parameters``; everything else (the EM loop, ``n_init``, ``warm_start``,
    prediction, scoring, sampling, BIC/AIC) is shared.
    """

    _parameter_constraints = {**MIXTURE_LOOP_CONSTRAINTS, **COMPUTE_CONSTRAINTS}

    chunk_size = DEFAULT_CHUNK_SIZE
    # The running statistics of partial_fit are not saved: a loaded model starts a new online run.
    _io_exclude = ("_stepwise",)

    # ------------------------------------------------------------------ validation
    def _validate_train(self, X, sample_weight, reset=True):
        self._validate_params()
        X = self._validate_X(X, reset=reset, ensure_min_samples=2 if reset else 1)
        k = self._n_components_effective()
        if reset and X.shape[0] < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {X.shape[0]}"
            )
        device, dtype = self._compute_setup()
        x = torch.as_tensor(X, dtype=dtype, device=device)
        weight = None
        total = float(X.shape[0])
        if sample_weight is not None:
            w = check_sample_weight(sample_weight, X.shape[0])
            weight = torch.as_tensor(w, dtype=dtype, device=device)
            total = float(w.sum())
        return MixtureData(X=X, x=x, weight=weight, total_weight=total)

    def _validate_predict(self, X):
        self._check_fitted()
        X = self._validate_X(X, reset=False)
        device, dtype = self._compute_setup()
        x = torch.as_tensor(X, dtype=dtype, device=device)
        return x

    def _n_components_effective(self):
        return self.n_components

    def _io_check_state(self):
        """Check fitted attributes restored by :func:`probkit.load`, as hand-set parameters are checked.

        The components are rebuilt (their distributions check their parameters) and
        ``weights_`` must hold one probability per component. Nothing is checked before
        ``weights_`` exists (fit sets it last; every use of the model needs it).
        """
        if not hasattr(self, "weights_"):
            return
        _, components = self._components_from_attributes()
        k = self._n_components_effective()
        weights = np.asarray(self.weights_, dtype=np.float64)
        if weights.shape != (k,) or components.n_components != k:
            raise ValueError(f"weights_ and the components must number n_components={k}, got weights_ of shape "
                             f"{weights.shape} and {components.n_components} components")
        _, dtype = self._compute_setup()
        check_stochastic(weights, "weights_", atol=max(1e-8, 100 * torch.finfo(dtype).eps))

    # ------------------------------------------------------------------ EM hooks
    def _em_initialize(self, data, random_state):
        resp = initial_responsibilities(data.X, self.n_components, self.init_params, random_state)
        resp_t = torch.as_tensor(resp, dtype=data.x.dtype, device=data.x.device)
        if data.weight is not None:
            resp_t = resp_t * data.weight.unsqueeze(1)
        self._initialize_components(data, resp_t)

    def _em_expectation(self, data):
        ll, resp_sum, stats = mixture_estep(
            self._components, torch.log(self._weights_t), data.x, data.weight, self.chunk_size
        )
        return EStepResult(log_likelihood=ll, n_samples=data.total_weight, stats=(resp_sum, stats))

    def _em_maximization(self, stats):
        resp_sum, comp_stats = stats
        self._components = self._components.refit(comp_stats)
        self._weights_t = resp_sum / resp_sum.sum()

    def _em_get_state(self):
        return (self._weights_t.clone(), self._components)

    def _em_set_state(self, state):
        self._weights_t, self._components = state

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with the EM algorithm.

        Runs ``n_init`` initialisations and keeps the parameters with the highest
        log-likelihood; each run iterates until the gain of the mean log-likelihood is
        below ``tol`` or ``max_iter`` iterations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights of the rows (a weight of 2 counts a row twice).

        Returns
        -------
        self
        """
        self.fit_predict(X, y, sample_weight=sample_weight)
        return self

    @limit_torch_threads
    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model and return the component label of each row of ``X``.

        A final E-step makes the labels agree with ``fit(X).predict(X)``.

        Returns
        -------
        labels : numpy.ndarray of shape (n_samples,)
        """
        data = self._validate_train(X, sample_weight)
        self._check_parameters(data)
        random_state = check_random_state(self.random_state)
        warm = bool(self.warm_start and hasattr(self, "converged_"))
        if warm:
            self._weights_t, self._components = self._components_from_attributes()
        result = run_em(
            self,
            data,
            max_iter=self.max_iter,
            tol=self.tol,
            n_init=self.n_init,
            random_state=random_state,
            warm_start=warm,
            initial_objective=self.lower_bound_ if warm else -math.inf,
            objective="mean",
            verbose=self.verbose,
            desc=type(self).__name__,
            monitor_factory=mixture_monitor_factory(self.verbose, getattr(self, "verbose_interval", 10)),
            warning_lead=_SKLEARN_NOT_CONVERGED,
        )
        self._set_attributes(self._weights_t, self._components)
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.objective
        self.lower_bounds_ = result.history
        del self._weights_t, self._components
        return self._estimate_weighted_log_prob(data.x).argmax(1).cpu().numpy()

    @limit_torch_threads
    def partial_fit(self, X, y=None, sample_weight=None, *, learning_offset=DEFAULT_LEARNING_OFFSET,
                    learning_decay=DEFAULT_LEARNING_DECAY):
        """One step of stepwise (online) EM on a mini-batch.

        The running expected sufficient statistics (per row) are averaged with the
        batch's, ``s <- (1 - rho_t) s + rho_t s(batch) / n_batch``, and the parameters
        become the M-step of ``n_seen * s`` (``n_seen``: total weight of the rows seen so
        far), with ``rho_t = (learning_offset + t) ** -learning_decay`` for the ``t``-th
        batch (see :mod:`probkit.em.online`). The first call initialises the parameters
        from its batch with ``init_params`` (and the ``*_init`` parameters), as ``fit``
        does with ``n_init=1``, unless the model was fitted: then it continues from the
        fitted parameters. A ``fit`` (or parameters set by hand) between two calls starts
        a new online run from those parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The mini-batch (the first one needs ``n_samples >= n_components``).
        y : Ignored
        sample_weight : array-like of shape (n_samples,), optional
        %(stepwise_options)s

        %(stepwise_returns)s

        Examples
        --------
        >>> import numpy as np
        >>> from probkit import GaussianMixture
        >>> rng = np.random.RandomState(0)
        >>> gm = GaussianMixture(2, random_state=0)
        >>> for _ in range(50):
        ...     centres = rng.choice([-4.0, 4.0], size=(100, 1))
        ...     gm = gm.partial_fit(centres + rng.normal(size=(100, 1)))
        >>> np.round(np.sort(gm.means_[:, 0]))
        array([-4.,  4.])
        >>> gm.n_iter_
        50
        """
        check_schedule(learning_offset, learning_decay, f"{type(self).__name__}.partial_fit")
        state = getattr(self, "_stepwise", None)
        resume = state is not None and state.owns(self)
        fitted = hasattr(self, "weights_")
        data = self._validate_train(X, sample_weight, reset=not fitted)
        self._check_parameters(data)
        if resume:
            self._em_set_state(state.hook_state)
        else:
            state = StepwiseEM()
            if fitted:
                self._weights_t, self._components = self._components_from_attributes()
            else:
                self._em_initialize(data, check_random_state(self.random_state))
        estep, _ = state.step(self, data, data.total_weight, learning_offset=learning_offset,
                              learning_decay=learning_decay)
        state.hook_state = self._em_get_state()
        self._set_attributes(self._weights_t, self._components)
        del self._weights_t, self._components
        value = estep.log_likelihood / estep.n_samples
        self.n_iter_ = state.n_steps
        self.lower_bound_ = value
        if resume:
            self.lower_bounds_.append(value)
        else:
            self.lower_bounds_ = [value]
        self.converged_ = False
        state.bind(self)
        self._stepwise = state
        return self

    def _estimate_weighted_log_prob(self, x):
        weights, components = self._components_from_attributes()
        with torch.no_grad():
            blocks = [components.log_prob(x[s:s + self.chunk_size]) + torch.log(weights)
                      for s in range(0, x.shape[0], self.chunk_size)]
        return torch.cat(blocks, 0)

    def _weighted_log_prob_draws(self, X):
        return self._estimate_weighted_log_prob(self._validate_predict(X)).unsqueeze(0)

    def _sampling_parts(self):
        self._check_fitted()
        weights, components = self._components_from_attributes()
        return to_numpy(weights), components.sample_member, weights.device

    def _n_parameters(self):
        weights, components = self._components_from_attributes()
        return int(components.n_parameters() + components.n_components - 1)

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better).

        ``-2 * log-likelihood + n_parameters * log(n_samples)``.
        """
        n = np.asarray(X).shape[0] if not isinstance(X, torch.Tensor) else X.shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better): ``-2 log L + 2 n_parameters``."""
        n = np.asarray(X).shape[0] if not isinstance(X, torch.Tensor) else X.shape[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()
