"""``hmmlearn.vhmm`` on probkit: variational HMMs with hmmlearn 0.3.3's calling conventions.

Both classes subclass :class:`probkit.VariationalHMM` (variational Bayes EM) and add
hmmlearn's conventions (:mod:`probkit.compat.hmmlearn.base`) and hmmlearn's way of
setting up a fit: the priors and posteriors are the hmmlearn-named attributes
(``startprob_prior_``, ``startprob_posterior_``, ``means_posterior_``, ``dof_prior_``,
...); those not set by hand, or named in ``init_params``, are initialised by hmmlearn's
recipe (Dirichlet draws for the chain, a k-means clustering for the Gaussian
emissions), checked (a ``ValueError`` names any attribute of the wrong shape), and
handed to probkit's VB-EM.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.cluster import KMeans

from probkit import hmm as _hmm
from probkit.compat.hmmlearn._covars import _FullCovarsView
from probkit.compat.hmmlearn.base import _HMMLearnAPI, _signature_constraints
from probkit.compat.hmmlearn.hmm import _SymbolInput
from probkit.distributions import Dirichlet
from probkit.hmm.variational import gaussian_conjugate
from probkit.utils.random import check_random_state

__all__ = ["VariationalCategoricalHMM", "VariationalGaussianHMM"]


def _t64(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


class _VariationalAPI(_HMMLearnAPI):
    """hmmlearn's set-up of a variational fit in front of :class:`probkit.VariationalHMM`."""

    _letter_map = {"m": "e", "c": "e"}
    _hmmlearn_initialises = True

    def _hmmlearn_needs_init(self, code, name):
        # hmmlearn's rule with the user's letters (probkit itself runs with init_params="")
        if code in self._hmmlearn_letters()[1]:
            if hasattr(self, name):
                self._warn_overwrite(code, name)
            return True
        return not hasattr(self, name)

    def _init_chain(self, lengths):
        """Dirichlet priors of the start and transition rows and hmmlearn's random initial posteriors."""
        nc = self.n_components
        uniform = 1 / nc
        random_state = check_random_state(self.random_state)
        if self._hmmlearn_needs_init("s", "startprob_posterior_") or self._hmmlearn_needs_init("s", "startprob_prior_"):
            init = uniform if self.startprob_prior is None else self.startprob_prior
            self.startprob_prior_ = np.full(nc, init, dtype=np.float64)
            self.startprob_posterior_ = random_state.dirichlet(np.full(nc, uniform)) * len(lengths)
        if self._hmmlearn_needs_init("t", "transmat_posterior_") or self._hmmlearn_needs_init("t", "transmat_prior_"):
            init = uniform if self.transmat_prior is None else self.transmat_prior
            self.transmat_prior_ = np.full((nc, nc), init, dtype=np.float64)
            self.transmat_posterior_ = random_state.dirichlet(np.full(nc, uniform), size=nc) * np.sum(lengths) / nc

    def _check_chain(self):
        nc = self.n_components
        for name, shape in (("startprob_prior_", (nc,)), ("startprob_posterior_", (nc,)),
                            ("transmat_prior_", (nc, nc)), ("transmat_posterior_", (nc, nc))):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
            setattr(self, name, value)

    def _run_hmmlearn_init(self, X, lengths):
        self._init_chain(lengths)
        self._init_emission_attributes(X, lengths)

    def _init(self, X, lengths=None):
        """Initialise the priors and posteriors named in ``init_params`` (and any not set), as ``fit`` does."""
        X = self._hmmlearn_X(X)
        lengths = self._hmmlearn_lengths(lengths)
        lengths = [len(X)] if lengths is None else lengths
        self._check_and_set_n_features(X)
        self._run_hmmlearn_init(X, lengths)
        self._warn_if_degenerate(X)

    def _check(self):
        """Validate the priors and posteriors: ``ValueError`` naming an attribute of the wrong shape."""
        self._check_chain()
        self._check_emission_attributes()
        if hasattr(self, "startprob_"):
            super()._check()
        self._sync_n_features()

    # probkit's VariationalHMM reads its priors here; the posteriors it reads from the attributes
    # (it runs with init_params="" because the attributes are already initialised)
    def _resolve_priors(self, data):
        self._run_hmmlearn_init(data.X, data.lengths)
        self._check_chain()
        self._check_emission_attributes()
        return {"startprob": _t64(self.startprob_prior_), "transmat": _t64(self.transmat_prior_),
                "emission": self._emission_prior()}

    def score(self, X, lengths=None):
        """Log-likelihood of ``X`` under the posterior-mean parameters (as hmmlearn's ``score``).

        Returns
        -------
        log_prob : float
        """
        with self._probkit_call():
            return _hmm.BaseHMM.score(self, self._hmmlearn_X(X), lengths=lengths)


