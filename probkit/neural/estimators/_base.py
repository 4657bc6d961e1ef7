"""The base of the neural estimators: data handling, scaling, networks, training, evaluation and saving.

:class:`NeuralEstimator` owns everything the five neural estimators share, so that each
estimator module is only its scikit-learn face (parameters, loss, public methods):

* **input**: :meth:`NeuralEstimator._read` reads ``X`` in any form of the sequence
  contract (:func:`probkit.utils.sequences.check_sequences`: a list of arrays,
  concatenated rows with ``lengths=``, a padded array with ``valid_lengths=``), checks
  the values once (the subclass's support) and records or checks ``n_features_in_``;
* **scaling**: per-feature standardisation of the inputs (``_x_mean``, ``_x_scale``) and
  the Jacobian that reports log-densities in the data's units;
* **networks**: seeded construction, :func:`~probkit.neural.estimators.run_training`
  with the estimator's :class:`~probkit.neural.estimators.TrainingOptions`, and the hooks
  of :mod:`probkit.io` (``_io_build_module``, ``_io_check_state``);
* **evaluation**: fitted networks run over the batches of
  :func:`~probkit.neural.estimators._data.evaluation_layout`, so a sequence's results do
  not depend on the other sequences of a call.

:class:`SequenceNetEstimator` adds the :class:`~probkit.neural.networks.SequenceNet`
of the classifier, regressor and density (tokens or real features, pooling).
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral, Real

import numpy as np
import torch
from scipy import sparse
from sklearn.utils._param_validation import RealNotInt
from sklearn.utils.validation import check_is_fitted, validate_data

from probkit.base import (COMPUTE_CONSTRAINTS, NumberInterval, ProbkitEstimator, StrOptions, constraints_without,
                          non_negative_real, positive_int, positive_real)
from probkit.neural.backbones import KINDS, Backbone
from probkit.neural.heads import make_head
from probkit.neural.networks import POOLINGS, SequenceNet
from probkit.utils.random import check_random_state, seed_from
from probkit.utils.sequences import SequenceBatch, check_sequences, check_y_slot
from probkit.utils.threads import limit_torch_threads

from ._data import SequenceData, check_real_steps, check_tokens, evaluation_layout, window_lengths
from ._docs import NEURAL_DOCS
from ._training import MIXED_PRECISION_MODES, SCHEDULES, TrainingOptions, run_training, seeded

__all__ = ["TRAINING_CONSTRAINTS", "NameOptions", "NeuralEstimator", "SequenceNetEstimator", "build_net_for_loading",
           "check_bound", "check_standardizer", "elbo_and_iwae", "store_params", "unwrap"]


# ---------------------------------------------------------------------------- parameter constraints
class NameOptions(StrOptions):
    """scikit-learn's ``StrOptions`` matched case-insensitively, as backbone kinds and emission names are read.

    Examples
    --------
    >>> kinds = NameOptions({"gru", "lstm"})
    >>> kinds.is_satisfied_by("GRU"), kinds.is_satisfied_by("rnn"), kinds.is_satisfied_by(None)
    (True, False, False)
    >>> str(NameOptions({"gru"}))
    "a str among {'gru'} (in any letter case)"
    """

    def is_satisfied_by(self, val):
        return isinstance(val, str) and val.lower() in self.options

    def __str__(self):
        return f"{super().__str__()} (in any letter case)"


#: The training parameters every neural estimator takes (the fields of :class:`TrainingOptions`
#: it exposes), with ``random_state``, ``device``, ``dtype`` and ``verbose``.
TRAINING_CONSTRAINTS = {
    "batch_size": positive_int,
    "max_epochs": positive_int,
    "lr": positive_real,
    "weight_decay": non_negative_real,
    # inf: no clipping, as in TrainingOptions (None is the documented way)
    "clip_grad_norm": [None, NumberInterval(Real, 0, None, closed="right")],
    "schedule": [StrOptions(set(SCHEDULES))],
    # a fraction of all steps, or a number of steps
    "warmup": [NumberInterval(RealNotInt, 0, 1, closed="left"), NumberInterval(Integral, 0, None, closed="left")],
    "early_stopping": ["boolean"],
    "validation_fraction": [NumberInterval(Real, 0, 1, closed="left")],
    "patience": positive_int,
    "mixed_precision": ["boolean", StrOptions(set(MIXED_PRECISION_MODES))],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    **COMPUTE_CONSTRAINTS,
}


def store_params(estimator, arguments):
    """Store the arguments of ``__init__`` (its ``locals()``) as attributes of the same names, and nothing else.

    Examples
    --------
    >>> class Model:
    ...     def __init__(self, alpha=1.0, *, beta=None):
    ...         store_params(self, locals())
    >>> vars(Model(2.0))
    {'alpha': 2.0, 'beta': None}
    """
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def build_net_for_loading(est, name, device=None):
    """``est``'s network freshly initialised, for :mod:`probkit.io` to load a saved state dict into.

    ``device="meta"`` builds it on the meta device, allocating nothing: the loader
    compares the file's tensor shapes with it before it builds the real network.
    """
    if name != "module_":
        raise ValueError(f"{type(est).__name__} has no module attribute {name!r}")
    own_device, dtype = est._compute_setup()
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            return est._make_net().to(dtype=dtype)
    with seeded(0):
        net = est._make_net()
    return net.to(device=own_device, dtype=dtype).eval()


def check_standardizer(mean, scale, n_features, names=("_x_mean", "_x_scale")):
    """Check restored standardisation statistics: shape ``(n_features,)``, finite means, positive finite scales."""
    for name, value, positive in ((names[0], mean, False), (names[1], scale, True)):
        value = np.asarray(value, dtype=np.float64)
        if value.shape != (n_features,):
            raise ValueError(f"{name} must have shape ({n_features},), got {value.shape}")
        if not np.all(np.isfinite(value)) or (positive and np.any(value <= 0)):
            raise ValueError(f"{name} must be {'positive and ' if positive else ''}finite")


def check_bound(bound, n_particles):
    """``bound`` ("elbo" or "iwae") checked, and the guide draws to estimate it with (None: 16 for the ELBO, 64 for
    the IWAE bound)."""
    if bound not in ("elbo", "iwae"):
        raise ValueError(f"bound must be 'elbo' or 'iwae', got {bound!r}")
    return bound, (16 if bound == "elbo" else 64) if n_particles is None else n_particles


def elbo_and_iwae(log_weights, n_particles):
    """ELBO ``mean_k w_k`` and IWAE ``log mean_k exp(w_k)`` of log-weights ``w`` (K, ...), in float64."""
    w = log_weights.double()
    return w.mean(0), torch.logsumexp(w, 0) - math.log(n_particles)


def standardizer(values):
    """Per-column mean and standard deviation of ``values`` (1 where a column is constant)."""
    mean = values.mean(0)
    scale = values.std(0)
    return mean, np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)


def unwrap(model):
    """The module inside a ``DistributedDataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


