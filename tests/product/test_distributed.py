"""Distributed EM over 2 local gloo processes equals single-process EM from the same start."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from probkit.distributed import (all_reduce_estep, distributed_em, init_distributed, shard_rows, shard_sequences,
                                 wrap_ddp)
from probkit.em.engine import EStepResult
from tests.product._dist_worker import ddp_train, gmm_default, gmm_explicit, hmm_default, hmm_explicit, make_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RTOL, ATOL = 1e-8, 1e-9


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    from probkit.distributed import _free_port

    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2",
               OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-m", "tests.product._dist_worker", str(out)], cwd=ROOT,
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("distributed workers timed out")
    for p, log in zip(procs, logs):
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
