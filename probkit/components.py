"""Component models: K distributions seen by the EM engine as one object.

Two implementations of one small protocol (``log_prob``, ``summarize``, ``refit``,
``validate``, ``sample_member``, ``n_parameters``):

* :class:`BatchedComponents` wraps one distribution with batch shape ``(K,)`` -- the
  fast path for homogeneous mixtures and HMM emissions (one matrix product per E-step);
* :class:`ComponentList` wraps K independent distributions, possibly of different
  families (``MixtureModel(components=[Normal(), Gamma()])``).
"""

from __future__ import annotations

import numpy as np
import torch

from probkit.distributions.base import ExponentialFamily, SufficientStats
from probkit.utils._warnings import warn_user

__all__ = ["BatchedComponents", "CollapsedComponentWarning", "ComponentList", "EmptyComponentWarning",
           "sample_by_state"]


class EmptyComponentWarning(UserWarning):
    """A component received (almost) no weight in an E-step and kept its previous parameters."""


class CollapsedComponentWarning(UserWarning):
    """A Gaussian component collapsed onto (nearly) identical points; only ``reg_covar`` keeps it valid."""


def _empty_mask(count, total):
    return count <= 1e-12 * total


def _member(dist, index):
    """Batch member ``index`` of ``dist`` (an Independent product member by member)."""
    from probkit.distributions.independent import Independent

    if isinstance(dist, Independent):
        return Independent([_member(c, index) for c in dist.components])
    params = {}
    for name, value in dist.torch_params().items():
        event_nd = dist._param_event_ndims.get(name, 0)
        params[name] = value[index] if value.ndim - event_nd >= 1 else value
    opts = dist._options()
    if getattr(dist, "covariance_type", None) == "tied":
        opts = dict(opts, covariance_type="full")
    return type(dist)(**params, **opts)


def map_dist(dist, fn):
    """A distribution of the same family with ``fn`` applied to every parameter tensor."""
    from probkit.distributions.independent import Independent

    if isinstance(dist, Independent):
        return Independent([map_dist(c, fn) for c in dist.components])
    return dist._new(**{k: fn(v) for k, v in dist.torch_params().items()})


def _keep_members(fitted, previous, empty, k):
    """``fitted`` with the batch members flagged in ``empty`` replaced by those of ``previous``."""
    from probkit.distributions.independent import Independent

    if isinstance(fitted, Independent):
        return Independent([_keep_members(f, p, empty, k) for f, p in zip(fitted.components, previous.components)])
    params = {}
    old = previous.torch_params()
    for name, new_value in fitted.torch_params().items():
        event_nd = fitted._param_event_ndims.get(name, 0)
        old_value = old[name]
        if new_value.ndim - event_nd >= 1 and new_value.shape[0] == k and old_value.shape == new_value.shape:
            mask = empty.reshape(empty.shape + (1,) * (new_value.ndim - empty.ndim))
            params[name] = torch.where(mask, old_value, new_value)
        else:
            params[name] = new_value
    return fitted._new(**params)


def _pooled_for_empty(stats, empty):
    """``stats`` with the members flagged in ``empty`` given the statistics of all members pooled."""
    shared = set(stats.meta.get("shared_fields", ()))
    safe = {}
    for name, value in stats.fields.items():
        if name in shared:
            safe[name] = value
            continue
        total = value.sum(0, keepdim=True).expand_as(value)
        mask = empty.reshape(empty.shape + (1,) * (value.ndim - empty.ndim))
        safe[name] = torch.where(mask, total, value)
    return SufficientStats(stats.family, safe, stats.meta)


