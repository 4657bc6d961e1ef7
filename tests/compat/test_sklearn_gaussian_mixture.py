"""scikit-learn's own ``test_gaussian_mixture.py``, run on probkit (see _sklearn_mixture.py)."""

from tests.compat._sklearn_mixture import load

load("test_gaussian_mixture", globals())
