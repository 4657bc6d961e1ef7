"""Save and load fitted estimators in a versioned, pickle-free file format.

A probkit model file is a zip archive holding

``meta.json``
    The format name and version, the probkit version that wrote it, the estimator class
    (looked up in an allow-list of probkit classes when loading), its constructor
    parameters and its fitted attributes as a JSON tree, and a manifest with the size
    and SHA-256 of every other member.
``arrays/<n>.npy``
    Every numpy array and torch tensor of the tree, read back with
    ``numpy.load(..., allow_pickle=False)``.
``torch/<name>.pt``
    State dicts of torch modules (neural estimators), read back with
    ``torch.load(..., weights_only=True)``.

Loading never unpickles anything and never imports or calls a class outside the
allow-lists (probkit estimators, probkit distributions and the value types in
:data:`TYPE_REGISTRY`), so a model file from an untrusted source cannot run code. A
file written by a newer format version, a truncated or corrupted file and a file that
is not a probkit model are refused with a :class:`ModelFileError`.

Hostile files
-------------
A file from an untrusted source can also try to exhaust memory or smuggle in values
that make the model compute garbage. The loader therefore

* checks every zip entry before inflating anything: no duplicate names, no encryption,
  only stored or deflated members, ``meta.json`` at most :data:`MAX_META_BYTES`, each
  member's size equal to the one the manifest records, every member listed in the
  manifest and referenced by the model, and all members together at most
  :data:`MAX_INFLATION_RATIO` times the size of the file; members are then read in
  bounded chunks, so a zip header that lies about a size cannot inflate more than it
  declared;
* parses ``meta.json`` strictly: UTF-8, no ``NaN``/``Infinity`` literals or numbers
  that overflow, no duplicate keys, at most :data:`MAX_META_CONTAINERS` objects and
  arrays, bounded nesting;
* reads arrays only after checking that the ``.npy`` header's shape and dtype fit the
  member's size, and torch state dicts only from an uncompressed torch archive;
* builds a torch module on the ``meta`` device first (nothing is allocated) and
  compares its parameter shapes with the state dict, so edited constructor parameters
  (a larger ``d_model``) cannot make it allocate a large network; weights must be
  finite;
* validates the restored estimator with its own checks of hand-set parameters
  (``_io_check_state``: finite values, stochastic rows of probability tables,
  positive definite covariances, shapes consistent with ``n_components`` and the
  feature count).

Every failure is a :class:`ModelFileError` that names the file (and the attribute,
where one is at fault).

Extending the format
--------------------
*Estimators* need nothing: every instance attribute that is not a constructor
parameter is saved (fitted attributes such as ``means_``, and private state such as a
statistics shift), and the estimator is rebuilt as ``cls(**params)`` with those
attributes set back. Class attributes ``_io_exclude`` (names not to save) and the
methods ``_io_get_state`` / ``_io_set_state`` of :class:`probkit.base.ProbkitEstimator`
can be overridden where that is not enough.

*Torch modules* (``torch.nn.Module`` attributes of neural estimators) are stored as
state dicts; when loading, the estimator's ``_io_build_module(name, device=None)`` must
return a freshly constructed module of the right architecture (from the constructor
parameters and the attributes already restored), into which the state dict is loaded.
The loader first calls it with ``device="meta"``, where it must build the module on
the meta device without allocating (a hook without a ``device`` argument skips that
pre-check: its module is built for real before the shapes are compared).

*Validation*: after restoring, the loader calls the estimator's ``_io_check_state()``,
which raises ``ValueError`` for parameters that are invalid, as hand-set parameters
would be refused (and checks nothing while the attribute that every use of the model
needs, such as ``weights_`` or ``module_``, is absent: the state of an unfinished fit).

*New value types* (a fitted attribute of a class the encoder does not know) are added
with :func:`register_type`.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> import probkit
>>> X = np.random.RandomState(0).normal(size=(100, 2))
>>> gm = probkit.GaussianMixture(2, random_state=0).fit(X)
>>> path = os.path.join(tempfile.mkdtemp(), "gm.pk")
>>> _ = gm.save(path)
>>> again = probkit.load(path)
>>> bool(np.array_equal(again.predict(X), gm.predict(X)))
True
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import math
import os
import re
import stat
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_INFLATION_RATIO",
    "MAX_META_BYTES",
    "MAX_META_CONTAINERS",
    "ModelFileError",
    "TYPE_REGISTRY",
    "dumps",
    "load",
    "loads",
    "register_estimator",
    "register_type",
    "save",
]

FORMAT_NAME = "probkit-model"
#: Version of the file layout written by this probkit; files with a larger version are refused.
FORMAT_VERSION = 1

#: Largest ``meta.json`` (inflated bytes) that :func:`load` reads and :func:`dumps` writes.
#: Everything large (arrays, tensors, state dicts) lives in its own binary member, so the
#: metadata of real models stays far below this.
MAX_META_BYTES = 8 * 2**20
#: Most JSON objects and arrays that ``meta.json`` may hold (bounds the memory its parsing takes).
MAX_META_CONTAINERS = 250_000
#: The members of a model file may inflate to at most this many times the file's size
#: (probkit writes them uncompressed; the limit only matters for recompressed files).
MAX_INFLATION_RATIO = 100

_TAG = "__probkit__"
_ARRAY_MEMBER = re.compile(r"arrays/[0-9]{1,9}\.npy")
_TORCH_MEMBER = re.compile(r"torch/[A-Za-z0-9_]{1,200}\.pt")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_DEPTH = 200
# JSON nesting of a value nested _MAX_DEPTH deep (a tagged node and its item list per level).
_MAX_JSON_DEPTH = 3 * _MAX_DEPTH + 8
_READ_CHUNK = 1 << 20
# Largest .npy header numpy writes or reads (numpy's max_header_size) plus the preamble.
_NPY_HEADER_LIMIT = 10_000 + 12
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
# Subpackages searched for estimator and distribution classes named in a file that are
# not imported yet (imported only if they exist in this installation).
_CLASS_PACKAGES = ("probkit", "probkit.distributions", "probkit.mixture", "probkit.hmm", "probkit.vi",
                   "probkit.neural", "probkit.glm", "probkit.naive_bayes", "probkit.topics")


class ModelFileError(ValueError):
    """A model file cannot be loaded: unreadable, truncated, corrupted, of a newer format or of another kind.

    Examples
    --------
    >>> try:
    ...     loads(b"not a model")
    ... except ModelFileError as exc:
    ...     print(exc)
    <bytes> is not a probkit model file (not a zip archive; truncated or corrupted?)

    Attributes
    ----------
    path : str or None
        The file (or the ``source`` given to :func:`loads`) that was refused.
    attribute : str or None
        The estimator attribute found invalid, when the file is refused for one.
    """

    def __init__(self, message, *, path=None, attribute=None):
        super().__init__(message)
        self.path = path
        self.attribute = attribute


@dataclass(frozen=True)
class TypeCodec:
    """How one value type is written and read (see :func:`register_type`).

    Attributes
    ----------
    name : str
        Tag stored in the file.
    cls : type
        Instances of this class (and subclasses) are encoded by ``encode``.
    encode : callable
        ``encode(value, writer) -> dict`` of JSON-able data; ``writer.encode(x)`` encodes
        nested values (arrays, tensors, other registered types).
    decode : callable
        ``decode(data, reader) -> value``; ``reader.decode(x)`` decodes nested values.

    Examples
    --------
    >>> codec = TypeCodec("example.complex", complex, lambda c, w: {"re": c.real, "im": c.imag},
    ...                   lambda d, r: complex(d["re"], d["im"]))
    >>> codec.decode(codec.encode(1 + 2j, None), None)
    (1+2j)
    """

    name: str
    cls: type
    encode: Callable
    decode: Callable


#: Registered value types, by tag name.
TYPE_REGISTRY: dict[str, TypeCodec] = {}


def register_type(name, cls, encode, decode):
    """Teach the model format a new value type (for fitted attributes of new estimators).

    Parameters
    ----------
    name : str
        Tag stored in files; must stay stable across versions.
    cls : type
        Values that are instances of ``cls`` are written with ``encode``.
    encode : callable
        ``encode(value, writer) -> dict``: JSON-able data; use ``writer.encode(x)`` for
        nested arrays, tensors and other registered values.
    decode : callable
        ``decode(data, reader) -> value``: the inverse; use ``reader.decode(x)`` for the
        nested values.

    Returns
    -------
    TypeCodec

    Examples
    --------
    >>> from fractions import Fraction
    >>> _ = register_type("example.fraction", Fraction,
    ...                   lambda f, w: {"n": f.numerator, "d": f.denominator},
    ...                   lambda d, r: Fraction(d["n"], d["d"]))
    >>> w = _Writer()
    >>> _Reader({}, "<doc>").decode(w.encode(Fraction(1, 3)))
    Fraction(1, 3)
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    codec = TypeCodec(name, cls, encode, decode)
    TYPE_REGISTRY[name] = codec
    return codec