class BatchedComponents:
    """K components of one family held as one batched distribution.

    Parameters
    ----------
    dist : ExponentialFamily
        A fitted distribution whose batch shape is ``(K,)`` (or ``(K, ...)`` for nested
        models such as Gaussian-mixture HMM emissions).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from probkit.distributions import Poisson
    >>> comps = BatchedComponents(Poisson(rate=[1.0, 10.0]))
    >>> comps.log_prob(torch.tensor([0.0, 10.0], dtype=torch.float64)).argmax(1).tolist()
    [0, 1]
    """

    def __init__(self, dist):
        if not isinstance(dist, ExponentialFamily) or not dist.is_fitted:
            raise TypeError("BatchedComponents needs a fitted ExponentialFamily distribution")
        if len(dist.batch_shape) < 1:
            raise ValueError("BatchedComponents needs a distribution with a batch dimension")
        self.dist = dist

    @property
    def n_components(self):
        return self.dist.batch_shape[0]

    @classmethod
    def from_responsibilities(cls, template, x, resp):
        """Fit K components of ``template``'s family to ``x`` weighted by ``resp`` (n, K).

        A component with no weight (fewer distinct points than components, as with
        duplicated rows) starts as the fit to all the data, with an
        :class:`EmptyComponentWarning`; its mixture weight is then zero.
        """
        stats = template._summarize(x, resp)
        count = stats["count"]
        empty = _empty_mask(count, count.sum())
        if not bool(empty.any()):
            return cls(template.from_stats(stats))
        if bool(empty.all()):
            raise ValueError("every component received zero weight: the data have no mass")
        idx = torch.nonzero(empty.reshape(count.shape[0], -1).any(1)).flatten().tolist()
        warn_user(f"component(s) {idx} received no data at initialisation (the data may hold fewer distinct "
                  "points than components); they start as a fit to all the data", EmptyComponentWarning)
        return cls(template.from_stats(_pooled_for_empty(stats, empty)))

    def log_prob(self, x):
        """Log-likelihood of each row under each component: (n, K) tensor."""
        return self.dist._log_prob_pairs(x)

    def summarize(self, x, resp):
        """Expected sufficient statistics for responsibilities ``resp`` (n, K)."""
        return self.dist._summarize(x, resp)

    def validate(self, x, name="X"):
        self.dist._validate_support(x, name)

    def refit(self, stats, warn=True):
        """New components from ``stats``; components without weight keep their parameters.

        A component whose summed weight is (numerically) zero cannot be re-estimated: its
        previous parameters are kept and an :class:`EmptyComponentWarning` is emitted,
        instead of producing NaN parameters.
        """
        count = stats["count"]
        k = self.n_components
        empty = _empty_mask(count, count.sum())
        if not bool(empty.any()):
            return BatchedComponents(self.dist.from_stats(stats))
        if bool(empty.all()):
            raise ValueError("every component received zero weight: the data have no mass")
        # Any valid placeholder works here: the fitted values of empty components are
        # replaced by their previous parameters below.
        fitted = self.dist.from_stats(_pooled_for_empty(stats, empty))
        kept = _keep_members(fitted, self.dist, empty, k)
        if warn:
            idx = torch.nonzero(empty.reshape(k, -1).any(1)).flatten().tolist()
            warn_user(
                f"component(s) {idx} received no weight in this E-step and kept their previous "
                "parameters; consider fewer components or another initialisation",
                EmptyComponentWarning
            )
        return BatchedComponents(kept)

    def member(self, index):
        """The distribution of component ``index`` alone."""
        return _member(self.dist, index)

    def sample_member(self, index, n, generator):
        return self.member(index)._sample((n,), generator)

    def n_parameters(self):
        """Number of free parameters of all components together."""
        return self.dist._n_free_parameters_total()

    def to(self, device=None, dtype=None):
        return BatchedComponents(map_dist(self.dist, lambda v: v.to(device=device, dtype=dtype)))


