"""hmmlearn 0.3.3's ``hmmlearn/tests/test_gmm_hmm.py``, run on probkit.compat.hmmlearn (see _hmmlearn.py)."""

from tests.compat._hmmlearn import load

load("test_gmm_hmm", globals())