# ---------------------------------------------------------------------------- allow-lists
def _subclasses(root):
    seen, stack = [], [root]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                stack.append(sub)
    return seen


def _import_class_packages():
    for name in _CLASS_PACKAGES:
        try:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
        except ImportError:  # an optional subpackage whose dependencies are missing
            continue


#: Estimator classes defined outside probkit that may be loaded (see :func:`register_estimator`).
_EXTRA_ESTIMATORS: dict[str, type] = {}


def register_estimator(cls):
    """Allow loading files of an estimator class defined outside probkit.

    Classes defined inside probkit are always allowed; a subclass of
    :class:`~probkit.base.ProbkitEstimator` in user code must be registered (by the
    program that loads the file, before loading) -- a file alone can never make
    probkit import or instantiate a class. Usable as a class decorator.

    Parameters
    ----------
    cls : type
        A subclass of :class:`probkit.base.ProbkitEstimator`.

    Returns
    -------
    cls

    Examples
    --------
    >>> from probkit import GaussianMixture
    >>> @register_estimator
    ... class MyMixture(GaussianMixture):
    ...     pass
    >>> type(loads(dumps(MyMixture(2)))).__name__
    'MyMixture'
    """
    if not (isinstance(cls, type) and issubclass(cls, _estimator_root())):
        raise TypeError("register_estimator needs a subclass of probkit.base.ProbkitEstimator")
    _EXTRA_ESTIMATORS[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def _is_probkit_module(module):
    return module == "probkit" or module.startswith("probkit.")


def _probkit_classes(root, name):
    """Classes named ``name`` that subclass ``root`` and are defined inside probkit (or registered)."""
    found = [c for c in [root, *_subclasses(root)] if c.__name__ == name and _is_probkit_module(c.__module__)]
    found += [c for c in _EXTRA_ESTIMATORS.values()
              if c.__name__ == name and issubclass(c, root) and c not in found]
    return found


def _lookup_class(root, name, module, what):
    found = _probkit_classes(root, name)
    if not found:
        _import_class_packages()
        found = _probkit_classes(root, name)
    if not found:
        raise ModelFileError(f"the file names {what} {name[:100]!r}, which is not a probkit {what} known to this "
                             "installation (written by a newer probkit or another package?)")
    for cls in found:
        if cls.__module__ == module:
            return cls
    return found[0]


def _estimator_root():
    from probkit.base import ProbkitEstimator

    return ProbkitEstimator


def _distribution_roots():
    from probkit.distributions.base import ExponentialFamily
    from probkit.distributions.priors import _ParameterisedPrior

    return (ExponentialFamily, _ParameterisedPrior)


def _is_distribution_class(cls):
    return isinstance(cls, type) and issubclass(cls, _distribution_roots())


def _lookup_distribution(name, module):
    for root in _distribution_roots():
        if _probkit_classes(root, name):
            return _lookup_class(root, name, module, "distribution")
    _import_class_packages()
    for root in _distribution_roots():
        if _probkit_classes(root, name):
            return _lookup_class(root, name, module, "distribution")
    raise ModelFileError(f"the file names distribution {name[:100]!r}, which is not a probkit distribution known to "
                         "this installation")


# ---------------------------------------------------------------------------- writer
def _tagged(kind, **data):
    return {_TAG: kind, **data}


class _Writer:
    """Encodes values into a JSON tree plus binary members."""

    def __init__(self):
        _register_once()
        self.members = {}
        self._n_arrays = 0

    def add_array(self, arr):
        arr = np.asarray(arr)
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # (np.ascontiguousarray would turn 0-d arrays into 1-d)
        if arr.dtype.hasobject:
            raise TypeError("arrays of Python objects cannot be saved (they would need pickle)")
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        name = f"arrays/{self._n_arrays}.npy"
        self._n_arrays += 1
        self.members[name] = buf.getvalue()
        return name

    def add_state_dict(self, attr, state_dict):
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
        name = f"torch/{attr}.pt"
        self.members[name] = buf.getvalue()
        return name

    def encode(self, value, _depth=0):
        if _depth > _MAX_DEPTH:
            raise ValueError("value nests too deeply to be saved")
        d = _depth + 1
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else _tagged("float", value=repr(value))
        if isinstance(value, np.generic):
            return _tagged("scalar", array=self.add_array(np.asarray(value)))
        if isinstance(value, np.ndarray):
            return _tagged("ndarray", array=self.add_array(value))
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            dtype = str(t.dtype).removeprefix("torch.")
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            return _tagged("tensor", array=self.add_array(t.numpy()), dtype=dtype,
                           requires_grad=bool(value.requires_grad))
        if isinstance(value, list):
            return [self.encode(v, d) for v in value]
        if isinstance(value, tuple):
            return _tagged("tuple", items=[self.encode(v, d) for v in value])
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return _tagged("dict", items={k: self.encode(v, d) for k, v in value.items()})
            return _tagged("pairs", items=[[self.encode(k, d), self.encode(v, d)] for k, v in value.items()])
        if isinstance(value, torch.dtype):
            return _tagged("torch.dtype", name=str(value).removeprefix("torch."))
        if isinstance(value, torch.device):
            return _tagged("torch.device", name=str(value))
        if isinstance(value, np.dtype):
            if value.hasobject:
                raise TypeError("object dtypes cannot be saved")
            return _tagged("numpy.dtype", name=value.str)
        if isinstance(value, np.random.RandomState):
            name, keys, pos, has_gauss, cached = value.get_state()
            return _tagged("RandomState", keys=self.add_array(keys), pos=int(pos), has_gauss=int(has_gauss),
                           cached_gaussian=float(cached))
        if isinstance(value, type):
            if _is_distribution_class(value):
                return _tagged("distribution_class", name=value.__name__, module=value.__module__)
            if issubclass(value, _estimator_root()):
                return _tagged("estimator_class", name=value.__name__, module=value.__module__)
            raise TypeError(f"class {value.__qualname__} cannot be saved: only probkit estimator and "
                            "distribution classes are allowed")
        if isinstance(value, _estimator_root()):
            return _encode_estimator(value, self, d)
        for codec in TYPE_REGISTRY.values():
            if isinstance(value, codec.cls):
                return _tagged("registered", type=codec.name, data=codec.encode(value, self))
        if isinstance(value, torch.nn.Module):
            raise TypeError(
                f"a torch module ({type(value).__name__}) can only be saved as a top-level attribute of an "
                "estimator that implements _io_build_module(name)"
            )
        raise TypeError(
            f"cannot save a value of type {type(value).__module__}.{type(value).__qualname__}; "
            "register it with probkit.io.register_type"
        )


# ---------------------------------------------------------------------------- reader
class _Reader:
    """Decodes a JSON tree, reading binary members on demand (never with pickle)."""

    def __init__(self, members, source):
        self.members = members
        self.source = source

    def _corrupt(self, what):
        return ModelFileError(f"{self.source} is corrupted: {what}")

    def member_size(self, ref):
        """The size the manifest records for member ``ref`` (None when unknown)."""
        size = getattr(self.members, "size", None)
        return size(ref) if size is not None and isinstance(ref, str) and ref in self.members else None

    def _member(self, ref, pattern, what):
        if not isinstance(ref, str) or not pattern.fullmatch(ref) or ref not in self.members:
            raise self._corrupt(f"missing or invalid {what} member {str(ref)[:100]!r}")
        return self.members[ref]

    def get_array(self, ref):
        return _read_npy(self._member(ref, _ARRAY_MEMBER, "array"), ref, self._corrupt)

    def get_state_dict(self, ref):
        return _read_state_dict(self._member(ref, _TORCH_MEMBER, "torch"), ref, self._corrupt)

    def decode(self, node, _depth=0):
        if _depth > _MAX_DEPTH:
            raise self._corrupt("the metadata nests too deeply")
        d = _depth + 1
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v, d) for v in node]
        if not isinstance(node, dict) or _TAG not in node:
            raise self._corrupt("unexpected value in the metadata")
        kind = node[_TAG]
        try:
            return self._decode_tagged(kind, node, d)
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            raise self._corrupt(f"cannot rebuild a {kind!r} value ({type(exc).__name__}: {exc})") from None

    def _decode_tagged(self, kind, node, d):
        if kind == "float":
            if node["value"] not in ("nan", "inf", "-inf"):
                raise ValueError(f"bad float {node['value']!r}")
            return float(node["value"])
        if kind == "scalar":
            arr = self.get_array(node["array"])
            if arr.ndim != 0:
                raise ValueError("a scalar must be a 0-d array")
            return arr[()]
        if kind == "ndarray":
            return self.get_array(node["array"])
        if kind == "tensor":
            arr = self.get_array(node["array"])
            dtype = _torch_dtype(node["dtype"])
            t = torch.from_numpy(np.array(arr))
            if dtype == torch.bfloat16:
                t = t.view(torch.bfloat16)
            elif t.dtype != dtype:
                raise ValueError(f"tensor stored as {t.dtype} but labelled {dtype}")
            if node.get("requires_grad"):
                t.requires_grad_(True)
            return t
        if kind == "tuple":
            return tuple(self.decode(v, d) for v in node["items"])
        if kind == "dict":
            items = node["items"]
            if not isinstance(items, dict):
                raise ValueError("dict items must be an object")
            return {k: self.decode(v, d) for k, v in items.items()}
        if kind == "pairs":
            return {self.decode(k, d): self.decode(v, d) for k, v in node["items"]}
        if kind == "torch.dtype":
            return _torch_dtype(node["name"])
        if kind == "torch.device":
            return torch.device(str(node["name"]))
        if kind == "numpy.dtype":
            dt = np.dtype(str(node["name"]))
            if dt.hasobject:
                raise ValueError("object dtype")
            return dt
        if kind == "RandomState":
            rs = np.random.RandomState()
            keys = self.get_array(node["keys"])
            rs.set_state(("MT19937", keys.astype(np.uint32), int(node["pos"]), int(node["has_gauss"]),
                          float(node["cached_gaussian"])))
            return rs
        if kind == "distribution_class":
            return _lookup_distribution(str(node["name"]), str(node.get("module", "")))
        if kind == "estimator_class":
            return _lookup_class(_estimator_root(), str(node["name"]), str(node.get("module", "")), "estimator")
        if kind == "estimator":
            return _decode_estimator(node, self, d)
        if kind == "registered":
            name = node["type"]
            if name not in TYPE_REGISTRY:
                raise ModelFileError(f"{self.source} holds a value of type {name!r}, unknown to this installation")
            return TYPE_REGISTRY[name].decode(node["data"], self)
        raise self._corrupt(f"unknown value tag {kind!r}")