class ComponentList:
    """K distributions, possibly of different families, as one component model.

    Examples
    --------
    >>> import torch
    >>> from probkit.distributions import Normal, Gamma
    >>> comps = ComponentList([Normal(loc=0.0, scale=1.0), Gamma(concentration=9.0, rate=1.0)])
    >>> comps.log_prob(torch.tensor([0.5, 9.0], dtype=torch.float64)).shape
    torch.Size([2, 2])
    """

    def __init__(self, dists):
        self.dists = list(dists)
        if not self.dists:
            raise ValueError("ComponentList needs at least one component")
        for d in self.dists:
            if not d.is_fitted:
                raise TypeError("ComponentList needs fitted distributions")
            if tuple(d.batch_shape) != ():
                raise ValueError("each listed component must be a single distribution (empty batch shape)")

    @property
    def n_components(self):
        return len(self.dists)

    @classmethod
    def from_responsibilities(cls, templates, x, resp):
        total = resp.sum()
        fitted, empty = [], []
        for k, t in enumerate(templates):
            # A component starts from the samples inside its support only.
            mask = t._support_mask(x)
            if mask is not None and not bool(mask.any()):
                raise ValueError(f"no sample lies in the support of component {k} "
                                 f"({type(t).__name__}: {t.support_description})")
            weight = resp[:, k]
            if float(weight.sum()) <= 1e-12 * float(total):
                empty.append(k)
                weight = resp.sum(1)  # starts as the fit to all the data, with zero mixture weight
            if mask is not None:
                weight = weight * mask.to(resp.dtype)
            fitted.append(t.from_stats(t._masked_summarize(x, weight)))
        if empty:
            warn_user(f"component(s) {empty} received no data at initialisation (the data may hold fewer distinct "
                      "points than components); they start as a fit to all the data", EmptyComponentWarning)
        return cls(fitted)

    def log_prob(self, x):
        # Samples outside a component's (continuous) support have zero density under it.
        return torch.stack([d._masked_log_prob_pairs(x) for d in self.dists], dim=1)

    def summarize(self, x, resp):
        return [d._masked_summarize(x, resp[:, k]) for k, d in enumerate(self.dists)]

    @staticmethod
    def check_support(dists, x, name="X"):
        """Raise ``ValueError`` unless every sample lies in the support of at least one component.

        Families with a strict support (see ``ExponentialFamily._support_mask``) must accept
        every sample; a sample outside a restricted continuous support is left to the others.
        """
        covered = None
        strict = False
        for d in dists:
            mask = d._support_mask(x)
            if mask is None:
                # Its support must hold every sample, so it covers them all.
                d._validate_support(x, name)
                strict = True
            else:
                covered = mask if covered is None else covered | mask
        if not strict and not bool(covered.all()):
            row = int(torch.nonzero(~covered)[0])
            supports = ", ".join(f"{type(d).__name__} ({d.support_description})" for d in dists)
            raise ValueError(
                f"{name} has {int((~covered).sum())} sample(s) outside the support of every component "
                f"(first: row {row}); the components are {supports}")

    def validate(self, x, name="X"):
        self.check_support(self.dists, x, name)

    def refit(self, stats, warn=True):
        total = sum(float(s["count"]) for s in stats)
        new, empty = [], []
        for k, (d, s) in enumerate(zip(self.dists, stats)):
            if float(s["count"]) <= 1e-12 * total:
                new.append(d)
                empty.append(k)
            else:
                new.append(d.from_stats(s))
        if len(empty) == len(self.dists):
            raise ValueError("every component received zero weight: the data have no mass")
        if empty and warn:
            warn_user(
                f"component(s) {empty} received no weight in this E-step and kept their previous parameters",
                EmptyComponentWarning
            )
        return ComponentList(new)

    def member(self, index):
        return self.dists[index]

    def sample_member(self, index, n, generator):
        return self.dists[index]._sample((n,), generator)

    def n_parameters(self):
        return sum(d._n_free_parameters_total() for d in self.dists)

    def to(self, device=None, dtype=None):
        return ComponentList(
            [d._new(**{k: v.to(device=device, dtype=dtype) for k, v in d.torch_params().items()}) for d in self.dists]
        )


def sample_by_state(components, states, generator):
    """One row per entry of ``states``, drawn from the component that entry names.

    The emissions of a sampled state path: the rows of each state are drawn in one call,
    state by state, from ``generator``.

    Parameters
    ----------
    components : BatchedComponents or ComponentList
    states : numpy.ndarray of int, shape (n,)
        Component index of each row.
    generator : torch.Generator

    Returns
    -------
    numpy.ndarray of shape (n, n_features) or None
        Each draw flattened to one row; None when ``states`` is empty.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from probkit.distributions import Poisson
    >>> comps = BatchedComponents(Poisson(rate=[1.0, 1000.0]))
    >>> rows = sample_by_state(comps, np.array([1, 0, 1]), torch.Generator().manual_seed(0))
    >>> rows.shape, bool(rows[0, 0] > 500 and rows[1, 0] < 50)
    ((3, 1), True)
    """
    out = None
    with torch.no_grad():
        for k in range(components.n_components):
            idx = np.flatnonzero(states == k)
            if len(idx) == 0:
                continue
            draws = components.sample_member(k, len(idx), generator).cpu().numpy().reshape(len(idx), -1)
            if out is None:
                out = np.empty((len(states), draws.shape[1]))
            out[idx] = draws
    return out


