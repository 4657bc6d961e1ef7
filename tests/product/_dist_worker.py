"""Worker of tests/product/test_distributed.py: one rank of a 2-process gloo group.

Run as ``python -m tests.product._dist_worker OUT_DIR`` with torchrun's environment
variables set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); writes ``OUT_DIR/rank<r>.npz``.
"""

import sys
import warnings

import numpy as np
import torch

from probkit import HMM, GaussianHMM, GaussianMixture
from probkit.distributed import distributed_em, init_distributed, shard_rows, shard_sequences, wrap_ddp


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
    return net.weight.detach().numpy().copy(), net.bias.detach().numpy().copy()


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
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
