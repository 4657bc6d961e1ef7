"""R-hat, ESS and MCSE against the R package ``posterior`` and against the published formulas.

Truths:

* ``posterior_reference.csv``: values computed by R's ``posterior`` (the reference
  implementation of Vehtari et al. 2021, by its authors) on two Stan chains of the BUGS
  "blocker" model (``stan_blocker_draws.csv.gz``); provenance in ``data/README.md``;
* a direct implementation of the paper's formulas written for this test (explicit loops,
  O(N^2) autocovariances, Geyer's sequences written as pair sums);
* a hand-computed Gelman-Rubin R-hat.
"""

import csv
import gzip
import math
import os

import numpy as np
import pytest
from scipy.stats import norm

from probkit.vi import MCMCResult, ess, mcse, rhat
from probkit.vi.diagnostics import rank_normalize, split_chains

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _blocker():
    with gzip.open(os.path.join(DATA, "stan_blocker_draws.csv.gz"), "rt") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    chain = np.array([int(r[0]) for r in body])
    values = np.array([[float(v) for v in r[1:]] for r in body])
    draws = {name: np.stack([values[chain == c, j] for c in (1, 2)]) for j, name in enumerate(header[1:])}
    with open(os.path.join(DATA, "posterior_reference.csv")) as f:
        ref_rows = list(csv.reader(f))
    reference = {r[0]: dict(zip(ref_rows[0][1:], map(float, r[1:]))) for r in ref_rows[1:]}
    return draws, reference


BLOCKER, REFERENCE = _blocker()
OURS = {
    "rhat_rank": lambda x: rhat(x),
    "rhat_raw": lambda x: rhat(x, method="basic"),
    "ess_bulk": lambda x: ess(x),
    "ess_tail": lambda x: ess(x, method="tail"),
    "ess_mean": lambda x: ess(x, method="mean"),
    "ess_sd": lambda x: ess(x, method="sd"),
    "ess_raw": lambda x: ess(x, method="basic"),
    "mcse_mean": lambda x: mcse(x),
    "mcse_sd": lambda x: mcse(x, method="sd"),
}


@pytest.mark.parametrize("quantity", sorted(OURS))
@pytest.mark.parametrize("parameter", sorted(REFERENCE))
def test_matches_r_posterior_package(parameter, quantity):
    value = OURS[quantity](BLOCKER[parameter])
    # The R values are printed with 15 significant digits; the algorithms agree to rounding.
    assert value == pytest.approx(REFERENCE[parameter][quantity], rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------------- the formulas, written out
def _direct_acov(chain):
    n = len(chain)
    c = chain - chain.mean()
    return np.array([sum(c[i] * c[i + t] for i in range(n - t)) / n for t in range(n)])


def _direct_ess(x):
    """ESS of (M, N) draws from the paper's equations, as pair sums."""
    m, n = x.shape
    acov = np.array([_direct_acov(c) for c in x])
    w = np.mean([np.var(c, ddof=1) for c in x])
    var_plus = (n - 1) / n * w + (np.var(x.mean(1), ddof=1) if m > 1 else 0.0)
    rho = [1.0 - (w - acov[:, t].mean()) / var_plus for t in range(n)]
    rho[0] = 1.0
    # Geyer's initial positive sequence of pair sums P_k = rho_2k + rho_2k+1: pair k + 1 is
    # computed while P_k > 0 and 2k + 1 < N - 3; the last pair computed, k*, is left out.
    pairs = [rho[0] + rho[1]]
    while pairs[-1] > 0 and 2 * (len(pairs) - 1) + 1 < n - 3:
        k = len(pairs)
        pairs.append(rho[2 * k] + rho[2 * k + 1])
    last = len(pairs) - 1
    kept = pairs[:last]
    # initial monotone sequence: a pair sum may not exceed the one before it
    for i in range(1, len(kept)):
        kept[i] = min(kept[i], kept[i - 1])
    tau = -1.0 + 2.0 * sum(kept)
    # Stan's refinement: the even term of pair k* (dropped when that pair is negative and it is not positive)
    even = rho[2 * last]
    if pairs[last] >= 0 or even > 0:
        tau += even
    tau = max(tau, 1.0 / math.log10(m * n))
    return m * n / tau


def _direct_rhat(x):
    m, n = x.shape
    w = np.mean([np.var(c, ddof=1) for c in x])
    b = n * np.var(x.mean(1), ddof=1)
    return math.sqrt(((n - 1) / n * w + b / n) / w)


def _direct_split(x):
    half = x.shape[1] // 2
    return np.vstack([x[:, :half], x[:, x.shape[1] - half:]])


def _direct_z(x):
    flat = x.ravel()
    order = np.argsort(flat, kind="stable")
    ranks = np.empty(flat.size)
    ranks[order] = np.arange(1, flat.size + 1)
    for v in np.unique(flat):  # average ranks of ties
        ranks[flat == v] = ranks[flat == v].mean()
    return norm.ppf((ranks - 3 / 8) / (flat.size - 2 * 3 / 8 + 1)).reshape(x.shape)


def _ar1(phi, shape, seed):
    rng = np.random.RandomState(seed)
    x = np.zeros(shape)
    x[:, 0] = rng.normal(size=shape[0]) / math.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=shape[0])
    return x


