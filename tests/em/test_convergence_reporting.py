"""A fit that stops at its iteration limit says so, at the user's line, and nowhere claims convergence."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from probkit import BayesianGaussianMixture, GaussianHMM, GaussianMixture, MixtureModel, PoissonHMM, VariationalHMM
from probkit.datasets import load_old_faithful

X, _ = load_old_faithful()


def _fit_and_catch(model, data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data)  # the line the warning must point at
    return [w for w in caught if issubclass(w.category, ConvergenceWarning)]


@pytest.mark.parametrize("model", [
    GaussianHMM(3, n_iter=2, random_state=0),
    VariationalHMM(3, n_iter=2, random_state=0),
    GaussianMixture(3, max_iter=2, random_state=0),
    BayesianGaussianMixture(n_components=3, max_iter=2, random_state=0),
    MixtureModel(family="normal", n_components=3, max_iter=2, random_state=0),
], ids=lambda m: type(m).__name__)
def test_stopping_at_the_limit_warns_at_the_callers_line(model):
    caught = _fit_and_catch(model, X)
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert caught[0].filename == __file__
    assert "did not converge in 2 iterations" in str(caught[0].message)
    assert model.converged_ is False


def test_hmm_monitor_does_not_report_convergence_at_the_limit():
    with pytest.warns(ConvergenceWarning):
        model = GaussianHMM(3, n_iter=3, random_state=0).fit(X)
    assert model.monitor_.iter == 3 and not model.monitor_.converged
    assert model.monitor_.gain > model.tol  # still rising
    model = GaussianHMM(3, n_iter=500, random_state=0).fit(X)
    assert model.converged_ and model.monitor_.converged and model.monitor_.gain < model.tol


def test_poisson_hmm_converged_fit_is_silent():
    counts = np.random.RandomState(0).poisson([2, 9], size=(300, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        PoissonHMM(2, n_iter=500, random_state=0).fit(counts)


def test_verbose_prints_a_header_and_no_nan(capsys):
    # the HMMs print this table; the mixtures print scikit-learn's lines (tests/mixture/test_mixture_verbose.py)
    GaussianHMM(2, n_iter=3, verbose=1, tol=0, random_state=0).fit(X)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].split() == ["iteration", "objective", "gain"]
    assert len(err) == 4 and "nan" not in "\n".join(err)
    assert err[2].split()[2].startswith(("+", "-"))