# Array dtypes a model file may hold: booleans, numbers, strings, dates (never objects or records).
_NPY_KINDS = frozenset("biufcUSMm")


def _read_npy(blob, ref, corrupt):
    """An array from ``.npy`` bytes, after checking that the header's shape and dtype fit the bytes."""
    head = io.BytesIO(bytes(blob[:_NPY_HEADER_LIMIT]))
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, TypeError, SyntaxError, OverflowError, EOFError, struct.error) as exc:
        raise corrupt(f"array {ref} has an invalid header ({exc})") from None
    if dtype.hasobject:
        raise corrupt(f"array {ref} cannot be read without pickle (it holds Python objects)")
    if dtype.kind not in _NPY_KINDS or dtype.itemsize == 0 or dtype.fields is not None or dtype.subdtype is not None:
        raise corrupt(f"array {ref} has an unsupported dtype {dtype}")
    count = math.prod(shape)
    offset = head.tell()
    if any(d < 0 for d in shape) or offset + count * dtype.itemsize != len(blob):
        raise corrupt(f"array {ref} declares shape {shape} of {dtype}, which does not match its "
                      f"{len(blob) - offset} bytes of data")
    flat = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
    if fortran_order:
        return np.array(flat.reshape(shape[::-1]).transpose())
    return flat.reshape(shape).copy()


