"""Lazy re-exports (PEP 562): a package names its public objects without importing them.

``import probkit`` then costs almost nothing, ``probkit --help`` starts without torch,
and optional dependencies (Pyro for variational inference) are imported only by the code
that uses them.
"""

from __future__ import annotations

import importlib


def lazy_exports(package, exports):
    """Module-level ``__getattr__`` and ``__dir__`` for a package with lazily imported names.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict
        Public name -> module that defines it (absolute, or relative to ``package``).

    Returns
    -------
    getattr, dir : callables
        To assign to the package's ``__getattr__`` and ``__dir__``.

    Examples
    --------
    >>> getattr_, dir_ = lazy_exports("probkit", {"load": "probkit.io"})
    >>> getattr_("load").__name__
    'load'
    >>> getattr_("nothing")
    Traceback (most recent call last):
    ...
    AttributeError: module 'probkit' has no attribute 'nothing'
    """

    def __getattr__(name):
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), name)
        # Cache it on the package so the next access is a plain attribute lookup.
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__():
        return sorted(set(exports) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__


def lazy_package(package, modules):
    """``__getattr__``, ``__dir__`` and ``__all__`` of a package, from ``{module: [names]}``.

    As :func:`lazy_exports` (``package`` is the package's ``__name__``, a module is absolute
    or relative to it), with the public names grouped by the module that defines them; the
    third value, the names sorted, is the package's ``__all__``. A name given twice is a
    ``ValueError``.

    Examples
    --------
    >>> getattr_, dir_, all_ = lazy_package("probkit", {"probkit.io": ["save", "load"]})
    >>> all_
    ['load', 'save']
    >>> getattr_("save").__name__
    'save'
    """
    exports = {}
    for module, names in modules.items():
        for name in names:
            if name in exports:
                raise ValueError(f"{package}: {name!r} is exported by both {exports[name]!r} and {module!r}")
            exports[name] = module
    return (*lazy_exports(package, exports), sorted(exports))
