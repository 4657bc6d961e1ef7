"""Latent Dirichlet allocation: variational Bayes (batch CAVI, online SVI) and collapsed Gibbs sampling.

The model (Blei, Ng and Jordan 2003), for documents ``d`` of word counts ``n_dw`` over a
vocabulary of ``V`` words and ``K`` topics::

    beta_k  ~ Dirichlet(eta)          topic k: a distribution over words
    theta_d ~ Dirichlet(alpha)        document d: a distribution over topics
    z_di    ~ Categorical(theta_d)    the topic of token i
    w_di    ~ Categorical(beta_{z_di})

Every factor is a Dirichlet-categorical conjugate pair, so mean-field variational Bayes
``q(beta_k) = Dirichlet(lambda_k)``, ``q(theta_d) = Dirichlet(gamma_d)``,
``q(z_di) = Categorical(phi_di)`` has closed-form coordinate updates:

* local (per document): ``phi_dwk ∝ exp(E[log theta_dk] + E[log beta_kw])`` and
  ``gamma_d = alpha + sum_w n_dw phi_dw``, iterated to convergence;
* global: ``lambda = eta + sum_d n_dw phi_dw`` -- the conjugate posterior of the topics
  given the expected counts (batch CAVI), or, online (Hoffman, Blei and Bach 2010), a step
  ``lambda <- (1 - rho_t) lambda + rho_t (eta + D / |B| sum_{d in B} n_dw phi_dw)`` on a
  mini-batch ``B`` with ``rho_t = (tau_0 + t)^(-kappa)``: a natural-gradient step on the
  ELBO.

:class:`LatentDirichletAllocation` follows scikit-learn's estimator of the same name
(parameters, attributes, random initialisation and stopping rules), so that the same
``random_state`` gives the same fit; :class:`CollapsedGibbsLDA` samples the exact
posterior of the same model as the MCMC reference.
"""

from __future__ import annotations

import functools
import numbers
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import gen_batches
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from probkit.base import (NumberInterval, ProbkitEstimator, StrOptions, non_negative_int, non_negative_real,
                          positive_int, positive_real)
from probkit.distributions import Categorical, Dirichlet
from probkit.distributions.base import SufficientStats
from probkit.utils._docstrings import DocFragments, parameters_returns
from probkit.utils.random import check_random_state
from probkit.utils.threads import torch_threads
from probkit.vi.conjugate import ConjugateFamily

__all__ = ["CollapsedGibbsLDA", "LatentDirichletAllocation"]

LEARNING_METHODS = ("batch", "online")
# scikit-learn's initialisation: lambda and gamma start as Gamma(100, 1/100) draws (mean 1, sd 0.1).
_INIT_SHAPE = 100.0
_INIT_SCALE = 0.01


def _kernels():
    from probkit.topics import _lda_kernels

    return _lda_kernels


def _expected_log(concentration):
    """``E[log p]`` under ``Dirichlet(concentration)`` along the last axis (zero for one category: ``p = 1``)."""
    conc = np.asarray(concentration, dtype=np.float64)
    if conc.shape[-1] < 2 or conc.shape[0] == 0:
        return np.zeros_like(conc)
    return Dirichlet(concentration=torch.as_tensor(conc))._mean_parameters()["log_x"].numpy()


def _kl_from_symmetric(concentration, prior):
    """``sum_rows KL(Dirichlet(row) || Dirichlet(prior, ..., prior))`` (zero for one category)."""
    conc = np.asarray(concentration, dtype=np.float64)
    if conc.shape[-1] < 2 or conc.shape[0] == 0:
        return 0.0
    q = Dirichlet(concentration=torch.as_tensor(conc))
    p = Dirichlet(concentration=torch.full((conc.shape[-1],), float(prior), dtype=torch.float64))
    return float(q._kl(p).sum())