def _read_state_dict(blob, ref, corrupt):
    """A torch state dict from a torch archive, read with ``weights_only=True`` (no pickle code runs).

    The archive must be a zip of uncompressed records (what ``torch.save`` writes), so
    reading it takes no more memory than its size.
    """
    if not bytes(blob[:4]) == b"PK\x03\x04":
        raise corrupt(f"torch state {ref} is not a torch zip archive")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as inner:
            infos = inner.infolist()
    except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupted member
        raise corrupt(f"torch state {ref} is unreadable ({type(exc).__name__}: {exc})") from None
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise corrupt(f"torch state {ref} holds duplicate records")
    if any(info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 for info in infos) or \
            sum(info.file_size for info in infos) > len(blob):
        raise corrupt(f"torch state {ref} holds compressed, encrypted or oversized records")
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only refuses anything but tensors and containers
        raise corrupt(f"torch state {ref} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise corrupt(f"torch state {ref} is not a state dict")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.layout != torch.strided or \
                value.is_quantized or value.dtype not in _TORCH_DTYPES.values():
            raise corrupt(f"torch state {ref} holds {key!r}, which is not a plain tensor")
    return state


_TORCH_DTYPES = {name: getattr(torch, name) for name in (
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "complex64", "complex128")}


def _torch_dtype(name):
    if name not in _TORCH_DTYPES:
        raise ValueError(f"unknown torch dtype {name!r}")
    return _TORCH_DTYPES[name]


# ---------------------------------------------------------------------------- built-in types
def _register_builtin_types():
    from probkit.distributions.independent import Independent
    from probkit.components import BatchedComponents, ComponentList, FeatureProductComponents
    from probkit.utils.monitor import ConvergenceMonitor

    roots = _distribution_roots()

    def enc_dist(dist, w):
        data = {"name": type(dist).__name__, "module": type(dist).__module__}
        if isinstance(dist, Independent):
            data["components"] = w.encode(list(dist.components))
            return data
        data["options"] = w.encode(dict(dist._options()))
        data["params"] = w.encode(dict(dist._params)) if dist.is_fitted else None
        return data

    def dec_dist(data, r):
        cls = _lookup_distribution(str(data["name"]), str(data.get("module", "")))
        if issubclass(cls, Independent):
            return cls(r.decode(data["components"]))
        options = r.decode(data["options"])
        params = r.decode(data["params"]) if data["params"] is not None else {}
        if not isinstance(options, dict) or not isinstance(params, dict):
            raise ValueError("distribution options and params must be dicts")
        unknown = set(params) - set(cls.param_names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no parameters {sorted(unknown)}")
        return cls(**params, **options)

    register_type("distribution", roots, enc_dist, dec_dist)

    # Order matters: FeatureProductComponents subclasses BatchedComponents.
    register_type("FeatureProductComponents", FeatureProductComponents,
                  lambda c, w: {"dist": w.encode(c.dist)},
                  lambda d, r: FeatureProductComponents(r.decode(d["dist"])))
    register_type("BatchedComponents", BatchedComponents,
                  lambda c, w: {"dist": w.encode(c.dist)},
                  lambda d, r: BatchedComponents(r.decode(d["dist"])))
    register_type("ComponentList", ComponentList,
                  lambda c, w: {"dists": w.encode(list(c.dists))},
                  lambda d, r: ComponentList(r.decode(d["dists"])))

    def enc_monitor(m, w):
        return {"class": type(m).__name__, "tol": w.encode(m.tol), "n_iter": w.encode(m.n_iter),
                "verbose": w.encode(m.verbose), "history": w.encode([float(v) for v in m.history]),
                "iter": int(m.iter)}

    def dec_monitor(d, r):
        candidates = [c for c in [ConvergenceMonitor, *_subclasses(ConvergenceMonitor)]
                      if c.__name__ == d.get("class", "ConvergenceMonitor") and c.__module__.startswith("probkit")]
        if not candidates:
            raise ValueError(f"unknown monitor class {d.get('class')!r}")
        m = candidates[0](r.decode(d["tol"]), r.decode(d["n_iter"]), r.decode(d["verbose"]))
        m.history = [float(v) for v in r.decode(d["history"])]
        m.iter = int(d["iter"])
        return m

    register_type("ConvergenceMonitor", ConvergenceMonitor, enc_monitor, dec_monitor)


# ---------------------------------------------------------------------------- estimators
def _encode_estimator(est, w, depth=0):
    cls = type(est)
    if not (_is_probkit_module(cls.__module__) or cls in _EXTRA_ESTIMATORS.values()):
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} is not a probkit estimator; register it with "
                        "probkit.io.register_estimator to save and load it")
    params = est.get_params(deep=False)
    state = est._io_get_state()
    encoded_state, modules = {}, {}
    for name, value in state.items():
        if isinstance(value, torch.nn.Module):
            if not hasattr(est, "_io_build_module"):
                raise TypeError(f"{cls.__name__}.{name} is a torch module but {cls.__name__} does not implement "
                                "_io_build_module(name) to rebuild it when loading")
            modules[name] = w.add_state_dict(name, value.state_dict())
            continue
        try:
            encoded_state[name] = w.encode(value, depth)
        except TypeError as exc:
            raise TypeError(f"cannot save attribute {cls.__name__}.{name}: {exc}") from None
    try:
        encoded_params = {k: w.encode(v, depth) for k, v in params.items()}
    except TypeError as exc:
        raise TypeError(f"cannot save the constructor parameters of {cls.__name__}: {exc}") from None
    return _tagged("estimator", name=cls.__name__, module=cls.__module__, params=encoded_params,
                   state=encoded_state, modules=modules)


