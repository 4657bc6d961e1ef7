"""Compiled (numba) emission kernels of the HMMs against independent float64 references.

Log-densities come from scipy.stats; weighted statistics and symbol counts from plain
numpy sums over the rows; the one-call E-step of small problems from the separate steps
and from a float64 torch E-step (a different code path).
"""

import numpy as np
import pytest
import torch
from scipy import stats

from probkit import CategoricalHMM, GaussianHMM
from probkit.inference._lazy_numba import numba_backend
from probkit.utils.threads import get_num_threads, set_num_threads

backend = numba_backend()
pytestmark = pytest.mark.skipif(backend is None, reason="numba is not installed")

COVARIANCE_TYPES = ("diag", "spherical", "full", "tied")


def random_case(covariance_type, n, k, d, seed):
    rng = np.random.RandomState(seed)
    x = rng.normal(50.0, 3.0, (n, d))          # far from the origin: the kernels must keep digits
    means = rng.normal(50.0, 3.0, (k, d))
    if covariance_type == "diag":
        covars = rng.uniform(0.5, 2.0, (k, d))
    elif covariance_type == "spherical":
        covars = rng.uniform(0.5, 2.0, k)
    else:
        a = rng.normal(size=(k, d, d))
        covars = a @ a.transpose(0, 2, 1) + np.eye(d)
        if covariance_type == "tied":
            covars = covars[0]
    return x, means, covars


def full_matrices(covars, covariance_type, k, d):
    return {"diag": lambda: np.stack([np.diag(c) for c in covars]),
            "spherical": lambda: np.stack([c * np.eye(d) for c in covars]),
            "full": lambda: covars,
            "tied": lambda: np.tile(covars, (k, 1, 1))}[covariance_type]()


