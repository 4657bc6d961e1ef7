"""hmmlearn 0.3.3's own test suite on probkit.compat.hmmlearn.

Every test module of ``hmmlearn.tests`` that exercises an estimator is run by a wrapper
``tests/compat/test_hmmlearn_<module>.py``. The modules ``test_utils`` and
``test_kl_divergence`` test hmmlearn's helper functions only and are not run; neither are
the five ``TestBaseAgainstWikipedia::test_do_*`` tests, which call hmmlearn's compiled
kernels directly (see ``conftest.py``). The tests probkit fails on purpose are listed in
``conftest.py`` with the reason.
"""

from __future__ import annotations

from probkit.compat.hmmlearn import base, hmm, vhmm
from tests.compat._peer_suites import expose, load_peer_test_module

IMPORT_TIME = {
    **{("hmmlearn.hmm", name): getattr(hmm, name) for name in hmm.__all__},
    **{("hmmlearn.vhmm", name): getattr(vhmm, name) for name in vhmm.__all__},
    ("hmmlearn.base", "BaseHMM"): base.BaseHMM,
    ("hmmlearn.base", "ConvergenceMonitor"): base.ConvergenceMonitor,
}
CALL_TIME = {"hmm": hmm, "vhmm": vhmm}


def load(name, namespace):
    """Expose hmmlearn's ``hmmlearn.tests.<name>`` in ``namespace``, run on probkit."""
    module = load_peer_test_module("hmmlearn.tests", name, import_time=IMPORT_TIME, call_time=CALL_TIME)
    expose(module, namespace, f"hmmlearn.tests.{name}")
