"""DeepStateSpaceModel: a deep Markov model with an amortised guide, trained by stochastic variational inference.

The model
---------
Continuous latent states ``z_t`` (``latent_dim``) with a neural transition and emission,

.. math::

   p(z_t \\mid z_{t-1}, g_t) = \\mathcal N\\big(A z_{t-1} + b + f(z_{t-1}, g_t),\\;
       \\operatorname{diag} \\sigma(z_{t-1}, g_t)^2\\big), \\qquad
   p(x_t \\mid z_t) = \\mathcal N\\big(C z_t + d + e(z_t),\\; \\operatorname{diag} \\rho(z_t)^2\\big)

(``z_0 = 0``, so ``p(z_1)`` is learned too; ``f``, ``e`` are MLPs whose output layers
start at zero, so a fresh model is linear-Gaussian; Poisson emissions use
``log rate = C z_t + d + e(z_t)``). Without a ``backbone`` the transition is first
order (``g_t`` absent): the deep Markov model. With one, ``g_t`` are the features of a
causal backbone run over the latent path ``z_{<t}`` (a learned start vector first), so
the latent dynamics may have long memory; the state of the model is then the pair
(``z_t``, backbone state), still a state-space model.

The guide
---------
:math:`q(z_{1:T} \\mid x_{1:T}) = \\prod_t q(z_t \\mid z_{t-1}, a_t)` with
``a_t`` a summary of ``x_{t:T}``: the ``guide_backbone`` (any causal kind) run over the
reversed sequence, so its output at ``t`` has read ``x_T, ..., x_t``. A combiner MLP
maps ``(z_{t-1}, a_t)`` to the mean and scale of a diagonal Gaussian. Paths are drawn
one step at a time and reparametrised.

Training and bounds
-------------------
The model and the guide are Pyro programs (one sample site for the whole latent path,
with masks for ragged batches); the loss is Pyro's ELBO estimator
(:func:`probkit.vi.make_elbo`: ``Trace_ELBO`` or ``TraceMeanField_ELBO``) on each
mini-batch, minimised with the shared loop :func:`probkit.neural.train_module` (AdamW,
clipping, schedule, early stopping on the validation ELBO). KL annealing multiplies
``log p(z) - log q(z)`` by a factor rising linearly to 1 over the first
``kl_annealing`` share of the steps (validation always uses the full ELBO). For
``K`` paths from the guide with log-weights ``w_k = log p(x, z_k) - log q(z_k | x)``,
the ELBO estimate is ``mean_k w_k`` and the importance-weighted bound (IWAE) is
``log mean_k exp(w_k)``: both lower-bound ``log p(x)``, and from the same paths the IWAE
bound is never below the ELBO estimate.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pyro
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions import TorchDistribution
from sklearn.base import DensityMixin, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data
from torch import nn
from torch.distributions import constraints

from probkit.base import ProbkitEstimator
from probkit.distributions import Normal, Poisson
from probkit.neural.backbones import KINDS
from probkit.utils.sequences import check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_lengths, check_nonnegative_integers

from ._base import _TRAINING_PARAMS, build_net_for_loading, check_standardizer, check_training_options, unwrap
from ._data import check_positive_int
from ._network import build_checked_backbone, reverse_within
from probkit.utils.random import seed_from

from ._training import seeded, train_module
from .neural_hmm import _is_list_of_arrays

__all__ = ["DSSMNet", "DeepStateSpaceModel"]

_EMISSIONS = ("gaussian", "poisson")
_ELBOS = ("Trace_ELBO", "TraceMeanField_ELBO")
_MIN_SCALE = 1e-3


def _mlp(n_in, hidden, n_out, zero_last=True):
    last = nn.Linear(hidden, n_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), last)


def _softplus_inv(y):
    return math.log(math.expm1(y))


def _where_state(keep, new, old):
    """Per-row choice between two recurrent states (``keep`` (B,) bool: take ``new``)."""
    if isinstance(new, torch.Tensor):
        shape = (-1,) + (1,) * (new.dim() - 1)
        return torch.where(keep.reshape(shape), new, old)
    return type(new)(_where_state(keep, n, o) for n, o in zip(new, old))


class DSSMNet(nn.Module):
    """The torch module of :class:`DeepStateSpaceModel`: generative model, guide, and the Pyro ELBO as ``forward``.

    Parameters
    ----------
    n_features : int
        Observation size ``D``.
    latent_dim : int
        Latent size.
    emission : {"gaussian", "poisson"}
    backbone : str or None
        Causal backbone over the latent path (None: first-order transition).
    guide_backbone : str
        Backbone run backwards over the observations in the guide.
    d_model, n_layers : int
        Size of both backbones.
    hidden_dim : int
        Width of the transition, emission and combiner MLPs.
    backbone_kwargs, guide_backbone_kwargs : dict, optional
    elbo : {"Trace_ELBO", "TraceMeanField_ELBO"}
    n_particles : int
        Guide samples per ELBO estimate in training.

    Examples
    --------
    >>> import torch
    >>> net = DSSMNet(2, 3, guide_backbone="gru", d_model=8, n_layers=1, hidden_dim=8)
    >>> x = torch.randn(4, 6, 2)
    >>> lengths = torch.tensor([6, 5, 2, 1])
    >>> w = net.log_weights(x, x, lengths, n_particles=5)     # log p(x, z) - log q(z | x)
    >>> w.shape
    torch.Size([5, 4])
    >>> loss = net(x, x, lengths)                             # Pyro's negative ELBO (a tensor)
    >>> loss.requires_grad
    True
    """

    def __init__(self, n_features, latent_dim, *, emission="gaussian", backbone=None, guide_backbone="gru",
                 d_model=32, n_layers=1, hidden_dim=32, backbone_kwargs=None, guide_backbone_kwargs=None,
                 elbo="Trace_ELBO", n_particles=1):
        super().__init__()
        self.n_features, self.latent_dim, self.emission = int(n_features), int(latent_dim), emission
        self.elbo, self.n_particles = elbo, int(n_particles)
        dz, d = self.latent_dim, d_model
        # generative model
        self.backbone = None
        ctx = 0
        if backbone is not None:
            self.backbone = build_checked_backbone(backbone, d_model, n_layers, dict(backbone_kwargs or {}))
            if not self.backbone.causal:
                raise ValueError(f"the latent backbone must be causal; {backbone!r} with backbone_kwargs="
                                 f"{backbone_kwargs!r} is bidirectional")
            self.z_encoder = nn.Linear(dz, d)
            self.z_start = nn.Parameter(torch.randn(d) * d ** -0.5)
            ctx = d
        self.trans_lin = nn.Linear(dz, dz)
        nn.init.eye_(self.trans_lin.weight)
        nn.init.zeros_(self.trans_lin.bias)
        self.trans_mlp = _mlp(dz + ctx, hidden_dim, dz)
        self.trans_scale = nn.Linear(dz + ctx, dz)
        nn.init.zeros_(self.trans_scale.weight)
        nn.init.constant_(self.trans_scale.bias, _softplus_inv(0.5))
        self.emit_lin = nn.Linear(dz, self.n_features)
        self.emit_mlp = _mlp(dz, hidden_dim, self.n_features)
        if emission == "gaussian":
            self.emit_scale = nn.Linear(dz, self.n_features)
            nn.init.zeros_(self.emit_scale.weight)
            nn.init.constant_(self.emit_scale.bias, _softplus_inv(0.5))
        # guide
        self.x_encoder = nn.Linear(self.n_features, d)
        self.guide_backbone = build_checked_backbone(guide_backbone, d_model, n_layers,
                                                     dict(guide_backbone_kwargs or {}))
        self.combiner = _mlp(dz + d, hidden_dim, 2 * dz, zero_last=False)

    # ------------------------------------------------------------------ generative model
    def prior_features(self, z, lengths=None):
        """Backbone features ``g`` (..., T, d) of the latent path (``g_t`` reads ``z_{<t}``), or None."""
        if self.backbone is None:
            return None
        lead = z.shape[:-2]
        zf = z.reshape(-1, *z.shape[-2:])
        e = self.z_encoder(zf)
        start = self.z_start.to(e.dtype).expand(e.shape[0], 1, e.shape[-1])
        lens = None if lengths is None else lengths.repeat(zf.shape[0] // lengths.shape[0])
        g = self.backbone(torch.cat([start, e[:, :-1]], 1), lens)
        return g.reshape(*lead, *g.shape[-2:])

    def transition(self, z_prev, g=None):
        """Mean and scale of ``p(z_t | z_{t-1}, g_t)``."""
        inp = z_prev if g is None else torch.cat([z_prev, g], -1)
        loc = self.trans_lin(z_prev) + self.trans_mlp(inp)
        return loc, F.softplus(self.trans_scale(inp)) + _MIN_SCALE

    def emission_params(self, z):
        """``(loc, scale)`` (Gaussian) or ``(rate,)`` (Poisson) of ``p(x_t | z_t)``."""
        out = self.emit_lin(z) + self.emit_mlp(z)
        if self.emission == "gaussian":
            return out, F.softplus(self.emit_scale(z)) + _MIN_SCALE
        return (torch.exp(out.clamp(-20.0, 20.0)),)

    def emission_log_prob(self, z, x_obs, mask):
        """``sum_t log p(x_t | z_t)`` over the valid steps: (..., B)."""
        params = self.emission_params(z)
        if self.emission == "gaussian":
            lp = Normal(loc=params[0], scale=params[1])._log_prob(x_obs)
        else:
            lp = Poisson(rate=params[0])._log_prob(x_obs)
        return (lp.sum(-1) * mask).sum(-1)

    @staticmethod
    def _shift(z):
        return torch.cat([torch.zeros_like(z[..., :1, :]), z[..., :-1, :]], -2)

    def prior_log_prob(self, z, mask, lengths=None):
        """``sum_t log p(z_t | z_{<t})`` over the valid steps, for paths ``z`` (..., B, T, latent_dim)."""
        loc, scale = self.transition(self._shift(z), self.prior_features(z, lengths))
        lp = Normal(loc=loc, scale=scale)._log_prob(z).sum(-1)
        return (lp * mask).sum(-1)

    # ------------------------------------------------------------------ guide
    def summary(self, x_in, lengths):
        """``a_t`` (B, T, d): the guide backbone's reading of ``x_T, ..., x_t``."""
        e = reverse_within(self.x_encoder(x_in), lengths)
        return reverse_within(self.guide_backbone(e, lengths), lengths)

    def guide_step(self, z_prev, a_t):
        """Mean and scale of ``q(z_t | z_{t-1}, a_t)``."""
        out = self.combiner(torch.cat([z_prev, a_t.expand(*z_prev.shape[:-1], a_t.shape[-1])], -1))
        loc, raw = out.chunk(2, -1)
        return loc, F.softplus(raw) + _MIN_SCALE

    def guide_rsample(self, a, n_particles=1, generator=None, mean_path=False):
        """Reparametrised paths ``(n_particles, B, T, latent_dim)`` from the guide, one step at a time.

        ``mean_path=True`` propagates the means instead of sampling (deterministic).
        """
        b, t_max = a.shape[0], a.shape[1]
        z = a.new_zeros(n_particles, b, self.latent_dim)
        out = []
        for t in range(t_max):
            loc, scale = self.guide_step(z, a[:, t])
            if mean_path:
                z = loc
            else:
                eps = torch.randn(loc.shape, dtype=loc.dtype, device=loc.device, generator=generator)
                z = loc + scale * eps
            out.append(z)
        return torch.stack(out, -2)

    def guide_log_prob(self, z, a, mask):
        """``sum_t log q(z_t | z_{t-1}, a_t)`` over the valid steps (..., B)."""
        loc, scale = self.guide_step(self._shift(z), a)
        lp = Normal(loc=loc, scale=scale)._log_prob(z).sum(-1)
        return (lp * mask).sum(-1)

    # ------------------------------------------------------------------ bounds
    def log_weights(self, x_in, x_obs, lengths, n_particles=1, generator=None):
        """``log p(x, z_k) - log q(z_k | x)`` for ``n_particles`` guide paths: (n_particles, B)."""
        mask = (torch.arange(x_in.shape[1], device=x_in.device)[None, :] < lengths[:, None]).to(x_obs.dtype)
        a = self.summary(x_in, lengths)
        z = self.guide_rsample(a, n_particles, generator)
        return (self.prior_log_prob(z, mask, lengths) + self.emission_log_prob(z, x_obs, mask)
                - self.guide_log_prob(z, a, mask))

    # ------------------------------------------------------------------ Pyro programs
    def model(self, x_in, x_obs, lengths, anneal=1.0):
        """The generative model as a Pyro program (observations ``x_obs``)."""
        mask = (torch.arange(x_obs.shape[1], device=x_obs.device)[None, :] < lengths[:, None]).to(x_obs.dtype)
        with pyro.plate("sequences", x_obs.shape[0]):
            with poutine.scale(scale=anneal):
                z = pyro.sample("z", _LatentPath(self, mask, lengths))
            pyro.sample("x", _Observations(self, z, mask), obs=x_obs)

    def guide(self, x_in, x_obs, lengths, anneal=1.0):
        """The amortised guide as a Pyro program."""
        mask = (torch.arange(x_in.shape[1], device=x_in.device)[None, :] < lengths[:, None]).to(x_obs.dtype)
        a = self.summary(x_in, lengths)
        with pyro.plate("sequences", x_in.shape[0]):
            with poutine.scale(scale=anneal):
                pyro.sample("z", _GuidePath(self, a, mask))

    def forward(self, x_in, x_obs, lengths, anneal=1.0):
        """Pyro's negative ELBO of the batch (summed over sequences), differentiable."""
        from probkit.vi import make_elbo

        elbo = make_elbo(self.elbo, num_particles=self.n_particles, max_plate_nesting=1)
        return elbo.differentiable_loss(self.model, self.guide, x_in, x_obs, lengths, anneal)