@functools.lru_cache(maxsize=8)
def _categorical_family(n_words):
    """The words of a topic: a categorical over ``n_words`` symbols with its Dirichlet conjugate prior."""
    return ConjugateFamily(Categorical(n_categories=n_words))


def _n_threads(n_jobs, n_docs):
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None or a non-zero integer, got {n_jobs!r}")
    n = int(n_jobs) if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + int(n_jobs))
    return max(1, min(n, n_docs))


def _blocks(n_docs, n_threads):
    bounds = np.linspace(0, n_docs, n_threads + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


_DOCUMENTS = ["X : {array-like, sparse matrix} of shape (n_documents, n_features)\n"
              "    Word counts, one row per document (non-negative).",
              "y : None\n    Ignored."]
_DOCS = DocFragments(sections={"documents_to_float": parameters_returns(_DOCUMENTS, "float"),
                              "documents_to_self": parameters_returns(_DOCUMENTS, "self")})


@_DOCS.fill
class _BaseLDA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ProbkitEstimator):
    """What every LDA estimator shares: input checks, the variational E-step given the
    topics ``q(beta) = Dirichlet(components_)``, the evidence lower bound, perplexity."""

    _parameter_constraints = {
        "n_components": positive_int,
        "doc_topic_prior": [None, *positive_real],
        "topic_word_prior": [None, *positive_real],
        "mean_change_tol": non_negative_real,
        "max_doc_update_iter": non_negative_int,
        "random_state": ["random_state"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------ input
    def _training_documents(self, X):
        """How every ``fit`` starts: the constructor parameters checked, then ``X`` as the
        float64 CSR matrix of the training counts (``n_features_in_`` recorded)."""
        self._validate_params()
        return self._check_X(X, reset=True, whom=f"{type(self).__name__}.fit")[0]

    def _check_X(self, X, *, reset, whom):
        """``X`` as a float64 CSR matrix of non-negative counts (and its original dtype)."""
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        X = validate_data(self, X, reset=reset, accept_sparse="csr", dtype=[np.float64, np.float32])
        check_non_negative(X, whom)
        dtype = X.dtype
        csr = X.astype(np.float64) if sp.issparse(X) else sp.csr_matrix(np.asarray(X, dtype=np.float64))
        csr = sp.csr_matrix(csr)
        csr.sum_duplicates()
        csr.sort_indices()
        return csr, dtype

    # ------------------------------------------------------------------ topics as conjugate posteriors
    def _set_components(self, components):
        """Store ``lambda`` and ``exp(E[log beta])``: the expected log-probabilities of a
        categorical under its Dirichlet posterior (:meth:`ConjugateFamily.expected_natural`)."""
        components = np.asarray(components, dtype=np.float64)
        if components.shape[1] >= 2:
            post = Dirichlet(concentration=torch.as_tensor(components))
            expected_log = _categorical_family(components.shape[1]).expected_natural(post)[0]["x"].numpy()
        else:  # a one-word vocabulary: every topic emits that word with probability one
            expected_log = np.zeros_like(components)
        self.components_ = components
        self.exp_dirichlet_component_ = np.exp(expected_log)

    # ------------------------------------------------------------------ E-step
    def _e_step(self, X, *, gamma_init, want_stats):
        """Local coordinate ascent for the documents of ``X`` (CSR) given the topics.

        Returns ``gamma`` (n_docs, K) and, with ``want_stats``, the expected word-topic
        counts ``sum_d n_dw phi_dwk`` as a (K, V) array.
        """
        kern = _kernels()
        n_docs = X.shape[0]
        k = self.exp_dirichlet_component_.shape[0]
        gamma = np.ones((n_docs, k)) if gamma_init is None else np.array(gamma_init, dtype=np.float64)
        exp_beta_t = np.ascontiguousarray(self.exp_dirichlet_component_.T)
        indptr = X.indptr.astype(np.int64)
        indices = X.indices.astype(np.int64)
        data = np.ascontiguousarray(X.data, dtype=np.float64)
        eps = float(np.finfo(np.float64).eps)
        blocks = _blocks(n_docs, _n_threads(getattr(self, "n_jobs", None), max(n_docs, 1)))
        stats = [np.zeros_like(exp_beta_t) if want_stats else np.zeros((0, k)) for _ in blocks]
        args = (indptr, indices, data, exp_beta_t, gamma, self.doc_topic_prior_, int(self.max_doc_update_iter),
                float(self.mean_change_tol), eps, bool(want_stats))

        def run(i):
            kern.e_step_block(*args, stats[i], blocks[i][0], blocks[i][1])

        if len(blocks) > 1:
            with ThreadPoolExecutor(max_workers=len(blocks)) as pool:
                list(pool.map(run, range(len(blocks))))
        else:
            for i in range(len(blocks)):
                run(i)
        if not want_stats:
            return gamma, None
        total = stats[0]
        for s in stats[1:]:
            total = total + s
        return gamma, total.T * self.exp_dirichlet_component_

    def _approx_bound(self, X, gamma, sub_sampling=False):
        """The evidence lower bound at ``q(theta_d) = Dirichlet(gamma_d)``, ``q(beta) = Dirichlet(components_)``
        and the optimal ``q(z)``:

        ``sum_dw n_dw log sum_k exp(E log theta_dk + E log beta_kw) - sum_d KL(q(theta_d) || p)
        - sum_k KL(q(beta_k) || p)`` (the document terms scaled by ``total_samples / n_docs``
        with ``sub_sampling``), as scikit-learn's ``_approx_bound``.
        """
        kern = _kernels()
        n_docs = gamma.shape[0]
        with torch.no_grad(), torch_threads(1):
            e_log_theta = _expected_log(gamma)
            e_log_beta_t = np.ascontiguousarray(_expected_log(self.components_).T)
            words = kern.word_bound_block(X.indptr.astype(np.int64), X.indices.astype(np.int64),
                                          np.ascontiguousarray(X.data, dtype=np.float64), e_log_theta,
                                          e_log_beta_t, 0, n_docs)
            kl_theta = _kl_from_symmetric(gamma, self.doc_topic_prior_)
            kl_beta = _kl_from_symmetric(self.components_, self.topic_word_prior_)
        score = words - kl_theta
        if sub_sampling:
            score *= float(self.total_samples) / n_docs
        return score - kl_beta

    # ------------------------------------------------------------------ public API
    def _check_fitted_lda(self):
        check_is_fitted(self, ["components_", "exp_dirichlet_component_"])

    def _unnormalized_transform(self, X):
        with torch.no_grad(), torch_threads(1):
            gamma, _ = self._e_step(X, gamma_init=None, want_stats=False)
        return gamma

    def transform(self, X, *, normalize=True):
        """Document-topic distributions of the documents in ``X``.

        The variational posterior ``q(theta_d) = Dirichlet(gamma_d)`` given the fitted topics,
        from the same local coordinate ascent as training, started at ``gamma_d = 1`` (so the
        result does not depend on any random state).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_documents, n_features)
            Word counts over the training vocabulary (the same columns).
        normalize : bool, default=True
            Return the posterior means ``gamma_d / sum(gamma_d)``; ``False`` returns ``gamma``.

        Returns
        -------
        ndarray of shape (n_documents, n_components), in the dtype of ``X``.
        """
        self._check_fitted_lda()
        csr, dtype = self._check_X(X, reset=False, whom=f"{type(self).__name__}.transform")
        gamma = self._unnormalized_transform(csr)
        if normalize:
            gamma = gamma / gamma.sum(axis=1, keepdims=True)
        return gamma.astype(dtype, copy=False)

    def fit_transform(self, X, y=None, *, normalize=True):
        """Fit to ``X``, then return :meth:`transform` of ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_documents, n_features)
        y : None
            Ignored.
        normalize : bool, default=True

        Returns
        -------
        ndarray of shape (n_documents, n_components)
        """
        return self.fit(X, y).transform(X, normalize=normalize)

    def score(self, X, y=None):
        """The evidence lower bound of ``X`` (an approximate log-likelihood; larger is better).

        %(documents_to_float)s
        """
        self._check_fitted_lda()
        csr, _ = self._check_X(X, reset=False, whom=f"{type(self).__name__}.score")
        return float(self._approx_bound(csr, self._unnormalized_transform(csr)))

    def _perplexity(self, X, gamma, sub_sampling=False):
        words = float(X.sum())
        if words <= 0:
            raise ValueError("perplexity needs at least one word in X (every count is zero)")
        bound = self._approx_bound(X, gamma, sub_sampling)
        if sub_sampling:
            words *= float(self.total_samples) / X.shape[0]
        return float(np.exp(-bound / words))

    def perplexity(self, X, sub_sampling=False):
        """Perplexity ``exp(-bound / n_words)`` of ``X`` (lower is better).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_documents, n_features)
        sub_sampling : bool, default=False
            Treat ``X`` as a sample of ``total_samples`` documents (the bound's document
            terms and the word count are scaled up accordingly).

        Returns
        -------
        float
        """
        self._check_fitted_lda()
        csr, _ = self._check_X(X, reset=False, whom=f"{type(self).__name__}.perplexity")
        return self._perplexity(csr, self._unnormalized_transform(csr), sub_sampling)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def _io_check_state(self):
        """Check restored topics: positive finite pseudo-counts of shape (n_components, n_features_in_)."""
        if not hasattr(self, "components_"):
            return
        comp = np.asarray(self.components_, dtype=np.float64)
        if comp.ndim != 2 or comp.shape[0] != self.n_components or \
                comp.shape[1] != getattr(self, "n_features_in_", comp.shape[1]):
            raise ValueError(f"components_ must have shape (n_components={self.n_components}, n_features_in_), "
                             f"got {comp.shape}")
        if not np.all(np.isfinite(comp)) or np.any(comp <= 0):
            raise ValueError("components_ must hold positive finite Dirichlet pseudo-counts")
        expected = np.asarray(self.exp_dirichlet_component_, dtype=np.float64)
        if expected.shape != comp.shape or not np.all(np.isfinite(expected)) or np.any(expected <= 0):
            raise ValueError("exp_dirichlet_component_ must hold positive finite values of the shape of components_")

    def _resolve_priors(self):
        k = self.n_components
        self.doc_topic_prior_ = 1.0 / k if self.doc_topic_prior is None else float(self.doc_topic_prior)
        self.topic_word_prior_ = 1.0 / k if self.topic_word_prior is None else float(self.topic_word_prior)


@_DOCS.fill
class LatentDirichletAllocation(_BaseLDA):
    """Latent Dirichlet allocation fitted by variational Bayes: batch CAVI or online SVI.

    The estimator of scikit-learn's ``LatentDirichletAllocation`` (same parameters, same
    attributes, same random initialisation, same results from the same ``random_state``)
    on probkit's conjugate machinery: the topics' variational posteriors are
    :class:`~probkit.distributions.Dirichlet` conjugate posteriors of categorical word
    distributions given the expected counts, ``exp(E[log beta])`` comes from
    :meth:`~probkit.vi.ConjugateFamily.expected_natural` and the bound's KL terms from
    :meth:`Dirichlet.kl_divergence <probkit.distributions.Dirichlet.kl_divergence>`. The
    per-document updates run in a compiled loop, on ``n_jobs`` threads.

    ``learning_method="batch"`` is coordinate-ascent variational inference: every
    iteration updates every document's ``q(theta_d), q(z_d)`` to convergence, then sets
    ``lambda = eta + expected counts``. ``"online"`` is stochastic variational inference
    (Hoffman, Blei and Bach 2010): mini-batches of ``batch_size`` documents and steps
    ``rho_t = (learning_offset + t)^(-learning_decay)``; :meth:`partial_fit` takes one pass
    over the mini-batches of the documents it is given (``total_samples`` is then the
    corpus size).

    Parameters
    ----------
    n_components : int, default=10
        Number of topics ``K``.
    doc_topic_prior : float, optional
        ``alpha`` of ``theta_d ~ Dirichlet(alpha)``; ``1 / n_components`` by default.
    topic_word_prior : float, optional
        ``eta`` of ``beta_k ~ Dirichlet(eta)``; ``1 / n_components`` by default.
    learning_method : {"batch", "online"}, default="batch"
    learning_decay : float, default=0.7
        ``kappa`` in ``(0.5, 1]`` for convergence of online learning.
    learning_offset : float, default=10.0
        ``tau_0 >= 1``, down-weighting the first online steps.
    max_iter : int, default=10
        Passes over the data (epochs) of :meth:`fit`.
    batch_size : int, default=128
        Documents per online mini-batch.
    evaluate_every : int, default=-1
        Compute the training perplexity every this many passes (stopping when it changes
        by less than ``perp_tol``); ``<= 0`` never does.
    total_samples : float, default=1e6
        Corpus size assumed by :meth:`partial_fit` (and ``perplexity(sub_sampling=True)``).
    perp_tol : float, default=0.1
    mean_change_tol : float, default=1e-3
        A document's local iteration stops when the mean absolute change of ``gamma_d`` is below this.
    max_doc_update_iter : int, default=100
        Most local iterations per document and E-step.
    n_jobs : int, optional
        Threads over documents in the E-step (``None``: one; ``-1``: all cores). Results
        depend on it only through the order of floating-point sums.
    verbose : int, default=0
    random_state : None, int or RandomState
        Seeds the initial ``lambda`` and the initial ``gamma`` of every training E-step,
        drawn in scikit-learn's order.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        ``lambda``: the Dirichlet pseudo-counts of every topic (normalise the rows for the
        topics' word distributions).
    exp_dirichlet_component_ : ndarray of shape (n_components, n_features)
        ``exp(E[log beta])``.
    doc_topic_prior_, topic_word_prior_ : float
    n_batch_iter_ : int
        Global updates made, plus one (scikit-learn's count).
    n_iter_ : int
        Passes over the data.
    bound_ : float
        Final perplexity of the training data.
    random_state_ : RandomState
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` had string column names.

    Notes
    -----
    Counts may be non-integer (e.g. tf-idf weights), as in scikit-learn: the updates
    treat them as token weights, and the bound is then that of a weighted likelihood.
    Negative counts raise ``ValueError``. A document without words gets the prior
    (``gamma_d = alpha``, a uniform :meth:`transform`) and contributes nothing to the
    topics. Documents are the rows of ``X``: a matrix over another vocabulary (a different
    number of columns, or other column names) is refused by :meth:`transform`, :meth:`score`
    and :meth:`perplexity`.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import LatentDirichletAllocation
    >>> rng = np.random.RandomState(0)
    >>> topics = np.array([[0.45, 0.45, 0.05, 0.05], [0.05, 0.05, 0.45, 0.45]])
    >>> X = np.vstack([rng.multinomial(40, topics[i % 2]) for i in range(40)])
    >>> lda = LatentDirichletAllocation(n_components=2, random_state=0).fit(X)
    >>> word_dist = lda.components_ / lda.components_.sum(1, keepdims=True)
    >>> np.round(np.sort(word_dist[:, 0]), 1)
    array([0. , 0.5])
    >>> lda.transform(X[:2]).round(2)
    array([[0.89, 0.11],
           [0.09, 0.91]])
    """

    _parameter_constraints = {
        **_BaseLDA._parameter_constraints,
        "learning_method": [StrOptions(set(LEARNING_METHODS))],
        "learning_decay": [NumberInterval(numbers.Real, 0, 1, closed="both")],
        "learning_offset": [NumberInterval(numbers.Real, 1, None, closed="left")],
        "max_iter": non_negative_int,
        "batch_size": positive_int,
        "evaluate_every": [NumberInterval(numbers.Integral, None, None, closed="neither")],
        "total_samples": positive_real,
        "perp_tol": non_negative_real,
        # any non-zero count: negative ones count back from the number of CPUs, as in scikit-learn
        "n_jobs": [None, NumberInterval(numbers.Integral, None, -1, closed="right"),
                   NumberInterval(numbers.Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(self, n_components=10, *, doc_topic_prior=None, topic_word_prior=None, learning_method="batch",
                 learning_decay=0.7, learning_offset=10.0, max_iter=10, batch_size=128, evaluate_every=-1,
                 total_samples=1e6, perp_tol=1e-1, mean_change_tol=1e-3, max_doc_update_iter=100, n_jobs=None,
                 verbose=0, random_state=None):
        self.n_components = n_components
        self.doc_topic_prior = doc_topic_prior
        self.topic_word_prior = topic_word_prior
        self.learning_method = learning_method
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.evaluate_every = evaluate_every
        self.total_samples = total_samples
        self.perp_tol = perp_tol
        self.mean_change_tol = mean_change_tol
        self.max_doc_update_iter = max_doc_update_iter
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    def _init_latent_vars(self, n_features):
        self.random_state_ = check_random_state(self.random_state)
        self.n_batch_iter_ = 1
        self.n_iter_ = 0
        self._resolve_priors()
        self._set_components(self.random_state_.gamma(_INIT_SHAPE, _INIT_SCALE, (self.n_components, n_features)))

    def _em_step(self, X, total_samples, batch_update):
        """One E-step on the documents of ``X`` and one global update of ``lambda``."""
        gamma_init = self.random_state_.gamma(_INIT_SHAPE, _INIT_SCALE, (X.shape[0], self.n_components))
        with torch.no_grad(), torch_threads(1):
            _, expected_counts = self._e_step(X, gamma_init=gamma_init, want_stats=True)
            if batch_update and X.shape[1] >= 2:
                # The conjugate update of a categorical's Dirichlet from (expected) counts.
                prior = Dirichlet(concentration=torch.full((X.shape[1],), self.topic_word_prior_, dtype=torch.float64))
                stats = torch.as_tensor(expected_counts)
                post = _categorical_family(X.shape[1]).posterior(
                    SufficientStats("Categorical", {"count": stats.sum(1), "x": stats}), prior)
                components = post.torch_params()["concentration"].numpy()
            elif batch_update:
                components = self.topic_word_prior_ + expected_counts
            else:
                rho = (self.learning_offset + self.n_batch_iter_) ** (-self.learning_decay)
                ratio = float(total_samples) / X.shape[0]
                target = self.topic_word_prior_ + ratio * expected_counts
                components = (1.0 - rho) * self.components_ + rho * target
            self._set_components(components)
        self.n_batch_iter_ += 1

    def fit(self, X, y=None):
        """Fit the topics to the documents ``X``.

        %(documents_to_self)s
        """
        csr = self._training_documents(X)
        n_docs = csr.shape[0]
        self._init_latent_vars(csr.shape[1])
        last_bound = None
        for i in range(self.max_iter):
            if self.learning_method == "online":
                for batch in gen_batches(n_docs, self.batch_size):
                    self._em_step(csr[batch], total_samples=n_docs, batch_update=False)
            else:
                self._em_step(csr, total_samples=n_docs, batch_update=True)
            if self.evaluate_every > 0 and (i + 1) % self.evaluate_every == 0:
                bound = self._perplexity(csr, self._unnormalized_transform(csr))
                if self.verbose:
                    print(f"iteration: {i + 1} of max_iter: {self.max_iter}, perplexity: {bound:.4f}")
                if last_bound and abs(last_bound - bound) < self.perp_tol:
                    break
                last_bound = bound
            elif self.verbose:
                print(f"iteration: {i + 1} of max_iter: {self.max_iter}")
            self.n_iter_ += 1
        if csr.sum() > 0:
            self.bound_ = self._perplexity(csr, self._unnormalized_transform(csr))
        else:
            self.bound_ = float("nan")  # no words: the perplexity is undefined
        return self

    def partial_fit(self, X, y=None):
        """One online pass over the mini-batches of ``X`` (``total_samples`` is the corpus size).

        %(documents_to_self)s
        """
        self._validate_params()
        first = not hasattr(self, "components_")
        csr, _ = self._check_X(X, reset=first, whom=f"{type(self).__name__}.partial_fit")
        if first:
            self._init_latent_vars(csr.shape[1])
        for batch in gen_batches(csr.shape[0], self.batch_size):
            self._em_step(csr[batch], total_samples=self.total_samples, batch_update=False)
        return self


def match_topics(reference, topics):
    """The permutation of ``topics`` that best matches ``reference`` (Hungarian algorithm).

    Parameters
    ----------
    reference, topics : ndarray of shape (K, V)
        Rows are distributions over words (normalised inside).

    Returns
    -------
    ndarray of int, shape (K,)
        ``topics[perm]`` is aligned with ``reference`` (minimal total L1 distance).

    Examples
    --------
    >>> ref = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> match_topics(ref, ref[::-1]).tolist()
    [1, 0]
    """
    ref = np.asarray(reference, dtype=np.float64)
    top = np.asarray(topics, dtype=np.float64)
    ref = ref / ref.sum(1, keepdims=True)
    top = top / top.sum(1, keepdims=True)
    cost = np.abs(ref[:, None, :] - top[None, :, :]).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


@_DOCS.fill
class CollapsedGibbsLDA(_BaseLDA):
    """Latent Dirichlet allocation sampled by collapsed Gibbs sampling (Griffiths and Steyvers 2004).

    The MCMC reference for :class:`LatentDirichletAllocation`: the same model, whose
    exact posterior is sampled by moving one word token's topic at a time with
    ``theta`` and ``beta`` integrated out (:func:`probkit.vi.gibbs_lda`, in a compiled
    loop), over several chains. The chains' topics are matched to the first chain's by
    the Hungarian algorithm and averaged.

    A separate class rather than ``learning_method="gibbs"``: the sampler has its own
    settings (draws, warm-up, thinning, chains) and its own outputs (traces, R-hat),
    none of the online-learning settings apply, and collapsed Gibbs sampling has no
    incremental :meth:`partial_fit` -- every token's assignment is state of the sampler.

    The fitted topics are summarised as ``q(beta_k) = Dirichlet(components_)`` with
    ``components_ = eta + E[n_kw]`` (the posterior-mean topic-word counts), so that
    :meth:`transform`, :meth:`score` and :meth:`perplexity` are those of
    :class:`LatentDirichletAllocation` evaluated at these topics: a deterministic
    variational E-step per new document.

    Parameters
    ----------
    n_components : int, default=10
    doc_topic_prior, topic_word_prior : float, optional
        ``alpha`` and ``eta``, ``1 / n_components`` by default.
    n_samples : int, default=200
        Sweeps kept per chain.
    warmup : int, default=200
        Sweeps discarded first.
    thin : int, default=1
    n_chains : int, default=2
    mean_change_tol, max_doc_update_iter : float, int
        Local iteration settings of :meth:`transform` (as in :class:`LatentDirichletAllocation`).
    random_state : None, int or RandomState

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        ``eta`` plus the posterior mean of the topic-word counts.
    exp_dirichlet_component_ : ndarray of shape (n_components, n_features)
    topic_word_ : ndarray of shape (n_components, n_features)
        Posterior mean of the topics ``E[beta_kw | w]``.
    doc_topic_ : ndarray of shape (n_documents, n_components)
        Posterior mean proportions ``E[theta_d | w]`` of the training documents.
    log_likelihood_trace_ : ndarray of shape (n_chains, n_samples)
        ``log p(w | z)`` of every kept sweep.
    rhat_, ess_ : float
        Rank R-hat and bulk effective sample size of that trace.
    doc_topic_prior_, topic_word_prior_ : float
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import CollapsedGibbsLDA
    >>> rng = np.random.RandomState(0)
    >>> topics = np.array([[0.45, 0.45, 0.05, 0.05], [0.05, 0.05, 0.45, 0.45]])
    >>> X = np.vstack([rng.multinomial(40, topics[i % 2]) for i in range(40)])
    >>> lda = CollapsedGibbsLDA(n_components=2, n_samples=300, warmup=100, random_state=0).fit(X)
    >>> np.round(np.sort(lda.topic_word_[:, 0]), 1)
    array([0. , 0.5])
    >>> bool(lda.rhat_ < 1.05)
    True
    """

    _parameter_constraints = {
        **_BaseLDA._parameter_constraints,
        "n_samples": positive_int,
        "warmup": non_negative_int,
        "thin": positive_int,
        "n_chains": positive_int,
    }

    def __init__(self, n_components=10, *, doc_topic_prior=None, topic_word_prior=None, n_samples=200, warmup=200,
                 thin=1, n_chains=2, mean_change_tol=1e-3, max_doc_update_iter=100, random_state=None):
        self.n_components = n_components
        self.doc_topic_prior = doc_topic_prior
        self.topic_word_prior = topic_word_prior
        self.n_samples = n_samples
        self.warmup = warmup
        self.thin = thin
        self.n_chains = n_chains
        self.mean_change_tol = mean_change_tol
        self.max_doc_update_iter = max_doc_update_iter
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # scikit-learn's checks then feed non-negative integers (rounded, shifted data)
        tags.input_tags.categorical = True
        return tags

    def fit(self, X, y=None):
        """Sample the posterior of the topics given the documents ``X`` (integer word counts: tokens).

        %(documents_to_self)s
        """
        from probkit.vi.diagnostics import ess, rhat
        from probkit.vi.gibbs import gibbs_lda

        csr = self._training_documents(X)
        if csr.data.size and np.any(csr.data != np.round(csr.data)):
            raise ValueError(f"{type(self).__name__} needs integer word counts (tokens); X holds non-integer "
                             "values (use LatentDirichletAllocation for weighted counts)")
        self._resolve_priors()
        result = gibbs_lda(csr, self.n_components, doc_topic_prior=self.doc_topic_prior_,
                           topic_word_prior=self.topic_word_prior_, n_samples=self.n_samples, warmup=self.warmup,
                           thin=self.thin, n_chains=self.n_chains, random_state=check_random_state(self.random_state))
        topic_word = result.extras["topic_word"]
        counts = result.extras["topic_word_counts"]
        doc_topic = result.extras["doc_topic"]
        aligned_phi, aligned_counts, aligned_theta = [topic_word[0]], [counts[0]], [doc_topic[0]]
        for c in range(1, topic_word.shape[0]):
            perm = match_topics(topic_word[0], topic_word[c])
            aligned_phi.append(topic_word[c][perm])
            aligned_counts.append(counts[c][perm])
            aligned_theta.append(doc_topic[c][:, perm])
        self.topic_word_ = np.mean(aligned_phi, axis=0)
        self.doc_topic_ = np.mean(aligned_theta, axis=0)
        self._set_components(self.topic_word_prior_ + np.mean(aligned_counts, axis=0))
        trace = result.samples["log_likelihood"]
        self.log_likelihood_trace_ = trace
        self.rhat_ = float(rhat(trace)) if trace.shape[1] >= 4 else float("nan")
        self.ess_ = float(ess(trace)) if trace.shape[1] >= 4 else float("nan")
        return self
