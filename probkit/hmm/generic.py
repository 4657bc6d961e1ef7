"""HMM(emission=...): an HMM whose states emit from any probkit exponential family."""

from __future__ import annotations

import numpy as np
import torch

from probkit.distributions.base import ExponentialFamily
from probkit.distributions.independent import Independent
from probkit.distributions.registry import matrix_rows, resolve_family
from probkit.base import StrOptions
from probkit.em.init import INIT_METHODS, INIT_SMOOTHING, initial_responsibilities
from probkit.hmm._base import BaseHMM
from probkit.hmm._docs import HMM_DOCS
from probkit.hmm._emissions import ComponentEmission, with_nan
from probkit.components import BatchedComponents, FeatureProductComponents, map_dist, sample_by_state
from probkit.utils.random import torch_generator

__all__ = ["HMM"]


@HMM_DOCS.fill
class HMM(BaseHMM):
    """Hidden Markov model with emissions from any probkit family.

    Each state's emission distribution is a member of ``emission``'s family; the M-step
    is the family's fit from the posterior-weighted sufficient statistics. A scalar
    family (Gamma, Poisson, Normal, ...) given data with several columns is a product
    over the columns (features independent given the state); vector families
    (``MultivariateNormal``, ``Multinomial``, ``Dirichlet``, ``Independent``) model whole rows.

    Parameters
    ----------
    emission : str, ExponentialFamily class or instance
        E.g. ``Gamma``, ``"poisson"``, ``MultivariateNormal(covariance_type="full", reg_covar=1e-6)``.
    %(n_components)s
    init : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        Initial assignment of rows to states from which the emissions are first fitted
        (blended with uniform weight as in :class:`MixtureModel`).
    %(hmm_options)s
    params, init_params : str, default="ste"
        ``s`` start, ``t`` transitions, ``e`` emission parameters.
    missing : {"error", "marginalize"}, default="error"
        ``"marginalize"`` (scalar families over several columns, and ``Independent``
        products of families): NaN values drop out of the likelihood and the statistics.

    Attributes
    ----------
    %(chain_attrs)s
    emission_ : distribution
        The fitted emission distributions, batch shape ``(n_components,)``, or
        ``(n_components, n_features)`` for a product over columns.
    emission_params_ : dict of ndarray
        ``emission_``'s parameters as numpy arrays (set this dict, or ``emission_``, to
        specify a model by hand).
    %(fit_attrs)s

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.distributions import Gamma
    >>> rng = np.random.RandomState(0)
    >>> durations = np.r_[rng.gamma(2.0, 1.0, 300), rng.gamma(20.0, 1.0, 300)].reshape(-1, 1)
    >>> model = HMM(emission=Gamma, n_components=2, n_iter=50, random_state=0).fit(durations)
    >>> means = model.emission_params_["concentration"] / model.emission_params_["rate"]
    >>> np.round(np.sort(means.ravel()), 1)
    array([ 2. , 19.5])
    """

    _emission_letters = "e"

    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "emission": "no_validation",  # resolved (and checked) by the family registry
        "init": [StrOptions(set(INIT_METHODS))],
    }

    def __init__(self, emission=None, n_components=1, startprob_prior=1.0, transmat_prior=1.0, *, init="kmeans",
                 algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, n_init=1, verbose=False, params="ste",
                 init_params="ste", implementation="scaling", missing="error", device=None, dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior,
                         transmat_prior=transmat_prior, algorithm=algorithm, random_state=random_state,
                         n_iter=n_iter, tol=tol, n_init=n_init, verbose=verbose, params=params, init_params=init_params,
                         implementation=implementation, missing=missing, device=device, dtype=dtype)
        self.emission = emission
        self.init = init

    # ------------------------------------------------------------------ family helpers
    def _template(self):
        if self.emission is None:
            raise ValueError("HMM needs an emission family, e.g. HMM(emission='poisson') or HMM(emission=Gamma)")
        return resolve_family(self.emission)

    def _is_product(self, template, n_features):
        return isinstance(template, ExponentialFamily) and template.event_ndim == 0 and n_features > 1

    def _marginalizes_missing(self):
        try:
            template = self._template()
        except (ValueError, TypeError):
            return False
        # Scalar families (a product over the columns) and Independent products of families
        # evaluate each feature separately, so a missing feature can drop out.
        return isinstance(template, Independent) or (
            isinstance(template, ExponentialFamily) and template.event_ndim == 0)

    def _validate_emission_X(self, X, reset, allow_nan):
        X = self._validate_X(X, reset=reset, dtype=np.float64, ensure_all_finite="allow-nan" if allow_nan else True)
        template = self._template()
        finite = X if not allow_nan else np.where(np.isnan(X), np.nanmax(X, axis=0, initial=0.0), X)
        view = finite[:, 0] if (isinstance(template, ExponentialFamily) and template.event_ndim == 0
                                and X.shape[1] == 1) else finite
        view = torch.as_tensor(view)
        if isinstance(template, ExponentialFamily) and template.event_ndim == 2:
            view = matrix_rows(view)
        template._validate_support(view, "X")
        return X

    def _components(self, dist):
        if len(dist.batch_shape) == 2 and dist.event_ndim == 0:
            return FeatureProductComponents(dist)
        return BatchedComponents(dist)

    # ------------------------------------------------------------------ hooks
    @property
    def emission_params_(self):
        """Parameters of ``emission_`` as numpy arrays; assigning a dict sets ``emission_``."""
        return self.emission_.params

    @emission_params_.setter
    def emission_params_(self, params):
        self.emission_ = self._template()._new(**params)

    def _check_emission(self):
        if not hasattr(self, "emission_"):
            raise ValueError("HMM needs emission_ or emission_params_ (fit, or set them by hand)")
        dist = self.emission_
        if not isinstance(dist, ExponentialFamily) or not dist.is_fitted:
            raise ValueError("emission_ must be a probkit distribution with parameters")
        if len(dist.batch_shape) < 1 or dist.batch_shape[0] != self.n_components:
            raise ValueError(f"emission_ must have batch shape ({self.n_components}, ...), got {tuple(dist.batch_shape)}")

    def _emission_model(self, like):
        dist = map_dist(self.emission_, lambda v: v.to(device=like.device, dtype=like.dtype))
        return ComponentEmission(self._components(dist))

    def _init_emission(self, data, random_state):
        if not self._needs_init("e", "emission_"):
            return
        template = self._template()
        k = self.n_components
        X = data.X
        filled = np.where(np.isnan(X), np.nanmean(X, axis=0), X) if np.isnan(X).any() else X
        resp = initial_responsibilities(filled, k, self.init, random_state)
        resp = (1 - INIT_SMOOTHING) * resp + INIT_SMOOTHING / k
        resp_t = torch.as_tensor(resp, dtype=data.x.dtype, device=data.x.device)
        # statistics accumulated about the data's mean keep their digits on data far from 0
        center = torch.as_tensor(np.nanmean(X, axis=0) if np.isnan(X).any() else X.mean(0), dtype=torch.float64)
        if isinstance(template, ExponentialFamily) and template.event_ndim == 0 and X.shape[1] == 1:
            center = center[0]
        if not (isinstance(template, ExponentialFamily) and template.event_ndim == 2):
            template = template.centered(center)
        if self._is_product(template, X.shape[1]):
            comps = FeatureProductComponents.from_responsibilities(template, data.x, resp_t, data.observed)
        else:
            x = data.x[:, 0] if (isinstance(template, ExponentialFamily) and template.event_ndim == 0) else data.x
            if isinstance(template, ExponentialFamily) and template.event_ndim == 2:
                x = matrix_rows(x)
            if data.observed is not None:
                x = with_nan(x, data.observed)
            comps = BatchedComponents.from_responsibilities(template, x, resp_t)
        self.emission_ = comps.dist

    def _mstep_emission(self, stats, post_sum):
        if "e" not in self.params:
            return
        comps = self._components(self.emission_)
        self.emission_ = comps.refit(stats).dist

    def _sample_emissions(self, states, rng):
        return sample_by_state(self._components(self.emission_), states, torch_generator(rng))

    def _emission_n_parameters(self):
        return {"e": self.emission_._n_free_parameters_total()}