class VariationalGaussianHMM(_VariationalAPI, _FullCovarsView, _hmm.VariationalHMM):
    """hmmlearn's ``VariationalGaussianHMM`` on :class:`probkit.VariationalHMM` (VB-EM).

    ``covariance_type="full"`` is hmmlearn's Normal-Wishart model, and ``"tied"`` its model
    with one Wishart precision shared by the states (the same updates and bound). ``"diag"``
    is probkit's diagonal model (an independent Normal-Gamma per feature) and
    ``"spherical"`` probkit's model with one Gamma precision per state shared by the
    features; hmmlearn's ``diag`` and ``spherical`` take the expected log-determinant of a
    full Wishart instead, and match probkit's for one feature (the updates of the posterior
    from given state probabilities are the same for any number of features).

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "diag", "tied", "spherical"}, default="full"
    startprob_prior, transmat_prior : float or array-like, optional
        Dirichlet concentrations (``1 / n_components`` by default).
    means_prior, beta_prior, dof_prior, scale_prior : array-like, optional
        Normal-Wishart (Normal-Gamma) prior: means (data mean), their precision scale (1),
        degrees of freedom (``n_features``), inverse scale (``1e-3`` times the identity).
        hmmlearn's shapes: ``dof_prior`` a number for ``tied`` (one per state otherwise),
        ``scale_prior`` ``(n_features, n_features)`` for ``tied``, ``(n_components,)`` for
        ``spherical``.
    algorithm : {"viterbi", "map"}, default="viterbi"
    random_state : int, RandomState or None
    n_iter : int, default=100
    tol : float, default=1e-6
    verbose : bool, default=False
    params, init_params : str, default="stmc"
        ``m`` and ``c`` both stand for probkit's emission posterior, which VB-EM updates as one.
    implementation : {"log", "scaling"}, default="log"

    Attributes
    ----------
    startprob_posterior_, transmat_posterior_, means_posterior_, beta_posterior_, dof_posterior_,
    scale_posterior_
        Posterior parameters (hmmlearn's names); the ``*_prior_`` attributes hold the priors.
    startprob_, transmat_, means_
        Posterior means.
    covars_ : ndarray of shape (n_components, n_features, n_features)
        ``scale_posterior_ / dof_posterior_`` as full matrices (``_covars_`` compact:
        ``(n_features, n_features)`` for tied, ``(n_components,)`` for spherical).
    monitor_ : ConvergenceMonitor
        The evidence lower bound of each iteration.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.compat.hmmlearn import hmm, vhmm
    >>> gen = hmm.GaussianHMM(2, init_params="")
    >>> gen.startprob_ = np.array([0.5, 0.5])
    >>> gen.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> gen.means_ = np.array([[0.0], [4.0]])
    >>> gen.covars_ = np.array([[1.0], [1.0]])
    >>> X, Z = gen.sample(400, random_state=0)
    >>> model = vhmm.VariationalGaussianHMM(2, random_state=0).fit(X, [200, 200])
    >>> np.round(np.sort(model.means_posterior_[:, 0]), 1)
    array([-0.2,  4. ])
    >>> bool(np.all(np.diff(model.monitor_.history) > -1e-8))   # the bound never decreases
    True
    """

    def __init__(self, n_components=1, covariance_type="full", startprob_prior=None, transmat_prior=None,
                 means_prior=None, beta_prior=None, dof_prior=None, scale_prior=None, algorithm="viterbi",
                 random_state=None, n_iter=100, tol=1e-6, verbose=False, params="stmc", init_params="stmc",
                 implementation="log"):
        super().__init__(n_components=n_components, emission="gaussian", covariance_type=covariance_type,
                         startprob_prior=startprob_prior, transmat_prior=transmat_prior, means_prior=means_prior,
                         beta_prior=beta_prior, dof_prior=dof_prior, scale_prior=scale_prior, algorithm=algorithm,
                         random_state=random_state, n_iter=n_iter, tol=tol, verbose=verbose, params=params,
                         init_params=init_params, implementation=implementation)
        self._hmmlearn_setup()

    _parameter_constraints = _signature_constraints(_hmm.VariationalHMM, __init__)

    _checks_input_on_fit = True

    def _means_for_n_features(self):
        means = self.__dict__.get("means_")
        return self.__dict__.get("means_posterior_") if means is None else means

    def _check_and_set_n_features(self, X):
        """Check ``X`` has ``n_features`` columns (or set ``n_features``)."""
        n_features = np.shape(X)[1]
        known = self._n_features_or_none()
        if known is not None and known != n_features:
            raise ValueError(f"Unexpected number of dimensions, got {n_features} but expected {known}")
        self.n_features = n_features

    def fit(self, X, lengths=None):
        """Fit the variational posterior by VB-EM (hmmlearn's signature: ``lengths`` positional).

        Returns
        -------
        self
        """
        super().fit(X, lengths)
        if self.covariance_type == "diag":
            # probkit's diagonal posterior has a precision scale and degrees of freedom per feature;
            # with hmmlearn's per-state priors they are equal across features: keep hmmlearn's (K,) shape
            for name in ("beta_posterior_", "dof_posterior_"):
                value = np.asarray(getattr(self, name))
                if value.ndim == 2 and np.all(value == value[:, :1]):
                    setattr(self, name, value[:, 0].copy())
        return self

    def _init_emission_attributes(self, X, lengths):
        nc, nf = self.n_components, X.shape[1]
        kmeans = KMeans(n_clusters=nc, random_state=self.random_state, n_init=10).fit(X)
        counts = np.bincount(kmeans.predict(X), minlength=nc).astype(np.float64)
        if (self._hmmlearn_needs_init("m", "means_prior_") or self._hmmlearn_needs_init("m", "means_posterior_")
                or self._hmmlearn_needs_init("m", "beta_prior_") or self._hmmlearn_needs_init("m", "beta_posterior_")):
            self.means_prior_ = (np.full((nc, nf), X.mean(axis=0)) if self.means_prior is None
                                 else np.asarray(self.means_prior, dtype=np.float64))
            self.means_posterior_ = kmeans.cluster_centers_.copy()
            self.beta_prior_ = (np.ones(nc) if self.beta_prior is None
                                else np.asarray(self.beta_prior, dtype=np.float64))
            self.beta_posterior_ = counts.copy()
        if (self._hmmlearn_needs_init("c", "dof_prior_") or self._hmmlearn_needs_init("c", "dof_posterior_")
                or self._hmmlearn_needs_init("c", "scale_prior_")
                or self._hmmlearn_needs_init("c", "scale_posterior_")):
            ct = self.covariance_type
            if ct == "tied":
                self.dof_prior_ = float(nf) if self.dof_prior is None else self.dof_prior
                self.dof_posterior_ = float(counts.sum())
            else:
                self.dof_prior_ = (np.full(nc, float(nf)) if self.dof_prior is None
                                   else np.asarray(self.dof_prior, dtype=np.float64))
                self.dof_posterior_ = counts.copy()
            cv = np.atleast_2d(np.cov(X.T)) + 1e-3 * np.eye(nf)
            default_scale = {"full": np.broadcast_to(1e-3 * np.eye(nf), (nc, nf, nf)).copy(),
                             "tied": 1e-3 * np.eye(nf), "diag": np.full((nc, nf), 1e-3),
                             "spherical": np.full(nc, 1e-3)}[ct]
            self.scale_prior_ = (default_scale if self.scale_prior is None
                                 else np.asarray(self.scale_prior, dtype=np.float64))
            # hmmlearn's initial covariances: the data covariance, its diagonal, or (spherical)
            # the mean of all its entries; the posterior scale is that times the degrees of freedom
            compact = {"full": np.broadcast_to(cv, (nc, nf, nf)), "tied": cv,
                       "diag": np.broadcast_to(np.diag(cv), (nc, nf)), "spherical": np.full(nc, cv.mean())}[ct]
            self.scale_posterior_ = compact * (np.reshape(self.dof_posterior_, (-1,) + (1,) * (compact.ndim - 1))
                                               if ct != "tied" else self.dof_posterior_)
            self.covars_ = compact.copy()

    def _check_emission_attributes(self):
        nc, nf, ct = self.n_components, self.n_features, self.covariance_type
        tied = ct == "tied"
        shapes = {"means_prior_": (nc, nf), "means_posterior_": (nc, nf), "beta_prior_": (nc,),
                  "beta_posterior_": (nc,), "dof_prior_": () if tied else (nc,),
                  "dof_posterior_": () if tied else (nc,)}
        scale_shape = {"full": (nc, nf, nf), "tied": (nf, nf), "diag": (nc, nf), "spherical": (nc,)}[ct]
        shapes.update(scale_prior_=scale_shape, scale_posterior_=scale_shape)
        for name, shape in shapes.items():
            value = getattr(self, name)
            if name.startswith("dof") and isinstance(value, numbers.Number) and not tied:
                value = np.full(nc, value)
            value = np.asarray(value, dtype=np.float64)
            if value.shape != shape:
                what = "a number" if shape == () else f"shape {shape}"
                raise ValueError(f"{name} must be {what} for covariance_type={ct!r}, got shape {value.shape}")
            setattr(self, name, float(value) if shape == () else value)

    def _emission_prior(self):
        return gaussian_conjugate(self.covariance_type, self.means_prior_, self.beta_prior_, self.dof_prior_,
                                   self.scale_prior_)

    def _n_fit_scalars(self):
        # hmmlearn counts the posterior's scalars by letter: means (+ beta) and covariances (+ dof)
        nc, nf = self.n_components, self.n_features
        counts = {"s": nc - 1, "t": nc * (nc - 1), "m": nc * nf + nc,
                  "c": {"full": nc + nc * nf * (nf + 1) // 2, "tied": 1 + nf * (nf + 1) // 2, "diag": nc + nc * nf,
                        "spherical": 2 * nc}[self.covariance_type]}
        return sum(counts.get(letter, 0) for letter in set(self._hmmlearn_letters()[0]))


