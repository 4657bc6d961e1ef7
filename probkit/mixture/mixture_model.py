"""A mixture of any exponential family (or of a list of families), fitted by EM."""

from __future__ import annotations

import numpy as np
import torch

from probkit.distributions.base import ExponentialFamily
from probkit.distributions.registry import matrix_rows, resolve_family
from probkit.em.init import INIT_SMOOTHING
from probkit.mixture._base import BaseMixture
from probkit.components import BatchedComponents, ComponentList, FeatureProductComponents

__all__ = ["MixtureModel"]



def _centered(templates, data):
    """Templates whose statistics are accumulated about the data's (weighted) mean (see ``centered``)."""
    x = data.x
    w = data.weight
    center = (x.mean(0) if w is None else (w.reshape(-1, *([1] * (x.ndim - 1))) * x).sum(0) / w.sum()).detach().cpu()
    if isinstance(templates, list):
        return [t.centered(center) for t in templates]
    return templates.centered(center)


class MixtureModel(BaseMixture):
    """Finite mixture of exponential-family distributions, fitted by EM.

    Either one family for every component (``family=``, evaluated as one batched
    distribution) or an explicit list of components (``components=``), which may mix
    families, e.g. a normal and a gamma component.

    The M-step of each component is its family's fit from weighted sufficient statistics
    (:meth:`probkit.distributions.ExponentialFamily.from_stats`), so any family works.
    Initial responsibilities (``init_params``) are blended with
    ``INIT_SMOOTHING = 0.1`` of uniform weight.

    Parameters
    ----------
    family : str, ExponentialFamily class or instance, optional
        E.g. ``"poisson"``, ``"gamma"``, ``Normal``, ``MultivariateNormal(covariance_type="diag")``.
        A scalar family given for several columns is a product of that family over the
        columns (the features are independent within a component, e.g. a Poisson rate per
        feature); vector families (``"gaussian"``, ``"multinomial"``, ...) model all
        columns jointly. Omitted (and no ``components``): ``"gaussian"``, a full-covariance
        multivariate normal.
    n_components : int, default=1
        Ignored when ``components`` is given (its length is used).
    components : list of distributions, optional
        One template per component (parameters, if set, are ignored: EM initialises them).
    tol, max_iter, n_init, init_params, random_state, warm_start, verbose, device, dtype
        As in :class:`GaussianMixture`.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    components_ : list of distributions
        The fitted component distributions.
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_
        As in :class:`GaussianMixture`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> counts = np.r_[rng.poisson(2, 300), rng.poisson(15, 200)].reshape(-1, 1)
    >>> mm = MixtureModel(family="poisson", n_components=2, random_state=0).fit(counts)
    >>> np.round(np.sort([float(c.rate) for c in mm.components_]), 1)
    array([ 1.9, 14.7])
    """

    _parameter_constraints = {
        **BaseMixture._parameter_constraints,
        # resolve_family raises a clear error for anything that is no family
        "family": "no_validation",
        "components": [None, list, tuple],
    }

    def __init__(self, family=None, n_components=1, *, components=None, tol=1e-3, max_iter=100, n_init=1,
                 init_params="kmeans", random_state=None, warm_start=False, verbose=0, device=None, dtype=None):
        self.family = family
        self.n_components = n_components
        self.components = components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ validation
    def _templates(self):
        if self.family is not None and self.components is not None:
            raise ValueError("give one of family= (one family for all components) or components= (a list), not both")
        if self.components is not None:
            if not self.components:
                raise ValueError("components must be a non-empty list of distributions")
            return [resolve_family(c) for c in self.components]
        # no family given: a full-covariance Gaussian, the mixture everybody means by default
        return resolve_family("gaussian" if self.family is None else self.family)

    def _n_components_effective(self):
        if isinstance(self.components, (list, tuple)):
            if self.n_components not in (1, len(self.components)):
                raise ValueError(
                    f"n_components={self.n_components} disagrees with the {len(self.components)} listed components"
                )
            return len(self.components)
        return self.n_components

    @staticmethod
    def _is_scalar(template):
        return isinstance(template, ExponentialFamily) and template.event_ndim == 0

    def _event_view(self, x, template, listed):
        """Samples as the family sees them: one column squeezed for a scalar family, rows as matrices for a matrix family."""
        if isinstance(template, ExponentialFamily) and template.event_ndim == 2:
            return matrix_rows(x)
        if self._is_scalar(template) and (listed or x.shape[1] == 1):
            if x.shape[1] != 1:
                raise ValueError(
                    f"{type(template).__name__} models one column but X has {x.shape[1]} columns; listed "
                    "components must model all columns (use a multivariate family or Independent)"
                )
            return x[:, 0]
        return x

    def _check_parameters(self, data):
        templates = self._templates()
        listed = isinstance(templates, list)
        first = templates[0] if listed else templates
        data.x = self._event_view(data.x, first, listed)
        # A scalar family over several columns is a product of that family over the columns.
        self._feature_product = not listed and self._is_scalar(first) and data.x.ndim == 2
        if listed:
            ComponentList.check_support(templates, data.x, "X")
        else:
            templates._validate_support(data.x, "X")
        self._templates_cache = templates

    # ------------------------------------------------------------------ hooks
    def _em_initialize(self, data, random_state):
        from probkit.em.init import initial_responsibilities

        k = self._n_components_effective()
        resp = initial_responsibilities(data.X, k, self.init_params, random_state)
        resp = (1 - INIT_SMOOTHING) * resp + INIT_SMOOTHING / k
        resp_t = torch.as_tensor(resp, dtype=data.x.dtype, device=data.x.device)
        if data.weight is not None:
            resp_t = resp_t * data.weight.unsqueeze(1)
        templates = _centered(self._templates_cache, data)
        if isinstance(templates, list):
            self._components = ComponentList.from_responsibilities(templates, data.x, resp_t)
        elif self._feature_product:
            self._components = FeatureProductComponents.from_responsibilities(templates, data.x, resp_t)
        else:
            self._components = BatchedComponents.from_responsibilities(templates, data.x, resp_t)
        self._weights_t = resp_t.sum(0) / data.total_weight

    def _components_from_attributes(self):
        device, dtype = self._compute_setup()
        weights = torch.as_tensor(np.asarray(self.weights_, dtype=np.float64), dtype=dtype, device=device)
        return weights, self.component_model_.to(device=device, dtype=dtype)

    def _set_attributes(self, weights, components):
        self.weights_ = weights.detach().cpu().numpy().astype(np.float64)
        self.component_model_ = components

    @property
    def components_(self):
        """The fitted component distributions, one per component."""
        model = self.component_model_
        return [model.member(k) for k in range(model.n_components)]

    def _validate_predict(self, X):
        x = super()._validate_predict(X)
        model = self.component_model_
        listed = isinstance(model, ComponentList)
        if not isinstance(model, FeatureProductComponents):
            x = self._event_view(x, model.dists[0] if listed else model.dist, listed)
        self.component_model_.validate(x, "X")
        return x

    @property
    def n_components_(self):
        """Number of fitted components."""
        return self.component_model_.n_components

    def _n_parameters(self):
        return int(self.component_model_.n_parameters() + self.component_model_.n_components - 1)
