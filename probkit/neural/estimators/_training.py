"""One training loop for every neural model of probkit.

:func:`train_module` fits any ``torch.nn.Module`` by minimising a loss that the caller
computes on a mini-batch, with AdamW, gradient clipping, a learning-rate schedule
(linear warm-up, then cosine or linear decay), early stopping on a validation split
with restore of the best epoch, mixed precision on CUDA, data-parallel training under
``torch.distributed`` and a progress bar. The sequence estimators of
:mod:`probkit.neural` use it, and so can any model that can write its loss as a
function of a batch.

The data protocol
-----------------
``data`` (and ``val_data``) is either

* an object with ``__len__()`` (number of items) and ``batch(index)``, where ``index``
  is a 1-D ``torch.LongTensor`` of item numbers, returning the batch in any form the
  loss understands (tensors, possibly nested in tuples, lists or dicts); or
* a tensor, numpy array, or a tuple/list of them with a common first dimension
  (wrapped in :class:`TensorData`; a batch is then the tuple of row slices).

Every tensor of a batch is moved to ``device`` by the loop.

The loss closure
----------------
``loss_fn(model, batch)`` returns the mean loss over the batch as a scalar tensor, or a
pair ``(mean_loss, weight)`` where ``weight`` is the number of units the mean is taken
over (e.g. valid time steps); epoch losses are then weighted averages. ``model`` is the
module being trained -- wrapped in ``DistributedDataParallel`` when a process group is
active -- so the loss must reach the parameters through ``model(...)`` (``forward``)
for gradients to be synchronised.

Determinism
-----------
Given an integer ``random_state`` the run is reproducible on the CPU: shuffling and the
validation split draw from a ``torch.Generator`` seeded with it, and the global torch
RNG (dropout, ...) is seeded inside :func:`torch.random.fork_rng`, so the caller's
global RNG state is left untouched. Seed the module's initialisation yourself, e.g.
by building it inside :func:`seeded`.

Distributed training
--------------------
When a ``torch.distributed`` process group with more than one process is initialised
(e.g. the script runs under ``torchrun`` and called
:func:`probkit.distributed.init_distributed`), the module is wrapped with
:func:`probkit.distributed.wrap_ddp`; every rank draws the same shuffled order and
takes every ``world_size``-th item of it (the order is truncated to a multiple of
``world_size`` so that all ranks run the same number of steps), gradients are averaged
by DDP, and training and validation losses are summed over the ranks, so that every
rank takes the same early-stopping decisions and restores the same best state. Each
rank must hold the full data set (or at least the same item numbering).

Examples
--------
>>> import torch
>>> X = torch.randn(256, 3)
>>> y = X @ torch.tensor([1.0, -2.0, 0.5])
>>> net = torch.nn.Linear(3, 1)
>>> def loss(model, batch):
...     xb, yb = batch
...     return ((model(xb).squeeze(-1) - yb) ** 2).mean()
>>> hist = train_module(net, loss, (X, y), batch_size=64, max_epochs=30, lr=0.05, random_state=0,
...                     num_threads=1)
>>> hist.train_loss[-1] < 1e-2
True
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from probkit.utils.random import forked_rng, seed_from
from probkit.utils.threads import torch_threads
from probkit.utils.validation import check_int

__all__ = ["TensorData", "TrainingHistory", "TrainingOptions", "evaluate_loss", "run_training", "seeded",
           "train_module"]

#: Learning-rate decays after the warm-up.
SCHEDULES = ("cosine", "linear", "constant")
#: ``mixed_precision`` settings besides the booleans.
MIXED_PRECISION_MODES = ("auto", "bf16", "fp16")


# ---------------------------------------------------------------------------- helpers
def seeded(random_state, device=None):
    """Run a block with the global generators seeded, restoring the caller's state after.

    :func:`probkit.utils.random.forked_rng` for one (CUDA) device: it makes a module's
    initialisation reproducible without disturbing the rest of the program.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or torch.Generator
        Turned into a seed by :func:`probkit.utils.random.seed_from`.
    device : torch.device or str, optional
        A CUDA device whose generator is also forked and seeded.

    Examples
    --------
    >>> with seeded(0):
    ...     a = torch.nn.Linear(2, 2).weight.clone()
    >>> with seeded(0):
    ...     b = torch.nn.Linear(2, 2).weight.clone()
    >>> bool(torch.equal(a, b))
    True
    """
    return forked_rng(random_state, devices=() if device is None else (device,))


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_to_device(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class TensorData:
    """Tensors (or arrays) sharing their first dimension, batched by row.

    Parameters
    ----------
    *tensors : torch.Tensor or numpy.ndarray
        Numpy arrays are converted with ``torch.as_tensor``.

    Examples
    --------
    >>> data = TensorData(torch.arange(10.0), torch.arange(10))
    >>> len(data)
    10
    >>> data.batch(torch.tensor([1, 3]))
    (tensor([1., 3.]), tensor([1, 3]))
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorData needs at least one tensor")
        self.tensors = tuple(torch.as_tensor(t) for t in tensors)
        n = self.tensors[0].shape[0] if self.tensors[0].dim() else None
        if n is None or any(t.dim() == 0 or t.shape[0] != n for t in self.tensors):
            raise ValueError("all tensors of the data must share their first dimension, got shapes "
                             f"{[tuple(t.shape) for t in self.tensors]}")
        self._n = int(n)

    def __len__(self):
        return self._n

    def batch(self, index):
        """The rows ``index`` of every tensor, as a tuple."""
        return tuple(t[index] for t in self.tensors)


