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

**Failures.** The processes fail together rather than wait for each other. Each fit
first checks that every rank has the same estimator class, constructor parameters and
number of features (``ValueError`` naming what differs). Before every collective
operation, and when leaving the block, the ranks agree on whether one of them raised: a
rank whose code failed inside :func:`distributed_em` reports its exception there, and the
others raise :class:`RankFailedError` naming it. A process that stops taking part without
reporting (it failed before the block and stayed alive, or hangs) makes the others fail
after the ``timeout`` of :func:`init_distributed` (:data:`DEFAULT_TIMEOUT`, 5 minutes),
which then destroy their process group.

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
import datetime
import hashlib
import json
import math
import os
import re
import socket
from dataclasses import replace

import numpy as np
import torch

from probkit.em.engine import EStepResult, em_hooks  # noqa: F401 - EStepResult for the examples

__all__ = [
    "DEFAULT_TIMEOUT",
    "RankFailedError",
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


#: How long a collective waits for the other processes before it fails (the default of
#: :func:`init_distributed`'s ``timeout``). torch's own default for gloo is 30 minutes.
DEFAULT_TIMEOUT = datetime.timedelta(minutes=5)

def _check_timeout(timeout):
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, (int, float, np.integer, np.floating)) and not isinstance(timeout, (bool, np.bool_)):
        seconds = float(timeout)
    else:
        raise TypeError(f"timeout must be a number of seconds or a datetime.timedelta, got {type(timeout).__name__}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")
    return datetime.timedelta(seconds=seconds)


def _describe_timeout(timeout):
    seconds = timeout.total_seconds()
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


def _group_timeout(group, device):
    """The timeout ``group``'s collectives run with, or None where torch does not tell."""
    dist = _dist()
    try:
        pg = dist.group.WORLD if group is None else group
        return pg._get_backend(device).options._timeout
    except (AttributeError, RuntimeError):  # private torch API: only the error message uses it
        return None


def init_distributed(backend=None, timeout=DEFAULT_TIMEOUT):
    """Join the process group described by the environment (``torchrun`` sets it).

    Without ``torchrun``'s variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``) a group of one process is created, so the same script runs with
    plain ``python`` too. Does nothing if a group already exists (its timeout is then
    the one it was created with).

    Parameters
    ----------
    backend : {"gloo", "nccl"}, optional
        Defaults to NCCL when CUDA is available and gloo otherwise.
    timeout : float or datetime.timedelta, default=DEFAULT_TIMEOUT (5 minutes)
        Seconds that joining the group and every collective operation wait for the
        other processes before failing. A process that stops taking part without
        exiting (it raised outside :func:`distributed_em` and was kept alive, or it
        hangs) makes the others fail after this long instead of gloo's 30 minutes. It
        must exceed the longest time one rank can spend between two collectives that
        the others do not: reading its shard before the first fit, or one E-step on
        the largest shard.

    Returns
    -------
    rank : int
    world_size : int

    Examples
    --------
    >>> init_distributed(backend="gloo", timeout=60)
    (0, 1)
    >>> import torch.distributed
    >>> torch.distributed.destroy_process_group()
    """
    timeout = _check_timeout(timeout)
    dist = _dist()
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        if backend == "nccl" and "LOCAL_RANK" in os.environ:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend=backend, timeout=timeout)
    else:
        dist.init_process_group(backend=backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                                world_size=1, timeout=timeout)
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


def _collective_device(group):
    dist = _dist()
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _call_on(group):
    """``run(collective, *args, **kwargs)``: call ``collective`` on ``group``."""
    return lambda collective, *args, **kwargs: collective(*args, group=group, **kwargs)


def _flatten_estep(estep, device):
    """The additive numbers of ``estep`` as one float64 vector, and the function that rebuilds it."""
    leaves = []
    rebuild = _collect((float(estep.log_likelihood), float(estep.n_samples), estep.stats), leaves)
    flat = torch.cat([t.detach().to(device=device, dtype=torch.float64).reshape(-1) for t in leaves])

    def finish(summed):
        parts, offset = [], 0
        for t in leaves:
            parts.append(summed[offset:offset + t.numel()])
            offset += t.numel()
        ll, n, stats = rebuild(parts)
        return replace(estep, log_likelihood=ll, n_samples=n, stats=stats)

    return flat, finish


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
    flat, finish = _flatten_estep(estep, _collective_device(group))
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    return finish(flat)