ARRAYS = {
    "iid": np.random.RandomState(0).normal(size=(3, 61)),
    "ar0.8": _ar1(0.8, (4, 80), 1),
    "antithetic": _ar1(-0.7, (2, 64), 2),     # tau < 1: the 1 / log10(S) bound matters
    "ties": np.random.RandomState(3).poisson(1.5, size=(4, 40)).astype(float),
    "shifted chains": _ar1(0.3, (2, 50), 4) + np.array([[0.0], [1.5]]),
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_ess_and_rhat_equal_the_formulas_written_out(name):
    x = ARRAYS[name]
    assert ess(x, method="basic") == pytest.approx(_direct_ess(x), rel=1e-10)
    assert ess(x, method="mean") == pytest.approx(_direct_ess(_direct_split(x)), rel=1e-10)
    assert ess(x) == pytest.approx(_direct_ess(_direct_z(_direct_split(x))), rel=1e-10)
    assert rhat(x, method="basic") == pytest.approx(_direct_rhat(x), rel=1e-12)
    assert rhat(x, method="split") == pytest.approx(_direct_rhat(_direct_split(x)), rel=1e-12)
    folded = np.abs(x - np.median(x))
    expected = max(_direct_rhat(_direct_z(_direct_split(x))), _direct_rhat(_direct_z(_direct_split(folded))))
    assert rhat(x) == pytest.approx(expected, rel=1e-12)
    sd = np.std(x, ddof=1)
    assert mcse(x) == pytest.approx(sd / math.sqrt(_direct_ess(_direct_split(x))), rel=1e-10)


def test_hand_computed_gelman_rubin():
    # means 2.5 and 4.5, within-chain variances 5/3: R = sqrt((3/4 * 5/3 + 2) / (5/3)) = sqrt(1.95)
    x = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]])
    assert rhat(x, method="basic") == pytest.approx(math.sqrt(1.95), rel=1e-14)


def test_split_drops_the_middle_draw_of_odd_chains():
    np.testing.assert_array_equal(split_chains(np.arange(5)[None]), [[0, 1], [3, 4]])


def test_rank_diagnostics_are_invariant_to_monotone_transforms():
    x = ARRAYS["ar0.8"]
    assert rhat(np.exp(x)) == pytest.approx(rhat(x), rel=1e-12)
    assert ess(np.exp(x)) == pytest.approx(ess(x), rel=1e-12)
    np.testing.assert_allclose(rank_normalize(x ** 3), rank_normalize(x), rtol=1e-12)


def test_independent_draws_have_ess_near_their_number_and_rhat_near_one():
    x = np.random.RandomState(5).normal(size=(4, 2000))
    assert 0.9 < ess(x, relative=True) < 1.1
    assert abs(rhat(x) - 1.0) < 0.005


def test_vector_parameters_get_one_value_per_element():
    x = np.random.RandomState(6).normal(size=(2, 100, 3, 2))
    assert rhat(x).shape == (3, 2) and ess(x, method="tail").shape == (3, 2) and mcse(x).shape == (3, 2)
    assert ess(x)[1, 0] == ess(x[:, :, 1, 0])


def test_constant_draws():
    x = np.full((2, 50), 3.0)
    assert ess(x) == 100.0
    assert math.isnan(rhat(x))


@pytest.mark.parametrize("bad, message", [
    (np.array([[1.0, np.nan, 2.0, 3.0, 4.0]]), "NaN"),
    (np.ones((2, 3)), "at least 4 draws"),
    (np.float64(1.0), "shape"),
])
def test_bad_draws_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        ess(bad)


def test_bad_methods_are_refused():
    x = np.random.RandomState(0).normal(size=(2, 20))
    for func in (rhat, ess, mcse):
        with pytest.raises(ValueError, match="method must be one of"):
            func(x, method="nope")


# ---------------------------------------------------------------------------- MCMCResult
def test_result_summary_and_pooling():
    rng = np.random.RandomState(0)
    res = MCMCResult({"a": rng.normal(size=(3, 40)), "b": rng.normal(size=(3, 40, 2))},
                     {"log_likelihood": rng.normal(size=(3, 40))}, {"sampler": "test"})
    assert res.draws("b").shape == (120, 2)
    np.testing.assert_array_equal(res.draws("b")[40:80], res.samples["b"][1])
    table = res.summary()
    assert table["a"]["r_hat"] == rhat(res.samples["a"]) and table["b"]["ess_bulk"].shape == (2,)
    assert res.mean("log_likelihood") == pytest.approx(res.sample_stats["log_likelihood"].mean())
    with pytest.raises(KeyError, match="no parameter"):
        res.mean("c")
    with pytest.raises(ValueError, match="chains and draws"):
        MCMCResult({"a": np.zeros((2, 10)), "b": np.zeros((2, 11))})


def test_to_inference_data_without_arviz_is_a_clear_import_error():
    try:
        import arviz  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("arviz is installed: the conversion itself is tested")
    with pytest.raises(ImportError, match="pip install arviz"):
        MCMCResult({"a": np.zeros((2, 10))}).to_inference_data()


def test_to_inference_data_with_arviz():
    pytest.importorskip("arviz", reason="arviz is not installed (an optional dependency)")
    rng = np.random.RandomState(0)
    draws = rng.normal(size=(2, 30, 3))
    idata = MCMCResult({"beta": draws}, {"lp": rng.normal(size=(2, 30))}).to_inference_data()
    np.testing.assert_array_equal(np.asarray(idata.posterior["beta"]), draws)
