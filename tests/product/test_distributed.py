"""Distributed EM over 2 local gloo processes: equals single-process EM from the same start, and fails loudly."""

import datetime
import subprocess
import time
import warnings

import numpy as np
import pytest
import torch

from probkit import GaussianMixture
from probkit.distributed import (all_reduce_estep, distributed_em, init_distributed, shard_rows, shard_sequences,
                                 wrap_ddp)
from probkit.em.engine import EStepResult
from tests.product._dist_worker import (ddp_train, gmm_default, gmm_explicit, hmm_default, hmm_explicit, launch,
                                        make_data, results)

RTOL, ATOL = 1e-8, 1e-9
# Far beyond what a failure takes to reach every rank here, far below gloo's own 30 minutes.
HANG_LIMIT = 60


def _wait_all(procs, timeout, what):
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"{what} still running after {timeout} s")
    return logs


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    procs = launch([str(out)])
    for p, log in zip(procs, _wait_all(procs, 240, "distributed workers")):
        assert p.returncode == 0, log[-3000:]
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]


@pytest.fixture(scope="module")
def data():
    return make_data()


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def test_every_rank_holds_the_same_parameters(ranks):
    r0, r1 = ranks
    assert int(r0["world_size"]) == 2
    shared = [k for k in r0 if not k.startswith("init_")]
    assert set(shared) <= set(r1)
    for key in shared:
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=key)


def test_gaussian_mixture_equals_single_process_fit(ranks, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = gmm_explicit().fit(data["X_mix"])
    _close(ranks[0]["gmm_explicit_weights"], gm.weights_)
    _close(ranks[0]["gmm_explicit_means"], gm.means_)
    _close(ranks[0]["gmm_explicit_covariances"], gm.covariances_)
    _close(ranks[0]["gmm_explicit_lower_bounds"], gm.lower_bounds_)


def test_default_initialisation_is_rank_zeros_and_then_matches(ranks, data):
    r0 = ranks[0]
    # The start every rank adopted is rank 0's initialisation from its own shard;
    # single-process EM on all the data from that start gives the same parameters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = gmm_default().set_params(weights_init=r0["init_gmm_weights"], means_init=r0["init_gmm_means"],
                                      precisions_init=r0["init_gmm_precisions"]).fit(data["X_mix"])
    _close(r0["gmm_default_weights"], gm.weights_)
    _close(r0["gmm_default_means"], gm.means_)
    _close(r0["gmm_default_covariances"], gm.covariances_)
    assert r0["gmm_default_lower_bound"] == pytest.approx(gm.lower_bound_, rel=1e-10)
    # ... and differs from the single-process default start (initialised on all rows), so
    # the comparison above is not vacuous.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = gmm_default().set_params(max_iter=0).fit(data["X_mix"])
    assert not np.allclose(alone.means_, r0["init_gmm_means"])


def test_gaussian_hmm_equals_single_process_fit(ranks, data):
    hmm = hmm_explicit().fit(data["X_seq"], lengths=data["lengths"])
    r0 = ranks[0]
    _close(r0["hmm_explicit_startprob"], hmm.startprob_)
    _close(r0["hmm_explicit_transmat"], hmm.transmat_)
    _close(r0["hmm_explicit_means"], hmm.means_)
    _close(r0["hmm_explicit_covars"], hmm.covars_)
    _close(r0["hmm_explicit_history"], hmm.monitor_.history)


def test_generic_hmm_from_rank_zero_start_equals_single_process_fit(ranks, data):
    r0 = ranks[0]
    hmm = hmm_default().set_params(init_params="")
    hmm.startprob_, hmm.transmat_ = r0["init_hmm_startprob"], r0["init_hmm_transmat"]
    hmm.emission_params_ = {"rate": r0["init_hmm_rates"]}
    hmm.fit(data["counts"], lengths=data["count_lengths"])
    _close(r0["hmm_default_transmat"], hmm.transmat_)
    _close(r0["hmm_default_rates"], hmm.emission_params_["rate"])
    _close(r0["hmm_default_history"], hmm.monitor_.history)


def test_ddp_training_equals_full_batch_training(ranks, data):
    w, b = ddp_train(data["X_reg"], data["y_reg"])
    _close(ranks[0]["ddp_weight"], w)
    _close(ranks[0]["ddp_bias"], b)