@pytest.fixture(params=[1, 2], ids=["one-block", "two-blocks"])
def row_blocks(request, monkeypatch):
    """Run the kernels on one block of rows, or split over two worker threads."""
    saved = get_num_threads()
    set_num_threads(saved["intra_op"], workers=request.param)
    if request.param > 1:
        monkeypatch.setattr("probkit.inference._numba_backend._MIN_WORK_FOR_THREADS", 0)
    yield request.param
    set_num_threads(saved["intra_op"], workers=saved["workers"])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_log_density_matches_scipy(covariance_type, row_blocks):
    n, k, d = 301, 4, 3
    x, means, covars = random_case(covariance_type, n, k, d, seed=1)
    got = backend.gaussian_log_density(x, means, covars, covariance_type)
    mats = full_matrices(covars, covariance_type, k, d)
    want = np.column_stack([stats.multivariate_normal(means[j], mats[j]).logpdf(x) for j in range(k)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


def test_gaussian_log_density_rejects_a_covariance_that_is_not_positive_definite():
    x, means, covars = random_case("full", 10, 2, 2, seed=2)
    covars[1] = [[1.0, 2.0], [2.0, 1.0]]
    with pytest.raises(np.linalg.LinAlgError):
        backend.gaussian_log_density(x, means, covars, "full")


@pytest.mark.parametrize("full", [False, True], ids=["per-feature", "outer-products"])
def test_gaussian_stats_match_numpy_sums(full, row_blocks):
    rng = np.random.RandomState(3)
    n, k, d = 257, 3, 4
    x = rng.normal(10.0, 2.0, (n, d))
    shift = x.mean(0)
    post = rng.dirichlet(np.ones(k), n)
    count, sx, sxx = backend.gaussian_stats(x, shift, post, full)
    xs = x - shift
    np.testing.assert_allclose(count, post.sum(0), rtol=1e-13)
    np.testing.assert_allclose(sx, post.T @ xs, rtol=1e-12, atol=1e-11)
    want = np.einsum("nk,nd,ne->kde", post, xs, xs) if full else post.T @ (xs * xs)
    np.testing.assert_allclose(sxx, want, rtol=1e-12, atol=1e-11)


def test_categorical_counts_match_a_loop_over_rows(row_blocks):
    rng = np.random.RandomState(4)
    n, k, m = 500, 3, 7
    symbols = rng.randint(0, m, n)
    post = rng.dirichlet(np.ones(k), n)
    count, counts = backend.categorical_counts(symbols, post, m)
    want = np.zeros((k, m))
    for t in range(n):
        want[:, symbols[t]] += post[t]
    np.testing.assert_allclose(count, post.sum(0), rtol=1e-13)
    np.testing.assert_allclose(counts, want, rtol=1e-13)


def test_categorical_counts_reject_a_symbol_outside_the_table():
    post = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="outside the emission table"):
        backend.categorical_counts(np.array([0, 5, 1]), post, 3)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("implementation", ["scaling", "log"])
def test_one_call_estep_equals_the_separate_steps(covariance_type, implementation, monkeypatch):
    x, means, covars = random_case(covariance_type, 120, 3, 2, seed=5)
    lengths = np.array([50, 70])
    rng = np.random.RandomState(6)
    log_start = np.log(rng.dirichlet(np.ones(3)))
    log_trans = np.log(rng.dirichlet(np.ones(3), 3))
    shift = x.mean(0)
    use_log = implementation == "log"
    fused = backend.gaussian_estep(x, means, covars, covariance_type, shift, log_start, log_trans, lengths, use_log)
    monkeypatch.setattr("probkit.inference._numba_backend._FUSED_MAX_SIZE", 0)
    assert backend.gaussian_estep(x, means, covars, covariance_type, shift, log_start, log_trans, lengths,
                                  use_log) is None
    log_emission = backend.gaussian_log_density(x, means, covars, covariance_type)
    separate = backend.forward_backward(log_start, log_trans, log_emission, lengths, use_log)
    post = separate[1]
    full = covariance_type in ("full", "tied")
    for got, want in zip(fused[0], separate):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for got, want in zip(fused[1], backend.gaussian_stats(x, shift, post, full)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def without_numba(monkeypatch):
    """Make the HMMs run their float64 torch path (the reference) instead of the compiled one."""
    monkeypatch.setattr("probkit.hmm._base.numba_backend", lambda: None)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_hmm_em_trajectory_equals_the_torch_path(covariance_type, monkeypatch):
    x, means, covars = random_case(covariance_type, 300, 3, 2, seed=7)
    fits = []
    for reference in (False, True):
        if reference:
            without_numba(monkeypatch)
        model = GaussianHMM(3, covariance_type=covariance_type, n_iter=8, tol=-np.inf, init_params="")
        model.startprob_ = np.full(3, 1 / 3)
        model.transmat_ = np.full((3, 3), 1 / 3)
        model.means_ = means.copy()
        model.covars_ = covars.copy()
        with pytest.warns(Warning):  # the fit stops at n_iter (tol=-inf): a ConvergenceWarning
            fits.append(model.fit(x, lengths=[100, 200]))
    compiled, torch_path = fits
    np.testing.assert_allclose(compiled.monitor_.history, torch_path.monitor_.history, rtol=1e-10)
    np.testing.assert_allclose(compiled.means_, torch_path.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(compiled.covars_, torch_path.covars_, rtol=1e-9, atol=1e-9)


def test_categorical_hmm_em_equals_the_torch_path(monkeypatch):
    rng = np.random.RandomState(8)
    x = rng.randint(0, 5, (400, 1))
    transmat, emissionprob = rng.dirichlet(np.ones(3), 3), rng.dirichlet(np.ones(5), 3)
    fits = []
    for reference in (False, True):
        if reference:
            without_numba(monkeypatch)
        model = CategoricalHMM(3, n_iter=6, tol=-np.inf, init_params="")
        model.startprob_ = np.full(3, 1 / 3)
        model.transmat_ = transmat.copy()
        model.emissionprob_ = emissionprob.copy()
        with pytest.warns(Warning):  # the fit stops at n_iter (tol=-inf): a ConvergenceWarning
            fits.append(model.fit(x))
    compiled, torch_path = fits
    np.testing.assert_allclose(compiled.monitor_.history, torch_path.monitor_.history, rtol=1e-10)
    np.testing.assert_allclose(compiled.emissionprob_, torch_path.emissionprob_, rtol=1e-9, atol=1e-12)


def test_the_reference_path_runs_on_tensors(monkeypatch):
    without_numba(monkeypatch)
    data = GaussianHMM(2)._validate_sequences(np.zeros((4, 1)), None, reset=True)
    assert isinstance(data.x, torch.Tensor)