def _broadcast_bytes(payload, src, device, run):
    """``payload`` (bytes, on rank ``src``; ignored elsewhere) on every rank: a size, then the bytes."""
    dist = _dist()
    is_src = dist.get_rank() == src
    size = torch.tensor([len(payload) if is_src else 0], dtype=torch.int64, device=device)
    run(dist.broadcast, size, src=src)
    buf = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    if is_src:
        buf.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    run(dist.broadcast, buf, src=src)
    return payload if is_src else buf.cpu().numpy().tobytes()


def _apply_state(model, payload, src):
    """Replace every non-parameter attribute of ``model`` by those of the model in ``payload``."""
    from probkit.io import loads

    source = loads(payload, source=f"the state broadcast by rank {src}")
    state = source._io_get_state()
    for name in list(model._io_get_state()):
        if name not in state:
            delattr(model, name)
    model._io_set_state(state)


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
    from probkit.io import dumps

    dist = _dist()
    if dist.get_world_size(group) == 1:
        return model
    is_src = dist.get_rank() == src
    payload = _broadcast_bytes(dumps(model) if is_src else None, src, _collective_device(group), _call_on(group))
    if not is_src:
        _apply_state(model, payload, src)
    return model


# ---------------------------------------------------------------------------- failure agreement
class RankFailedError(RuntimeError):
    """Distributed EM stopped on this process because another process failed or stopped answering.

    Inside :func:`distributed_em`, an exception raised on one rank is reported to the
    others at their next collective operation: the failing rank raises its own
    exception and every other rank raises this error, which names the failing rank and
    its exception. It is also raised when a collective operation itself fails (another
    process exited, or did not answer within the group's timeout, see
    :func:`init_distributed`); the process group is then destroyed.

    Examples
    --------
    >>> issubclass(RankFailedError, RuntimeError)
    True
    """


# Constructor parameters that may differ between ranks: only rank src's initialisation is
# used, whatever the others' random_state, and device and printing are each process's own.
_RANK_LOCAL_PARAMS = ("device", "random_state", "verbose", "verbose_interval")
_MAX_REPORT_CHARS = 4000
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _value_digest(value):
    """A digest of a parameter value equal on every process exactly when the values are equal."""
    from probkit.io import _Writer

    writer = _Writer()
    try:
        text = json.dumps(writer.encode(value), sort_keys=True)
    except (TypeError, ValueError):  # not storable in a model file: compare the type and repr
        text = type(value).__module__ + "." + type(value).__qualname__ + _ADDRESS.sub("", repr(value))
    else:
        # Arrays are numbered in the order they are met: name them by their content instead.
        for name, data in writer.members.items():
            text = text.replace(json.dumps(name), json.dumps(hashlib.sha256(data).hexdigest()))
    return hashlib.sha256(text.encode()).hexdigest()


