"""Scale-out on ``torch.distributed``: EM over sharded data, and DDP for neural models.

Data-parallel EM
----------------
EM's E-step produces *additive* expected sufficient statistics: the statistics of the
whole data set are the sum of those of its shards. So each process keeps one shard of
the rows (mixtures) or of the sequences (HMMs), runs the E-step on it, and one
``all_reduce`` per iteration sums the statistics, the log-likelihood and the sample
count; every process then runs the same M-step on the same totals and holds the same
parameters. Inside :func:`distributed_em` every estimator fitted by
:func:`probkit.em.engine.run_em` does this without any change to its code or
constructor:

* the E-step result (numbers, numpy arrays, tensors and
  :class:`~probkit.distributions.SufficientStats`, in any nesting of dicts, lists and
  tuples) is summed over the processes in one flat all-reduce (:func:`all_reduce_estep`);
* after each initialisation, the complete state of the estimator on rank 0 --
  including data-dependent settings such as the centre its statistics are accumulated
  about -- is broadcast to the other ranks (:func:`broadcast_estimator_state`), in
  probkit's pickle-free model format.

**Initialisation.** Rank 0 initialises from *its own shard* (k-means, random draws, ...)
and the other ranks adopt that start. To reproduce a single-process fit exactly, give
explicit initial parameters (``means_init``/``weights_init``/``precisions_init`` for
:class:`~probkit.GaussianMixture`; set ``startprob_``, ``transmat_`` and the emission
parameters with ``init_params=""`` for HMMs): distributed and single-process EM then
agree to floating-point tolerance (sums are taken in another order).

Launching
---------
``torchrun --nproc_per_node=4 fit_script.py`` starts 4 processes on one machine; each calls
:func:`init_distributed` (gloo on CPU, NCCL when CUDA is available), loads or slices its
shard (:func:`shard_rows`, :func:`shard_sequences`) and fits inside
:func:`distributed_em`. On a cluster, run the same script with
``torchrun --nnodes=N --nproc_per_node=G --node_rank=i --rdzv_backend=c10d
--rdzv_endpoint=HOST:PORT fit_script.py`` on every node (or through the scheduler's
launcher, e.g. ``srun torchrun ...``); nothing in the script changes: the traffic per
iteration is one all-reduce of the statistics (kilobytes), independent of the data size.

Neural estimators
-----------------
:func:`wrap_ddp` wraps a ``torch.nn.Module`` in ``DistributedDataParallel`` when a
process group with more than one process is active (and returns it unchanged
otherwise), so gradients are averaged over the ranks; :func:`shard_rows` or a
``DistributedSampler`` gives each rank its mini-batches.

Examples
--------
>>> import numpy as np
>>> X = np.arange(10.0).reshape(5, 2)
>>> shard_rows(X, rank=1, world_size=2)
array([[6., 7.],
       [8., 9.]])
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import replace

import numpy as np
import torch

from probkit.em.engine import EStepResult, em_hooks  # noqa: F401 - EStepResult for the examples

__all__ = [
    "all_reduce_estep",
    "broadcast_estimator_state",
    "distributed_em",
    "init_distributed",
    "is_distributed",
    "shard_rows",
    "shard_sequences",
    "wrap_ddp",
]


def _dist():
    import torch.distributed as dist

    if not dist.is_available():  # pragma: no cover - torch builds without distributed support
        raise RuntimeError("this torch build has no torch.distributed support")
    return dist


def is_distributed():
    """Whether a ``torch.distributed`` process group with more than one process is active.

    Examples
    --------
    >>> is_distributed()
    False
    """
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(backend=None):
    """Join the process group described by the environment (``torchrun`` sets it).

    Without ``torchrun``'s variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``) a group of one process is created, so the same script runs with
    plain ``python`` too. Does nothing if a group already exists.

    Parameters
    ----------
    backend : {"gloo", "nccl"}, optional
        Defaults to NCCL when CUDA is available and gloo otherwise.

    Returns
    -------
    rank : int
    world_size : int

    Examples
    --------
    >>> init_distributed(backend="gloo")
    (0, 1)
    >>> import torch.distributed
    >>> torch.distributed.destroy_process_group()
    """
    dist = _dist()
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        if backend == "nccl" and "LOCAL_RANK" in os.environ:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(backend=backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                                world_size=1)
    return dist.get_rank(), dist.get_world_size()


def _rank_world(rank, world_size):
    if rank is None or world_size is None:
        dist = _dist()
        if not dist.is_initialized():
            raise RuntimeError("give rank and world_size, or call init_distributed() first")
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    if not (0 <= rank < world_size):
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return rank, world_size


def shard_rows(X, rank=None, world_size=None):
    """The contiguous block of rows of ``X`` that process ``rank`` of ``world_size`` keeps.

    Blocks differ in size by at most one row. ``rank`` and ``world_size`` default to the
    active process group's.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, ...)
    rank, world_size : int, optional

    Returns
    -------
    The rows of this rank (same type as ``X``).

    Examples
    --------
    >>> [len(shard_rows(np.zeros((10, 1)), r, 3)) for r in range(3)]
    [4, 3, 3]
    """
    rank, world_size = _rank_world(rank, world_size)
    n = len(X)
    bounds = np.r_[0, np.cumsum([n // world_size + (r < n % world_size) for r in range(world_size)])]
    return X[bounds[rank]:bounds[rank + 1]]


def shard_sequences(X, lengths, rank=None, world_size=None):
    """Whole sequences for process ``rank``: contiguous runs of sequences with about equal rows.

    HMM statistics are additive over *sequences*, so sequences are never cut. Every rank
    must receive at least one sequence.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Sequences stacked along the first axis.
    lengths : array-like of int
        Lengths of the sequences (sum to ``n_samples``).
    rank, world_size : int, optional

    Returns
    -------
    X_local : array-like
    lengths_local : numpy.ndarray of int

    Examples
    --------
    >>> X = np.arange(10).reshape(-1, 1)
    >>> Xl, ll = shard_sequences(X, [3, 3, 2, 2], rank=1, world_size=2)
    >>> Xl.ravel().tolist(), ll.tolist()
    ([6, 7, 8, 9], [2, 2])
    """
    rank, world_size = _rank_world(rank, world_size)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or lengths.sum() != len(X):
        raise ValueError(f"lengths must be 1-D and sum to n_samples={len(X)}")
    if len(lengths) < world_size:
        raise ValueError(f"{len(lengths)} sequences cannot be shared by {world_size} processes: "
                         "each process needs at least one whole sequence")
    n = len(lengths)
    ends = np.cumsum(lengths)
    # splits[r] = index of the first sequence of rank r: the sequence boundary nearest to an
    # equal share of the rows, kept increasing so that every rank has at least one sequence.
    splits = [0]
    for r in range(1, world_size):
        target = ends[-1] * r / world_size
        cut = int(np.argmin(np.abs(ends[:-1] - target))) + 1
        splits.append(min(max(cut, splits[-1] + 1), n - (world_size - r)))
    splits.append(n)
    mine = np.arange(splits[rank], splits[rank + 1])
    start = int(ends[mine[0]] - lengths[mine[0]])
    stop = int(ends[mine[-1]])
    return X[start:stop], lengths[mine]


# ---------------------------------------------------------------------------- EM
def _collect(value, leaves):
    """Flatten the additive leaves of an E-step result; returns a rebuild function."""
    from probkit.distributions.base import SufficientStats

    if isinstance(value, torch.Tensor):
        leaves.append(value)
        i = len(leaves) - 1
        return lambda out: out[i].to(dtype=value.dtype, device=value.device).reshape(value.shape)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"cannot all-reduce an array of dtype {value.dtype}")
        leaves.append(torch.as_tensor(value))
        i = len(leaves) - 1
        return lambda out: out[i].cpu().numpy().astype(value.dtype, copy=False).reshape(value.shape)
    if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, str):
        return lambda out: value
    if isinstance(value, (int, float, np.integer, np.floating)):
        leaves.append(torch.tensor(float(value), dtype=torch.float64))
        i = len(leaves) - 1
        kind = type(value)
        return lambda out: kind(out[i].item()) if kind in (int, float) else kind(out[i].item())
    if isinstance(value, SufficientStats):
        rebuild = {k: _collect(v, leaves) for k, v in value.fields.items()}
        return lambda out: SufficientStats(value.family, {k: f(out) for k, f in rebuild.items()}, value.meta)
    if isinstance(value, dict):
        rebuild = {k: _collect(v, leaves) for k, v in value.items()}
        return lambda out: type(value)((k, f(out)) for k, f in rebuild.items())
    if isinstance(value, (list, tuple)):
        rebuild = [_collect(v, leaves) for v in value]
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
            return lambda out: type(value)(*(f(out) for f in rebuild))
        return lambda out: type(value)(f(out) for f in rebuild)
    raise TypeError(
        f"cannot all-reduce a {type(value).__name__} in E-step statistics: statistics must be numbers, arrays, "
        "tensors or SufficientStats nested in dicts, lists and tuples"
    )


def all_reduce_estep(estep, group=None):
    """Sum an E-step result over the processes of ``group`` (one flat all-reduce).

    Every number, array and tensor in ``estep.stats`` is summed, as are
    ``log_likelihood`` and ``n_samples``; dtypes, devices and shapes are kept (the sum
    runs in float64).

    Parameters
    ----------
    estep : probkit.em.engine.EStepResult
    group : torch.distributed.ProcessGroup, optional

    Returns
    -------
    EStepResult

    Examples
    --------
    >>> init_distributed(backend="gloo")
    (0, 1)
    >>> import torch
    >>> r = all_reduce_estep(EStepResult(-3.0, 2.0, {"count": torch.tensor([1.0, 1.0])}))
    >>> r.log_likelihood, r.stats["count"].tolist()
    (-3.0, [1.0, 1.0])
    >>> torch.distributed.destroy_process_group()
    """
    dist = _dist()
    leaves = []
    rebuild = _collect((float(estep.log_likelihood), float(estep.n_samples), estep.stats), leaves)
    backend = dist.get_backend(group)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    flat = torch.cat([t.detach().to(device=device, dtype=torch.float64).reshape(-1) for t in leaves])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    parts, offset = [], 0
    for t in leaves:
        parts.append(flat[offset:offset + t.numel()])
        offset += t.numel()
    ll, n, stats = rebuild(parts)
    return replace(estep, log_likelihood=ll, n_samples=n, stats=stats)


def broadcast_estimator_state(model, src=0, group=None):
    """Give every process the complete state of ``model`` on rank ``src``.

    The state (every attribute that is not a constructor parameter, in probkit's
    pickle-free model format) travels as one byte tensor.

    Parameters
    ----------
    model : ProbkitEstimator
    src : int, default=0
    group : torch.distributed.ProcessGroup, optional

    Returns
    -------
    model

    Examples
    --------
    >>> from probkit import GaussianHMM
    >>> init_distributed(backend="gloo")
    (0, 1)
    >>> broadcast_estimator_state(GaussianHMM(2)).n_components
    2
    >>> torch.distributed.destroy_process_group()
    """
    from probkit.io import dumps, loads

    dist = _dist()
    backend = dist.get_backend(group)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    if dist.get_world_size(group) == 1:
        return model
    is_src = dist.get_rank() == src
    payload = dumps(model) if is_src else b""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=src, group=group)
    buf = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    if is_src:
        buf.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buf, src=src, group=group)
    if not is_src:
        source = loads(buf.cpu().numpy().tobytes(), source=f"the state broadcast by rank {src}")
        state = source._io_get_state()
        for name in list(model._io_get_state()):
            if name not in state:
                delattr(model, name)
        model._io_set_state(state)
    return model


@contextlib.contextmanager
def distributed_em(group=None, src=0):
    """Fit EM estimators over data sharded across the processes of ``group``.

    Inside the block, every :func:`probkit.em.engine.run_em` (the ``fit`` of mixtures
    and HMMs) all-reduces its E-step results and starts from rank ``src``'s
    initialisation. Each process passes its own shard to ``fit``.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup, optional
        Defaults to the whole world.
    src : int, default=0
        Rank whose initial parameters every process adopts.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import GaussianMixture
    >>> rank, world = init_distributed(backend="gloo")
    >>> X = np.random.RandomState(0).normal(size=(200, 2))
    >>> with distributed_em():
    ...     gm = GaussianMixture(2, random_state=0).fit(shard_rows(X))
    >>> gm.means_.shape
    (2, 2)
    >>> torch.distributed.destroy_process_group()
    """
    dist = _dist()
    if not dist.is_initialized():
        raise RuntimeError("distributed_em needs a torch.distributed process group: call "
                           "probkit.distributed.init_distributed() first (under torchrun or alone)")

    def after_init(model):
        broadcast_estimator_state(model, src=src, group=group)

    with em_hooks(all_reduce=lambda estep: all_reduce_estep(estep, group=group), after_init=after_init):
        yield


# ---------------------------------------------------------------------------- neural models
def wrap_ddp(module, **ddp_kwargs):
    """Wrap ``module`` in ``DistributedDataParallel`` when several processes are active.

    Gradients are then averaged over the processes after each backward pass, so every
    rank takes the same optimiser step from its own mini-batch. With no process group
    (or a group of one) the module is returned unchanged. On CUDA the module should
    already be on this rank's device (``device_ids`` defaults to it).

    Parameters
    ----------
    module : torch.nn.Module
    **ddp_kwargs
        Passed to ``torch.nn.parallel.DistributedDataParallel``.

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> net = torch.nn.Linear(3, 1)
    >>> wrap_ddp(net) is net
    True
    """
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    params = list(module.parameters())
    if params and params[0].is_cuda and "device_ids" not in ddp_kwargs:
        ddp_kwargs["device_ids"] = [params[0].device.index]
    return DistributedDataParallel(module, **ddp_kwargs)