@NEURAL_DOCS.fill
class NeuralEstimator(ProbkitEstimator):
    """Base of the neural estimators (not public); see the module docstring.

    A subclass defines ``_make_net()``, either ``_fit_sequences(options, X, lengths,
    valid_lengths)`` (the unsupervised estimators, whose ``fit`` is the one here) or its own
    ``fit``, and, where the defaults do not fit:

    * ``_parameter_constraints``: the base's entries (backbone, width, depth and training)
      with its own added (:func:`~probkit.base.constraints_without` those it does not take);
    * ``_step_ndim``: 1 for feature vectors (default), 0 for integer tokens;
    * ``_check_model_params()``: what the constraints cannot say (several parameters together, contents);
    * ``_check_values(values, name, reset)``: the support of the concatenated rows;
    * ``_standardizes``: whether the inputs are standardised (default True), and
      ``_scaling_source(values)``, the rows the statistics are taken from;
    * ``_scores_standardized``: whether log-densities are computed on standardised values;
    * ``_model_steps(values)``: the per-step arrays the network reads, by name (default:
      ``x_in`` and ``x_obs``).
    """

    _default_dtype = torch.float32
    _step_ndim = 1
    _standardizes = True
    _scores_standardized = False

    _parameter_constraints = {
        # a kind of build_backbone, or a Backbone module (copied)
        "backbone": [NameOptions(set(KINDS)), Backbone],
        "d_model": positive_int,
        "n_layers": positive_int,
        "backbone_kwargs": [None, dict],
        **TRAINING_CONSTRAINTS,
    }

    # ------------------------------------------------------------------ parameters
    def _check_model_params(self):
        """Check what the constraints of the subclass's own parameters cannot say (nothing here)."""

    def _check_params(self):
        """Check every parameter once; return the :class:`TrainingOptions` of the fit."""
        self._validate_params()
        options = TrainingOptions(
            batch_size=self.batch_size, max_epochs=self.max_epochs, lr=self.lr, weight_decay=self.weight_decay,
            clip_grad_norm=self.clip_grad_norm, schedule=self.schedule, warmup=self.warmup,
            validation_fraction=self.validation_fraction, early_stopping=bool(self.early_stopping),
            patience=self.patience, restore_best=True, mixed_precision=self.mixed_precision, verbose=self.verbose,
            desc=type(self).__name__)
        if not self.early_stopping:
            options = dataclasses.replace(options, validation_fraction=0.0)
        self._check_model_params()
        return options

    def _check_fitted(self, attributes=None):
        check_is_fitted(self, "module_" if attributes is None else attributes)

    # ------------------------------------------------------------------ input
    def _check_values(self, values, name, reset):
        """The concatenated rows, checked (``reset``: in ``fit``): finite real features as float64."""
        return check_real_steps(values, name, estimator=self)

    def _read(self, X, lengths=None, valid_lengths=None, *, reset, name="X"):
        """``X`` in any form of the sequence contract as a checked :class:`~probkit.utils.sequences.SequenceBatch`.

        ``reset=True`` (in ``fit``) records ``n_features_in_`` (and the feature names of a
        DataFrame); otherwise the estimator must be fitted and the feature count match.
        """
        if not reset:
            self._check_fitted()
        if sparse.issparse(X):
            raise TypeError(f"Sparse data was passed for {name}, but dense data is required: sequences are dense "
                            "arrays. Use '.toarray()' to convert to a dense numpy array.")
        if name == "X":
            validate_data(self, X, reset=reset, skip_check_array=True, ensure_2d=False)   # feature names only
        batch = check_sequences(X, lengths, valid_lengths=valid_lengths, step_ndim=self._step_ndim, name=name)
        values = self._check_values(batch.values, name, reset)
        n_features = 1 if self._step_ndim == 0 else values.shape[1]
        if reset:
            self.n_features_in_ = n_features
        elif n_features != self.n_features_in_:
            raise ValueError(f"{name} has {n_features} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        return batch.with_values(values)

    # ------------------------------------------------------------------ units
    def _scaling_source(self, values):
        """The rows whose per-feature statistics standardise the inputs."""
        return values

    def _training_data(self, batch, targets=None):
        """Fit the standardisation on a checked batch; its :class:`SequenceData` on the compute device."""
        if self._standardizes:
            self._x_mean, self._x_scale = standardizer(self._scaling_source(batch.values))
        device, dtype = self._compute_setup()
        return self._sequence_data(batch, targets, device, dtype)

    def _standardize(self, values):
        return (values - self._x_mean) / self._x_scale

    def _to_data_units(self, values):
        """Standardised values (numpy) back in the data's units."""
        return values * self._x_scale + self._x_mean if self._scores_standardized else values

    def _log_jacobian(self):
        """Log-density change per step from standardised units to the data's units."""
        return -float(np.log(self._x_scale).sum()) if self._scores_standardized else 0.0

    def _model_steps(self, values):
        """The per-step arrays of the network: ``x_in``, what it reads (the standardised
        scaling source), and ``x_obs``, what it scores (standardised or in the data's units)."""
        x_in = self._standardize(self._scaling_source(values))
        return {"x_in": x_in, "x_obs": x_in if self._scores_standardized else values}

    def _sequence_data(self, batch, targets=None, device=None, dtype=None):
        """:class:`SequenceData` of a checked batch in model units (on the fitted network's device by default)."""
        if device is None:
            p = next(self.module_.parameters())
            device, dtype = p.device, p.dtype
        return SequenceData.from_batch(batch, self._model_steps(batch.values), device=device, dtype=dtype,
                                       targets=targets)

    # ------------------------------------------------------------------ training
    def _fit_sequences(self, options, X, lengths, valid_lengths):
        """Train on the sequences of ``X`` with the :class:`TrainingOptions` ``options`` (the subclass's objective)."""
        raise NotImplementedError(f"{type(self).__name__} defines no training objective")

    @limit_torch_threads
    def fit(self, X, y=None, *, lengths=None, valid_lengths=None):
        """Train on the sequences ``X`` with the estimator's objective (see Notes for the layouts).

        %(sequence_params)s
        y : None
            Unused; sequence lengths go in ``lengths=``.

        Returns
        -------
        self
        """
        options = self._check_params()
        check_y_slot(self, "fit", X, y)
        self._fit_sequences(options, X, lengths, valid_lengths)
        return self

    def _train(self, options, data, loss_fn, initialise=None):
        """Build the network (seeded by ``random_state``), call ``initialise(net, rs)``, train it on ``data``.

        Sets ``module_``, ``history_``, ``n_iter_`` and ``best_epoch_``; returns the history.
        """
        device, dtype = self._compute_setup()
        rs = check_random_state(self.random_state)
        init_seed, train_seed = (int(s) for s in rs.randint(0, 2**31 - 1, size=2))
        with seeded(init_seed, device):
            net = self._make_net()
        if initialise is not None:
            initialise(net, rs)
        net = net.to(device=device, dtype=dtype)
        history = run_training(net, loss_fn, data, options, random_state=train_seed, device=device)
        self.module_ = net.eval()
        self.history_ = history.as_dict()
        self.n_iter_ = history.n_epochs
        self.best_epoch_ = history.best_epoch
        return history

    # ------------------------------------------------------------------ evaluation
    def _generator(self, random_state, default=None):
        """A ``torch.Generator`` on the network's device, seeded from ``random_state`` (None: from ``default``)."""
        self._check_fitted()
        device = next(self.module_.parameters()).device
        seed = seed_from(check_random_state(default if random_state is None else random_state))
        return torch.Generator(device=device).manual_seed(seed)

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, data, fn, fixed_layout=True):
        """``fn(batch)`` over every sequence of ``data``; one result per sequence, in input order.

        Batches follow :func:`evaluation_layout`: by default ``batch_size`` rows at a padded
        length fixed per sequence, so that a sequence's results do not depend on the other
        sequences of the call. ``fn`` returns one row per batch row (a tensor, a tuple of
        tensors, read as tuples of rows, or a list), of which the rows of real sequences
        are kept.
        """
        results = [None] * len(data)
        lengths = data.lengths.cpu().numpy()
        device = data.lengths.device
        self.module_.eval()
        with torch.no_grad():
            for index, length, rows in evaluation_layout(lengths, self.batch_size, fixed_layout):
                out = fn(data.padded_batch(torch.as_tensor(index, device=device), length, rows))
                if isinstance(out, tuple):
                    out = list(zip(*(o.cpu().numpy() for o in out)))
                elif isinstance(out, torch.Tensor):
                    out = out.cpu().numpy()
                for row, i in enumerate(index):
                    results[i] = out[row]
        return results

    def _evaluate_steps(self, data, fn, fixed_layout=True):
        """:meth:`_evaluate` for per-step outputs ``(B, L, ...)``: the valid steps, concatenated as the input rows."""
        parts = self._evaluate(data, fn, fixed_layout)
        lengths = data.lengths.cpu().numpy()
        return np.concatenate([part[:n] for part, n in zip(parts, lengths)], 0)

    # ------------------------------------------------------------------ persistence / tags
    def _io_build_module(self, name, device=None):
        return build_net_for_loading(self, name, device)

    def _io_check_state(self):
        """Check what :func:`probkit.load` restored besides the network (whose weights the loader checks)."""
        if hasattr(self, "module_") and self._standardizes:
            check_standardizer(self._x_mean, self._x_scale, self.n_features_in_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


class SequenceNetEstimator(NeuralEstimator):
    """Base of SequenceClassifier, SequenceRegressor and SequenceDensity (not public).

    A :class:`~probkit.neural.networks.SequenceNet` over integer tokens (``vocab_size``)
    or standardised real features; subclasses define ``_make_head()``, their loss and
    their public methods.
    """

    _autoregressive = False

    _parameter_constraints = {
        **NeuralEstimator._parameter_constraints,
        "vocab_size": [None, *positive_int],
        "pooling": [StrOptions(set(POOLINGS))],
        "bidirectional": ["boolean"],
    }

    @property
    def _tokens(self):
        return self.vocab_size is not None

    @property
    def _step_ndim(self):
        return 0 if self._tokens else 1

    @property
    def _standardizes(self):
        return not self._tokens

    @property
    def _scores_standardized(self):
        return not self._tokens

    def _check_values(self, values, name, reset):
        if self._tokens:
            return check_tokens(values, self.vocab_size, name)
        return super()._check_values(values, name, reset)

    def _model_steps(self, values):
        return {"x": values if self._tokens else self._standardize(values)}

    def _make_net(self):
        kw = {"vocab_size": self.vocab_size} if self._tokens else {"n_features": self.n_features_in_}
        if self._autoregressive:
            kw["autoregressive"] = True
        else:
            kw.update(pooling=self.pooling, bidirectional=self.bidirectional)
        return SequenceNet(self.backbone, self.d_model, self.n_layers, self._make_head(),
                           backbone_kwargs=self.backbone_kwargs, **kw)

    def _check_targets(self, batch, y, X, lengths, valid_lengths):
        """``y`` as a numpy array with one entry per sequence of ``batch`` (a ``ValueError`` otherwise)."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        n_targets = int(y.shape[0]) if y.ndim else 1
        if n_targets == batch.n_sequences:
            return y
        one_block = lengths is None and valid_lengths is None and not isinstance(X, (list, tuple))
        if one_block and batch.n_sequences == 1 and n_targets == batch.n_samples:
            raise ValueError(
                f"X without lengths= is one sequence of {batch.n_samples} steps, but y has {n_targets} entries. "
                f"For {n_targets} sequences of one step each pass lengths=np.ones({n_targets}, dtype=int); for longer "
                "sequences pass a list of arrays, concatenated rows with lengths=, or a padded array with "
                "valid_lengths=")
        raise ValueError(f"X holds {batch.n_sequences} sequences but y has {n_targets} entries")

    def _score_predictions(self, metric, X, y, sample_weight, lengths, valid_lengths):
        """``sklearn.metrics.<metric>(y, predict(X), sample_weight=...)`` as a float (the supervised ``score``)."""
        import sklearn.metrics   # on first use: importing probkit.neural does not load it

        y_pred = self.predict(X, lengths=lengths, valid_lengths=valid_lengths)
        return float(getattr(sklearn.metrics, metric)(y, y_pred, sample_weight=sample_weight))

    def _pooled(self, X, lengths, valid_lengths, fn):
        """``fn(out, batch)`` of the pooled network outputs for every sequence of ``X``, stacked ``(N, ...)``."""
        data = self._sequence_data(self._read(X, lengths, valid_lengths, reset=False))
        return np.stack(self._evaluate(data, lambda b: fn(self.module_(b["x"], b["lengths"]), b)))


class PerStepSequenceEstimator(SequenceNetEstimator):
    """Base of the models with one predictive distribution per step (not public).

    SequenceDensity and MaskedSequenceModel: the ``head`` choice by input kind and one long
    1-D token sequence read as windows of ``self.window`` steps.
    """

    _parameter_constraints = {
        **constraints_without(SequenceNetEstimator._parameter_constraints, "pooling", "bidirectional"),
        "head": [StrOptions({"auto", "categorical", "gaussian", "mixture"})],
        "n_components": positive_int,
        "window": positive_int,
    }

    def _resolve_head(self):
        """The head of ``head`` and the input kind (checked against ``vocab_size``)."""
        head = self.head if self.head != "auto" else ("categorical" if self._tokens else "gaussian")
        if head == "categorical" and not self._tokens:
            raise ValueError("head='categorical' needs vocab_size (the number of distinct tokens)")
        if head != "categorical" and self._tokens:
            raise ValueError(f"head={head!r} models real values; with vocab_size set use head='categorical'")
        return head

    def _make_head(self):
        n_out = self.vocab_size if self._tokens else self.n_features_in_
        return make_head(self.head_, self.d_model, n_out, n_components=self.n_components)

    def _windowed(self, batch, X, lengths):
        """``batch`` with one long 1-D token sequence (no ``lengths``) cut into windows."""
        if self._tokens and lengths is None and len(getattr(X, "shape", ())) == 1:
            return SequenceBatch(batch.values, window_lengths(batch.lengths, self.window))
        return batch