# ---------------------------------------------------------------------------- in-process pieces
def test_sharding_covers_the_data_exactly_once():
    X = np.arange(23)
    assert np.array_equal(np.concatenate([shard_rows(X, r, 4) for r in range(4)]), X)
    lengths = [5, 1, 7, 2, 2, 6]
    parts = [shard_sequences(X, lengths, r, 3) for r in range(3)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), X)
    assert sum((p[1].tolist() for p in parts), []) == lengths
    assert all(len(p[1]) >= 1 for p in parts)
    with pytest.raises(ValueError, match="at least one whole sequence"):
        shard_sequences(X, [20, 3], 0, 3)
    with pytest.raises(ValueError, match="sum to n_samples"):
        shard_sequences(X, [5, 5], 0, 2)
    with pytest.raises(ValueError, match="rank must be in"):
        shard_rows(X, 3, 3)


def test_single_process_group_changes_nothing():
    X = make_data()["X_mix"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = gmm_default().fit(X)
        init_distributed(backend="gloo")
        try:
            with distributed_em():
                grouped = gmm_default().fit(shard_rows(X))
            stats = {"a": (torch.ones(2, dtype=torch.float32), np.array([1, 2])), "b": [3.0, None, "x"]}
            reduced = all_reduce_estep(EStepResult(-1.0, 4.0, stats))
            assert reduced.stats["a"][0].dtype == torch.float32 and reduced.stats["a"][1].dtype == np.int64
            assert reduced.stats["b"] == [3.0, None, "x"]
            with pytest.raises(TypeError, match="cannot all-reduce a object"):
                all_reduce_estep(EStepResult(0.0, 1.0, object()))
            assert wrap_ddp(torch.nn.Linear(2, 1)).__class__ is torch.nn.Linear
        finally:
            torch.distributed.destroy_process_group()
    np.testing.assert_array_equal(alone.means_, grouped.means_)


def test_distributed_em_needs_a_process_group():
    with pytest.raises(RuntimeError, match="init_distributed"):
        with distributed_em():
            pass


# ---------------------------------------------------------------------------- failing loudly
@pytest.fixture(scope="module")
def agreement():
    """Rank outcomes of the "agreement" scenario: (return code, output, {step: record})."""
    procs = launch(["--scenario", "agreement"])
    logs = _wait_all(procs, 300, "the agreement scenario")
    return [(p.returncode, log, {r["step"]: r for r in results(log)}) for p, log in zip(procs, logs)]


def test_ranks_with_different_parameters_or_features_fail_together_naming_them(agreement):
    for rc, log, steps in agreement:
        # GaussianMixture(4) on rank 0, GaussianMixture(3) on rank 1.
        assert steps["params"]["error"] == "ValueError", log[-3000:]
        assert "parameter n_components differs: 4 on rank 0; 3 on rank 1" in steps["params"]["message"]
        # The last fit gives rank 0 two columns and rank 1 one, uncaught: the process exits with it.
        assert rc != 0
        assert "ValueError: distributed EM needs the same estimator" in log
        assert "number of features (columns of each rank's X) differs: 2 on rank 0; 1 on rank 1" in log


def test_a_failure_inside_distributed_em_raises_on_every_rank(agreement):
    (_, log0, r0), (_, log1, r1) = agreement
    # Rank 1's third E-step raises: rank 0, waiting to sum the statistics, hears of it.
    assert (r1["estep"]["error"], r1["estep"]["message"]) == ("FloatingPointError", "E-step 3 failed on rank 1")
    assert r0["estep"]["error"] == "RankFailedError", log0[-3000:]
    assert "rank 1 raised FloatingPointError: E-step 3 failed on rank 1" in r0["estep"]["message"]
    # Rank 1 raises after its last collective: rank 0 hears of it when leaving the block.
    assert r1["after_fit"]["error"] == "OSError", log1[-3000:]
    assert r0["after_fit"]["error"] == "RankFailedError"
    assert "rank 1 raised OSError: could not write the model file on rank 1" in r0["after_fit"]["message"]


def test_the_group_still_fits_correctly_after_the_failures(agreement, data):
    (_, log0, r0), (_, log1, r1) = agreement
    assert r0["usable"]["error"] is None and r1["usable"]["error"] is None, log0[-3000:] + log1[-3000:]
    # Single-process EM on all rows from rank 0's initialisation (on its own shard).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = GaussianMixture(3, max_iter=0, random_state=0).fit(shard_rows(data["X_mix"], 0, 2))
        single = GaussianMixture(3, max_iter=5, tol=0.0, random_state=0, weights_init=start.weights_,
                                 means_init=start.means_, precisions_init=start.precisions_).fit(data["X_mix"])
    for r in (r0, r1):
        _close(np.array(r["usable"]["value"]), single.means_)


def _fail_and_stay_alive(tmp_path, scenario, env=None):
    """Rank 1 fails and stays alive until rank 0 has exited; both outputs."""
    release = tmp_path / "release"
    procs = launch(["--scenario", scenario],
                   env={"PROBKIT_DIST_RELEASE": str(release), "PROBKIT_DIST_READY_DIR": str(tmp_path), **(env or {})})
    # Imports can be slow on a loaded machine; the limit below counts from joining the group.
    deadline = time.monotonic() + 300
    while not ((tmp_path / "ready0").exists() and (tmp_path / "ready1").exists()):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    try:
        waiting_log = procs[0].communicate(timeout=HANG_LIMIT)[0]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"rank 0 still waits for the failed rank 1 after {HANG_LIMIT} s")
    assert procs[1].poll() is None  # rank 0 finished without rank 1 exiting
    release.touch()
    failed_log = _wait_all(procs[1:], HANG_LIMIT, "the failed rank 1")[0]
    assert procs[0].returncode != 0 and procs[1].returncode != 0
    return waiting_log, failed_log


