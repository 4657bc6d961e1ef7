"""Mixtures print scikit-learn's verbose lines (to standard error, beside any progress bar).

Truth: scikit-learn's GaussianMixture printing its own lines for the same data and start.
"""

import re

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from probkit import GaussianMixture, MixtureModel
from probkit.datasets import load_old_faithful

X, _ = load_old_faithful()
START = dict(weights_init=[0.5, 0.5], means_init=[[2.0, 55.0], [4.0, 80.0]])


def lines(text):
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("n_init", [1, 2])
def test_verbose_1_prints_the_lines_scikit_learn_prints(n_init, capsys):
    SkGaussianMixture(2, tol=1e-6, max_iter=100, n_init=n_init, verbose=1, verbose_interval=3, **START).fit(X)
    expected = lines(capsys.readouterr().out)
    GaussianMixture(2, tol=1e-6, max_iter=100, n_init=n_init, verbose=1, verbose_interval=3, **START).fit(X)
    captured = capsys.readouterr()
    ours = [line for line in lines(captured.err) if not re.search(r"\d+/\d+ \[|it/s|%\|", line)]  # bar frames
    assert ours == expected
    assert expected[0] == "Initialization 0" and expected[-1] == "Initialization converged."
    assert captured.out == ""


def test_verbose_2_adds_time_lapses_ll_changes_and_the_bound(capsys):
    gm = GaussianMixture(2, tol=1e-6, max_iter=100, verbose=2, verbose_interval=2, **START).fit(X)
    err = lines(capsys.readouterr().err)
    iteration = [line for line in err if line.startswith("  Iteration")]
    assert len(iteration) == gm.n_iter_ // 2
    for line in iteration:
        assert re.fullmatch(r"  Iteration \d+\t time lapse \d+\.\d{5}s\t ll change -?\d+\.\d{5}", line), line
    end = [line for line in err if line.startswith("Initialization converged.")]
    assert len(end) == 1
    assert re.search(r"time lapse \d+\.\d{5}s\t lower bound (-?\d+\.\d{5})\.$", end[0])
    assert float(end[0].rsplit(" ", 1)[1].rstrip(".")) == pytest.approx(gm.lower_bound_, abs=1e-5)


def test_a_start_that_does_not_converge_says_so(capsys):
    with pytest.warns(Warning):
        MixtureModel(family="normal", n_components=2, max_iter=2, verbose=1, random_state=0).fit(X[:, :1])
    err = capsys.readouterr().err
    assert "Initialization 0" in err and "Initialization did not converge." in err


def test_silent_by_default(capsys):
    GaussianMixture(2, random_state=0).fit(X)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