def _shadows_class_member(cls, name):
    """Whether an instance attribute ``name`` would hide a method, property or class of ``cls``."""
    try:
        member = inspect.getattr_static(cls, name)
    except AttributeError:
        return False
    return callable(member) or hasattr(type(member), "__get__")


def _class_hook(est, name):
    """A hook method looked up on the class (so a restored attribute cannot stand in for it)."""
    return getattr(type(est), name, None)


def _decode_estimator(node, r, depth=0):
    cls = _lookup_class(_estimator_root(), str(node["name"]), str(node.get("module", "")), "estimator")
    params, state_nodes, module_refs = node["params"], node["state"], node.get("modules", {})
    if not all(isinstance(x, dict) for x in (params, state_nodes, module_refs)):
        raise ValueError("estimator params, state and modules must be objects")
    params = {k: r.decode(v, depth) for k, v in params.items()}
    try:
        est = cls(**params)
    except TypeError as exc:
        raise ModelFileError(f"{r.source}: the saved parameters do not fit {cls.__name__} in this probkit "
                             f"version ({exc})", path=r.source) from None
    names = list(state_nodes) + list(module_refs)
    bad = [n for n in names if not (isinstance(n, str) and n.isidentifier() and not n.startswith("__"))]
    if bad:
        raise ModelFileError(f"{r.source} is corrupted: invalid attribute name {str(bad[0])[:100]!r}",
                             path=r.source)
    hidden = [n for n in names if _shadows_class_member(cls, n)]
    if hidden:
        raise ModelFileError(f"{r.source} is corrupted: attribute {hidden[0]!r} would replace a method or "
                             f"property of {cls.__name__}", path=r.source, attribute=hidden[0])
    state = {k: r.decode(v, depth) for k, v in state_nodes.items()}
    _class_hook(est, "_io_set_state")(est, state)
    for name, ref in module_refs.items():
        setattr(est, name, _restore_module(est, name, ref, r))
    _check_restored(est, r.source, names)
    return est


def _restore_module(est, name, ref, r):
    """Build ``est``'s torch module ``name`` and load the state dict ``ref`` into it, checking shapes first."""
    cls = type(est)
    build = _class_hook(est, "_io_build_module")
    if build is None:
        raise ModelFileError(f"{r.source} is corrupted: {cls.__name__} has no torch module {name!r}", path=r.source)
    state_dict = r.get_state_dict(ref)    # bounded by the member's size
    # Edited parameters (n_layers = 10**6) must not make even the meta build create millions of modules.
    budget = _RegistrationBudget(8 * len(state_dict) + 1024, f"{cls.__name__}.{name}", r.source)
    if "device" in inspect.signature(build).parameters:
        with budget:
            template = build(est, name, device=torch.device("meta"))
        # The weights the constructor parameters imply must fit in the member that holds them.
        size, needed = r.member_size(ref), _module_bytes(template)
        if size is not None and needed > size:
            raise ModelFileError(
                f"{r.source} is corrupted: {cls.__name__}.{name} built from the saved parameters needs "
                f"{needed:,} bytes of weights, but {ref} holds {size:,} bytes (edited parameters?)",
                path=r.source, attribute=name)
        _check_state_dict(state_dict, template, f"{cls.__name__}.{name}", r)
        with budget:
            module = build(est, name)
    else:  # a hook that cannot build on the meta device: build it for real, then compare
        with budget:
            module = build(est, name)
        _check_state_dict(state_dict, module, f"{cls.__name__}.{name}", r)
    module.load_state_dict(state_dict)
    return module


