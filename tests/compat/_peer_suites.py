"""Load a peer library's own test modules with its estimator classes replaced by probkit's.

The peer's test file is executed from its installed location under a private module
name, so nothing is copied into this repository and the peer's real modules stay
untouched for the rest of the test session (other probkit tests use hmmlearn and
scikit-learn as independent references):

* names a test module binds at import time (``from hmmlearn.base import BaseHMM``,
  ``from sklearn.mixture import GaussianMixture``) see probkit's classes because the
  peer's module attributes are swapped only while the test module executes;
* names it looks up at call time (``hmm.GaussianHMM``) go through module references
  that are rebound, in the private copy only, to probkit's compat modules.

A wrapper test file in ``tests/compat`` imports the loaded module's tests into its own
namespace, where pytest collects them (:func:`expose`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def swapped_attributes(replacements):
    """Temporarily set ``module.name = value`` for ``{(module, name): value}``; restore on exit."""
    saved = {}
    try:
        for (module_name, name), value in replacements.items():
            module = importlib.import_module(module_name)
            saved[(module, name)] = module.__dict__.get(name, _MISSING)
            setattr(module, name, value)
        yield
    finally:
        for (module, name), value in saved.items():
            if value is _MISSING:
                delattr(module, name)
            else:
                setattr(module, name, value)


_MISSING = object()


def load_peer_test_module(package, name, *, import_time, call_time):
    """Execute ``package.name`` (a peer's test module) with probkit's classes in place.

    Parameters
    ----------
    package : str
        The peer's test package, e.g. ``"hmmlearn.tests"``.
    name : str
        Test module name, e.g. ``"test_gaussian_hmm"``.
    import_time : dict
        ``{(module, attribute): replacement}`` in effect while the module executes.
    call_time : dict
        ``{global_name: replacement}`` assigned in the loaded module afterwards.

    Returns
    -------
    module
    """
    spec = importlib.util.find_spec(package)
    path = Path(next(iter(spec.submodule_search_locations))) / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(f"{package}._on_probkit_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    errstate = np.geterr()  # hmmlearn.tests sets np.seterr(all="warn") on import
    try:
        with swapped_attributes(import_time):
            module_spec.loader.exec_module(module)
    finally:
        np.seterr(**errstate)
    for global_name, value in call_time.items():
        if global_name in vars(module):
            setattr(module, global_name, value)
    return module


def expose(module, namespace, label):
    """Copy a loaded test module's tests (and its module-level marks) into ``namespace``."""
    for name, value in vars(module).items():
        if name.startswith(("Test", "test_")) or name == "pytestmark":
            namespace[name] = value
    namespace["PEER_TEST_MODULE"] = label