def add_stats(a, b):
    """Sum component statistics of either protocol (SufficientStats, or lists of them)."""
    if a is None:
        return b
    if isinstance(a, list):
        return [x + y for x, y in zip(a, b)]
    return a + b


class FeatureProductComponents(BatchedComponents):
    """K components, each a product over the columns of X of one scalar family.

    Holds one scalar distribution with batch shape ``(K, n_features)``: component ``k``
    treats the features as independent with parameters ``[k, d]``. Missing values
    (NaN) can be marginalised out: pass ``observed`` (a boolean mask, True where a value
    is present) and a NaN contributes neither to the log-likelihood nor to the
    statistics of its feature.

    Examples
    --------
    >>> import torch
    >>> from probkit.distributions import Poisson
    >>> comps = FeatureProductComponents(Poisson(rate=[[1.0, 1.0], [10.0, 10.0]]))
    >>> x = torch.tensor([[0.0, 1.0], [9.0, 11.0]], dtype=torch.float64)
    >>> comps.log_prob(x).argmax(1).tolist()
    [0, 1]
    """

    def __init__(self, dist):
        super().__init__(dist)
        if len(dist.batch_shape) != 2 or dist.event_ndim != 0:
            raise ValueError("FeatureProductComponents needs a scalar family with batch shape (K, n_features)")

    @staticmethod
    def fill_missing(x, observed):
        """Replace missing entries by an observed value of the same column (always in the support)."""
        if observed is None:
            return x
        # First observed row of each column (argmax of a boolean picks the first True).
        first = observed.to(torch.uint8).argmax(0)
        fill = x.gather(0, first.unsqueeze(0)).squeeze(0)
        fill = torch.where(torch.isfinite(fill), fill, torch.zeros_like(fill))
        return torch.where(observed, x, fill.expand_as(x))

    @classmethod
    def from_responsibilities(cls, template, x, resp, observed=None):
        n, d = x.shape
        k = resp.shape[1]
        x = cls.fill_missing(x, observed)
        stats = cls._summarize_with(template, x, resp, observed, k, d)
        return cls(template.from_stats(stats))

    @staticmethod
    def _summarize_with(dist, x, resp, observed, k, d):
        n = x.shape[0]
        mask = torch.ones_like(x) if observed is None else observed.to(x.dtype)
        fields = {"count": resp.T @ mask}
        if getattr(dist, "latent_statistics", False) and dist.is_fitted:
            # Expected complete-data statistics (Student t): one value per row, component and feature.
            for name, t in dist._sufficient_statistics(x.unsqueeze(1)).items():
                masked = t * mask.reshape(n, 1, d, *([1] * (t.ndim - 3)))
                fields[name] = torch.einsum("nk,nk...->k...", resp, masked)
            return SufficientStats(type(dist).__name__, fields, dist._stats_meta())
        for name, t in dist._statistics_for_sums(x).items():
            extra = t.shape[2:]
            masked = t * mask.reshape(n, d, *([1] * len(extra)))
            fields[name] = (resp.T @ masked.reshape(n, -1)).reshape(k, d, *extra)
        return SufficientStats(type(dist).__name__, fields, dist._stats_meta())

    def log_prob(self, x, observed=None):
        x = self.fill_missing(x, observed)
        lp = self.dist._log_prob(x.unsqueeze(1))  # (n, K, d)
        if observed is not None:
            lp = torch.where(observed.unsqueeze(1), lp, torch.zeros((), dtype=lp.dtype, device=lp.device))
        return lp.sum(-1)

    def summarize(self, x, resp, observed=None):
        x = self.fill_missing(x, observed)
        return self._summarize_with(self.dist, x, resp, observed, self.n_components, x.shape[1])

    def validate(self, x, name="X"):
        finite = torch.where(torch.isnan(x), self.fill_missing(x, ~torch.isnan(x)), x)
        self.dist._validate_support(finite, name)

    def refit(self, stats, warn=True):
        fitted = super().refit(stats, warn=warn)
        return FeatureProductComponents(fitted.dist)

    def member(self, index):
        params = {name: value[index] for name, value in self.dist.torch_params().items()}
        return self.dist._new(**params)

    def to(self, device=None, dtype=None):
        return FeatureProductComponents(super().to(device=device, dtype=dtype).dist)
