"""Worker of tests/product/test_distributed.py: one rank of a 2-process gloo group.

Run with torchrun's environment variables set (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT), or start both ranks with :func:`launch`:

``python -m tests.product._dist_worker OUT_DIR``
    Fits on this rank's shard and writes ``OUT_DIR/rank<r>.npz``.
``python -m tests.product._dist_worker --scenario NAME``
    A failure scenario (:data:`SCENARIOS`); prints one JSON line per outcome, prefixed
    with ``RESULT``. ``PROBKIT_DIST_TIMEOUT`` (seconds) is passed to ``init_distributed``,
    which the ranks call together once each has created its file in the folder
    ``PROBKIT_DIST_READY_DIR`` (when given); a rank that fails and "stays alive" waits
    until the file ``PROBKIT_DIST_RELEASE`` exists (at most ``LINGER_CAP`` seconds), then
    exits with its exception.
"""

import gc
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

from probkit import HMM, GaussianHMM, GaussianMixture
from probkit.distributed import (_free_port, distributed_em, init_distributed, shard_rows, shard_sequences,
                                 wrap_ddp)
from probkit.io import register_estimator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINGER_CAP = 600.0  # beyond the default timeout, for the benchmark; the tests release it sooner


def make_data():
    rng = np.random.RandomState(42)
    X_mix = np.r_[rng.normal([0, 0], 1.0, (150, 2)), rng.normal([4, 3], 0.7, (130, 2)),
                  rng.normal([-3, 4], 0.5, (120, 2))]
    rng.shuffle(X_mix)
    ref = GaussianHMM(2, covariance_type="diag", init_params="")
    ref.startprob_ = np.array([0.7, 0.3])
    ref.transmat_ = np.array([[0.9, 0.1], [0.15, 0.85]])
    ref.means_ = np.array([[0.0, 1.0], [3.0, -1.0]])
    ref.covars_ = np.array([[1.0, 0.5], [0.6, 1.2]])
    lengths = np.array([60, 45, 70, 50, 55, 40])
    X_seq = np.concatenate([ref.sample(n, random_state=i)[0] for i, n in enumerate(lengths)])
    counts = np.concatenate([rng.poisson(2.0, 90), rng.poisson(9.0, 70), rng.poisson(2.0, 60),
                             rng.poisson(9.0, 80)]).reshape(-1, 1).astype(float)
    count_lengths = np.array([160, 140])
    X_reg = rng.normal(size=(64, 3))
    y_reg = X_reg @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=64)
    return {"X_mix": X_mix, "X_seq": X_seq, "lengths": lengths, "counts": counts,
            "count_lengths": count_lengths, "X_reg": X_reg, "y_reg": y_reg}


def gmm_explicit():
    return GaussianMixture(3, covariance_type="full", max_iter=15, tol=0.0, weights_init=[0.3, 0.3, 0.4],
                           means_init=[[1.0, 0.0], [3.0, 3.0], [-2.0, 3.0]],
                           precisions_init=np.tile(np.eye(2), (3, 1, 1)), random_state=0)


def gmm_default(n_init=1):
    return GaussianMixture(3, covariance_type="diag", max_iter=15, tol=0.0, n_init=n_init, random_state=0)


def hmm_explicit():
    model = GaussianHMM(2, covariance_type="diag", n_iter=10, tol=0.0, init_params="", random_state=0)
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.8, 0.2], [0.2, 0.8]])
    model.means_ = np.array([[-1.0, 0.0], [2.0, 0.0]])
    model.covars_ = np.ones((2, 2))
    return model


def hmm_default():
    return HMM(emission="poisson", n_components=2, n_iter=10, tol=0.0, random_state=0)


def ddp_train(X, y, steps=5):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1).double()
    model = wrap_ddp(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, t = torch.as_tensor(X), torch.as_tensor(y).reshape(-1, 1)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), t).backward()
        opt.step()
    weight, bias = net.weight.detach().numpy().copy(), net.bias.detach().numpy().copy()
    # release the DDP reducer now: one collected at interpreter exit, after the process group is
    # destroyed, can abort the worker ("terminate called without an active exception")
    del model, opt
    gc.collect()
    return weight, bias