def _as_data(data, name):
    if data is None:
        return None
    if hasattr(data, "batch") and hasattr(data, "__len__"):
        return data
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return TensorData(data)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, (torch.Tensor, np.ndarray)) for t in data):
        return TensorData(*data)
    raise TypeError(f"{name} must have __len__() and batch(index), or be a tensor/array or a tuple of them; "
                    f"got {type(data).__name__}")


class _Subset:
    def __init__(self, data, index):
        self.data, self.index = data, index

    def __len__(self):
        return len(self.index)

    def batch(self, index):
        return self.data.batch(self.index[index])


@dataclass
class TrainingHistory:
    """What :func:`train_module` did, epoch by epoch.

    Attributes
    ----------
    train_loss : list of float
        Mean training loss of each epoch (weighted by the loss closure's weights).
    val_loss : list of float
        Validation loss after each epoch (empty without validation data).
    lr : list of float
        Learning rate at the end of each epoch.
    epoch_time : list of float
        Wall-clock seconds of each epoch (including validation).
    best_epoch : int or None
        Epoch (0-based) with the lowest validation loss, whose state was restored; ``None``
        without validation data.
    best_val_loss : float or None
    n_epochs : int
        Epochs run (the last one may be partial when ``max_steps``/``max_time`` ended it).
    n_steps : int
        Optimiser steps taken.
    stop_reason : str
        ``"max_epochs"``, ``"early_stopping"``, ``"max_steps"``, ``"max_time"`` or ``"callback"``.

    Examples
    --------
    >>> TrainingHistory(train_loss=[1.0, 0.5]).as_dict()["train_loss"]
    [1.0, 0.5]
    """

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    epoch_time: list = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float | None = None
    n_epochs: int = 0
    n_steps: int = 0
    stop_reason: str = "max_epochs"

    def as_dict(self):
        """The history as a plain dict (lists of floats), e.g. to store on an estimator."""
        return asdict(self)


def _unpack_loss(out):
    if isinstance(out, (tuple, list)):
        if len(out) != 2:
            raise ValueError("loss_fn must return a scalar tensor or a pair (mean_loss, weight)")
        loss, weight = out
        weight = float(weight.detach().sum()) if isinstance(weight, torch.Tensor) else float(weight)
    else:
        loss, weight = out, 1.0
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError("loss_fn must return the mean loss of the batch as a scalar tensor")
    return loss, weight


def _distributed():
    from probkit.distributed import is_distributed

    if not is_distributed():
        return None
    import torch.distributed as dist

    return dist


def _all_reduce_sums(values, device, dist):
    """Sum a list of floats over the ranks (no-op without a process group)."""
    if dist is None:
        return values
    dev = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return t.cpu().tolist()


