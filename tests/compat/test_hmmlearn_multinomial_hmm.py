"""hmmlearn 0.3.3's own ``test_multinomial_hmm.py``, run on probkit (see _hmmlearn.py)."""

from tests.compat._hmmlearn import load

load("test_multinomial_hmm", globals())