class _RegistrationBudget:
    """Refuse (ModelFileError) a module build that registers more than ``limit`` parameters, buffers and
    submodules in this thread: a module that large cannot match a state dict of the member's size."""

    def __init__(self, limit, what, source):
        self.limit, self.what, self.source = limit, what, source

    def _error(self):
        return ModelFileError(f"{self.source} is corrupted: building {self.what} from the saved parameters creates "
                              f"more than {self.limit:,} parameters and submodules, far more than its state dict "
                              "holds (edited parameters?)", path=self.source)

    def _count(self, module, name, value):
        if value is not None and threading.get_ident() == self.thread:
            self.count += 1
            if self.count > self.limit:
                self.exceeded = True
                raise self._error()

    def __enter__(self):
        self.thread, self.count, self.exceeded = threading.get_ident(), 0, False
        hooks = torch.nn.modules.module
        self.handles = [hooks.register_module_parameter_registration_hook(self._count),
                        hooks.register_module_buffer_registration_hook(self._count),
                        hooks.register_module_module_registration_hook(self._count)]
        return self

    def __exit__(self, exc_type, exc, tb):
        for handle in self.handles:
            handle.remove()
        if exc_type is not None and self.exceeded:  # whatever the builder wrapped our refusal in
            raise self._error() from None


def _module_bytes(module):
    """Bytes of a module's distinct parameters and persistent buffers (their state dict's data)."""
    keys = set(module.state_dict(keep_vars=True))
    total = sum(p.numel() * p.element_size() for p in module.parameters())
    total += sum(b.numel() * b.element_size() for n, b in module.named_buffers() if n in keys)
    return total


def _check_state_dict(state, template, where, r):
    """Same keys and shapes as ``template``'s state dict; parameters finite, buffers free of NaN."""
    expected = template.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelFileError(f"{r.source} is corrupted: the state dict of {where} does not fit its architecture "
                             f"({detail})", path=r.source, attribute=where.split(".")[-1])
    parameters = {n for n, _ in template.named_parameters(remove_duplicate=False)}
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape or (got.dtype != want.dtype and not
                                       (got.is_floating_point() and want.is_floating_point())):
            raise ModelFileError(
                f"{r.source} is corrupted: {where}: {key} has shape {tuple(got.shape)} ({got.dtype}) in the file, "
                f"but the saved parameters give shape {tuple(want.shape)} ({want.dtype})",
                path=r.source, attribute=where.split(".")[-1])
        if got.is_floating_point() or got.is_complex():
            bad = ~torch.isfinite(got) if key in parameters else torch.isnan(got)
            if bool(bad.any()):
                raise ModelFileError(f"{r.source} is corrupted: {where}: {key} contains NaN or infinity",
                                     path=r.source, attribute=where.split(".")[-1])


def _check_restored(est, source, names):
    """Run the estimator's checks of hand-set parameters on what was restored."""
    check = _class_hook(est, "_io_check_state")
    if check is None:
        return
    try:
        check(est)
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the checks means the parameters are invalid
        message = str(exc)
        found = [(m.start(), n) for n in names if (m := re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])",
                                                                  message))]
        attribute = min(found)[1] if found else None
        what = f"{type(est).__name__}.{attribute}" if attribute else f"the parameters of {type(est).__name__}"
        raise ModelFileError(f"{source} holds invalid values: {what} fails the estimator's checks "
                             f"({type(exc).__name__}: {message})", path=source, attribute=attribute) from None


# ---------------------------------------------------------------------------- public API
def _kind_names(expected):
    if isinstance(expected, type):
        return expected.__name__
    return " or ".join(c.__name__ for c in expected)