def main(out_dir):
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rank, world = init_distributed(backend="gloo")
    data = make_data()
    out = {}
    with distributed_em():
        gm = gmm_explicit().fit(shard_rows(data["X_mix"]))
        out.update(gmm_explicit_weights=gm.weights_, gmm_explicit_means=gm.means_,
                   gmm_explicit_covariances=gm.covariances_, gmm_explicit_lower_bounds=np.array(gm.lower_bounds_))
        gm = gmm_default().fit(shard_rows(data["X_mix"]))
        out.update(gmm_default_weights=gm.weights_, gmm_default_means=gm.means_,
                   gmm_default_covariances=gm.covariances_, gmm_default_lower_bound=gm.lower_bound_)
        gm = gmm_default(n_init=3).fit(shard_rows(data["X_mix"]))
        out.update(gmm_ninit_means=gm.means_, gmm_ninit_lower_bound=gm.lower_bound_)
        Xs, ls = shard_sequences(data["X_seq"], data["lengths"])
        hmm = hmm_explicit().fit(Xs, lengths=ls)
        out.update(hmm_explicit_startprob=hmm.startprob_, hmm_explicit_transmat=hmm.transmat_,
                   hmm_explicit_means=hmm.means_, hmm_explicit_covars=hmm.covars_,
                   hmm_explicit_history=np.array(hmm.monitor_.history))
        Xc, lc = shard_sequences(data["counts"], data["count_lengths"])
        hmm = hmm_default().fit(Xc, lengths=lc)
        out.update(hmm_default_transmat=hmm.transmat_, hmm_default_rates=hmm.emission_params_["rate"],
                   hmm_default_history=np.array(hmm.monitor_.history))
    # Initial parameters rank 0 draws from its own shard (the start every rank adopts).
    if rank == 0:
        init = gmm_default().set_params(max_iter=0, n_init=1).fit(shard_rows(data["X_mix"]))
        out.update(init_gmm_weights=init.weights_, init_gmm_means=init.means_, init_gmm_precisions=init.precisions_)
        init = hmm_default().set_params(n_iter=0).fit(Xc, lengths=lc)
        out.update(init_hmm_startprob=init.startprob_, init_hmm_transmat=init.transmat_,
                   init_hmm_rates=init.emission_params_["rate"])
    w, b = ddp_train(shard_rows(data["X_reg"]), shard_rows(data["y_reg"]))
    out.update(ddp_weight=w, ddp_bias=b, world_size=np.array(world))
    np.savez(f"{out_dir}/rank{rank}.npz", **out)
    torch.distributed.barrier()   # no rank tears the group down while the other still uses it
    torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------------- failure scenarios
def _report(**fields):
    print("RESULT " + json.dumps(fields), flush=True)


def _init():
    ready = os.environ.get("PROBKIT_DIST_READY_DIR")
    if ready:
        # Joining the group is bounded by the timeout too: start it together, however slow the imports were.
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        open(os.path.join(ready, f"ready{rank}"), "w").close()
        deadline = time.monotonic() + LINGER_CAP
        while time.monotonic() < deadline and not all(
                os.path.exists(os.path.join(ready, f"ready{r}")) for r in range(world_size)):
            time.sleep(0.02)
    timeout = os.environ.get("PROBKIT_DIST_TIMEOUT")
    if timeout is None:
        return init_distributed(backend="gloo")
    return init_distributed(backend="gloo", timeout=float(timeout))


def _linger():
    """Keep this failed process alive (like a script that caught the error) until released."""
    release = os.environ.get("PROBKIT_DIST_RELEASE")
    deadline = time.monotonic() + LINGER_CAP
    while time.monotonic() < deadline and not (release and os.path.exists(release)):
        time.sleep(0.02)