class VariationalCategoricalHMM(_SymbolInput, _VariationalAPI, _hmm.VariationalHMM):
    """hmmlearn's ``VariationalCategoricalHMM`` on :class:`probkit.VariationalHMM` (VB-EM).

    Parameters
    ----------
    n_components : int, default=1
    startprob_prior, transmat_prior : float or array-like, optional
        Dirichlet concentrations (``1 / n_components`` by default).
    emissionprob_prior : float or array-like, optional
        Dirichlet concentration of each emission row (``1 / n_features`` by default).
    n_features : int, optional
        Number of symbols (largest symbol + 1 when omitted).
    algorithm, random_state, n_iter, tol, verbose, implementation
        As in :class:`VariationalGaussianHMM`.
    params, init_params : str, default="ste"

    Attributes
    ----------
    startprob_posterior_, transmat_posterior_, emissionprob_posterior_
        Dirichlet concentrations of the posterior; ``*_prior_`` those of the prior.
    startprob_, transmat_, emissionprob_
        Posterior means.
    monitor_ : ConvergenceMonitor

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.compat.hmmlearn import hmm, vhmm
    >>> gen = hmm.CategoricalHMM(2)
    >>> gen.startprob_ = np.array([0.5, 0.5])
    >>> gen.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> gen.emissionprob_ = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    >>> X, Z = gen.sample(1000, random_state=0)
    >>> model = vhmm.VariationalCategoricalHMM(2, random_state=0).fit(X)
    >>> model.n_features, model.emissionprob_posterior_.shape
    (3, (2, 3))
    """

    def __init__(self, n_components=1, startprob_prior=None, transmat_prior=None, emissionprob_prior=None,
                 n_features=None, algorithm="viterbi", random_state=None, n_iter=100, tol=1e-6, verbose=False,
                 params="ste", init_params="ste", implementation="log"):
        super().__init__(n_components=n_components, emission="categorical", startprob_prior=startprob_prior,
                         transmat_prior=transmat_prior, emissionprob_prior=emissionprob_prior,
                         n_features=n_features, algorithm=algorithm, random_state=random_state, n_iter=n_iter,
                         tol=tol, verbose=verbose, params=params, init_params=init_params,
                         implementation=implementation)
        self._hmmlearn_setup()

    _parameter_constraints = _signature_constraints(_hmm.VariationalHMM, __init__)

    def _init_emission_attributes(self, X, lengths):
        if self._hmmlearn_needs_init("e", "emissionprob_posterior_"):
            random_state = check_random_state(self.random_state)
            nc, nf = self.n_components, self.n_features
            init = 1 / nf if self.emissionprob_prior is None else self.emissionprob_prior
            self.emissionprob_prior_ = np.full((nc, nf), init, dtype=np.float64)
            self.emissionprob_posterior_ = (random_state.dirichlet(alpha=[init] * nf, size=nc)
                                            * np.sum(lengths) / nc)

    def _check_emission_attributes(self):
        prior = np.atleast_2d(np.asarray(self.emissionprob_prior_, dtype=np.float64))
        posterior = np.atleast_2d(np.asarray(self.emissionprob_posterior_, dtype=np.float64))
        if prior.shape != posterior.shape:
            raise ValueError(f"emissionprob_prior_ and emissionprob_posterior_ must have the same shape "
                             f"(n_components, n_features), got {prior.shape} and {posterior.shape}")
        if self.n_features is None:
            self.n_features = posterior.shape[1]
        if posterior.shape != (self.n_components, self.n_features):
            raise ValueError(f"emissionprob_posterior_ must have shape ({self.n_components}, {self.n_features}), "
                             f"got {posterior.shape}")
        self.emissionprob_prior_, self.emissionprob_posterior_ = prior, posterior
        self.n_symbols_ = self.n_features

    def _emission_prior(self):
        return Dirichlet(concentration=self.emissionprob_prior_[:, None, :])