def _batches(order, batch_size):
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def evaluate_loss(module, loss_fn, data, *, batch_size=256, device=None, autocast=None):
    """Weighted mean of ``loss_fn`` over ``data`` in evaluation mode, without gradients.

    Parameters
    ----------
    module : torch.nn.Module
    loss_fn : callable
        ``loss_fn(module, batch)`` as for :func:`train_module`.
    data : data object, tensor or tuple of tensors
        See the module docstring.
    batch_size : int, default=256
    device : torch.device or str, optional
        Where batches are moved (default: the module's device).
    autocast : dict, optional
        Keyword arguments of ``torch.autocast`` (mixed precision).

    Returns
    -------
    sum_loss : float
        Sum over batches of ``mean_loss * weight``.
    sum_weight : float

    Examples
    --------
    >>> net = torch.nn.Linear(2, 1)
    >>> with torch.no_grad():
    ...     _ = net.weight.zero_(), net.bias.fill_(1.0)
    >>> evaluate_loss(net, lambda m, b: (m(b[0]).pow(2).mean(), len(b[0])), torch.zeros(10, 2))
    (10.0, 10.0)
    """
    data = _as_data(data, "data")
    if device is None:
        p = next(iter(module.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = module.training
    module.eval()
    total, weight = 0.0, 0.0
    try:
        with torch.no_grad():
            for idx in _batches(torch.arange(len(data)), batch_size):
                batch = _to_device(data.batch(idx), device)
                ctx = torch.autocast(**autocast) if autocast else contextlib.nullcontext()
                with ctx:
                    loss, w = _unpack_loss(loss_fn(module, batch))
                total += float(loss) * w
                weight += w
    finally:
        module.train(was_training)
    return total, weight


def _lr_lambda(schedule, total_steps, warmup_steps, min_lr_ratio):
    def factor(step):
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        span = max(1, total_steps - warmup_steps)
        p = min(1.0, (step - warmup_steps) / span)
        if schedule == "cosine":
            return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
        return 1.0 - (1.0 - min_lr_ratio) * p

    return factor


def _autocast(mode, device):
    """``(autocast kwargs or None, use a GradScaler)`` for a checked ``mixed_precision`` mode; CUDA only."""
    if device.type != "cuda" or mode in (False, None):
        return None, False
    if mode == "fp16" or (mode in ("auto", True) and not torch.cuda.is_bf16_supported()):
        return {"device_type": "cuda", "dtype": torch.float16}, True
    return {"device_type": "cuda", "dtype": torch.bfloat16}, False


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class StepPlan:
    """Optimiser steps of a run: per epoch (on each rank), in all, and of the warm-up."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


@dataclass(frozen=True)
class TrainingOptions:
    """The settings of a :func:`train_module` run, checked once, when the object is made.

    The fields are the keyword arguments of :func:`train_module` of the same names (see
    there); a bad value raises a ``ValueError`` naming the field. The neural estimators
    build one from their parameters and hand it to :func:`run_training`.

    Examples
    --------
    >>> options = TrainingOptions(batch_size=16, max_epochs=3, warmup=0.1, validation_fraction=0.2)
    >>> options.n_validation(100), options.plan(n_train=80)
    (20, StepPlan(steps_per_epoch=5, total_steps=15, warmup_steps=2))
    >>> TrainingOptions(lr=0)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a positive number, got 0
    """

    batch_size: int = 32
    max_epochs: int = 10
    max_steps: int | None = None
    max_time: float | None = None
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.999)
    clip_grad_norm: float | None = 1.0
    schedule: str = "cosine"
    warmup: float = 0.0
    min_lr_ratio: float = 0.0
    validation_fraction: float = 0.0
    early_stopping: bool = True
    patience: int = 10
    tol: float = 0.0
    restore_best: bool = True
    shuffle: bool = True
    mixed_precision: object = "auto"
    eval_batch_size: int | None = None
    num_threads: int | None = None
    verbose: int = 0
    desc: str = "train"

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("batch_size", "max_epochs", "patience"):
            put(name, check_int(getattr(self, name), name))
        for name in ("max_steps", "eval_batch_size", "num_threads"):
            put(name, check_int(getattr(self, name), name, allow_none=True))
        if not (_is_real(self.validation_fraction) and 0.0 <= self.validation_fraction < 1.0):
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if not (_is_real(self.lr) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (_is_real(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.clip_grad_norm is not None and not (_is_real(self.clip_grad_norm) and self.clip_grad_norm > 0):
            raise ValueError(f"clip_grad_norm must be a positive number or None, got {self.clip_grad_norm!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be 'cosine', 'linear' or 'constant', got {self.schedule!r}")
        if not _is_real(self.warmup) or self.warmup < 0 or \
                (not isinstance(self.warmup, numbers.Integral) and self.warmup >= 1):
            raise ValueError(f"warmup must be a fraction in [0, 1) or a number of steps, got {self.warmup!r}")
        if not (_is_real(self.min_lr_ratio) and 0.0 <= self.min_lr_ratio <= 1.0):
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.max_time is not None and not (_is_real(self.max_time) and self.max_time > 0):
            raise ValueError(f"max_time must be a positive number of seconds or None, got {self.max_time!r}")
        if not (_is_real(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be >= 0, got {self.tol!r}")
        if self.mixed_precision not in (True, False, None, *MIXED_PRECISION_MODES):
            raise ValueError(f"mixed_precision must be 'auto', True, False, 'bf16' or 'fp16', got "
                             f"{self.mixed_precision!r}")
        put("betas", tuple(float(b) for b in self.betas))

    def n_validation(self, n_items):
        """Items of ``n_items`` held out for validation: the fraction, at least one, none with fewer than two."""
        if self.validation_fraction <= 0 or n_items < 2:
            return 0
        return min(n_items - 1, max(1, int(round(self.validation_fraction * n_items))))

    def plan(self, n_train, world_size=1):
        """The :class:`StepPlan` for ``n_train`` training items shared by ``world_size`` processes."""
        per_rank = n_train // world_size
        if per_rank < 1:
            raise ValueError(f"{n_train} training items cannot be shared by {world_size} processes")
        steps_per_epoch = math.ceil(per_rank / self.batch_size)
        total = self.max_epochs * steps_per_epoch
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        warmup = int(self.warmup) if isinstance(self.warmup, numbers.Integral) else int(round(self.warmup * total))
        return StepPlan(steps_per_epoch, total, warmup)


def _param_groups(module, weight_decay):
    """Weight decay on matrices and embeddings only: not on 1-D parameters (biases, norm gains)
    nor on parameters flagged ``p._no_weight_decay = True`` (e.g. an SSM's ``A_log``)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and not getattr(p, "_no_weight_decay", False) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class _Optimiser:
    """AdamW with the warm-up/decay schedule, gradient clipping and (float16) loss scaling."""

    def __init__(self, module, options, plan, use_scaler):
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(_param_groups(module, float(options.weight_decay)), lr=float(options.lr),
                                           betas=options.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(options.schedule, plan.total_steps, plan.warmup_steps,
                                       float(options.min_lr_ratio)))
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.clip = None if options.clip_grad_norm is None else float(options.clip_grad_norm)

    @property
    def lr(self):
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, loss):
        """Back-propagate ``loss`` and take one optimiser and schedule step."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()


class _Cluster:
    """The processes training together: rank, world size, and sums over the ranks (one process by default)."""

    def __init__(self, device):
        self.dist = _distributed()
        self.device = device
        self.rank, self.world = (self.dist.get_rank(), self.dist.get_world_size()) if self.dist else (0, 1)

    def sum(self, values):
        return _all_reduce_sums(values, self.device, self.dist)

    def share(self, order, truncate=True):
        """This rank's items of ``order``: every ``world``-th, from an order cut to a multiple of ``world``."""
        if self.world == 1:
            return order
        if truncate:
            order = order[: len(order) // self.world * self.world]
        return order[self.rank::self.world]


class _BestEpoch:
    """Early-stopping bookkeeping: the best monitored loss, epochs without improvement, the best state."""

    def __init__(self, options, validated):
        self.tol, self.validated = options.tol, validated
        self.keep_state = options.restore_best and validated
        self.monitor, self.bad_epochs, self.state = math.inf, 0, None

    def update(self, epoch, monitor, module, history):
        improved = monitor < self.monitor - self.tol
        if math.isfinite(monitor) and (improved or self.monitor == math.inf):
            self.monitor, self.bad_epochs = monitor, 0
            if self.validated:
                history.best_epoch, history.best_val_loss = epoch, monitor
                if self.keep_state:
                    self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            self.bad_epochs += 1

    def restore(self, module, history):
        if self.state is not None and history.best_epoch is not None and history.best_epoch != history.n_epochs - 1:
            module.load_state_dict(self.state)


class _Progress(contextlib.AbstractContextManager):
    """tqdm bars on rank 0: one over epochs (verbose >= 1), one over each epoch's batches (verbose >= 2)."""

    def __init__(self, options, rank):
        self.verbose = options.verbose if rank == 0 else 0
        self.bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=options.max_epochs, desc=options.desc, unit="epoch", leave=True)

    def batches(self, batches, total, epoch):
        if self.verbose < 2:
            return batches
        from tqdm.auto import tqdm

        return tqdm(batches, total=total, desc=f"epoch {epoch}", leave=False)

    def epoch_done(self, history):
        if self.bar is None:
            return
        post = {"loss": f"{history.train_loss[-1]:.4g}"}
        if history.val_loss:
            post["val"] = f"{history.val_loss[-1]:.4g}"
        self.bar.set_postfix(post)
        self.bar.update(1)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False


def _split(data, val_data, options, generator):
    """Training item numbers and validation data: ``val_data``, or a held-out share of ``data``."""
    n_items = len(data)
    n_val = options.n_validation(n_items) if val_data is None else 0
    if n_val == 0:
        return torch.arange(n_items), val_data
    perm = torch.randperm(n_items, generator=generator)
    return perm[n_val:].sort().values, _Subset(data, perm[:n_val].sort().values)


class _Run:
    """One training run: the set-up in ``__init__``, then :meth:`fit` loops over the epochs."""

    def __init__(self, module, loss_fn, data, options, *, val_data, random_state, device, callback):
        if device is None:
            p = next(iter(module.parameters()), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device)
        module.to(self.device)
        self.module, self.loss_fn, self.data, self.options, self.callback = module, loss_fn, data, options, callback
        self.autocast, use_scaler = _autocast(options.mixed_precision, self.device)
        self.cluster = _Cluster(self.device)
        self.seed = seed_from(random_state)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.train_index, self.val_data = _split(data, val_data, options, self.generator)
        self.plan = options.plan(len(self.train_index), self.cluster.world)
        from probkit.distributed import wrap_ddp

        self.model = wrap_ddp(module)
        self.optimiser = _Optimiser(module, options, self.plan, use_scaler)
        self.step = 0
        self.start_time = time.perf_counter()

    def _budget_spent(self):
        """``"max_steps"`` or ``"max_time"`` when that budget is used up (agreed by all ranks), else None."""
        if self.options.max_steps is not None and self.step >= self.options.max_steps:
            return "max_steps"
        if self.options.max_time is not None:
            over = float(time.perf_counter() - self.start_time > self.options.max_time)
            if self.cluster.sum([over])[0] > 0:
                return "max_time"
        return None

    def train_epoch(self, epoch, progress):
        """One pass over this rank's share of the shuffled items: ``(mean loss over all ranks, stop reason)``."""
        index = self.train_index
        if self.options.shuffle:
            index = index[torch.randperm(len(index), generator=self.generator)]
        batches = _batches(self.cluster.share(index), self.options.batch_size)
        loss_sum, weight_sum, stop = 0.0, 0.0, None
        for idx in progress.batches(batches, self.plan.steps_per_epoch, epoch):
            batch = _to_device(self.data.batch(idx), self.device)
            with torch.autocast(**self.autocast) if self.autocast else contextlib.nullcontext():
                loss, weight = _unpack_loss(self.loss_fn(self.model, batch))
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(f"the training loss became {float(loss.detach())} at epoch {epoch}, step "
                                         f"{self.step}; lower lr, clip gradients or check the data")
            self.optimiser.step(loss)
            self.step += 1
            loss_sum += float(loss.detach()) * weight
            weight_sum += weight
            stop = self._budget_spent()
            if stop:
                break
        loss_sum, weight_sum = self.cluster.sum([loss_sum, weight_sum])
        return loss_sum / max(weight_sum, 1e-300), stop

    def validation_loss(self):
        """Weighted mean loss over the validation items (each rank evaluates its share)."""
        index = self.cluster.share(torch.arange(len(self.val_data)), truncate=False)
        total, weight = evaluate_loss(self.model, self.loss_fn, _Subset(self.val_data, index),
                                      batch_size=self.options.eval_batch_size or self.options.batch_size,
                                      device=self.device, autocast=self.autocast)
        total, weight = self.cluster.sum([total, weight])
        return total / max(weight, 1e-300)

    def fit(self):
        options, history = self.options, TrainingHistory()
        best = _BestEpoch(options, validated=self.val_data is not None)
        devices = [self.device] if self.device.type == "cuda" else []
        stop = None
        with _Progress(options, self.cluster.rank) as progress, torch.random.fork_rng(devices=devices), \
                torch_threads(options.num_threads):
            torch.manual_seed(self.seed + 1)
            self.module.train()
            for epoch in range(options.max_epochs):
                t0 = time.perf_counter()
                train_loss, stop = self.train_epoch(epoch, progress)
                history.train_loss.append(train_loss)
                monitor = train_loss
                if self.val_data is not None:
                    monitor = self.validation_loss()
                    history.val_loss.append(monitor)
                history.lr.append(self.optimiser.lr)
                history.epoch_time.append(time.perf_counter() - t0)
                history.n_epochs, history.n_steps = epoch + 1, self.step
                best.update(epoch, monitor, self.module, history)
                progress.epoch_done(history)
                if stop is None and options.early_stopping and best.bad_epochs >= options.patience:
                    stop = "early_stopping"
                if stop is None and self.callback is not None and self.callback(epoch, history, self.module):
                    stop = "callback"
                if stop:
                    break
        history.stop_reason = stop or "max_epochs"
        best.restore(self.module, history)
        self.module.eval()
        return history


def run_training(module, loss_fn, data, options, *, val_data=None, random_state=None, device=None, callback=None):
    """:func:`train_module` with its settings given as one checked :class:`TrainingOptions`.

    Parameters
    ----------
    module, loss_fn, data, val_data, random_state, device, callback
        As in :func:`train_module`.
    options : TrainingOptions

    Returns
    -------
    TrainingHistory

    Examples
    --------
    >>> X = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    >>> net = torch.nn.Linear(2, 1)
    >>> h = run_training(net, lambda m, b: m(b[0]).pow(2).mean(), X, TrainingOptions(max_epochs=2), random_state=0)
    >>> h.n_epochs, h.n_steps
    (2, 4)
    """
    data = _as_data(data, "data")
    val_data = _as_data(val_data, "val_data")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(model, batch) -> loss")
    if not isinstance(options, TrainingOptions):
        raise TypeError(f"options must be a TrainingOptions, got {type(options).__name__}")
    if len(data) < 1:
        raise ValueError("data holds no items to train on")
    run = _Run(module, loss_fn, data, options, val_data=val_data, random_state=random_state, device=device,
               callback=callback)
    return run.fit()


def train_module(module, loss_fn, data, *, val_data=None, validation_fraction=0.0, batch_size=32, max_epochs=10,
                 max_steps=None, max_time=None, lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999),
                 clip_grad_norm=1.0, schedule="cosine", warmup=0.0, min_lr_ratio=0.0, early_stopping=True,
                 patience=10, tol=0.0, restore_best=True, shuffle=True, random_state=None, device=None,
                 mixed_precision="auto", eval_batch_size=None, callback=None, num_threads=None, verbose=0,
                 desc="train"):
    """Fit ``module`` by AdamW on ``loss_fn`` over mini-batches of ``data``.

    Parameters
    ----------
    module : torch.nn.Module
        Trained in place; moved to ``device`` if given.
    loss_fn : callable
        ``loss_fn(model, batch) -> mean_loss`` or ``(mean_loss, weight)`` (module docstring).
    data : data object, tensor, array or tuple of them
        Training items (module docstring).
    val_data : same, optional
        Validation items. Without them, ``validation_fraction`` of ``data`` is held out.
    validation_fraction : float in [0, 1), default=0.0
        Share of ``data`` held out for validation when ``val_data`` is None (at least one
        item, and only when ``data`` has at least two).
    batch_size : int, default=32
    max_epochs : int, default=10
    max_steps : int, optional
        Stop after this many optimiser steps (a fixed compute budget); the schedule then
        spans ``min(max_steps, max_epochs * steps_per_epoch)`` steps.
    max_time : float, optional
        Stop after the step that exceeds this many seconds (not reproducible).
    lr : float, default=1e-3
        Peak learning rate.
    weight_decay : float, default=0.01
        AdamW decoupled weight decay, applied to parameters with two or more dimensions
        except those with an attribute ``_no_weight_decay = True``.
    betas : tuple of float, default=(0.9, 0.999)
    clip_grad_norm : float or None, default=1.0
        Clip the global gradient norm; ``None`` disables clipping.
    schedule : {"cosine", "linear", "constant"}, default="cosine"
        Decay after warm-up, per optimiser step, down to ``min_lr_ratio * lr``.
    warmup : float or int, default=0.0
        Linear warm-up: a fraction of the total steps (float in [0, 1)) or a step count (int).
    min_lr_ratio : float, default=0.0
        Final learning rate as a fraction of ``lr``.
    early_stopping : bool, default=True
        Stop when the monitored loss (validation if any, else training) has not improved
        by more than ``tol`` for ``patience`` epochs.
    patience : int, default=10
    tol : float, default=0.0
    restore_best : bool, default=True
        With validation data, load the state of the epoch with the lowest validation loss
        at the end.
    shuffle : bool, default=True
    random_state : None, int, numpy.random.RandomState or torch.Generator
        Seeds shuffling, the validation split and the global torch RNG during training.
    device : str or torch.device, optional
        Default: the device of the module's parameters.
    mixed_precision : {"auto", True, False, "bf16", "fp16"}, default="auto"
        ``torch.autocast`` on CUDA ("auto"/True: bfloat16 where supported, else float16
        with a gradient scaler). Ignored on the CPU, where training runs in the module's
        dtype.
    eval_batch_size : int, optional
        Batch size of validation passes (default ``batch_size``).
    callback : callable, optional
        ``callback(epoch, history, module)`` after each epoch; returning True stops training.
    num_threads : int, optional
        torch intra-op threads during training (restored after); default: leave torch's
        setting. One thread is often fastest for small models on shared CPUs.
    verbose : int, default=0
        1: a progress bar over epochs with the losses; 2: also a bar over the batches.
    desc : str, default="train"
        Label of the progress bar.

    Returns
    -------
    TrainingHistory

    Raises
    ------
    FloatingPointError
        The training loss became NaN or infinite (lower ``lr`` or check the data).

    Examples
    --------
    Fit a logistic regression with a held-out 20 % and early stopping:

    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(200, 2, generator=g)
    >>> y = (X[:, 0] > 0).long()
    >>> net = torch.nn.Linear(2, 2)
    >>> loss = lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1])
    >>> h = train_module(net, loss, (X, y), validation_fraction=0.2, batch_size=64, max_epochs=20, lr=0.1,
    ...                  random_state=0, num_threads=1)
    >>> h.best_epoch is not None and h.val_loss[h.best_epoch] == min(h.val_loss)
    True
    """
    options = TrainingOptions(
        batch_size=batch_size, max_epochs=max_epochs, max_steps=max_steps, max_time=max_time, lr=lr,
        weight_decay=weight_decay, betas=betas, clip_grad_norm=clip_grad_norm, schedule=schedule, warmup=warmup,
        min_lr_ratio=min_lr_ratio, validation_fraction=validation_fraction, early_stopping=early_stopping,
        patience=patience, tol=tol, restore_best=restore_best, shuffle=shuffle, mixed_precision=mixed_precision,
        eval_batch_size=eval_batch_size, num_threads=num_threads, verbose=verbose, desc=desc)
    return run_training(module, loss_fn, data, options, val_data=val_data, random_state=random_state, device=device,
                        callback=callback)