_estep_calls = [0]


@register_estimator
class EStepFailsOnRankOne(GaussianMixture):
    """A GaussianMixture whose third E-step raises on rank 1 (a failure in the middle of EM)."""

    def _em_expectation(self, data):
        _estep_calls[0] += 1
        if torch.distributed.get_rank() == 1 and _estep_calls[0] == 3:
            raise FloatingPointError("E-step 3 failed on rank 1")
        return super()._em_expectation(data)


def _step(name, rank, fn):
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
        _report(step=name, rank=rank, error=type(exc).__name__, message=str(exc))
    else:
        _report(step=name, rank=rank, error=None, value=value)


def scenario_agreement():
    """Failures every rank hears of at a collective; the group stays usable after each."""
    warnings.simplefilter("ignore")
    rank, _ = _init()
    X = shard_rows(make_data()["X_mix"])

    def fit(model, data=X):
        with distributed_em():
            return model.fit(data).means_.tolist()

    # Rank 0 fits 4 components, rank 1 fits 3.
    _step("params", rank, lambda: fit(GaussianMixture(4 - rank, max_iter=5, random_state=0)))

    def estep():
        _estep_calls[0] = 0
        return fit(EStepFailsOnRankOne(3, max_iter=10, tol=0.0, random_state=0))

    _step("estep", rank, estep)

    def after_fit():
        with distributed_em():
            means = GaussianMixture(3, max_iter=5, random_state=0).fit(X).means_.tolist()
            if rank == 1:
                raise OSError("could not write the model file on rank 1")
        return means

    _step("after_fit", rank, after_fit)
    _step("usable", rank, lambda: fit(GaussianMixture(3, max_iter=5, tol=0.0, random_state=0)))
    # Rank 0 has 2 columns, rank 1 has 1; not caught, so the process exits with it.
    fit(GaussianMixture(3, max_iter=5, random_state=0), X[:, :2 - rank])


def scenario_fail_inside():
    """Rank 1's shard fails validation inside distributed_em(); rank 1 then stays alive."""
    rank, _ = _init()
    X = shard_rows(make_data()["X_mix"]).copy()
    if rank == 1:
        X[5, 0] = np.nan
    try:
        with distributed_em():
            if rank == 1:
                _report(event="failed", rank=rank, t=time.time())
            GaussianMixture(3, max_iter=5, random_state=0).fit(X)
    except Exception:
        if rank == 1:
            _linger()
        else:
            _report(event="raised", rank=rank, t=time.time())
        raise


def scenario_fail_outside():
    """Rank 1 fails before it enters distributed_em() and stays alive; rank 0 waits inside."""
    rank, _ = _init()
    X = shard_rows(make_data()["X_mix"])
    if rank == 1:
        try:
            _report(event="failed", rank=rank, t=time.time())
            raise OSError("could not read the shard of rank 1")
        except OSError:
            _linger()
            raise
    try:
        with distributed_em():
            GaussianMixture(3, max_iter=5, random_state=0).fit(X)
    except Exception:
        _report(event="raised", rank=rank, t=time.time())
        raise


SCENARIOS = {"agreement": scenario_agreement, "fail_inside": scenario_fail_inside,
             "fail_outside": scenario_fail_outside}


def launch(args, env=None, world_size=2, module="tests.product._dist_worker"):
    """Start ``world_size`` ranks of ``module`` with ``args`` on a free port; the processes, in rank order.

    Their stdout and stderr go, merged, to a pipe.
    """
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world_size),
                OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    return [subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                             env=dict(base, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for r in range(world_size)]


def results(log):
    """The RESULT records printed in a worker's output."""
    return [json.loads(line[len("RESULT "):]) for line in log.splitlines() if line.startswith("RESULT ")]


if __name__ == "__main__":
    if sys.argv[1] == "--scenario":
        torch.set_num_threads(1)
        SCENARIOS[sys.argv[2]]()
    else:
        main(sys.argv[1])
