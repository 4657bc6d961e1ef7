"""Shared machinery of the sequence estimators (validation, training, batched evaluation, I/O)."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from probkit.base import ProbkitEstimator

from ._data import SequenceData, check_positive_int, check_sequences, windows
from ._network import POOLINGS, SequenceNet
from ._training import seeded, train_module


def check_training_options(est):
    """Validate the training options every neural estimator shares (named in the errors)."""
    for name in ("d_model", "n_layers", "batch_size", "max_epochs", "patience"):
        check_positive_int(getattr(est, name), name)
    if not (isinstance(est.lr, numbers.Real) and est.lr > 0):
        raise ValueError(f"lr must be a positive number, got {est.lr!r}")
    if not (isinstance(est.validation_fraction, numbers.Real) and 0 <= est.validation_fraction < 1):
        raise ValueError(f"validation_fraction must be in [0, 1), got {est.validation_fraction!r}")
    if est.backbone_kwargs is not None and not isinstance(est.backbone_kwargs, dict):
        raise ValueError(f"backbone_kwargs must be a dict or None, got {est.backbone_kwargs!r}")


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


def unwrap(model):
    """The module inside a ``DistributedDataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


class _SequenceEstimator(ProbkitEstimator):
    """Base of SequenceClassifier, SequenceRegressor and SequenceDensity (not public).

    Subclasses define ``_make_head()``, the loss and their public methods; this class
    validates inputs, standardises real features, builds and trains the network and
    runs it over batches.
    """

    _default_dtype = torch.float32
    _autoregressive = False

    # ------------------------------------------------------------------ parameters
    def _check_params(self):
        check_training_options(self)
        if self.vocab_size is not None:
            check_positive_int(self.vocab_size, "vocab_size")
        if not self._autoregressive and self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")

    @property
    def _tokens(self):
        return self.vocab_size is not None

    # ------------------------------------------------------------------ inputs
    def _check_X(self, X, lengths=None, *, reset, one_long=False, name="X"):
        """Validate ``X`` into ``(padded numpy, lengths numpy)``; record or check the feature count."""
        if not reset:
            check_is_fitted(self)
        padded, lens = check_sequences(X, lengths, vocab_size=self.vocab_size, name=name, one_long=one_long)
        n_features = 1 if self._tokens else padded.shape[2]
        if reset:
            self.n_features_in_ = n_features
        elif n_features != self.n_features_in_:
            raise ValueError(f"{name} has {n_features} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        return padded, lens

    def _read_windowed(self, X, lengths, *, reset, name="X"):
        """Validated padded inputs; a 1-D token sequence is cut into windows of ``self.window``."""
        padded, lens = self._check_X(X, lengths, reset=reset, one_long=True, name=name)
        X_np = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X
        if self._tokens and isinstance(X_np, np.ndarray) and X_np.ndim == 1:
            padded, lens = windows(padded[0], check_positive_int(self.window, "window"))
        return padded, lens

    def _resolve_head(self):
        """The predictive head of per-step models from ``self.head``: "categorical" for tokens,
        "gaussian" or "mixture" for real values ("auto" picks by ``vocab_size``)."""
        if self.head not in ("auto", "categorical", "gaussian", "mixture"):
            raise ValueError(f"head must be 'auto', 'categorical', 'gaussian' or 'mixture', got {self.head!r}")
        head = self.head if self.head != "auto" else ("categorical" if self._tokens else "gaussian")
        if head == "categorical" and not self._tokens:
            raise ValueError("head='categorical' needs vocab_size (the number of distinct tokens)")
        if head != "categorical" and self._tokens:
            raise ValueError(f"head={head!r} models real values; with vocab_size set use head='categorical'")
        return head

    def _fit_standardizer(self, padded, lens):
        if self._tokens:
            return
        mask = np.arange(padded.shape[1])[None, :] < lens[:, None]
        valid = padded[mask]
        self._x_mean = valid.mean(0)
        scale = valid.std(0)
        self._x_scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(self._x_mean)), scale, 1.0)

    def _to_tensor(self, padded, device, dtype):
        """Inputs as a tensor on ``device``: int64 tokens, or standardised features in ``dtype``."""
        if self._tokens:
            return torch.as_tensor(padded, dtype=torch.long, device=device)
        z = (padded - self._x_mean) / self._x_scale
        return torch.as_tensor(z, dtype=dtype, device=device)

    # ------------------------------------------------------------------ network
    def _make_net(self):
        kw = {"vocab_size": self.vocab_size} if self._tokens else {"n_features": self.n_features_in_}
        if self._autoregressive:
            kw["autoregressive"] = True
        else:
            kw.update(pooling=self.pooling, bidirectional=self.bidirectional)
        return SequenceNet(self.backbone, self.d_model, self.n_layers, self._make_head(),
                           backbone_kwargs=self.backbone_kwargs, **kw)

    def _build_and_train(self, data, loss_fn):
        """Seeded initialisation, then :func:`train_module` with the estimator's settings."""
        device, dtype = self._compute_setup()
        rs = check_random_state(self.random_state)
        init_seed, train_seed = (int(s) for s in rs.randint(0, 2**31 - 1, size=2))
        with seeded(init_seed, device):
            net = self._make_net()
        net = net.to(device=device, dtype=dtype)
        use_val = bool(self.early_stopping) and self.validation_fraction > 0
        history = train_module(
            net, loss_fn, data, validation_fraction=self.validation_fraction if use_val else 0.0,
            batch_size=self.batch_size, max_epochs=self.max_epochs, lr=self.lr, weight_decay=self.weight_decay,
            clip_grad_norm=self.clip_grad_norm, schedule=self.schedule, warmup=self.warmup,
            early_stopping=bool(self.early_stopping), patience=self.patience, restore_best=True,
            random_state=train_seed, device=device, mixed_precision=self.mixed_precision,
            verbose=self.verbose, desc=type(self).__name__)
        self.module_ = net.eval()
        self.history_ = history.as_dict()
        self.n_iter_ = history.n_epochs
        self.best_epoch_ = history.best_epoch
        return self

    def _outputs(self, x, lens, fn=None):
        """Run the fitted network over batches (sorted by length) and return the outputs in input order.

        ``fn(out, x_batch, lengths_batch)`` post-processes each batch (default: identity).
        Results are concatenated on the CPU.
        """
        def run(xb, lb):
            out = self.module_(xb, lb)
            return fn(out, xb, lb) if fn is not None else out

        return self._map_batches(x, lens, run)

    def _map_batches(self, x, lens, fn, extra=None):
        """``fn(x_batch, lengths_batch[, extra_batch])`` over batches sorted by length, in input order.

        ``extra`` (optional, first dimension ``N``) is batched with ``x``.  Runs in eval mode
        without gradients; results are concatenated on the CPU.
        """
        device = next(self.module_.parameters()).device
        lens_t = torch.as_tensor(lens, dtype=torch.long)
        order = torch.argsort(lens_t, stable=True)
        data = SequenceData(x, lens_t.to(x.device), extra)
        chunks = []
        self.module_.eval()
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                b = data.batch(order[start:start + self.batch_size].to(x.device))
                args = [b["x"].to(device), b["lengths"].to(device)]
                if extra is not None:
                    args.append(b["y"].to(device))
                chunks.append(fn(*args).cpu())
        res = torch.cat(chunks, 0)
        inv = torch.empty_like(order)
        inv[order] = torch.arange(len(order))
        return res[inv]

    def _log_jacobian(self):
        """log |d z / d x| per step for standardised real features (0 for tokens)."""
        return 0.0 if self._tokens else -float(np.log(self._x_scale).sum())

    # ------------------------------------------------------------------ persistence / tags
    def _io_build_module(self, name, device=None):
        return build_net_for_loading(self, name, device)

    def _io_check_state(self):
        """Check what :func:`probkit.load` restored besides the network (whose weights the loader checks)."""
        if hasattr(self, "module_") and not self._tokens:
            check_standardizer(self._x_mean, self._x_scale, self.n_features_in_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags



# Parameter documentation shared by the three estimators (substituted into their docstrings).
_MODEL_PARAMS = """backbone : str, default="mamba"
        Backbone kind of :func:`probkit.neural.build_backbone`: "mamba", "rwkv",
        "mambaout" (gated CNN), "transformer", "s4d", "gru" or "lstm" (the kinds of
        :data:`probkit.neural.KINDS`).
    d_model : int, default=64
        Width of the backbone.
    n_layers : int, default=2
        Number of backbone layers.
    backbone_kwargs : dict, optional
        Further options of the backbone (e.g. ``{"n_heads": 4}`` for the transformer).
    vocab_size : int, optional
        When given, ``X`` holds integer tokens in ``[0, vocab_size)`` (embedded) instead
        of real-valued features."""

_TRAINING_PARAMS = """batch_size : int, default=32
        Sequences per mini-batch (training and prediction).
    max_epochs : int, default=100
        Passes over the training data.
    lr : float, default=1e-3
        Peak learning rate of AdamW.
    weight_decay : float, default=0.01
        Decoupled weight decay (on weight matrices and embeddings).
    clip_grad_norm : float or None, default=1.0
        Global gradient-norm clipping.
    schedule : {"cosine", "linear", "constant"}, default="cosine"
        Learning-rate decay after the warm-up.
    warmup : float or int, default=0.05
        Linear warm-up: fraction of all steps (float) or number of steps (int).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the sequences, stop when the validation loss
        has not improved for ``patience`` epochs and restore the best epoch's weights.
        False trains on all sequences for ``max_epochs``.
    validation_fraction : float, default=0.1
        Share of the sequences held out when ``early_stopping`` (at least one, and only
        with two or more sequences).
    patience : int, default=10
        Epochs without improvement before stopping.
    mixed_precision : {"auto", True, False, "bf16", "fp16"}, default="auto"
        Autocast on CUDA (bfloat16 where supported); ignored on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the validation split and the shuffling; with an int,
        fits on the CPU are reproducible.
    device : str or torch.device, optional
        "cpu" (default), "cuda", "cuda:1", or "auto" (CUDA when available). On the
        CPU, fitting and prediction run with probkit's intra-op thread setting
        (:func:`probkit.set_num_threads`, default one thread: small sequence models are
        dominated by per-operation overheads, and OpenMP barriers stall when the cores
        are shared; raise it for wide models on a dedicated machine).
    dtype : str or torch.dtype, optional
        Parameter dtype; default float32.
    verbose : int, default=0
        1 shows a progress bar over epochs with the training and validation losses
        (tqdm); 2 also one over the batches of each epoch."""

_FITTED_ATTRS = """n_features_in_ : int
        Features per time step (1 for tokens).
    module_ : SequenceNet
        The trained torch module (encoder, backbone, head).
    history_ : dict
        The :class:`~probkit.neural.TrainingHistory` of the fit as a dict: per-epoch
        ``train_loss``, ``val_loss``, ``lr``, ``epoch_time``, and ``best_epoch``,
        ``n_steps``, ``stop_reason``.
    n_iter_ : int
        Epochs run.
    best_epoch_ : int or None
        Epoch whose weights were restored (None without early stopping)."""


_TRAINING_NOTES = """Training runs :func:`probkit.neural.train_module`: AdamW with gradient clipping, linear
    warm-up then cosine (or linear) decay of the learning rate, early stopping on a
    validation split with restore of the best epoch, autocast on CUDA. Inside a
    ``torch.distributed`` process group of several processes (e.g. a script launched
    with ``torchrun`` that called :func:`probkit.distributed.init_distributed`), ``fit``
    trains data-parallel: the network is wrapped with
    :func:`probkit.distributed.wrap_ddp`, each rank takes its share of every epoch's
    mini-batches from the same shuffled order (every rank passes the full data), and
    all ranks end with the same weights."""


def fill_doc(cls):
    """Substitute the shared parameter sections into ``cls.__doc__``."""
    cls.__doc__ = (cls.__doc__.replace("%(model_params)s", _MODEL_PARAMS)
                   .replace("%(training_params)s", _TRAINING_PARAMS)
                   .replace("%(fitted_attrs)s", _FITTED_ATTRS)
                   .replace("%(training_notes)s", _TRAINING_NOTES))
    return cls