def test_a_rank_failing_inside_and_staying_alive_stops_the_others_at_once(tmp_path):
    # The default timeout (minutes): rank 0 is told at its next collective, not by a timeout.
    waiting_log, failed_log = _fail_and_stay_alive(tmp_path, "fail_inside")
    assert "ValueError: Input X contains NaN" in failed_log
    assert "RankFailedError: rank 0: distributed EM stopped because rank 1 raised ValueError: Input X contains NaN" \
        in waiting_log


def test_a_rank_failing_outside_and_staying_alive_stops_the_others_after_the_timeout(tmp_path):
    waiting_log, failed_log = _fail_and_stay_alive(tmp_path, "fail_outside", env={"PROBKIT_DIST_TIMEOUT": "5"})
    assert "OSError: could not read the shard of rank 1" in failed_log
    assert "RankFailedError: rank 0: a collective operation of distributed EM failed" in waiting_log
    assert "did not answer within 5 s (the process group's timeout, see init_distributed)" in waiting_log


def test_init_distributed_checks_the_timeout():
    for bad in (0, -1.0, float("inf"), float("nan"), datetime.timedelta(0)):
        with pytest.raises(ValueError, match="timeout must be a positive, finite number of seconds"):
            init_distributed(backend="gloo", timeout=bad)
    for bad in ("60", True, None):
        with pytest.raises(TypeError, match="timeout must be a number of seconds or a datetime.timedelta"):
            init_distributed(backend="gloo", timeout=bad)
    assert init_distributed(backend="gloo", timeout=datetime.timedelta(seconds=30)) == (0, 1)
    torch.distributed.destroy_process_group()


def test_model_fingerprints_compare_values_not_objects():
    from probkit.distributed import _model_differences, _model_fingerprint

    def fingerprint(**params):
        model = GaussianMixture(3, means_init=np.arange(6.0).reshape(3, 2), **params)
        model.n_features_in_ = 2
        return _model_fingerprint(model)

    base = fingerprint()
    # Equal values in new objects, and the parameters each rank may set for itself, agree.
    assert fingerprint(random_state=5, verbose=2, verbose_interval=3, device="cpu") == base
    assert _model_differences([base, fingerprint()], [0, 1]) == []
    other = GaussianMixture(3, covariance_type="diag", means_init=np.arange(6.0).reshape(3, 2) + 1)
    other.n_features_in_ = 3
    assert _model_differences([base, _model_fingerprint(other), base], [0, 1, 2]) == [
        "the number of features (columns of each rank's X) differs: 2 on ranks 0, 2; 3 on rank 1",
        "parameter covariance_type differs: 'full' on ranks 0, 2; 'diag' on rank 1",
        "parameter means_init differs: array([[0., 1.], [2., 3.], [4., 5.]]) on ranks 0, 2; "
        "array([[1., 2.], [3., 4.], [5., 6.]]) on rank 1",
    ]
    # Values that print alike (a long array shortened) but differ are told apart.
    last_differs = np.zeros((20, 2))
    last_differs[-1, -1] = 1.0
    long = [GaussianMixture(20, means_init=m) for m in (np.zeros((20, 2)), last_differs)]
    (message,) = _model_differences([_model_fingerprint(m) for m in long], [0, 1])
    assert message.startswith("parameter means_init differs: value 1 (array([[0., 0.], ")
    assert "on rank 0; value 2 (array([[0., 0.], " in message and message.endswith(") on rank 1")