def dumps(estimator):
    """Serialise a probkit estimator to bytes in the model-file format.

    Parameters
    ----------
    estimator : ProbkitEstimator
        Fitted or not; every attribute must be encodable (see the module docstring).

    Returns
    -------
    bytes

    Examples
    --------
    >>> from probkit import PoissonHMM
    >>> data = dumps(PoissonHMM(2))
    >>> data[:2]
    b'PK'
    """
    from probkit import __version__

    if not isinstance(estimator, _estimator_root()):
        raise TypeError(f"only probkit estimators can be saved, got {type(estimator).__name__}")
    w = _Writer()
    tree = _encode_estimator(estimator, w)
    members = dict(w.members)
    manifest = {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for name, data in sorted(members.items())}
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "probkit_version": __version__,
        "estimator": type(estimator).__name__,
        "fitted": any(k.endswith("_") and not k.startswith("_") for k in vars(estimator)),
        "model": tree,
        "manifest": manifest,
    }
    meta_bytes = json.dumps(meta, indent=1, allow_nan=False).encode("utf-8")
    beyond = _meta_limits_exceeded(meta_bytes)
    if beyond:
        raise ValueError(f"cannot save this {type(estimator).__name__}: {beyond}, so probkit.load would refuse the "
                         "file; keep long sequences in numpy arrays, which are stored outside meta.json")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("meta.json", meta_bytes)
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def loads(data, expected=None, *, source="<bytes>"):
    """Rebuild an estimator from bytes written by :func:`dumps` (see :func:`load`).

    Parameters
    ----------
    data : bytes
    expected : class or tuple of classes, optional
        Refuse a model of another kind.
    source : str
        Name used in error messages.

    Returns
    -------
    ProbkitEstimator

    Examples
    --------
    >>> from probkit import PoissonHMM
    >>> loads(dumps(PoissonHMM(3))).n_components
    3
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return _load_checked(io.BytesIO(data), expected, source)


def _load_checked(fileobj, expected, source):
    """:func:`_load_archive`, with every failure turned into a :class:`ModelFileError` naming ``source``."""
    try:
        return _load_archive(fileobj, expected, source)
    except ModelFileError as exc:
        if source not in str(exc):  # raised by a helper that does not know the file
            raise ModelFileError(f"{source}: {exc}", path=source, attribute=exc.attribute) from None
        if exc.path is None:
            exc.path = source
        raise
    except RecursionError:
        raise ModelFileError(f"{source} is corrupted: the metadata nests too deeply", path=source) from None
    except MemoryError:
        raise ModelFileError(f"{source} cannot be loaded: it needs more memory than is available",
                             path=source) from None
    except Exception as exc:  # noqa: BLE001 - a hostile file may break any step; the caller sees one error type
        raise ModelFileError(f"{source} is corrupted or unreadable ({type(exc).__name__}: {exc})",
                             path=source) from exc


def _load_archive(fileobj, expected, source):
    _register_once()
    archive_size = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(0)
    try:
        zf = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error,
            NotImplementedError, OverflowError) as exc:
        detail = "" if isinstance(exc, zipfile.BadZipFile) else f": {type(exc).__name__}: {exc}"
        raise ModelFileError(f"{source} is not a probkit model file (not a zip archive; truncated or "
                             f"corrupted?{detail})") from None
    with zf:
        infos = _check_entries(zf, archive_size, source)
        meta_info = infos["meta.json"]
        meta = _parse_meta(_read_member(zf, meta_info, meta_info.file_size, source), source)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ModelFileError(f"{source} is not a probkit model file (meta.json has no "
                                 f"format={FORMAT_NAME!r})")
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ModelFileError(f"{source} is corrupted: invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{source} was written in model format version {version} (by probkit "
                f"{meta.get('probkit_version', '?')}); this probkit reads versions up to {FORMAT_VERSION}: "
                "upgrade probkit to load it"
            )
        tree = meta.get("model")
        if not isinstance(tree, dict) or tree.get(_TAG) != "estimator":
            raise ModelFileError(f"{source} is corrupted: no estimator in meta.json")
        manifest = _check_manifest(meta.get("manifest"), tree, infos, source)
        if expected is not None:
            cls = _lookup_class(_estimator_root(), str(tree.get("name")), str(tree.get("module", "")), "estimator")
            if not issubclass(cls, expected):
                raise ModelFileError(f"{source} holds a {cls.__name__}, but a {_kind_names(expected)} is expected "
                                     "here")
        return _Reader(_ArchiveMembers(zf, infos, manifest, source), source).decode(tree)


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))


def _file_kind(mode):
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def _check_entries(zf, archive_size, source):
    """The archive's entries by name, after the checks that need no inflating."""
    entries = zf.infolist()
    if "meta.json" not in {info.filename for info in entries}:
        raise ModelFileError(f"{source} is not a probkit model file (no meta.json)")
    infos, total = {}, 0
    for info in entries:
        name = info.filename
        if name in infos:
            raise ModelFileError(f"{source} is corrupted: it holds two members named {name!r}")
        if name != "meta.json" and not (_ARRAY_MEMBER.fullmatch(name) or _TORCH_MEMBER.fullmatch(name)):
            raise ModelFileError(f"{source} is corrupted: member {name!r} is not part of a probkit model")
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{source} is corrupted: member {name!r} is encrypted")
        if info.compress_type not in _ZIP_METHODS:
            raise ModelFileError(f"{source} is corrupted: member {name!r} uses compression method "
                                 f"{info.compress_type}; probkit reads stored or deflated members only")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise ModelFileError(f"{source} is corrupted: member {name!r} is stored uncompressed but its sizes "
                                 f"differ ({info.file_size} and {info.compress_size})")
        infos[name] = info
        total += info.file_size
    meta_size = infos["meta.json"].file_size
    if meta_size > MAX_META_BYTES:
        raise ModelFileError(f"{source} is refused: its meta.json inflates to {meta_size:,} bytes, more than "
                             f"MAX_META_BYTES ({MAX_META_BYTES:,})")
    limit = max(MAX_INFLATION_RATIO * archive_size, 1 << 20)
    if total > limit:
        raise ModelFileError(f"{source} is refused: its members inflate to {total:,} bytes, more than "
                             f"MAX_INFLATION_RATIO ({MAX_INFLATION_RATIO}) times the file's {archive_size:,} bytes")
    return infos


def _read_member(zf, info, size, source, sha256=None):
    """Inflate one member in bounded chunks: never more than ``size`` bytes, whatever its header says."""
    name, digest, chunks, total = info.filename, hashlib.sha256(), [], 0
    try:
        with zf.open(info) as f:
            while True:
                chunk = f.read(min(_READ_CHUNK, size + 1 - total))
                if not chunk:
                    break
                total += len(chunk)
                if total > size:
                    raise ModelFileError(f"{source} is corrupted: member {name!r} inflates to more than the "
                                         f"{size:,} bytes it declares")
                digest.update(chunk)
                chunks.append(chunk)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
            struct.error, OverflowError) as exc:
        raise ModelFileError(f"{source} is corrupted: member {name!r} cannot be read ({exc})") from None
    if total != size or (sha256 is not None and digest.hexdigest() != sha256):
        raise ModelFileError(f"{source} is corrupted: member {name!r} does not match its checksum")
    return b"".join(chunks)


def _meta_limits_exceeded(raw):
    """Why the ``meta.json`` bytes ``raw`` are beyond the limits (None when they are within)."""
    if len(raw) > MAX_META_BYTES:
        return f"its metadata takes {len(raw):,} bytes, more than MAX_META_BYTES ({MAX_META_BYTES:,})"
    # Counts brackets inside strings too: an upper bound, computed without parsing.
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > MAX_META_CONTAINERS:
        return (f"its metadata holds up to {containers:,} JSON objects and arrays, more than MAX_META_CONTAINERS "
                f"({MAX_META_CONTAINERS:,})")
    return None


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows a float")
    return value


