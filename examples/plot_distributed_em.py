"""
Distributed EM with torchrun
============================

EM's expected sufficient statistics add up over data shards, so a mixture or HMM can
be fitted with its data spread over processes: each process runs the E-step on its
shard and one ``all_reduce`` per iteration sums the statistics. Launch this script as

.. code-block:: bash

    torchrun --nproc_per_node=2 examples/plot_distributed_em.py

(on a cluster: the same script with ``--nnodes``, ``--node_rank`` and a rendezvous
endpoint; see the user guide). Run with plain ``python`` it launches itself that way
on 2 local processes (gloo on CPU), then compares the result with a single-process fit
from the same starting point: the parameters agree to floating-point precision.
"""

import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

from probkit import GaussianMixture
from probkit.datasets import load_old_faithful
from probkit.distributed import distributed_em, init_distributed, shard_rows

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore
N_PROCESSES = 2
try:
    SCRIPT = os.path.abspath(__file__)
except NameError:  # sphinx-gallery runs the code without __file__, from the examples folder
    SCRIPT = os.path.abspath("plot_distributed_em.py")


def make_model():
    # An explicit start makes the distributed and single-process fits comparable.
    return GaussianMixture(2, covariance_type="full", max_iter=10 if FAST else 100, tol=1e-8,
                           means_init=[[2.0, 55.0], [4.5, 80.0]], weights_init=[0.5, 0.5],
                           precisions_init=np.tile(np.diag([1.0, 1 / 36.0]), (2, 1, 1)))


def worker(result_path):
    """One process of the group: fit on this rank's shard inside distributed_em()."""
    rank, world = init_distributed()
    X, _ = load_old_faithful()
    local = shard_rows(X)
    with warnings.catch_warnings(), distributed_em():
        warnings.simplefilter("ignore")
        gm = make_model().fit(local)
    print(f"rank {rank}/{world}: {len(local)} rows, lower bound {gm.lower_bound_:.6f}", flush=True)
    if rank == 0:
        np.savez(result_path, means=gm.means_, covariances=gm.covariances_, weights=gm.weights_,
                 lower_bounds=np.array(gm.lower_bounds_))
    import torch.distributed

    torch.distributed.destroy_process_group()


def launch():
    """Start N_PROCESSES copies of this script under torchrun and compare with one process."""
    result = os.path.join(tempfile.mkdtemp(), "result.npz")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={N_PROCESSES}",
               SCRIPT, result]
    print("$ torchrun " + " ".join(command[3:]))
    # The processes import the same probkit as this one.
    import probkit

    path = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(probkit.__file__))),
                            os.environ.get("PYTHONPATH", "")])
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path))
    dist = np.load(result)
    X, names = load_old_faithful()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = make_model().fit(X)
    diff = np.abs(dist["means"] - single.means_).max()
    print(f"largest difference in the means, distributed vs single process: {diff:.2e}")
    print(f"largest difference in the covariances: {np.abs(dist['covariances'] - single.covariances_).max():.2e}")

    # sphinx_gallery_start_ignore
    import matplotlib

    matplotlib.use("Agg")
    # sphinx_gallery_end_ignore
    import matplotlib.pyplot as plt

    from probkit.plotting import plot_curve, plot_mixture_2d

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_curve(single.lower_bounds_, ax=axes[0], label="1 process", ylabel="log-likelihood per sample")
    axes[0].plot(np.arange(1, len(dist["lower_bounds"]) + 1), dist["lower_bounds"], "x", ms=9,
                 label=f"{N_PROCESSES} processes (torchrun)")
    axes[0].legend()
    plot_mixture_2d(single, X, ax=axes[1], feature_names=names)
    for r in range(N_PROCESSES):
        shard = shard_rows(X, r, N_PROCESSES)
        axes[1].scatter(shard[:, 0], shard[:, 1], s=40, facecolors="none", edgecolors=f"C{r + 2}", lw=0.6,
                        label=f"rows of rank {r}")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    # sphinx_gallery_start_ignore
    fig.savefig(os.path.join(OUT, "distributed_em.png"), dpi=100)
    # sphinx_gallery_end_ignore


if __name__ == "__main__" and "LOCAL_RANK" in os.environ:
    worker(sys.argv[1])
else:
    launch()


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_distributed_em`` makes them again):
#
# .. literalinclude:: /gallery_outputs/distributed_em.txt
#    :language: text
#
# .. image:: /gallery_outputs/distributed_em.png
#    :alt: figure of plot_distributed_em.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/distributed_em.png'
