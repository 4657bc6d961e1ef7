"""HSMM forward-backward and Viterbi: the segment recursions against the expanded-state HMM.

The naive way to run an explicit-duration HMM is an ordinary HMM over ``K * D``
(state, remaining duration) pairs (:func:`probkit.inference.semi_markov_as_hmm`), which
gives the same likelihood and state posteriors. Both sides run through probkit's own
compiled (numba) kernels on the same random model and the same log-emissions, one
thread each (set in the environment before numpy imports, and ``set_num_threads`` for
probkit's worker threads):

* ``semi-Markov``: :func:`semi_markov_forward_backward` (state posteriors, segment-start
  posteriors, expected transitions and expected durations) and :func:`semi_markov_viterbi`;
* ``expanded HMM``: :func:`forward_backward` and :func:`viterbi` on the ``K D`` states,
  the state posteriors summed over the remaining durations (part of the timed call).

Forward-backward is right-censored (the default: the expanded HMM may stop in any
state). Viterbi is not censored on either side (every sequence ends with a segment).

Every run checks that both sides agree (log-likelihood, state posteriors, Viterbi
log-probability). Times are medians of alternating repeats after one warm-up call each
(numba compiles on first use).

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_hsmm.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys

THREADS = "1"
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = THREADS

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import alternate  # noqa: E402


def make_problem(n_steps, n_states, max_duration, seed=0):
    """A random right-censored HSMM with Poisson durations and Gaussian log-emissions."""
    from scipy import special, stats

    rng = np.random.default_rng(seed)
    log_start = np.log(rng.dirichlet(np.ones(n_states)))
    trans = rng.dirichlet(np.ones(n_states - 1), size=n_states)
    full = np.zeros((n_states, n_states))
    for k in range(n_states):
        full[k, np.arange(n_states) != k] = trans[k]
    with np.errstate(divide="ignore"):
        log_trans = np.log(full)
    rates = rng.uniform(3, max_duration * 0.6, n_states)
    raw = stats.poisson.logpmf(np.arange(max_duration)[None], rates[:, None])
    log_dur = raw - special.logsumexp(raw, axis=1, keepdims=True)
    means = np.linspace(-2, 2, n_states)
    states = rng.integers(n_states, size=n_steps // 10 + 1).repeat(10)[:n_steps]
    x = rng.normal(means[states], 1.0)
    log_emission = stats.norm.logpdf(x[:, None], means[None], 1.0)
    return log_start, log_trans, log_dur, log_emission


def runners(problem):
    import torch

    from probkit.inference import (forward_backward, semi_markov_as_hmm, semi_markov_forward_backward,
                                   semi_markov_viterbi, viterbi)

    log_start, log_trans, log_dur, log_emission = (torch.as_tensor(a) for a in problem)
    n_states, max_dur = log_dur.shape
    expanded = semi_markov_as_hmm(log_start, log_trans, log_dur)
    state = expanded.state

    def semi_fb():
        return semi_markov_forward_backward(log_start, log_trans, log_dur, log_emission, backend="numba")

    def expanded_fb():
        res = forward_backward(expanded.log_startprob, expanded.log_transmat, log_emission[:, state], backend="numba")
        return res.log_likelihood, res.posteriors.reshape(-1, n_states, max_dur).sum(2)

    # Viterbi without censoring: the expanded HMM's best path would pick one full duration
    # for the last segment where the censored HSMM sums over them, so both sides end the
    # sequence at a segment boundary (expanded states with time left barred at the last step).
    ended = log_emission[:, state].clone()
    ended[-1, (torch.arange(n_states * max_dur) % max_dur) != 0] = -float("inf")

    def semi_vit():
        return semi_markov_viterbi(log_start, log_trans, log_dur, log_emission, right_censoring=False,
                                   backend="numba")

    def expanded_vit():
        return viterbi(expanded.log_startprob, expanded.log_transmat, ended, backend="numba")

    return semi_fb, expanded_fb, semi_vit, expanded_vit


def check(semi_fb, expanded_fb, semi_vit, expanded_vit):
    a, (ll, post) = semi_fb(), expanded_fb()
    ll_diff = abs(float(a.log_likelihood.sum() - ll.sum()))
    post_diff = float((a.posteriors - post).abs().max())
    vit_diff = abs(float(semi_vit().log_prob.sum() - expanded_vit().log_prob.sum()))
    if ll_diff > 1e-6 * abs(float(ll.sum())) or post_diff > 1e-8 or vit_diff > 1e-6 * abs(float(ll.sum())):
        raise AssertionError(f"the two sides disagree: log-likelihood {ll_diff:.3g}, posteriors {post_diff:.3g}, "
                             f"Viterbi {vit_diff:.3g}")
    return ll_diff, post_diff, vit_diff


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import torch

    import probkit

    probkit.set_num_threads(intra_op=1, workers=1)
    torch.set_num_threads(1)
    print(f"threads: OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS={THREADS}, probkit {probkit.get_num_threads()}, "
          f"torch {torch.get_num_threads()}; medians of {args.repeats} alternating repeats\n")
    print("| T | K | D | expanded states | semi-Markov FB s | expanded HMM FB s | ratio | semi-Markov Viterbi s "
          "| expanded Viterbi s | ratio | max posterior diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n_steps, n_states, max_dur in [(10_000, 5, 50), (10_000, 5, 10), (100_000, 5, 50), (10_000, 10, 100)]:
        semi_fb, expanded_fb, semi_vit, expanded_vit = runners(make_problem(n_steps, n_states, max_dur))
        _, post_diff, _ = check(semi_fb, expanded_fb, semi_vit, expanded_vit)  # also the warm-up
        med, _ = alternate({"semi_fb": semi_fb, "expanded_fb": expanded_fb, "semi_vit": semi_vit,
                            "expanded_vit": expanded_vit}, args.repeats)
        print(f"| {n_steps:,} | {n_states} | {max_dur} | {n_states * max_dur} | {med['semi_fb']:.4f} | "
              f"{med['expanded_fb']:.4f} | **{med['semi_fb'] / med['expanded_fb']:.3f}** | {med['semi_vit']:.4f} | "
              f"{med['expanded_vit']:.4f} | {med['semi_vit'] / med['expanded_vit']:.3f} | {post_diff:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