def _short_repr(value):
    text = " ".join(_ADDRESS.sub("", repr(value)).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _model_fingerprint(model):
    """What must agree across ranks: the estimator class, its parameters and the number of features."""
    params = model.get_params(deep=False) if hasattr(model, "get_params") else {}
    n_features = getattr(model, "n_features_in_", None)
    return {
        "estimator": type(model).__qualname__,
        "n_features_in_": None if n_features is None else int(n_features),
        "params": {k: [_value_digest(v), _short_repr(v)] for k, v in sorted(params.items())
                   if k not in _RANK_LOCAL_PARAMS},
    }


def _by_rank(values, ranks):
    """'4 on rank 0; 3 on ranks 1, 2' for per-rank values (shown as given)."""
    groups = {}
    for value, rank in zip(values, ranks):
        groups.setdefault(value, []).append(rank)
    return "; ".join(f"{value} on rank{'s' if len(rs) > 1 else ''} {', '.join(map(str, rs))}"
                     for value, rs in groups.items())


def _model_differences(fingerprints, ranks):
    """Sentences naming what differs between the ranks' fingerprints."""
    classes = [f["estimator"] for f in fingerprints]
    if len(set(classes)) > 1:
        return [f"the estimator class differs: {_by_rank(classes, ranks)}"]
    found = []
    features = [f["n_features_in_"] for f in fingerprints]
    if len(set(features)) > 1:
        found.append(f"the number of features (columns of each rank's X) differs: {_by_rank(features, ranks)}")
    names = sorted(set().union(*(f["params"] for f in fingerprints)))
    for name in names:
        entries = [f["params"].get(name, ["", "<missing>"]) for f in fingerprints]
        if len({digest for digest, _ in entries}) > 1:
            shown = [text for _, text in entries]
            if len(set(shown)) == 1:  # printed alike, different in fact (e.g. long arrays cut short)
                shown = [f"value {i + 1} ({text})" for i, text in enumerate(shown)]
            found.append(f"parameter {name} differs: {_by_rank(shown, ranks)}")
    return found


def _describe_exception(exc):
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_REPORT_CHARS else text[:_MAX_REPORT_CHARS - 3] + "..."


class _FailureAgreement:
    """Error agreement for one :func:`distributed_em` block.

    Before each collective operation of the block every rank reports whether it failed
    since the previous one (one all-reduce of a flag). A rank whose code raised inside the
    block reports its exception at that point instead of leaving silently, so the ranks
    waiting for it raise :class:`RankFailedError` at once. A collective that fails itself
    (timeout, a process gone) leaves the group unusable: it is destroyed, so that this
    process cannot wait on it again and the processes still waiting on it fail at once.
    """

    def __init__(self, group):
        dist = _dist()
        self.dist = dist
        self.group = group
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size(group)
        self.device = _collective_device(group)
        self.settled = None  # the exception raised on every rank for the last agreed failure
        self.broken = False  # a collective failed: the group cannot be trusted any more

    def run(self, collective, *args, **kwargs):
        """Call ``collective`` on the group; its failure becomes a RankFailedError."""
        try:
            collective(*args, group=self.group, **kwargs)
        except RuntimeError as exc:
            self.broken = True
            timeout = _group_timeout(self.group, self.device)
            waited = ("the process group's timeout" if timeout is None else
                      f"{_describe_timeout(timeout)} (the process group's timeout, see init_distributed)")
            self._tear_down()
            raise RankFailedError(
                f"rank {self.rank}: a collective operation of distributed EM failed ({exc}). Another process has "
                f"exited, or stopped taking part (it failed outside distributed_em()) and did not answer within "
                f"{waited}; see its log. This rank's process group has been destroyed."
            ) from exc

    def _tear_down(self):
        """Destroy the group, so that no later collective of this process waits on it.

        gloo then fails the collectives that other processes wait in with this one at once.
        """
        try:
            self.dist.destroy_process_group(self.group)
        except Exception:  # noqa: BLE001 - the group is unusable already; the collective's error is the one to show
            pass

    def _global_rank(self, i):
        return i if self.group is None else self.dist.get_global_rank(self.group, i)

    def gather_bytes(self, data):
        """Every rank's ``data`` (bytes), in rank order."""
        lengths = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(self.world_size)]
        self.run(self.dist.all_gather, lengths, torch.tensor([len(data)], dtype=torch.int64, device=self.device))
        sizes = [int(t.item()) for t in lengths]
        buf = torch.zeros(max(max(sizes), 1), dtype=torch.uint8, device=self.device)
        if data:
            buf[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
        gathered = [torch.empty_like(buf) for _ in range(self.world_size)]
        self.run(self.dist.all_gather, gathered, buf)
        return [g[:n].cpu().numpy().tobytes() for g, n in zip(gathered, sizes)]

    def agree(self, failure=None):
        """Every rank reports ``failure`` (its exception) or ``None``; raise if another rank failed."""
        if self.world_size == 1:
            return
        flag = torch.tensor([0 if failure is None else 1], dtype=torch.int64, device=self.device)
        self.run(self.dist.all_reduce, flag, op=self.dist.ReduceOp.MAX)
        if int(flag.item()) == 0:
            return
        reports = self.gather_bytes(b"" if failure is None else _describe_exception(failure).encode())
        failed = [(self._global_rank(i), text.decode(errors="replace")) for i, text in enumerate(reports) if text]
        others = "; ".join(f"rank {r} raised {text}" for r, text in failed if r != self.rank)
        if failure is None:
            self.settled = RankFailedError(f"rank {self.rank}: distributed EM stopped because {others}")
            raise self.settled
        self.settled = failure
        if others:
            failure.add_note(f"distributed EM: at the same point {others}")

    def check_same_model(self, fingerprint):
        """Raise ValueError on every rank if the ranks' estimators or numbers of features differ."""
        if self.world_size == 1:
            return
        # The printed values are left out: equal values may print differently (dicts in another order).
        compared = {**fingerprint, "params": {k: digest for k, (digest, _) in fingerprint["params"].items()}}
        digest = hashlib.sha256(json.dumps(compared, sort_keys=True).encode()).digest()
        mine = torch.frombuffer(bytearray(digest), dtype=torch.uint8).to(self.device)
        digests = [torch.empty_like(mine) for _ in range(self.world_size)]
        self.run(self.dist.all_gather, digests, mine)
        if all(torch.equal(d, digests[0]) for d in digests[1:]):
            return
        fingerprints = [json.loads(b) for b in self.gather_bytes(json.dumps(fingerprint).encode())]
        differences = _model_differences(fingerprints, [self._global_rank(i) for i in range(self.world_size)])
        self.settled = ValueError(
            "distributed EM needs the same estimator on every rank and data with the same columns, but "
            + "; and ".join(differences) + f". Only {', '.join(_RANK_LOCAL_PARAMS[:-1])} and {_RANK_LOCAL_PARAMS[-1]} "
            "may differ between ranks."
        )
        raise self.settled

    def _already_agreed(self, exc):
        """Whether ``exc`` is (or was raised while handling) the failure every rank has raised."""
        seen = set()
        while exc is not None and id(exc) not in seen:
            if exc is self.settled:
                return True
            seen.add(id(exc))
            exc = exc.__cause__ or exc.__context__
        return False

    def fail(self, exc):
        """``exc`` leaves the block on this rank: tell the other ranks at their next collective."""
        if (not self.broken and not self._already_agreed(exc) and isinstance(exc, Exception)
                and self.world_size > 1):
            try:
                self.agree(failure=exc)
            except RankFailedError as lost:  # the group is torn down: the others fail at once or at their timeout
                exc.add_note(f"distributed EM: the other ranks could not be told: {lost}")


@contextlib.contextmanager
def distributed_em(group=None, src=0):
    """Fit EM estimators over data sharded across the processes of ``group``.

    Inside the block, every :func:`probkit.em.engine.run_em` (the ``fit`` of mixtures
    and HMMs) all-reduces its E-step results and starts from rank ``src``'s
    initialisation. Each process passes its own shard to ``fit``.

    The processes fail together. Before the first collective operation of each fit,
    they check that they fit the same estimator class with the same constructor
    parameters (except ``device``, ``random_state``, ``verbose`` and
    ``verbose_interval``) on data with the same number of features, and raise a
    ``ValueError`` naming what differs otherwise. An exception raised on one rank
    inside the block (a shard that fails validation, an error in its E-step, ...) is
    reported to the others at their next collective operation -- they raise
    :class:`RankFailedError` naming that rank and its exception -- and the ranks also
    agree when they leave the block. A process that fails *outside* the block while
    the others wait inside makes them fail after the timeout given to
    :func:`init_distributed`.

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
    agreement = _FailureAgreement(group)
    is_src = dist.get_rank() == src

    # Each hook does its local work (which may raise) first, then agrees, then communicates.
    def after_init(model):
        from probkit.io import dumps

        if agreement.world_size == 1:
            return
        fingerprint = _model_fingerprint(model)
        payload = dumps(model) if is_src else None
        agreement.agree()
        agreement.check_same_model(fingerprint)
        payload = _broadcast_bytes(payload, src, agreement.device, agreement.run)
        if not is_src:
            _apply_state(model, payload, src)

    def all_reduce(estep):
        flat, finish = _flatten_estep(estep, agreement.device)
        agreement.agree()
        agreement.run(dist.all_reduce, flat, op=dist.ReduceOp.SUM)
        return finish(flat)

    try:
        with em_hooks(all_reduce=all_reduce, after_init=after_init):
            yield
        agreement.agree()  # leave together: a rank that failed after its last collective is heard here
    except BaseException as exc:
        agreement.fail(exc)
        raise


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