class _Path(TorchDistribution):
    """A distribution over whole padded paths: batch (B,), event (T, n); log_prob sums the valid steps."""

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, batch, steps, size):
        super().__init__(torch.Size([batch]), torch.Size([steps, size]), validate_args=False)


class _LatentPath(_Path):
    def __init__(self, net, mask, lengths):
        self.net, self.mask, self.lengths = net, mask, lengths
        super().__init__(mask.shape[0], mask.shape[1], net.latent_dim)

    def log_prob(self, value):
        return self.net.prior_log_prob(value, self.mask, self.lengths)

    def sample(self, sample_shape=torch.Size()):
        raise NotImplementedError("draw latent paths with DeepStateSpaceModel.sample")


class _GuidePath(_Path):
    has_rsample = True

    def __init__(self, net, a, mask):
        self.net, self.a, self.mask = net, a, mask
        super().__init__(mask.shape[0], mask.shape[1], net.latent_dim)

    def rsample(self, sample_shape=torch.Size()):
        n = int(np.prod(sample_shape)) if len(sample_shape) else 1
        z = self.net.guide_rsample(self.a, n)
        return z.reshape(*sample_shape, *z.shape[1:]) if len(sample_shape) else z[0]

    def log_prob(self, value):
        return self.net.guide_log_prob(value, self.a, self.mask)


