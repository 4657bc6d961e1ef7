"""scikit-learn's ``sklearn/mixture/tests/test_gaussian_mixture.py``, run on probkit's mixtures (see _sklearn_mixture.py)."""

from tests.compat._sklearn_mixture import load

load("test_gaussian_mixture", globals())
