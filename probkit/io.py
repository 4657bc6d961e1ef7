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

Extending the format
--------------------
*Estimators* need nothing: every instance attribute that is not a constructor
parameter is saved (fitted attributes such as ``means_``, and private state such as a
statistics shift), and the estimator is rebuilt as ``cls(**params)`` with those
attributes set back. Class attributes ``_io_exclude`` (names not to save) and the
methods ``_io_get_state`` / ``_io_set_state`` of :class:`probkit.base.ProbkitEstimator`
can be overridden where that is not enough.

*Torch modules* (``torch.nn.Module`` attributes of neural estimators) are stored as
state dicts; when loading, the estimator's ``_io_build_module(name)`` must return a
freshly constructed module of the right architecture (from the constructor
parameters and the attributes already restored), into which the state dict is loaded.

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
import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
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

_TAG = "__probkit__"
_ARRAY_MEMBER = re.compile(r"arrays/[0-9]{1,9}\.npy")
_TORCH_MEMBER = re.compile(r"torch/[A-Za-z0-9_]{1,200}\.pt")
_MAX_DEPTH = 200
# Subpackages searched for estimator and distribution classes named in a file that are
# not imported yet (imported only if they exist in this installation).
_CLASS_PACKAGES = ("probkit", "probkit.distributions", "probkit.mixture", "probkit.hmm", "probkit.vi",
                   "probkit.neural", "probkit.glm", "probkit.naive_bayes")


class ModelFileError(ValueError):
    """A model file cannot be loaded: unreadable, truncated, corrupted, of a newer format or of another kind.

    Examples
    --------
    >>> try:
    ...     loads(b"not a model")
    ... except ModelFileError as exc:
    ...     print(exc)
    <bytes> is not a probkit model file (not a zip archive; truncated or corrupted?)
    """


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
        raise ModelFileError(f"the file names {what} {name!r}, which is not a probkit {what} known to this "
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
    raise ModelFileError(f"the file names distribution {name!r}, which is not a probkit distribution known to "
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

    def get_array(self, ref):
        if not isinstance(ref, str) or not _ARRAY_MEMBER.fullmatch(ref) or ref not in self.members:
            raise self._corrupt(f"missing or invalid array member {ref!r}")
        try:
            return np.load(io.BytesIO(self.members[ref]), allow_pickle=False)
        except ValueError as exc:
            raise self._corrupt(f"array {ref} cannot be read without pickle ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupted member
            raise self._corrupt(f"array {ref} is unreadable ({type(exc).__name__}: {exc})") from None

    def get_state_dict(self, ref):
        if not isinstance(ref, str) or not _TORCH_MEMBER.fullmatch(ref) or ref not in self.members:
            raise self._corrupt(f"missing or invalid torch member {ref!r}")
        try:
            return torch.load(io.BytesIO(self.members[ref]), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - weights_only refuses anything but tensors and containers
            raise self._corrupt(f"torch state {ref} is unreadable ({type(exc).__name__}: {exc})") from None

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
    from probkit.mixture._components import BatchedComponents, ComponentList, FeatureProductComponents
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


def _decode_estimator(node, r, depth=0):
    cls = _lookup_class(_estimator_root(), str(node["name"]), str(node.get("module", "")), "estimator")
    params = node["params"]
    if not isinstance(params, dict):
        raise ValueError("estimator params must be an object")
    params = {k: r.decode(v, depth) for k, v in params.items()}
    try:
        est = cls(**params)
    except TypeError as exc:
        raise ModelFileError(f"{r.source}: the saved parameters do not fit {cls.__name__} in this probkit "
                             f"version ({exc})") from None
    names = list(node["state"]) + list(node.get("modules", {}))
    bad = [n for n in names if not (isinstance(n, str) and n.isidentifier() and not n.startswith("__"))]
    if bad:
        raise ModelFileError(f"{r.source} is corrupted: invalid attribute name {bad[0]!r}")
    state = {k: r.decode(v, depth) for k, v in node["state"].items()}
    est._io_set_state(state)
    for name, ref in node.get("modules", {}).items():
        module = est._io_build_module(name)
        module.load_state_dict(r.get_state_dict(ref))
        setattr(est, name, module)
    return est


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
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("meta.json", json.dumps(meta, indent=1, allow_nan=False))
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
    _register_once()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ModelFileError(
            f"{source} is not a probkit model file (not a zip archive; truncated or corrupted?)") from None
    members = {}
    with zf:
        names = zf.namelist()
        if "meta.json" not in names:
            raise ModelFileError(f"{source} is not a probkit model file (no meta.json)")
        try:
            meta_bytes = zf.read("meta.json")
        except (zipfile.BadZipFile, OSError, EOFError, _zlib_error()) as exc:
            raise ModelFileError(f"{source} is corrupted: meta.json cannot be read ({exc})") from None
        try:
            meta = json.loads(meta_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ModelFileError(f"{source} is corrupted: meta.json is not valid JSON ({exc})") from None
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
        manifest = meta.get("manifest")
        if not isinstance(manifest, dict):
            raise ModelFileError(f"{source} is corrupted: no manifest")
        for name, entry in manifest.items():
            if name not in names:
                raise ModelFileError(f"{source} is truncated or corrupted: member {name!r} is missing")
            try:
                blob = zf.read(name)
            except (zipfile.BadZipFile, OSError, EOFError, _zlib_error()) as exc:
                raise ModelFileError(f"{source} is corrupted: member {name!r} cannot be read ({exc})") from None
            if not isinstance(entry, dict) or len(blob) != entry.get("size") or \
                    hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
                raise ModelFileError(f"{source} is corrupted: member {name!r} does not match its checksum")
            members[name] = blob
    reader = _Reader(members, source)
    tree = meta.get("model")
    if not isinstance(tree, dict) or tree.get(_TAG) != "estimator":
        raise ModelFileError(f"{source} is corrupted: no estimator in meta.json")
    if expected is not None:
        cls = _lookup_class(_estimator_root(), str(tree.get("name")), str(tree.get("module", "")), "estimator")
        if not issubclass(cls, expected):
            raise ModelFileError(f"{source} holds a {cls.__name__}, but a {_kind_names(expected)} is expected here")
    try:
        return reader.decode(tree)
    except RecursionError:
        raise ModelFileError(f"{source} is corrupted: the metadata nests too deeply") from None


def _zlib_error():
    import zlib

    return zlib.error


def save(estimator, path):
    """Write ``estimator`` to ``path`` (see the module docstring for the format).

    The file is written to a temporary name beside ``path`` and renamed, so an
    interrupted save never leaves a half-written model under ``path``.

    Parameters
    ----------
    estimator : ProbkitEstimator
    path : str or os.PathLike

    Returns
    -------
    str
        The path written.

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
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load(path, expected=None):
    """Load an estimator saved with :meth:`ProbkitEstimator.save <probkit.base.ProbkitEstimator.save>`.

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
        The file is missing or unreadable, not a probkit model, truncated or corrupted,
        written by a newer format version, or of another kind than ``expected``.

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
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    return loads(data, expected, source=path)


_REGISTERED = False


def _register_once():
    global _REGISTERED
    if not _REGISTERED:
        _register_builtin_types()
        _REGISTERED = True