class _Observations(_Path):
    def __init__(self, net, z, mask):
        self.net, self.z, self.mask = net, z, mask
        super().__init__(mask.shape[0], mask.shape[1], net.n_features)

    def log_prob(self, value):
        return self.net.emission_log_prob(self.z, value, self.mask)


class DeepStateSpaceModel(DensityMixin, TransformerMixin, ProbkitEstimator):
    """Deep state-space model (deep Markov model) with an amortised guide, fitted by stochastic variational inference.

    Continuous latent states with a neural transition ``p(z_t | z_{t-1})`` (optionally
    reading the whole latent past through a ``backbone``) and a neural emission
    ``p(x_t | z_t)``; the posterior is approximated by ``q(z_t | z_{t-1}, x_{t:T})``,
    whose summary of the future observations is a ``guide_backbone`` run backwards.
    Trained by Pyro's ELBO on mini-batches with the shared training loop; see
    :mod:`probkit.neural.estimators.deep_ssm` for the equations. Sequences are given as
    for the HMMs: stacked rows with ``lengths``, or a list of arrays.

    Parameters
    ----------
    latent_dim : int, default=2
        Size of ``z_t``.
    backbone : str or None, default=None
        Causal backbone over the latent path ``z_{<t}`` in the transition ("mamba",
        "rwkv", "mambaout", "transformer", "s4d", "gru", "lstm"); None for a first-order
        transition.
    guide_backbone : str, default="gru"
        Backbone run over the reversed observations to summarise ``x_{t:T}``.
    d_model : int, default=32
        Width of both backbones.
    n_layers : int, default=1
        Layers of both backbones.
    hidden_dim : int, default=32
        Width of the transition, emission and guide MLPs.
    emission : {"gaussian", "poisson"}, default="gaussian"
        Diagonal Gaussian over real vectors, or independent Poisson counts.
    backbone_kwargs, guide_backbone_kwargs : dict, optional
        Further options of the backbones.
    elbo : {"Trace_ELBO", "TraceMeanField_ELBO"}, default="Trace_ELBO"
        Pyro's ELBO estimator used in training.
    n_particles : int, default=1
        Guide paths per ELBO estimate in training.
    kl_annealing : float in [0, 1), default=0.2
        Share of the training steps over which the weight of ``log p(z) - log q(z)``
        rises linearly from ``kl_start`` to 1 (0 disables annealing).
    kl_start : float in (0, 1], default=0.1
        Initial annealing weight.
    %(training_params)s

    Attributes
    ----------
    module_ : DSSMNet
        The trained network (model and guide).
    elbo_history_ : ndarray of shape (n_epochs,)
        Training ELBO per time step of each epoch (annealed during the KL warm-up; in
        the model's standardised units for Gaussian data).
    history_ : dict
        The :class:`~probkit.neural.TrainingHistory` of the fit (losses are negative
        ELBOs per step).
    n_features_in_ : int
    n_iter_ : int
        Epochs run.
    best_epoch_ : int or None

    Examples
    --------
    A noisy two-dimensional view of a one-dimensional AR(1) state:

    >>> import numpy as np
    >>> from probkit.neural import DeepStateSpaceModel
    >>> rng = np.random.RandomState(0)
    >>> z = np.zeros((20, 30))
    >>> for t in range(1, 30):
    ...     z[:, t] = 0.95 * z[:, t - 1] + 0.3 * rng.randn(20)
    >>> X = (z[..., None] * [1.0, -0.5] + 0.2 * rng.randn(20, 30, 2)).reshape(-1, 2)
    >>> ds = DeepStateSpaceModel(latent_dim=1, d_model=8, hidden_dim=8, max_epochs=30, lr=1e-2,
    ...                          random_state=0).fit(X, lengths=[30] * 20)
    >>> ds.transform(X[:30]).shape                          # posterior means of the latent path
    (30, 1)
    >>> b = ds.bounds(X, lengths=[30] * 20, n_particles=8)
    >>> bool(np.all(b["iwae"] >= b["elbo"]))
    True
    """

    _default_dtype = torch.float32

    def __init__(self, latent_dim=2, backbone=None, guide_backbone="gru", d_model=32, n_layers=1, *, hidden_dim=32,
                 emission="gaussian", backbone_kwargs=None, guide_backbone_kwargs=None, elbo="Trace_ELBO",
                 n_particles=1, kl_annealing=0.2, kl_start=0.1, batch_size=32, max_epochs=100, lr=3e-3,
                 weight_decay=0.0, clip_grad_norm=10.0, schedule="cosine", warmup=0.0, early_stopping=True,
                 validation_fraction=0.1, patience=10, mixed_precision="auto", random_state=None, device=None,
                 dtype=None, verbose=0):
        self.latent_dim = latent_dim
        self.backbone = backbone
        self.guide_backbone = guide_backbone
        self.d_model = d_model
        self.n_layers = n_layers
        self.hidden_dim = hidden_dim
        self.emission = emission
        self.backbone_kwargs = backbone_kwargs
        self.guide_backbone_kwargs = guide_backbone_kwargs
        self.elbo = elbo
        self.n_particles = n_particles
        self.kl_annealing = kl_annealing
        self.kl_start = kl_start
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.clip_grad_norm = clip_grad_norm
        self.schedule = schedule
        self.warmup = warmup
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        check_training_options(self)
        for name in ("latent_dim", "hidden_dim", "n_particles"):
            check_positive_int(getattr(self, name), name)
        if self.backbone is not None and (not isinstance(self.backbone, str) or self.backbone.lower() not in KINDS):
            raise ValueError(f"backbone={self.backbone!r} is not a known backbone; choose None or one of "
                             f"{', '.join(KINDS)}")
        if not isinstance(self.guide_backbone, str) or self.guide_backbone.lower() not in KINDS:
            raise ValueError(f"guide_backbone={self.guide_backbone!r} is not a known backbone; choose one of "
                             f"{', '.join(KINDS)}")
        if self.emission not in _EMISSIONS:
            raise ValueError(f"unknown emission {self.emission!r}; choose one of {', '.join(_EMISSIONS)}")
        if self.elbo not in _ELBOS:
            raise ValueError(f"elbo must be one of {_ELBOS}, got {self.elbo!r}")
        if not (isinstance(self.kl_annealing, numbers.Real) and 0 <= self.kl_annealing < 1):
            raise ValueError(f"kl_annealing must be in [0, 1), got {self.kl_annealing!r}")
        if not (isinstance(self.kl_start, numbers.Real) and 0 < self.kl_start <= 1):
            raise ValueError(f"kl_start must be in (0, 1], got {self.kl_start!r}")
        if self.guide_backbone_kwargs is not None and not isinstance(self.guide_backbone_kwargs, dict):
            raise ValueError(f"guide_backbone_kwargs must be a dict or None, got {self.guide_backbone_kwargs!r}")

    def _validate(self, X, lengths, *, reset):
        if _is_list_of_arrays(X):
            if lengths is not None:
                raise ValueError("lengths= applies to concatenated sequences; a list of sequences carries its own")
            seqs = [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in X]
            seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
            for i, s in enumerate(seqs):
                if s.shape[0] == 0:
                    raise ValueError(f"sequence {i} of X is empty (length 0)")
            lengths = [len(s) for s in seqs]
            X = np.concatenate(seqs, 0)
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        X = validate_data(self, X, reset=reset, dtype=(np.float64, np.float32), ensure_min_samples=1)
        X = X.astype(np.float64)
        if self.emission == "poisson":
            try:
                check_nonnegative_integers(X, "X")
            except ValueError as exc:
                raise ValueError(f"{exc} (the support of emission='poisson')") from None
        return X, check_lengths(lengths, X.shape[0])

    def _check_fitted(self):
        if not hasattr(self, "module_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    # ------------------------------------------------------------------ units
    def _fit_scaling(self, X):
        Z = np.log1p(X) if self.emission == "poisson" else X
        self._x_mean = Z.mean(0)
        scale = Z.std(0)
        self._x_scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(self._x_mean)), scale, 1.0)

    def _log_jacobian(self):
        return -float(np.log(self._x_scale).sum()) if self.emission == "gaussian" else 0.0

    def _to_obs_units(self, x):
        """Model-unit observations (numpy) back to data units."""
        return x * self._x_scale + self._x_mean if self.emission == "gaussian" else x

    def _padded(self, X, lengths, device, dtype):
        x_in = (np.log1p(X) if self.emission == "poisson" else X) - self._x_mean
        x_in = x_in / self._x_scale
        x_obs = X if self.emission == "poisson" else x_in
        n, L = len(lengths), int(lengths.max())
        mask = np.arange(L)[None, :] < lengths[:, None]

        def pad(a):
            out = np.zeros((n, L, a.shape[1]))
            out[mask] = a
            return torch.as_tensor(out, dtype=dtype, device=device)

        return pad(x_in), pad(x_obs), torch.as_tensor(lengths, device=device)

    def _make_net(self):
        return DSSMNet(self.n_features_in_, self.latent_dim, emission=self.emission, backbone=self.backbone,
                       guide_backbone=self.guide_backbone, d_model=self.d_model, n_layers=self.n_layers,
                       hidden_dim=self.hidden_dim, backbone_kwargs=self.backbone_kwargs,
                       guide_backbone_kwargs=self.guide_backbone_kwargs, elbo=self.elbo,
                       n_particles=self.n_particles)

    # ------------------------------------------------------------------ fit
    @limit_torch_threads
    def fit(self, X, y=None, *, lengths=None):
        """Fit the model and the guide by maximising the ELBO.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
            Sequences stacked along the first axis (or a list of ``(L_i, n_features)`` arrays).
        y : None
            Unused.
        lengths : array-like of int, optional
            Lengths of the sequences in ``X``; they must sum to ``n_samples``.

        Returns
        -------
        self
        """
        check_y_slot(self, "fit", X, y)
        self._check_params()
        X, lengths = self._validate(X, lengths, reset=True)
        if X.shape[0] < 2:
            raise ValueError(f"Expected n_samples >= 2 to fit but got n_samples = {X.shape[0]}")
        self._fit_scaling(X)
        device, dtype = self._compute_setup()
        rs = check_random_state(self.random_state)
        init_seed, train_seed = (int(s) for s in rs.randint(0, 2**31 - 1, size=2))
        with seeded(init_seed, device):
            net = self._make_net()
        net = net.to(device=device, dtype=dtype)
        x_in, x_obs, lens = self._padded(X, lengths, device, dtype)

        class _Data:
            def __len__(self):
                return int(lens.shape[0])

            def batch(self, index):
                lb = lens[index]
                n = int(lb.max())
                return {"x_in": x_in[index, :n], "x_obs": x_obs[index, :n], "lengths": lb}

        data = _Data()
        use_val = bool(self.early_stopping) and self.validation_fraction > 0 and len(data) >= 2
        n_train = len(data) - (min(len(data) - 1, max(1, int(round(self.validation_fraction * len(data)))))
                               if use_val else 0)
        total_steps = self.max_epochs * math.ceil(n_train / self.batch_size)
        anneal_steps = self.kl_annealing * total_steps
        counter = {"step": 0}

        def loss_fn(model, batch):
            lb = batch["lengths"]
            anneal = 1.0
            if unwrap(model).training:
                if anneal_steps > 0 and counter["step"] < anneal_steps:
                    anneal = self.kl_start + (1.0 - self.kl_start) * counter["step"] / anneal_steps
                counter["step"] += 1
            n = lb.sum()
            return model(batch["x_in"], batch["x_obs"], lb, anneal) / n, n

        history = train_module(
            net, loss_fn, data, validation_fraction=self.validation_fraction if use_val else 0.0,
            batch_size=self.batch_size, max_epochs=self.max_epochs, lr=self.lr, weight_decay=self.weight_decay,
            clip_grad_norm=self.clip_grad_norm, schedule=self.schedule, warmup=self.warmup,
            early_stopping=bool(self.early_stopping), patience=self.patience, restore_best=True,
            random_state=train_seed, device=device, mixed_precision=self.mixed_precision, verbose=self.verbose,
            desc=type(self).__name__)
        self.module_ = unwrap(net).eval()
        self.history_ = history.as_dict()
        self.elbo_history_ = -np.asarray(history.train_loss, dtype=np.float64)
        self.n_iter_ = history.n_epochs
        self.best_epoch_ = history.best_epoch
        return self

    # ------------------------------------------------------------------ inference
    def _prepare(self, X, lengths):
        self._check_fitted()
        X, lengths = self._validate(X, lengths, reset=False)
        p = next(self.module_.parameters())
        return (*self._padded(X, lengths, p.device, p.dtype), lengths)

    @staticmethod
    def _check_particles(n_particles):
        return check_positive_int(n_particles, "n_particles")

    def _generator(self, random_state, none_is_zero=True):
        """A torch generator seeded from ``random_state`` (None: seed 0, or fresh entropy)."""
        p = next(self.module_.parameters())
        rs = 0 if (random_state is None and none_is_zero) else random_state
        return torch.Generator(device=p.device).manual_seed(seed_from(check_random_state(rs)))

    @limit_torch_threads
    @keyword_lengths
    def bounds(self, X, *, lengths=None, n_particles=64, random_state=None):
        """ELBO and importance-weighted bound of each sequence, from the same guide paths.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
        lengths : array-like of int, optional
        n_particles : int, default=64
            Guide paths ``K`` per sequence.
        random_state : None, int or RandomState
            Seeds the paths (None: seed 0, so repeated calls agree).

        Returns
        -------
        dict
            ``"elbo"``: ``mean_k w_k`` and ``"iwae"``: ``log mean_k exp(w_k)``, arrays of
            shape (n_sequences,), in nats (data units), where ``w_k = log p(x, z_k) - log
            q(z_k | x)``; ``"lengths"``: the sequence lengths. Both are lower bounds of
            ``log p(x)``, and ``iwae >= elbo``.
        """
        n_particles = self._check_particles(n_particles)
        x_in, x_obs, lens, lengths = self._prepare(X, lengths)
        gen = self._generator(random_state)
        elbo, iwae = [], []
        with torch.no_grad():
            for s in range(0, len(lengths), self.batch_size):
                lb = lens[s:s + self.batch_size]
                n = int(lb.max())
                w = self.module_.log_weights(x_in[s:s + self.batch_size, :n], x_obs[s:s + self.batch_size, :n], lb,
                                             n_particles, gen).double()
                elbo.append(w.mean(0))
                iwae.append(torch.logsumexp(w, 0) - math.log(n_particles))
        jac = self._log_jacobian() * lengths
        return {"elbo": torch.cat(elbo).cpu().numpy() + jac, "iwae": torch.cat(iwae).cpu().numpy() + jac,
                "lengths": lengths}

    def score(self, X, y=None, *, lengths=None, bound="elbo", n_particles=None, random_state=None):
        """Lower bound of the log-likelihood per time step, in nats (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
        y : None
        lengths : array-like of int, optional
        bound : {"elbo", "iwae"}, default="elbo"
            The ELBO (mean log-weight) or the importance-weighted bound (log-mean-exp of
            the weights), summed over the sequences and divided by ``n_samples``.
        n_particles : int, optional
            Guide paths per sequence (default 16 for the ELBO, 64 for IWAE).
        random_state : None, int or RandomState
            Seeds the paths (None: seed 0).

        Returns
        -------
        float
        """
        check_y_slot(self, "score", X, y)
        if bound not in ("elbo", "iwae"):
            raise ValueError(f"bound must be 'elbo' or 'iwae', got {bound!r}")
        n_particles = (16 if bound == "elbo" else 64) if n_particles is None else n_particles
        b = self.bounds(X, lengths=lengths, n_particles=n_particles, random_state=random_state)
        return float(b[bound].sum() / b["lengths"].sum())

    @limit_torch_threads
    @keyword_lengths
    def transform(self, X, *, lengths=None, n_particles=None, random_state=None):
        """Posterior means of the latent path under the guide.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
        lengths : array-like of int, optional
        n_particles : int, optional
            None: propagate the guide's means (``z_t = mean of q(z_t | z_{t-1}, a_t)`` at
            the previous mean; deterministic, exact for a linear guide). An int: average
            of that many sampled guide paths.
        random_state : None, int or RandomState
            Seeds the sampled paths (None: seed 0).

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        x_in, x_obs, lens, lengths = self._prepare(X, lengths)
        mean_path = n_particles is None
        k = 1 if mean_path else self._check_particles(n_particles)
        gen = self._generator(random_state)
        out = []
        with torch.no_grad():
            for s in range(0, len(lengths), self.batch_size):
                lb = lens[s:s + self.batch_size]
                n = int(lb.max())
                a = self.module_.summary(x_in[s:s + self.batch_size, :n], lb)
                z = self.module_.guide_rsample(a, k, gen, mean_path=mean_path).mean(0).double().cpu().numpy()
                out.extend(z[j, :int(lb[j])] for j in range(len(lb)))
        return np.concatenate(out, 0)

    # ------------------------------------------------------------------ generation
    def _emit(self, z, gen):
        params = self.module_.emission_params(z)
        if self.emission == "gaussian":
            loc, scale = params
            return loc + scale * torch.randn(loc.shape, dtype=loc.dtype, device=loc.device, generator=gen)
        return torch.poisson(params[0], generator=gen)

    def _emission_mean(self, z):
        params = self.module_.emission_params(z)
        return params[0]

    def _roll(self, z, state, n_steps, gen):
        """Continue latent paths ``z`` (R, latent_dim) with backbone ``state`` for ``n_steps``; returns (zs, xs)."""
        net = self.module_
        zs, xs, means = [], [], []
        for _ in range(n_steps):
            g = None
            if net.backbone is not None:
                g, state = net.backbone.step(net.z_encoder(z), state)
            loc, scale = net.transition(z, g)
            z = loc + scale * torch.randn(loc.shape, dtype=loc.dtype, device=loc.device, generator=gen)
            zs.append(z)
            xs.append(self._emit(z, gen))
            means.append(self._emission_mean(z))
        return torch.stack(zs, 1), torch.stack(xs, 1), torch.stack(means, 1)

    @limit_torch_threads
    def sample(self, n_samples=1, random_state=None, *, n_sequences=1):
        """Draw sequences from the model (latent path first, the backbone run with ``step()``).

        Parameters
        ----------
        n_samples : int, default=1
            Steps per sequence.
        random_state : None, int or RandomState
            Defaults to the estimator's ``random_state``.
        n_sequences : int, default=1
            Independent sequences, returned concatenated.

        Returns
        -------
        X : ndarray of shape (n_sequences * n_samples, n_features)
        Z : ndarray of shape (n_sequences * n_samples, latent_dim)
        """
        self._check_fitted()
        n = check_positive_int(n_samples, "n_samples")
        b = check_positive_int(n_sequences, "n_sequences")
        net = self.module_
        p = next(net.parameters())
        gen = self._generator(self.random_state if random_state is None else random_state, none_is_zero=False)
        with torch.no_grad():
            z0 = torch.zeros(b, net.latent_dim, dtype=p.dtype, device=p.device)
            state = None
            if net.backbone is not None:
                state = net.backbone.init_state(b, device=p.device, dtype=p.dtype)
                # the first latent step reads the start vector, not an encoded z_0
                g, state = net.backbone.step(net.z_start.to(p.dtype).expand(b, -1), state)
                loc, scale = net.transition(z0, g)
                z1 = loc + scale * torch.randn(loc.shape, dtype=loc.dtype, device=loc.device, generator=gen)
                x1 = self._emit(z1, gen)
                if n > 1:
                    zs, xs, _ = self._roll(z1, state, n - 1, gen)
                    zs, xs = torch.cat([z1[:, None], zs], 1), torch.cat([x1[:, None], xs], 1)
                else:
                    zs, xs = z1[:, None], x1[:, None]
            else:
                zs, xs, _ = self._roll(z0, None, n, gen)
        X = self._to_obs_units(xs.double().cpu().numpy().reshape(b * n, -1))
        return X, zs.double().cpu().numpy().reshape(b * n, -1)

    @limit_torch_threads
    def forecast(self, X, n_steps, *, lengths=None, n_particles=100, random_state=None, return_samples=False):
        """Forecast the steps after each sequence: guide paths through the data, then the model forward.

        Each of ``n_particles`` paths draws ``z_{1:T}`` from the guide given the observed
        sequence (its last state approximates ``p(z_T | x_{1:T})``), then continues the
        latent dynamics and emits ``n_steps`` observations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
            The observed sequences.
        n_steps : int
            Horizon.
        lengths : array-like of int, optional
        n_particles : int, default=100
        random_state : None, int or RandomState
            Seeds the paths (None: seed 0).
        return_samples : bool, default=False
            Also return the sampled observations.

        Returns
        -------
        mean : ndarray of shape (n_sequences, n_steps, n_features)
            Predictive means (average over the paths of the emission means).
        samples : ndarray of shape (n_particles, n_sequences, n_steps, n_features)
            Only with ``return_samples=True``.
        """
        n_steps = check_positive_int(n_steps, "n_steps")
        k = self._check_particles(n_particles)
        x_in, x_obs, lens, lengths = self._prepare(X, lengths)
        gen = self._generator(random_state)
        net = self.module_
        means, samples = [], []
        with torch.no_grad():
            for s in range(0, len(lengths), self.batch_size):
                lb = lens[s:s + self.batch_size]
                b, n = len(lb), int(lb.max())
                a = net.summary(x_in[s:s + self.batch_size, :n], lb)
                z = net.guide_rsample(a, k, gen)                        # (k, b, n, dz)
                rows = torch.arange(b, device=z.device)
                z_last = z[:, rows, lb - 1].reshape(k * b, -1)
                state = None
                if net.backbone is not None:
                    p = z_last
                    state = net.backbone.init_state(k * b, device=p.device, dtype=p.dtype)
                    lens_rep = lb.repeat(k)
                    zr = z.reshape(k * b, n, -1)
                    e = net.z_start.to(p.dtype).expand(k * b, -1)
                    for t in range(n):
                        _, new = net.backbone.step(e, state)
                        state = _where_state(t < lens_rep, new, state)
                        e = net.z_encoder(zr[:, t])
                    # the state has read z_{<T}; the roll's first step feeds z_T
                _, xs, mu = self._roll(z_last, state, n_steps, gen)
                means.append(mu.reshape(k, b, n_steps, -1).mean(0).double().cpu().numpy())
                samples.append(xs.reshape(k, b, n_steps, -1).double().cpu().numpy())
        mean = self._to_obs_units(np.concatenate(means, 0))
        if not return_samples:
            return mean
        return mean, self._to_obs_units(np.concatenate(samples, 1))

    # ------------------------------------------------------------------ persistence / tags
    def _io_build_module(self, name, device=None):
        return build_net_for_loading(self, name, device)

    def _io_check_state(self):
        """Check what :func:`probkit.load` restored besides the network (whose weights the loader checks)."""
        if hasattr(self, "module_"):
            check_standardizer(self._x_mean, self._x_scale, self.n_features_in_)


DeepStateSpaceModel.__doc__ = DeepStateSpaceModel.__doc__.replace("%(training_params)s", _TRAINING_PARAMS)
