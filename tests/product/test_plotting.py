"""probkit.plotting: every helper draws what it says, rejects malformed input, and explains a missing matplotlib."""

import sys
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from probkit import GaussianHMM, GaussianMixture, MixtureModel, PoissonHMM  # noqa: E402
from probkit import plotting  # noqa: E402
from probkit.datasets import load_earthquakes, load_old_faithful  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def faithful():
    X, names = load_old_faithful()
    return X, names, GaussianHMM(2, covariance_type="full", n_iter=30, random_state=0).fit(X)


def test_states_draw_one_colour_per_state_and_shade_runs(faithful):
    X, _, hmm = faithful
    states = hmm.predict(X)
    ax = plotting.plot_states(X[:, 0], states, ylabel="eruptions")
    assert len(ax.collections) == len(np.unique(states))          # one scatter per state
    runs = 1 + np.count_nonzero(np.diff(states))
    assert len(ax.patches) == runs                                 # one shaded span per run
    assert ax.get_ylabel() == "eruptions"
    with pytest.raises(ValueError, match="series has 3 steps but states has 2"):
        plotting.plot_states([1, 2, 3], [0, 1])


def test_posteriors_and_transition_heatmap(faithful):
    X, _, hmm = faithful
    ax = plotting.plot_posteriors(hmm.predict_proba(X))
    assert ax.get_ylim() == (0.0, 1.0) and len(ax.collections) == 2
    ax = plotting.plot_transition_matrix(hmm)
    np.testing.assert_allclose(ax.images[0].get_array(), hmm.transmat_)
    assert len(ax.texts) == 4
    with pytest.raises(ValueError, match="square"):
        plotting.plot_transition_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="n_steps, n_states"):
        plotting.plot_posteriors(np.ones(4))


def test_mixture_ellipses_for_mixtures_and_hmms(faithful):
    X, names, hmm = faithful
    for model in (GaussianMixture(3, covariance_type="diag", random_state=0).fit(X), hmm):
        ax = plotting.plot_mixture_2d(model, X, feature_names=names)
        assert len(ax.patches) == 2 * model.n_components            # two ellipses per component
        assert ax.get_xlabel() == "eruptions"


def test_density_continuous_and_discrete():
    X, _ = load_old_faithful()
    gm = GaussianMixture(2, random_state=0).fit(X[:, 1:])
    ax = plotting.plot_mixture_density(gm, X[:, 1])
    mixture_line = ax.lines[0]
    x, y = mixture_line.get_data()
    np.testing.assert_allclose(y, np.exp(gm.score_samples(x[:, None])))
    assert len(ax.lines) == 3 and ax.get_ylabel() == "density"
    _, counts = load_earthquakes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = MixtureModel("poisson", 2, random_state=0).fit(counts[:, None])
    ax = plotting.plot_mixture_density(pm, counts)
    x, y = ax.lines[0].get_data()
    assert np.all(x == np.round(x)) and ax.get_ylabel() == "probability"
    np.testing.assert_allclose(y, np.exp(pm.score_samples(x[:, None])))


def test_convergence_reads_each_kind_of_trace(faithful):
    X, _, hmm = faithful
    ax = plotting.plot_convergence(hmm)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), hmm.monitor_.history)
    assert ax.get_ylabel() == "log-likelihood (total)"
    gm = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_allclose(plotting.plot_convergence(gm).lines[0].get_ydata(), gm.lower_bounds_)

    class VariationalStandIn:
        elbo_history_ = [-5.0, -3.0, -2.5]
    assert plotting.plot_convergence(VariationalStandIn()).get_ylabel() == "ELBO"
    with pytest.raises(ValueError, match="no objective trace"):
        plotting.plot_convergence(PoissonHMM())
    ax = plotting.plot_criterion({"full": ([1, 2], [3.0, 2.0])}, chosen=(2, 2.0))
    assert len(ax.lines) == 2


def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        plotting.plot_states([1.0, 2.0], [0, 1])
