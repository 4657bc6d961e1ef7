"""Products of independent scalar families over the columns of a 2-D array."""

from __future__ import annotations

import torch

from probkit.distributions.base import ExponentialFamily, SufficientStats

__all__ = ["Independent"]


class Independent(ExponentialFamily):
    """Product of independent per-feature distributions: column ``j`` of ``X`` follows ``components[j]``.

    Families may be mixed (e.g. a Normal, a Poisson and a Categorical column) and batched:
    every component must have the same batch shape, and the product then has that batch
    shape (e.g. one per mixture component or HMM state). The product is again an
    exponential family: statistics, natural and mean parameters are those of the
    components, keyed ``"<j>.<name>"`` (``"0.x"``, ``"1.xx"``, ...).

    Statistics also carry a per-feature weight total ``"<j>.count"``, so features can be
    missing independently: the tensor methods :meth:`_log_prob_columns` and
    ``_summarize`` treat NaN entries as missing (a missing feature contributes a factor 1
    to the likelihood and nothing to that feature's statistics). The public numpy methods
    reject NaN like every other family.

    Parameters
    ----------
    components : sequence of ExponentialFamily
        One scalar family (``event_ndim == 0``) per column, fitted or not.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.distributions import Categorical, Normal, Poisson
    >>> X = np.array([[0.5, 2, 0], [1.5, 4, 2], [1.0, 3, 2]])
    >>> d = Independent([Normal(), Poisson(), Categorical(n_categories=3)]).fit(X)
    >>> d.components[1].rate
    array(3.)
    >>> np.allclose(d.log_prob(X), sum(c.log_prob(X[:, j]) for j, c in enumerate(d.components)))
    True
    """

    event_ndim = 1
    support_description = "rows of per-feature values"
    conjugate_prior_family = None

    def __init__(self, components):
        if isinstance(components, ExponentialFamily) or not hasattr(components, "__iter__"):
            raise TypeError("components must be a sequence of distributions, one per feature")
        components = list(components)
        if not components:
            raise ValueError("components must hold at least one distribution")
        for j, comp in enumerate(components):
            if not isinstance(comp, ExponentialFamily):
                raise TypeError(f"components[{j}] must be a probkit distribution, got {type(comp).__name__}")
            if comp.event_ndim != 0:
                raise ValueError(
                    f"components[{j}] ({type(comp).__name__}) is not a scalar family; "
                    "Independent combines one scalar distribution per column"
                )
        fitted = [c for c in components if c.is_fitted]
        if fitted and len(fitted) != len(components):
            raise ValueError("components must be all fitted or all unfitted")
        if fitted:
            shapes = {tuple(c.batch_shape) for c in components}
            if len(shapes) != 1:
                raise ValueError(f"components must share one batch shape, got {sorted(shapes)}")
        self.components = components
        self._cache = {}

    # ------------------------------------------------------------------ introspection
    @property
    def n_features(self):
        """Number of columns (components)."""
        return len(self.components)

    @property
    def is_fitted(self):
        """Whether every component has parameters."""
        return all(c.is_fitted for c in self.components)

    @property
    def _batch_shape(self):
        return self.components[0]._batch_shape

    @property
    def params(self):
        """The components' parameters as numpy arrays, keyed ``"<j>.<name>"``."""
        self._require_params()
        return {f"{j}.{k}": v for j, c in enumerate(self.components) for k, v in c.params.items()}

    def torch_params(self):
        """The components' live parameter tensors, keyed ``"<j>.<name>"``."""
        self._require_params()
        return {f"{j}.{k}": v for j, c in enumerate(self.components) for k, v in c.torch_params().items()}

    @property
    def dtype(self):
        self._require_params()
        return self.components[0].dtype

    @property
    def device(self):
        self._require_params()
        return self.components[0].device

    def __repr__(self):
        return f"Independent([{', '.join(repr(c) for c in self.components)}])"

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _prefixed(j, mapping):
        return {f"{j}.{k}": v for k, v in mapping.items()}

    @staticmethod
    def _split(mapping, n_components):
        parts = [{} for _ in range(n_components)]
        for key, value in mapping.items():
            head, sep, name = key.partition(".")
            if sep and head.isdigit() and int(head) < n_components:
                parts[int(head)][name] = value
        return parts

    def _check_sample_shape(self, x, name="X"):
        super()._check_sample_shape(x, name)
        if x.shape[1] != self.n_features:
            raise ValueError(
                f"{name} must have {self.n_features} columns (one per component), got {x.shape[1]}"
            )

    def _validate_support(self, x, name="X"):
        for j, comp in enumerate(self.components):
            comp._validate_support(x[..., j], f"{name}[:, {j}]")

    # ------------------------------------------------------------------ tensor core
    def _log_prob(self, x):
        total = 0
        for j, comp in enumerate(self.components):
            total = total + comp._log_prob(x[..., j])
        return total

    def _log_prob_columns(self, x):
        """Per-feature log-probabilities of every row under every batch member.

        Parameters
        ----------
        x : torch.Tensor of shape (n_samples, n_features)
            NaN entries are missing values: their entry of the result is 0, so summing the
            last axis marginalises the missing features out. A caller may also mask the
            result itself.

        Returns
        -------
        torch.Tensor of shape (n_samples, *batch_shape, n_features)
        """
        n = x.shape[0]
        batch = tuple(self._batch_shape)
        columns = []
        for j, comp in enumerate(self.components):
            col = x[:, j]
            observed = ~torch.isnan(col)
            if bool(observed.all()):
                lp = comp._log_prob_pairs(col)
            elif not bool(observed.any()):
                lp = torch.zeros((n, *batch), dtype=x.dtype, device=x.device)
            else:
                # Evaluate at a valid placeholder (an observed value), then zero the missing rows.
                filled = torch.where(observed, col, col[observed][0])
                lp = comp._log_prob_pairs(filled)
                mask = observed.reshape(n, *([1] * (lp.ndim - 1)))
                lp = torch.where(mask, lp, torch.zeros_like(lp))
            columns.append(lp.expand(n, *batch))
        return torch.stack(columns, -1)

    def _log_prob_pairs(self, x):
        return self._log_prob_columns(x).sum(-1)

    def _sufficient_statistics(self, x):
        out = {}
        for j, comp in enumerate(self.components):
            out.update(self._prefixed(j, comp._sufficient_statistics(x[..., j])))
        return out

    def _stats_meta(self):
        return {"families": tuple(type(c).__name__ for c in self.components)}

    def _summarize(self, x, w):
        """Per-feature statistics; rows where a feature is NaN are left out of that feature's sums."""
        fields = {"count": w.sum(0)}
        meta = self._stats_meta()
        for j, comp in enumerate(self.components):
            col = x[:, j]
            observed = ~torch.isnan(col)
            if bool(observed.all()):
                stats = comp._summarize(col, w)
            else:
                stats = comp._summarize(*self._fill_missing(j, col, observed, w))
            fields.update(self._prefixed(j, stats.fields))
            meta.update(self._prefixed(j, stats.meta))
        return SufficientStats(type(self).__name__, fields, meta)

    def _fill_missing(self, j, col, observed, w):
        """Replace missing entries by a value in the support and give them zero weight."""
        if bool(observed.any()):
            placeholder = col[observed][0]
        elif self.components[j].is_fitted:
            gen = torch.Generator(device=col.device).manual_seed(0)
            placeholder = self.components[j]._sample((1,), gen).reshape(-1)[0].to(col.dtype)
        else:
            raise ValueError(f"feature {j} has no observed value, so its statistics cannot be formed")
        filled = torch.where(observed, col, placeholder)
        mask = observed.reshape(-1, *([1] * (w.ndim - 1)))
        return filled, torch.where(mask, w, torch.zeros_like(w))

    def _component_stats(self, stats):
        parts = self._split(stats.fields, self.n_features)
        meta_parts = self._split({k: v for k, v in stats.meta.items() if k != "families"}, self.n_features)
        families = stats.meta.get("families", ())
        return [SufficientStats(families[j] if j < len(families) else type(c).__name__, parts[j], meta_parts[j])
                for j, c in enumerate(self.components)]

    def _natural_parameters(self):
        out = {}
        for j, comp in enumerate(self.components):
            out.update(self._prefixed(j, comp._natural_parameters()))
        return out

    def _log_partition(self):
        return sum(comp._log_partition() for comp in self.components)

    def _log_base_measure(self, x):
        return sum(comp._log_base_measure(x[..., j]) for j, comp in enumerate(self.components))

    def _mean_parameters(self):
        out = {}
        for j, comp in enumerate(self.components):
            out.update(self._prefixed(j, comp._mean_parameters()))
        return out

    def _params_from_mean(self, mean, stats=None):
        raise AssertionError("Independent fits through from_stats, component by component")

    def _sample(self, shape, gen):
        # Columns are drawn one after another from the one generator: reproducible.
        return torch.stack([comp._sample(shape, gen).to(self.dtype) for comp in self.components], -1)

    def _entropy(self):
        return sum(comp._entropy() for comp in self.components)

    def _kl(self, other):
        if other.n_features != self.n_features:
            raise ValueError(
                f"KL divergence needs the same number of features, got {self.n_features} and {other.n_features}"
            )
        total = 0
        for j, (p, q) in enumerate(zip(self.components, other.components)):
            if type(p) is not type(q):
                raise TypeError(f"feature {j}: cannot compare {type(p).__name__} with {type(q).__name__}")
            total = total + p._kl(q)
        return total

    # ------------------------------------------------------------------ fitting
    @classmethod
    def from_natural(cls, natural, components):
        """Build from natural parameters keyed ``"<j>.<name>"``, with ``components`` giving the families.

        Parameters
        ----------
        natural : dict
            As returned by :meth:`natural_parameters`.
        components : sequence of ExponentialFamily
            Templates (fitted or not) whose types and options are used.

        Examples
        --------
        >>> from probkit.distributions import Normal, Poisson
        >>> d = Independent([Normal(loc=1.0, scale=2.0), Poisson(rate=3.0)])
        >>> Independent.from_natural(d.natural_parameters(), d.components).params["1.rate"]
        array(3.)
        """
        components = list(components)
        parts = cls._split(natural, len(components))
        return cls([type(c).from_natural(parts[j], **c._options()) for j, c in enumerate(components)])

    def from_stats(self, stats, prior=None):
        """A new product fitted to summed statistics, component by component.

        Parameters
        ----------
        stats : SufficientStats
            From :meth:`summarize` (possibly summed over chunks).
        prior : sequence, optional
            One conjugate prior (or ``None``) per component; the fit of a component with a
            prior is its posterior mode.

        Examples
        --------
        >>> import numpy as np
        >>> from probkit.distributions import Normal, Poisson
        >>> d = Independent([Normal(), Poisson()])
        >>> X = np.array([[0.0, 1.0], [2.0, 3.0]])
        >>> d.from_stats(d.summarize(X)).params["1.rate"]
        array(2.)
        """
        if not isinstance(stats, SufficientStats):
            raise TypeError(f"stats must be SufficientStats, got {type(stats).__name__}")
        if stats.family != type(self).__name__:
            raise TypeError(f"statistics of {stats.family} cannot fit an Independent")
        families = stats.meta.get("families")
        expected = tuple(type(c).__name__ for c in self.components)
        if families is not None and tuple(families) != expected:
            raise TypeError(f"statistics of features {tuple(families)} cannot fit components {expected}")
        if prior is None:
            priors = [None] * self.n_features
        else:
            if isinstance(prior, ExponentialFamily) or not hasattr(prior, "__len__") or len(prior) != self.n_features:
                raise ValueError(f"prior must be a sequence of {self.n_features} priors (None for none), one per component")
            priors = list(prior)
        fitted = []
        for j, (comp, sub, pr) in enumerate(zip(self.components, self._component_stats(stats), priors)):
            try:
                fitted.append(comp.from_stats(sub, prior=pr))
            except ValueError as exc:
                raise ValueError(f"feature {j} ({type(comp).__name__}): {exc}") from exc
        return Independent(fitted)

    def fit(self, X, sample_weight=None, prior=None):
        """Fit every component to its column by (weighted) maximum likelihood, or MAP under ``prior``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        sample_weight : array-like of shape (n_samples,), optional
        prior : sequence, optional
            One conjugate prior (or ``None``) per component.

        Returns
        -------
        self
        """
        return super().fit(X, sample_weight, prior)

    def _adopt_fitted(self, fitted):
        self.components = fitted.components
