"""The exponential-family base class and the additive sufficient-statistics value.

An exponential family has densities

    log p(x | eta) = <eta, T(x)> - A(eta) + log h(x)

with natural parameters ``eta``, sufficient statistics ``T(x)``, log-partition ``A`` and
base measure ``h``. Everything the EM engine needs follows from that form: the E-step
produces *weighted* sums of ``T(x)`` (a :class:`SufficientStats` value, additive over
batches and processes) and the M-step turns the average statistics -- the mean
parameters ``E[T(x)]`` -- back into parameters (:meth:`ExponentialFamily.from_stats`).

Batching
--------
Parameters may carry a leading *batch shape*, e.g. ``Normal(loc=[0., 5.], scale=1.)`` is
two normals. Two conventions are used:

* :meth:`ExponentialFamily.log_prob` (public, numpy-facing) evaluates every sample
  under every batch member: ``X`` of shape ``(n, *event_shape)`` gives ``(n, *batch_shape)``.
  This is the "component log-likelihood matrix" that mixtures and HMMs need.
* ``_log_prob`` (tensor core) broadcasts like ``torch.distributions``: ``x`` of shape
  ``(..., *event_shape)`` against the batch shape. Neural emission models use it with
  per-time-step parameters.

Numpy in, numpy out: public methods return numpy arrays for numpy (or list) input and
torch tensors for tensor input, so the same objects serve estimators and autograd.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch

from probkit.utils._array import is_tensor, to_numpy
from probkit.utils.random import torch_generator
from probkit.utils.validation import check_sample_weight

__all__ = ["ExponentialFamily", "SufficientStats", "kl_divergence"]


class SufficientStats(Mapping):
    """Weighted sums of sufficient statistics: an additive value.

    ``stats_a + stats_b`` equals the statistics of the concatenated data, so statistics
    can be accumulated over chunks of rows, over sequences and over processes
    (:meth:`all_reduce`). The field ``"count"`` holds the summed weights.

    Parameters
    ----------
    family : str
        Name of the family the statistics belong to (adding two different families is an error).
    fields : dict of str to torch.Tensor
        The summed statistics; every field has the batch shape as leading dimensions.
    meta : dict, optional
        Non-additive settings shared by both operands of a sum (e.g. the reference point
        a Gaussian's statistics are centred on).

    Examples
    --------
    >>> from probkit.distributions import Poisson
    >>> a = Poisson().summarize(np.array([1., 2.]))
    >>> b = Poisson().summarize(np.array([3.]))
    >>> (a + b)["count"].item(), (a + b)["x"].item()
    (3.0, 6.0)
    """

    __slots__ = ("family", "fields", "meta")

    def __init__(self, family, fields, meta=None):
        if "count" not in fields:
            raise ValueError("SufficientStats needs a 'count' field")
        self.family = family
        self.fields = dict(fields)
        self.meta = dict(meta or {})

    def __getitem__(self, key):
        return self.fields[key]

    def __iter__(self):
        return iter(self.fields)

    def __len__(self):
        return len(self.fields)

    @property
    def count(self):
        """Summed weights (total effective number of samples), with the batch shape."""
        return self.fields["count"]

    def _check_compatible(self, other):
        if not isinstance(other, SufficientStats):
            raise TypeError(f"can only add SufficientStats to SufficientStats, got {type(other).__name__}")
        if other.family != self.family:
            raise TypeError(f"cannot add statistics of {other.family} to statistics of {self.family}")
        if set(other.fields) != set(self.fields):
            raise ValueError(f"statistics have different fields: {sorted(self.fields)} vs {sorted(other.fields)}")
        for key, value in self.meta.items():
            other_value = other.meta.get(key)
            same = (
                torch.equal(value, other_value)
                if isinstance(value, torch.Tensor) and isinstance(other_value, torch.Tensor)
                else value is other_value or value == other_value
            )
            if not same:
                raise ValueError(f"statistics were computed with different '{key}' settings and cannot be added")

    def __add__(self, other):
        if isinstance(other, (int, float)) and other == 0:
            return self
        self._check_compatible(other)
        return SufficientStats(
            self.family, {k: v + other.fields[k] for k, v in self.fields.items()}, self.meta
        )

    __radd__ = __add__

    def __mul__(self, scale):
        """Scale every statistic (e.g. to weight a data set or a mini-batch)."""
        if not isinstance(scale, (int, float)) and not (isinstance(scale, torch.Tensor) and scale.ndim == 0):
            raise TypeError("SufficientStats can only be multiplied by a scalar")
        return SufficientStats(self.family, {k: v * scale for k, v in self.fields.items()}, self.meta)

    __rmul__ = __mul__

    def to(self, device=None, dtype=None):
        """Move every field to ``device`` and/or cast to ``dtype``."""
        return SufficientStats(
            self.family, {k: v.to(device=device, dtype=dtype) for k, v in self.fields.items()}, self.meta
        )

    def all_reduce(self, group=None):
        """Sum the statistics over all processes of a ``torch.distributed`` group, in place.

        One flat all-reduce carries every field. Returns ``self``.
        """
        import torch.distributed as dist

        keys = sorted(self.fields)
        flat = torch.cat([self.fields[k].reshape(-1) for k in keys])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        offset = 0
        for k in keys:
            n = self.fields[k].numel()
            self.fields[k] = flat[offset:offset + n].reshape(self.fields[k].shape)
            offset += n
        return self

    def __repr__(self):
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.fields.items())
        return f"SufficientStats({self.family}; {shapes})"


def _as_param(value, dtype, device):
    if isinstance(value, torch.Tensor):
        t = value
        if not t.is_floating_point():
            # Integer tensors become float64 (the classical models' precision) unless asked otherwise.
            t = t.to(torch.float64 if dtype is None else dtype)
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        if device is not None and t.device != torch.device(device):
            t = t.to(device)
        return t
    arr = np.asarray(value, dtype=np.float64)
    return torch.as_tensor(arr, dtype=dtype or torch.float64, device=device)


class ExponentialFamily:
    """Base class of probkit's exponential-family distributions.

    Subclasses declare ``param_names`` with the number of event dimensions of each
    parameter (``_param_event_ndims``), ``event_ndim`` of a sample, and implement the
    tensor core: ``_log_prob``, ``_sufficient_statistics``, ``_natural_parameters``,
    ``_log_partition``, ``_log_base_measure``, ``_mean_parameters``,
    ``_params_from_mean``, ``_sample``, ``_entropy``, ``_kl``, ``_validate_support``.

    Parameters are torch tensors (float64 unless tensors of another dtype are given);
    a distribution created without parameters is *unfitted* and gets them from
    :meth:`fit` or :meth:`from_stats`.

    Examples
    --------
    >>> from probkit.distributions import Normal
    >>> d = Normal().fit(np.array([1.0, 2.0, 3.0]))
    >>> float(d.loc), round(float(d.scale), 4)
    (2.0, 0.8165)
    """

    param_names: tuple = ()
    _param_event_ndims: dict = {}
    event_ndim: int = 0
    support_description: str = "the real line"

    # ------------------------------------------------------------------ construction
    def _set_params(self, dtype=None, device=None, **params):
        given = {k: v for k, v in params.items() if v is not None}
        if given and len(given) != len(self.param_names):
            missing = [k for k in self.param_names if params.get(k) is None]
            raise ValueError(
                f"{type(self).__name__} needs all of {list(self.param_names)} or none; missing {missing}"
            )
        if not given:
            self._params = None
            self._batch_shape = None
            return
        # A dtype given by an existing tensor parameter wins (autograd users pass tensors).
        if dtype is None:
            for v in given.values():
                if isinstance(v, torch.Tensor) and v.is_floating_point():
                    dtype = v.dtype
                    device = device or v.device
                    break
        tensors = {k: _as_param(given[k], dtype, device) for k in self.param_names}
        for name, t in tensors.items():
            if t.ndim < self._param_event_ndims.get(name, 0):
                raise ValueError(
                    f"{type(self).__name__}: parameter '{name}' needs at least "
                    f"{self._param_event_ndims[name]} dimensions, got shape {tuple(t.shape)}"
                )
            if not bool(torch.isfinite(t.detach()).all()):
                raise ValueError(f"{type(self).__name__}: parameter '{name}' contains NaN or infinity")
        batch_shapes = [
            t.shape[: t.ndim - self._param_event_ndims.get(k, 0)] for k, t in tensors.items()
        ]
        try:
            batch_shape = torch.broadcast_shapes(*batch_shapes)
        except RuntimeError as exc:
            raise ValueError(
                f"{type(self).__name__}: parameter batch shapes {[tuple(s) for s in batch_shapes]} do not broadcast"
            ) from exc
        self._params = tensors
        self._batch_shape = torch.Size(batch_shape)
        self._cache = {}
        self._check_params()

    def _check_params(self):
        """Validate parameter values (positivity, simplex, ...). Subclasses override."""

    def _options(self):
        """Non-parameter constructor arguments, passed on to new instances made by ``from_stats``."""
        return {}

    def _new(self, **params):
        """A distribution of this family and options with the parameters ``params`` (none: unfitted)."""
        return type(self)(**params, **self._options())

    def centered(self, center):
        """This (unfitted) family with its statistics accumulated about ``center``, a point near the data.

        Families whose fit subtracts large squared terms (the normal models) override it so
        that data far from the origin keep their precision; the others return ``self``.

        Examples
        --------
        >>> from probkit.distributions import Normal, Poisson
        >>> Normal().centered(1e8).stats_shift.item(), Poisson().centered(3.0) is not None
        (100000000.0, True)
        """
        return self

    # ------------------------------------------------------------------ introspection
    @property
    def is_fitted(self):
        """Whether the distribution has parameters."""
        return getattr(self, "_params", None) is not None

    def _require_params(self):
        if not self.is_fitted:
            raise ValueError(
                f"this {type(self).__name__} has no parameters yet: pass them to the constructor or call fit(X)"
            )

    @property
    def batch_shape(self):
        """Shape of the batch of distributions held (``()`` for a single one)."""
        self._require_params()
        return self._batch_shape

    @property
    def params(self):
        """The parameters as a dict of numpy arrays."""
        self._require_params()
        return {k: to_numpy(v) for k, v in self._params.items()}

    def torch_params(self):
        """The parameters as a dict of torch tensors (the live ones; autograd flows through them)."""
        self._require_params()
        return dict(self._params)

    @property
    def dtype(self):
        self._require_params()
        return next(iter(self._params.values())).dtype

    @property
    def device(self):
        self._require_params()
        return next(iter(self._params.values())).device

    def __getattr__(self, name):
        # Parameters read as numpy arrays: ``Normal(loc=0, scale=1).loc``.
        if name in type(self).param_names:
            params = self.__dict__.get("_params")
            if params is None:
                raise AttributeError(
                    f"{type(self).__name__} has no parameter values yet (call fit or pass parameters)"
                )
            return to_numpy(params[name])
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def __repr__(self):
        if not self.is_fitted:
            opts = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
            return f"{type(self).__name__}({opts})"
        parts = []
        for k, v in self._params.items():
            arr = to_numpy(v)
            parts.append(f"{k}={np.array2string(arr, precision=4, threshold=8)}" if arr.ndim else f"{k}={arr.item():.4g}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # ------------------------------------------------------------------ conversion helpers
    def _to_tensor(self, X, name="X"):
        if is_tensor(X):
            x = X
        else:
            arr = np.asarray(X)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
            x = torch.as_tensor(arr)
        dtype = self.dtype if self.is_fitted else torch.float64
        device = self.device if self.is_fitted else None
        if x.dtype != dtype:
            x = x.to(dtype)
        if device is not None and x.device != device:
            x = x.to(device)
        return x

    def _check_sample_shape(self, x, name="X"):
        if x.ndim != self.event_ndim + 1:
            raise ValueError(
                f"{name} must have shape (n_samples{', event...' if self.event_ndim else ''}) with "
                f"{self.event_ndim + 1} dimension(s) for {type(self).__name__}, got shape {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one sample")

    def _prepare_X(self, X, name="X", check_support=True):
        x = self._to_tensor(X, name)
        self._check_sample_shape(x, name)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinity")
        if check_support:
            self._validate_support(x, name)
        return x

    def _validate_support(self, x, name="X"):
        """Raise ``ValueError`` if ``x`` lies outside the support. Subclasses override."""

    # ------------------------------------------------------------------ zero density outside the support
    def _support_mask(self, x):
        """Which samples of ``x`` (shape ``(n, *event)``) lie inside the support, or ``None``.

        Continuous families whose support is a region of the space the others share (Gamma,
        LogNormal and Exponential on the positive reals, Beta on ``[0, 1]``, Wishart on positive
        definite matrices) return a boolean ``(n,)`` mask: their density is zero outside it,
        so in a mixture of several families such a sample has ``-inf`` log-density under that
        component and is explained by the others. ``None`` means every sample must be valid:
        families over the whole space, and discrete families, whose data type (counts,
        categories) is part of the model and whose masses cannot be mixed with densities.
        """
        return None

    def _support_placeholder(self, x):
        """One sample inside the support (event shape), used in place of samples outside it."""
        raise NotImplementedError(f"{type(self).__name__} has no restricted support")

    def _replace_outside_support(self, x):
        """``(x with samples outside the support replaced by a placeholder, mask)``; mask is None if all inside."""
        mask = self._support_mask(x)
        if mask is None or bool(mask.all()):
            return x, None
        keep = mask.reshape(mask.shape + (1,) * (x.ndim - 1))
        return torch.where(keep, x, self._support_placeholder(x).to(x.dtype)), mask

    def _masked_log_prob_pairs(self, x):
        """:meth:`_log_prob_pairs` with ``-inf`` for samples outside a restricted support."""
        safe, mask = self._replace_outside_support(x)
        lp = self._log_prob_pairs(safe)
        if mask is None:
            return lp
        outside = ~mask.reshape(mask.shape + (1,) * (lp.ndim - 1))
        return lp.masked_fill(outside, -math.inf)

    def _masked_summarize(self, x, w):
        """:meth:`_summarize` seeing only samples inside the support (those outside must have zero weight)."""
        safe, mask = self._replace_outside_support(x)
        if mask is None:
            return self._summarize(x, w)
        outside = ~mask.reshape(mask.shape + (1,) * (w.ndim - 1))
        if bool((w.masked_select(outside.expand_as(w)) != 0).any()):
            raise ValueError(
                f"samples outside the support of {type(self).__name__} ({self.support_description}) "
                "have positive weight")
        return self._summarize(safe, w)

    def _out(self, value, like):
        return value if is_tensor(like) else to_numpy(value)

    # ------------------------------------------------------------------ public API
    def log_prob(self, X):
        """Log-density (or log-mass) of each sample under each member of the batch.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, *event_shape)

        Returns
        -------
        log_prob : array of shape (n_samples, *batch_shape)
            Values outside the support are an error, not ``-inf``.
        """
        self._require_params()
        x = self._prepare_X(X)
        return self._out(self._log_prob_pairs(x), X)

    def _log_prob_pairs(self, x):
        """All-pairs log-probability ``(n, *event) -> (n, *batch)``; families may specialise."""
        n = x.shape[0]
        event = x.shape[1:]
        xb = x.reshape(n, *([1] * len(self._batch_shape)), *event)
        return self._log_prob(xb)

    def sample(self, n_samples=1, random_state=None):
        """Draw independent samples from every batch member.

        Parameters
        ----------
        n_samples : int or tuple of int, default=1
            An int ``n`` draws ``n`` samples (scikit-learn's convention). A tuple or
            ``torch.Size`` is a ``sample_shape`` as in ``torch.distributions``: the result
            has shape ``sample_shape + batch_shape + event_shape``, and ``()`` draws one
            sample without a leading axis.
        random_state : None, int, numpy.random.RandomState or torch.Generator

        Returns
        -------
        samples : numpy.ndarray of shape (n_samples, *batch_shape, *event_shape)
            Or ``(*sample_shape, *batch_shape, *event_shape)``. Always numpy; for tensors
            (and reparameterised samples) use ``to_torch().sample()`` / ``rsample()``.

        Examples
        --------
        >>> from probkit.distributions import Normal
        >>> d = Normal(loc=[0.0, 10.0], scale=1.0)
        >>> d.sample(5, random_state=0).shape, d.sample((4, 3), random_state=0).shape, d.sample(()).shape
        ((5, 2), (4, 3, 2), (2,))
        """
        self._require_params()
        if isinstance(n_samples, (tuple, list, torch.Size)):
            shape = tuple(n_samples)
            if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0 for n in shape):
                raise ValueError(f"sample_shape must be a tuple of non-negative integers, got {n_samples!r}")
            shape = tuple(int(n) for n in shape)
        elif isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer or a tuple (a sample_shape), got {n_samples!r}")
        else:
            shape = (int(n_samples),)
        total = int(np.prod(shape)) if shape else 1
        gen = torch_generator(random_state, device=self.device)
        with torch.no_grad():
            draws = self._sample((max(total, 1),), gen)
        draws = draws[:total] if total == 0 else draws
        return to_numpy(draws.reshape(*shape, *draws.shape[1:]))

    # ------------------------------------------------------------------ torch.distributions interface
    def to_torch(self):
        """The matching ``torch.distributions`` object, with the same (live) parameter tensors.

        Its ``log_prob`` broadcasts a value of shape ``(..., *batch_shape, *event_shape)``
        against the batch (torch's convention), where probkit's :meth:`log_prob` scores
        every sample under every batch member.

        Raises
        ------
        NotImplementedError
            For families torch does not have (``InverseWishart``, ``MultivariateStudentT``,
            ``Independent`` products of mixed families, the priors).

        Examples
        --------
        >>> import torch
        >>> from probkit.distributions import Gamma
        >>> d = Gamma(concentration=2.0, rate=3.0)
        >>> t = d.to_torch()
        >>> type(t).__name__, bool(torch.isclose(t.log_prob(torch.tensor(0.5, dtype=torch.float64)),
        ...                                      torch.as_tensor(d.log_prob([0.5])[0])))
        ('Gamma', True)
        """
        self._require_params()
        make = _TORCH_EQUIVALENTS.get(type(self).__name__)
        if make is None:
            raise NotImplementedError(f"torch.distributions has no counterpart of {type(self).__name__}")
        return make(self)

    @property
    def mean(self):
        """Mean of each batch member, shape ``batch_shape + event_shape`` (numpy), as ``torch.distributions``' ``mean``.

        Examples
        --------
        >>> from probkit.distributions import Poisson
        >>> Poisson(rate=[1.5, 4.0]).mean
        array([1.5, 4. ])
        """
        return self._torch_moment("mean")

    @property
    def variance(self):
        """Variance of each batch member (element-wise for vectors), as ``torch.distributions``' ``variance``.

        Examples
        --------
        >>> from probkit.distributions import Normal
        >>> Normal(loc=0.0, scale=2.0).variance
        array(4.)
        """
        return self._torch_moment("variance")

    @property
    def stddev(self):
        """Standard deviation of each batch member: ``sqrt(variance)``.

        Examples
        --------
        >>> from probkit.distributions import Exponential
        >>> Exponential(rate=0.5).stddev
        array(2.)
        """
        return np.asarray(np.sqrt(self.variance))

    def _torch_moment(self, name):
        # MultivariateNormal's parameter ``mean`` is also this property; the parameter is what it returns.
        if name in type(self).param_names:
            return to_numpy(self._params[name]) if self.is_fitted else self.__getattr__(name)
        if type(self).__name__ == "Categorical":  # torch leaves these NaN; the index's moments are well defined
            probs = self._params["probs"]
            k = torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device)
            mean = (probs * k).sum(-1)
            return to_numpy(mean if name == "mean" else (probs * k ** 2).sum(-1) - mean ** 2)
        try:
            dist = self.to_torch()
        except NotImplementedError:
            raise NotImplementedError(f"{type(self).__name__} has no {name} here (no torch.distributions "
                                      "counterpart to take it from)") from None
        with torch.no_grad():
            return to_numpy(getattr(dist, name))

    def sufficient_statistics(self, X):
        """The sufficient statistics ``T(x)`` of each sample, as a dict of arrays of shape ``(n, *stat_shape)``."""
        x = self._prepare_X(X)
        return {k: self._out(v, X) for k, v in self._sufficient_statistics(x).items()}

    def natural_parameters(self):
        """Natural parameters ``eta`` (dict keyed like the sufficient statistics)."""
        self._require_params()
        return {k: to_numpy(v) for k, v in self._natural_parameters().items()}

    def mean_parameters(self):
        """Mean parameters ``E[T(x)]`` (dict keyed like the sufficient statistics)."""
        self._require_params()
        return {k: to_numpy(v) for k, v in self._mean_parameters().items()}

    def log_partition(self):
        """Log-partition ``A(eta)``, with the batch shape."""
        self._require_params()
        return to_numpy(self._log_partition())

    def entropy(self):
        """Differential (or Shannon) entropy in nats, with the batch shape."""
        self._require_params()
        return to_numpy(self._entropy())

    def kl_divergence(self, other):
        """``KL(self || other)`` for another distribution of the same family (broadcast over batches)."""
        return kl_divergence(self, other)

    @classmethod
    def from_natural(cls, natural, **options):
        """Build a distribution from natural parameters (dict keyed like :meth:`natural_parameters`)."""
        nat = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) if not is_tensor(v) else v for k, v in natural.items()}
        return cls(**cls._params_from_natural(nat, options), **options)

    def summarize(self, X, weights=None):
        """Weighted sums of the sufficient statistics of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, *event_shape)
        weights : array-like of shape (n_samples,) or (n_samples, *batch_shape), optional
            Per-sample weights; with a batch dimension, one weight per sample and batch
            member (the responsibilities of an E-step).

        Returns
        -------
        SufficientStats
            Fields have the batch shape of ``weights`` (``()`` for 1-D weights) as leading dims.
        """
        x = self._prepare_X(X)
        if weights is None:
            w = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        else:
            w = weights if is_tensor(weights) else torch.as_tensor(np.asarray(weights, dtype=np.float64))
            w = w.to(dtype=x.dtype, device=x.device)
            if w.ndim == 0 or w.shape[0] != x.shape[0]:
                raise ValueError(
                    f"weights must have shape (n_samples, ...) with n_samples={x.shape[0]}, got {tuple(w.shape)}"
                )
            if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
                raise ValueError("weights must be finite and non-negative")
        return self._summarize(x, w)

    def _statistics_for_sums(self, x):
        """The statistics that :meth:`summarize` adds up: ``T(x)``, or ``T`` about ``stats_shift``
        for families that accumulate about a reference point (see :meth:`centered`)."""
        return self._sufficient_statistics(x)

    def _summarize(self, x, w):
        """Tensor core of :meth:`summarize`: ``x`` (n, *event), ``w`` (n, *batch)."""
        stats = self._statistics_for_sums(x)
        n = x.shape[0]
        wb = w.reshape(n, -1)
        fields = {"count": w.sum(0)}
        for name, t in stats.items():
            flat = t.reshape(n, -1)
            summed = wb.transpose(0, 1) @ flat  # (batch, stat)
            fields[name] = summed.reshape((*w.shape[1:], *t.shape[1:]))
        return SufficientStats(type(self).__name__, fields, self._stats_meta())

    def _stats_meta(self):
        return {}

    def from_stats(self, stats, prior=None):
        """A new distribution fitted to summed statistics: MLE, or MAP under ``prior``.

        The options of ``self`` (e.g. ``covariance_type``) carry over; its parameter values do not.

        Parameters
        ----------
        stats : SufficientStats
            From :meth:`summarize` (possibly summed over chunks or processes).
        prior : distribution, optional
            A conjugate prior (see :meth:`posterior`); the result is its posterior mode.
        """
        if not isinstance(stats, SufficientStats):
            raise TypeError(f"stats must be SufficientStats, got {type(stats).__name__}")
        if stats.family != type(self).__name__:
            raise TypeError(f"statistics of {stats.family} cannot fit a {type(self).__name__}")
        if prior is not None:
            post = self.posterior(stats, prior)
            return self._new(**self._map_params(post))
        count = stats.count
        if bool((count <= 0).any()):
            raise ValueError(
                f"cannot fit {type(self).__name__}: some batch member has zero total weight"
            )
        return self._new(**self._mle_params(stats))

    def _mle_params(self, stats):
        mean = {k: v / stats.count.reshape((*stats.count.shape, *([1] * (v.ndim - stats.count.ndim))))
                for k, v in stats.fields.items() if k != "count"}
        return self._params_from_mean(mean, stats)

    def fit(self, X, sample_weight=None, prior=None):
        """Fit the parameters to ``X`` by (weighted) maximum likelihood, or MAP under ``prior``.

        Parameters
        ----------
        X : array-like of shape (n_samples, *event_shape)
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights; a weight of 2 counts a row twice.
        prior : distribution, optional
            Conjugate prior; the fit is then the posterior mode (MAP).

        Returns
        -------
        self
        """
        x = self._to_tensor(X)
        self._check_sample_shape(x)
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, x.shape[0])
        self._adopt_fitted(self.from_stats(self.summarize(x, sample_weight), prior=prior))
        self._cache = {}
        return self

    def _direct_fit_data(self, X, sample_weight, prior):
        """``(x, w)`` for a fit that works on the samples themselves rather than on the statistics.

        ``x``: the checked samples as a tensor; ``w``: float64 weights, ones without
        ``sample_weight``. A ``prior`` other than None gets :meth:`_check_prior`'s ``TypeError``.
        """
        if prior is not None:
            self._check_prior(prior)
        x = self._prepare_X(self._to_tensor(X))
        w = np.ones(x.shape[0]) if sample_weight is None else check_sample_weight(sample_weight, x.shape[0])
        return x, w

    def _adopt_fitted(self, fitted):
        """Take the parameters of ``fitted`` (the result of :meth:`from_stats` on this distribution)."""
        self._params = fitted._params
        self._batch_shape = fitted._batch_shape

    # ------------------------------------------------------------------ conjugate priors
    conjugate_prior_family = None

    def posterior(self, stats, prior):
        """Posterior over the parameters given statistics (or data) and a conjugate prior.

        Parameters
        ----------
        stats : SufficientStats or array-like
            Summed statistics, or raw samples (summarised with unit weights).
        prior : distribution
            A conjugate prior of this family (see ``conjugate_prior_family``).

        Returns
        -------
        distribution of the prior's type with updated hyperparameters.
        """
        if not isinstance(stats, SufficientStats):
            stats = self.summarize(stats)
        self._check_prior(prior)
        return self._posterior(stats, prior)

    def _check_prior(self, prior):
        expected = self.conjugate_prior_family
        if expected is None:
            raise TypeError(f"{type(self).__name__} has no tractable conjugate prior")
        if not isinstance(prior, expected):
            raise TypeError(
                f"prior for {type(self).__name__} must be a {expected.__name__}, got {type(prior).__name__}"
            )
        prior._require_params()

    def log_marginal_likelihood(self, X, prior):
        """Exact log evidence ``log p(X) = log ∫ p(X | θ) p(θ) dθ`` under a conjugate prior."""
        x = self._prepare_X(X)
        stats = self.summarize(x)
        self._check_prior(prior)
        return float(self._log_marginal_likelihood(x, stats, prior))

    def _n_free_parameters(self):
        """Number of free parameters of one member of the batch (for AIC/BIC).

        Defaults to the size of the natural parameters; over-complete or symmetric
        parametrisations override it.
        """
        nb = len(self._batch_shape)
        return sum(int(np.prod(v.shape[nb:])) for v in self._natural_parameters().values())

    def _n_free_parameters_total(self):
        """Free parameters of the whole batch."""
        return self._n_free_parameters() * int(np.prod(tuple(self._batch_shape)))

    # ------------------------------------------------------------------ generic EF identities
    def _log_prob_from_natural(self, x):
        """``<eta, T(x)> - A(eta) + log h(x)`` computed from the EF pieces (used to test them)."""
        eta = self._natural_parameters()
        T = self._sufficient_statistics(x)
        total = self._log_base_measure(x) - self._log_partition()
        for name, e in eta.items():
            t = T[name]
            stat_nd = e.ndim - len(self._batch_shape)
            prod = t * e
            total = total + (prod.sum(dim=tuple(range(-stat_nd, 0))) if stat_nd else prod)
        return total


def _check_positive(value, name, family):
    """Raise ``ValueError("<family>: <name> must be positive")`` unless every entry of ``value`` is > 0."""
    if bool((value <= 0).any()):
        raise ValueError(f"{family}: {name} must be positive")


def _check_simplex(probs, family):
    """Raise unless every row of ``probs`` (last axis) is non-negative and sums to 1."""
    if bool((probs < 0).any()):
        raise ValueError(f"{family}: probs must be non-negative")
    one = torch.ones((), dtype=probs.dtype, device=probs.device)
    if not bool(torch.allclose(probs.sum(-1), one, atol=1e-8, rtol=0)):
        raise ValueError(f"{family}: probs must sum to 1 along the last axis")


def _last_axis_size(param, doc):
    """A read-only property: the length of the last axis of the parameter ``param`` (``doc`` its docstring)."""
    def size(self):
        self._require_params()
        return self._params[param].shape[-1]

    size.__doc__ = doc
    return property(size)


def _optional_positive(value, name):
    """A ``fixed_*`` option: ``None``, or ``value`` as a float after checking it is finite and > 0."""
    if value is None:
        return None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    return float(value)


def _check_fixed(value, fixed, name, family):
    """Raise unless the parameter ``name`` equals its ``fixed_<name>`` option (where that is set)."""
    if fixed is not None and not bool((value == fixed).all()):
        raise ValueError(f"{family}: {name} differs from fixed_{name}={fixed}")


class _PositiveSupport:
    """Mixin of continuous families on the positive reals: zero density at ``x <= 0`` in
    mixtures of several families (see :meth:`ExponentialFamily._support_mask`)."""

    def _support_mask(self, x):
        return x > 0

    def _support_placeholder(self, x):
        return torch.ones((), dtype=x.dtype, device=x.device)


def kl_divergence(p, q):
    """``KL(p || q)`` between two distributions of the same family.

    Examples
    --------
    >>> from probkit.distributions import Normal
    >>> float(kl_divergence(Normal(loc=0., scale=1.), Normal(loc=1., scale=1.)))
    0.5
    """
    if type(p) is not type(q):
        raise TypeError(f"KL divergence needs two distributions of one family, got {type(p).__name__} and {type(q).__name__}")
    p._require_params()
    q._require_params()
    return to_numpy(p._kl(q))


LOG_2PI = math.log(2 * math.pi)


def _torch_mvn(d):
    p = d.torch_params()
    mean, cov = p["mean"], p["covariance"]
    ct = d.covariance_type
    if ct == "diag":
        cov = torch.diag_embed(cov)
    elif ct == "spherical":
        eye = torch.eye(mean.shape[-1], dtype=mean.dtype, device=mean.device)
        cov = cov[..., None, None] * eye
    elif ct == "tied":
        cov = cov.expand(*mean.shape[:-1], *cov.shape)
    return torch.distributions.MultivariateNormal(loc=mean, covariance_matrix=cov)


def _tp(d, *names):
    p = d.torch_params()
    return [p[n] for n in names]


def _torch_categorical(d):
    return torch.distributions.Categorical(probs=d.torch_params()["probs"])


def _torch_multinomial(d):
    if d.total_count is None:
        raise NotImplementedError("a Multinomial without a fixed total_count has no torch counterpart")
    return torch.distributions.Multinomial(total_count=int(d.total_count), probs=d.torch_params()["probs"])


def _torch_negative_binomial(d):
    r, p = _tp(d, "total_count", "probs")
    # torch counts the successes of probability `probs` before total_count failures: probkit's 1 - p.
    return torch.distributions.NegativeBinomial(total_count=r, probs=1 - p)


# Family name -> constructor of the torch.distributions object with the same law.
_TORCH_EQUIVALENTS = {
    "Normal": lambda d: torch.distributions.Normal(*_tp(d, "loc", "scale")),
    "LogNormal": lambda d: torch.distributions.LogNormal(*_tp(d, "loc", "scale")),
    "Laplace": lambda d: torch.distributions.Laplace(*_tp(d, "loc", "scale")),
    "StudentT": lambda d: torch.distributions.StudentT(*_tp(d, "df", "loc", "scale")),
    "Exponential": lambda d: torch.distributions.Exponential(*_tp(d, "rate")),
    "Gamma": lambda d: torch.distributions.Gamma(*_tp(d, "concentration", "rate")),
    "Beta": lambda d: torch.distributions.Beta(*_tp(d, "concentration1", "concentration0")),
    "VonMises": lambda d: torch.distributions.VonMises(*_tp(d, "loc", "concentration")),
    "Dirichlet": lambda d: torch.distributions.Dirichlet(*_tp(d, "concentration")),
    "Poisson": lambda d: torch.distributions.Poisson(*_tp(d, "rate")),
    "Bernoulli": lambda d: torch.distributions.Bernoulli(probs=_tp(d, "probs")[0]),
    "Binomial": lambda d: torch.distributions.Binomial(total_count=d.total_count, probs=_tp(d, "probs")[0]),
    "Geometric": lambda d: torch.distributions.Geometric(probs=_tp(d, "probs")[0]),
    "Categorical": _torch_categorical,
    "Multinomial": _torch_multinomial,
    "NegativeBinomial": _torch_negative_binomial,
    "MultivariateNormal": _torch_mvn,
    "Wishart": lambda d: torch.distributions.Wishart(df=_tp(d, "df")[0], covariance_matrix=_tp(d, "scale_matrix")[0]),
}