def _unique_keys(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {duplicate[:80]!r}")
    return obj


def _parse_meta(raw, source):
    beyond = _meta_limits_exceeded(raw)
    if beyond:
        raise ModelFileError(f"{source} is refused: {beyond}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{source} is corrupted: meta.json is not UTF-8 ({exc})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ModelFileError(f"{source} is corrupted: meta.json nests too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError and the refusals above
        raise ModelFileError(f"{source} is corrupted: meta.json is not valid JSON ({exc})") from None


def _is_member_name(value):
    return isinstance(value, str) and bool(_ARRAY_MEMBER.fullmatch(value) or _TORCH_MEMBER.fullmatch(value))


def _member_refs(tree, source):
    """Member names the model tree refers to (walked without recursion, depth bounded)."""
    refs, stack = set(), [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_JSON_DEPTH:
            raise ModelFileError(f"{source} is corrupted: the metadata nests too deeply")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif _is_member_name(node):
            refs.add(node)
    return refs


def _check_manifest(manifest, tree, infos, source):
    """The manifest, after checking it against the zip entries and the members the model refers to."""
    if not isinstance(manifest, dict):
        raise ModelFileError(f"{source} is corrupted: no manifest")
    for name, entry in manifest.items():
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not _is_member_name(name) or not isinstance(size, int) or isinstance(size, bool) or size < 0 or \
                not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ModelFileError(f"{source} is corrupted: invalid manifest entry for {name[:80]!r}")
        if name not in infos:
            raise ModelFileError(f"{source} is truncated or corrupted: member {name!r} is missing")
        if infos[name].file_size != size:
            raise ModelFileError(f"{source} is corrupted: member {name!r} inflates to {infos[name].file_size:,} "
                                 f"bytes by its zip header, but the manifest records {size:,}")
    unlisted = sorted(set(infos) - set(manifest) - {"meta.json"})
    if unlisted:
        raise ModelFileError(f"{source} is corrupted: member {unlisted[0]!r} is not listed in the manifest")
    unused = sorted(set(manifest) - _member_refs(tree, source))
    if unused:
        raise ModelFileError(f"{source} is corrupted: member {unused[0]!r} is not referenced by the model")
    return manifest


class _ArchiveMembers(Mapping):
    """The binary members of an open model file, each inflated (bounded) and verified when first asked for."""

    def __init__(self, zf, infos, manifest, source):
        self._zf, self._infos, self._manifest, self._source = zf, infos, manifest, source

    def __getitem__(self, name):
        entry = self._manifest[name]
        return _read_member(self._zf, self._infos[name], entry["size"], self._source, entry["sha256"])

    def __iter__(self):
        return iter(self._manifest)

    def __len__(self):
        return len(self._manifest)

    def size(self, name):
        """The size the manifest records for ``name``."""
        return self._manifest[name]["size"]


def save(estimator, path):
    """Write ``estimator`` to ``path`` (see the module docstring for the format).

    The file is written to a new temporary file beside ``path`` (created exclusively,
    so nothing planted there can redirect the write) and renamed over ``path``, so an
    interrupted save never leaves a half-written model under ``path``. An existing
    ``path`` is replaced only if it is a regular file (never a device, a named pipe, a
    directory or a symbolic link).

    Parameters
    ----------
    estimator : ProbkitEstimator
    path : str or os.PathLike

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        ``path`` exists and is not a regular file.
    OSError
        The file cannot be written (the error names ``path``).

    Examples
    --------
    >>> import os, tempfile
    >>> from probkit import GaussianHMM
    >>> path = save(GaussianHMM(2), os.path.join(tempfile.mkdtemp(), "hmm.pk"))
    >>> load(path).n_components
    2
    """
    path = os.fspath(path)
    data = dumps(estimator)
    existing = _existing_regular_file(path)
    folder = os.path.dirname(path) or os.curdir
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _save_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file private (0600): give it the mode the replaced file had, or the usual one.
        os.chmod(tmp, stat.S_IMODE(existing.st_mode) if existing is not None else 0o666 & ~_umask())
        _existing_regular_file(path)  # again, right before replacing
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _save_error(path, exc) from None
        raise
    return path


def _existing_regular_file(path):
    """``os.lstat(path)`` if ``path`` is a regular file, None if it does not exist; refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _save_error(path, exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"cannot save the model to {path}: it exists and is {_file_kind(st.st_mode)}, not a regular "
                         "file, so it is not replaced")
    return st


def _save_error(path, exc):
    if exc.errno is None:
        return OSError(f"cannot save the model to {path}: {exc}")
    return OSError(exc.errno, f"cannot save the model: {exc.strerror or os.strerror(exc.errno)}", path)


def _umask():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # the portable way to read it
    os.umask(mask)
    return mask


def load(path, expected=None):
    """Load an estimator saved with :meth:`ProbkitEstimator.save <probkit.base.ProbkitEstimator.save>`.

    Files from untrusted sources are safe to load: no code in the file runs, memory
    use is bounded by the file's size, and corrupted or hostile content is refused (see
    the module docstring, "Hostile files").

    Parameters
    ----------
    path : str or os.PathLike
    expected : class or tuple of classes, optional
        Refuse (with :class:`ModelFileError`) a model that is not an instance of these,
        e.g. ``expected=probkit.hmm.BaseHMM``.

    Returns
    -------
    ProbkitEstimator
        Predicts exactly as the estimator that was saved.

    Raises
    ------
    ModelFileError
        The file is missing or unreadable, not a regular file, not a probkit model,
        truncated, corrupted or hostile, holds invalid parameters, was written by a
        newer format version, or is of another kind than ``expected``.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "missing.pk")
    >>> try:
    ...     load(path)
    ... except ModelFileError as exc:
    ...     print(str(exc).startswith("cannot read model file"))
    True
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        # Non-blocking, so opening a named pipe returns at once (and is then refused).
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}", path=path) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ModelFileError(f"cannot read model file {path}: it is {_file_kind(mode)}, not a regular file",
                             path=path)
    with os.fdopen(fd, "rb") as f:
        return _load_checked(f, expected, path)


_REGISTERED = False


def _register_once():
    global _REGISTERED
    if not _REGISTERED:
        _register_builtin_types()
        _REGISTERED = True
