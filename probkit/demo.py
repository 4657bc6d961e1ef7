"""The main job: model selection for mixtures on real data shipped with probkit, and
variational inference (a Dirichlet-process mixture; a Bayesian HMM checked against NUTS).

Run with ``make demo`` or ``python -m probkit.demo --output-dir demo_output``. Prints a
report and writes figures into the output directory. ``PROBKIT_FAST=1`` (used by the test
suite) runs every section with fewer restarts, SVI steps and NUTS draws; the report says
what ran.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

# Fewer restarts, SVI steps and NUTS draws when the test suite runs the demo.
FAST = bool(os.environ.get("PROBKIT_FAST"))
N_INIT = 1 if FAST else None
# NUTS: adaptation needs a few dozen warm-up steps before the chain moves at all (with 20 the
# step size stays tiny and every draw repeats the start); 40 + 40 mixes, 100 + 200 is the report.
NUTS_WARMUP, NUTS_DRAWS = (40, 40) if FAST else (100, 200)
# Poisson HMM restarts: cheap on 107 counts, and one start misses the published 3-state optimum.
POISSON_HMM_N_INIT = 10

from probkit import (
    BayesianGaussianMixture,
    GaussianHMM,
    GaussianMixture,
    MixtureModel,
    PoissonHMM,
    VariationalHMM,
)
from probkit.datasets import load_earthquakes, load_old_faithful

# Zucchini & MacDonald, "Hidden Markov Models for Time Series" (2009): maximised
# log-likelihoods of Poisson HMMs with 2 and 3 states on these counts (initial
# distribution estimated, as here), an independent check of the fit.
PUBLISHED_POISSON_HMM_LOGLIK = {2: -341.8787, 3: -328.5275}


def _save_figure(fig, plt, output_dir, filename):
    """Lay out ``fig``, write it to ``output_dir/filename``, close it and say where it went."""
    fig.tight_layout()
    path = os.path.join(output_dir, filename)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"  figure: {path}")


def _earthquake_counts():
    """The earthquake series: ``(years, counts, X)`` with ``X`` the counts as one float column."""
    years, counts = load_earthquakes()
    return years, counts, counts.reshape(-1, 1).astype(float)


def old_faithful_gmm(output_dir, plt):
    """Select a Gaussian mixture for Old Faithful by BIC over K and covariance types."""
    X, names = load_old_faithful()
    print(f"Old Faithful: {X.shape[0]} eruptions, features {names}")
    curves, best = {}, None
    t0 = time.perf_counter()
    for ct in ["full", "tied", "diag", "spherical"]:
        xs, ys = [], []
        for k in range(1, 7):
            gm = GaussianMixture(k, covariance_type=ct, n_init=N_INIT or 3, random_state=0).fit(X)
            bic = gm.bic(X)
            xs.append(k)
            ys.append(bic)
            if best is None or bic < best[0]:
                best = (bic, k, ct, gm)
        curves[ct] = (xs, ys)
    bic, k, ct, gm = best
    print(f"  searched K=1..6 x 4 covariance types in {time.perf_counter() - t0:.1f} s")
    print(f"  chosen by BIC: K={k}, covariance_type={ct!r}, BIC={bic:.1f}")
    print(f"  log-likelihood: {gm.score(X) * len(X):.2f} (mean {gm.score(X):.4f} per eruption), "
          f"converged={gm.converged_} after {gm.n_iter_} iterations")
    order = np.argsort(gm.means_[:, 0])
    variances = {"full": lambda j: np.diag(gm.covariances_[j]), "tied": lambda j: np.diag(gm.covariances_),
                 "diag": lambda j: gm.covariances_[j], "spherical": lambda j: np.full(2, gm.covariances_[j])}[ct]
    for rank, j in enumerate(order):
        sd = np.sqrt(variances(j))
        print(f"  component {rank}: weight {gm.weights_[j]:.3f}, mean {names[0]}={gm.means_[j, 0]:.2f} "
              f"{names[1]}={gm.means_[j, 1]:.1f}, sd ({sd[0]:.2f}, {sd[1]:.1f})")
    if plt is not None:
        from probkit.plotting import plot_criterion, plot_mixture_2d

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        plot_criterion(curves, ax=axes[0], chosen=(k, bic))
        axes[0].set_title("BIC by number of components")
        plot_mixture_2d(gm, X, ax=axes[1], feature_names=names)
        axes[1].set_title(f"Old Faithful: {k} components ({ct})")
        _save_figure(fig, plt, output_dir, "old_faithful_gmm.png")


def earthquake_poisson_mixture(output_dir, plt):
    """A Poisson mixture for over-dispersed annual earthquake counts (any-family EM)."""
    years, counts, X = _earthquake_counts()
    print(f"\nMajor earthquakes {years[0]}-{years[-1]}: mean {counts.mean():.2f}, variance {counts.var(ddof=1):.2f} "
          "(over-dispersed for one Poisson)")
    fits = {}
    for k in range(1, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[k] = MixtureModel(family="poisson", n_components=k, n_init=N_INIT or 5, random_state=0).fit(X)
    bics = {k: m.bic(X) for k, m in fits.items()}
    k = min(bics, key=bics.get)
    m = fits[k]
    print("  BIC by K: " + ", ".join(f"{kk}: {b:.1f}" for kk, b in bics.items()))
    rates = np.array([float(c.rate) for c in m.components_])
    order = np.argsort(rates)
    print(f"  chosen K={k}: rates {np.round(rates[order], 2).tolist()}, weights {np.round(m.weights_[order], 3).tolist()}")
    if plt is not None:
        from scipy import stats

        fig, ax = plt.subplots(figsize=(6, 3.8))
        grid = np.arange(0, counts.max() + 8)
        ax.hist(counts, bins=np.arange(0, counts.max() + 3) - 0.5, density=True, alpha=0.5, label="observed")
        mix = sum(w * stats.poisson(r).pmf(grid) for w, r in zip(m.weights_, rates))
        ax.plot(grid, mix, "k-o", ms=3, label=f"{k}-component Poisson mixture")
        ax.plot(grid, stats.poisson(counts.mean()).pmf(grid), "--", label="single Poisson")
        ax.set_xlabel("major earthquakes per year")
        ax.legend()
        _save_figure(fig, plt, output_dir, "earthquakes_poisson_mixture.png")


def old_faithful_regimes(output_dir, plt):
    """Gaussian HMM on the sequence of eruptions: short/long regimes and how they alternate."""
    X, names = load_old_faithful()
    print("\nOld Faithful as a sequence: a Gaussian HMM over consecutive eruptions")
    fits = {k: GaussianHMM(k, covariance_type="full", n_iter=500, tol=1e-6, n_init=N_INIT or 5, random_state=0).fit(X)
            for k in range(1, 5)}
    bics = {k: m.bic(X) for k, m in fits.items()}
    k = min(bics, key=bics.get)
    model = fits[k]
    print("  BIC by number of states: " + ", ".join(f"{kk}: {b:.1f}" for kk, b in bics.items()))
    order = np.argsort(model.means_[:, 0])
    states = np.argsort(order)[model.predict(X)]
    print(f"  chosen: {k} states; log-likelihood {model.score(X):.2f}")
    for rank, j in enumerate(order):
        print(f"  state {rank}: mean {names[0]}={model.means_[j, 0]:.2f} min, {names[1]}={model.means_[j, 1]:.1f} min; "
              f"stays with probability {model.transmat_[j, j]:.2f}")
    two = fits[2]
    o2 = np.argsort(two.means_[:, 0])
    print(f"  2-state view: after a short eruption the next is long with probability "
          f"{two.transmat_[o2[0], o2[1]]:.2f}; after a long one, short with {two.transmat_[o2[1], o2[0]]:.2f}")
    if plt is not None:
        from probkit.plotting import plot_states, plot_transition_matrix

        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 1]})
        plot_states(X[:120, 1], states[:120], ax=axes[0], ylabel=f"{names[1]} (min)",
                    state_names=[f"state {i}" for i in range(k)])
        axes[0].set_xlabel("eruption number")
        axes[0].set_title(f"Decoded regimes (Viterbi), first 120 eruptions, {k}-state Gaussian HMM")
        plot_transition_matrix(model.transmat_[np.ix_(order, order)], ax=axes[1])
        _save_figure(fig, plt, output_dir, "old_faithful_hmm_states.png")
def old_faithful_dirichlet_process(output_dir, plt):
    """A Dirichlet-process mixture chooses the number of components of Old Faithful by itself.

    Ten components are offered; the stick-breaking prior lets the variational posterior
    (CAVI) empty the ones the data do not need. The same model is fitted by Pyro SVI (the
    assignments summed out exactly) and the ELBO curves of both are plotted.
    """
    import copy
    from types import SimpleNamespace

    X, names = load_old_faithful()
    print("\nDirichlet-process mixture on Old Faithful: up to 10 components, variational inference")
    t0 = time.perf_counter()
    cavi_starts = N_INIT or 5
    cavi = BayesianGaussianMixture(n_components=10, weight_concentration_prior=0.1, n_init=cavi_starts, max_iter=500,
                                   tol=1e-6, random_state=0).fit(X)
    t_cavi = time.perf_counter() - t0
    active = np.flatnonzero(cavi.weights_ > 0.01)
    print(f"  CAVI: {cavi.n_iter_} iterations ({t_cavi:.1f} s for {cavi_starts} start{'s' if cavi_starts > 1 else ''}), "
          f"ELBO {cavi.lower_bound_:.2f}; "
          f"{len(active)} components carry more than 1% of the weight")
    for k in active[np.argsort(cavi.means_[active, 0])]:
        sd = np.sqrt(np.diag(cavi.covariances_[k]))
        print(f"    weight {cavi.weights_[k]:.3f}: mean {names[0]}={cavi.means_[k, 0]:.2f} {names[1]}={cavi.means_[k, 1]:.1f}, "
              f"sd ({sd[0]:.2f}, {sd[1]:.1f})")
    counts = {}
    for gamma in (0.01, 1.0, 100.0):
        m = BayesianGaussianMixture(n_components=10, weight_concentration_prior=gamma, n_init=N_INIT or 3, max_iter=500,
                                    tol=1e-6, random_state=0).fit(X)
        counts[gamma] = int((m.weights_ > 0.01).sum())
    print("  components used by concentration gamma: " + ", ".join(f"{g:g}: {c}" for g, c in counts.items()))
    t0 = time.perf_counter()
    svi = BayesianGaussianMixture(n_components=10, weight_concentration_prior=0.1, inference="svi", num_steps=40 if FAST else 400,
                                  learning_rate=0.03, svi_tol=0.0, random_state=0).fit(X)
    t_svi = time.perf_counter() - t0
    print(f"  SVI (Pyro, TraceEnum_ELBO) from the k-means start: {svi.n_iter_} steps in {t_svi:.1f} s, mean ELBO of "
          f"the last {min(50, svi.n_iter_)} steps {svi.lower_bound_:.2f}; {int((svi.weights_ > 0.01).sum())} components above 1% "
          "(gradient steps empty spare components slowly)")
    refined = copy.deepcopy(cavi).set_params(inference="svi", warm_start=True, num_steps=20 if FAST else 200, learning_rate=0.005,
                                             svi_tol=0.0).fit(X)
    relation = ">=" if refined.lower_bound_ >= cavi.lower_bound_ else "<"
    why = ("summing the assignments out is tighter than a factorised q(z)" if relation == ">="
           else f"only {refined.n_iter_} noisy steps: the estimate has not caught up yet")
    print(f"  SVI warm-started at the CAVI posterior: mean ELBO {refined.lower_bound_:.2f} {relation} CAVI bound "
          f"{cavi.lower_bound_:.2f} ({why})")
    print(f"  posterior predictive density of the eruptions: {cavi.predictive_log_prob(X).mean():.3f} nats each")
    if plt is not None:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        axes[0].plot(np.arange(1, len(cavi.lower_bounds_) + 1), cavi.lower_bounds_, "k-o", ms=3)
        axes[0].set_xlabel("CAVI iteration")
        axes[0].set_ylabel("evidence lower bound")
        axes[0].set_title("CAVI: the bound never decreases")
        h = svi.elbo_history_
        axes[1].plot(np.arange(1, len(h) + 1), h, color="0.7", lw=0.8, label="ELBO estimate per step")
        smooth = np.convolve(h, np.ones(25) / 25, mode="valid")
        axes[1].plot(np.arange(25, len(h) + 1), smooth, "b-", label="mean of 25 steps")
        axes[1].axhline(cavi.lower_bound_, color="k", ls="--", label="CAVI bound")
        r = refined.elbo_history_
        axes[1].plot(np.arange(len(h) + 1, len(h) + len(r) + 1), r, color="tab:red", lw=0.8,
                     label="SVI from the CAVI posterior")
        lo = min(smooth.min(), cavi.lower_bound_)
        axes[1].set_ylim(lo - 0.2 * abs(cavi.lower_bound_ - lo) - 20, max(h.max(), r.max(), cavi.lower_bound_) + 10)
        axes[1].set_xlabel("SVI step")
        axes[1].set_ylabel("ELBO")
        axes[1].set_title("Pyro SVI (assignments enumerated)")
        axes[1].legend(fontsize=8)
        order = {int(k): i for i, k in enumerate(active)}
        view = SimpleNamespace(means_=cavi.means_[active], covariances_=cavi.covariances_[active],
                               covariance_type="full",
                               predict=lambda Z: np.array([order.get(int(k), 0) for k in cavi.predict(Z)]))
        from probkit.plotting import plot_mixture_2d

        plot_mixture_2d(view, X, ax=axes[2], feature_names=names)
        axes[2].set_title(f"Dirichlet process: {len(active)} of 10 components used")
        _save_figure(fig, plt, output_dir, "old_faithful_dirichlet_process.png")


def earthquake_poisson_hmm(output_dir, plt):
    """Poisson HMM on annual earthquake counts, checked against the published maximum likelihood."""
    years, counts, X = _earthquake_counts()
    print("\nMajor earthquakes as a Poisson HMM (the series is autocorrelated, not just over-dispersed)")
    fits = {k: PoissonHMM(k, n_iter=1000, tol=1e-8, n_init=POISSON_HMM_N_INIT, random_state=0).fit(X)
            for k in range(1, 5)}
    for kk, m in fits.items():
        published = PUBLISHED_POISSON_HMM_LOGLIK.get(kk)
        note = f" (published: {published:.2f})" if published is not None else ""
        print(f"  {kk} states: log-likelihood {m.score(X):.2f}{note}, BIC {m.bic(X):.1f}")
    k = min(fits, key=lambda kk: fits[kk].bic(X))
    model = fits[k]
    order = np.argsort(model.lambdas_[:, 0])
    print(f"  chosen by BIC: {k} states, rates {np.round(model.lambdas_[order, 0], 2).tolist()}")
    if plt is not None:
        from probkit.plotting import plot_states

        states = np.argsort(order)[model.predict(X)]
        fig, ax = plt.subplots(figsize=(10, 3.6))
        plot_states(counts, states, ax=ax, time=years, ylabel="major earthquakes per year",
                    state_names=[f"rate {model.lambdas_[j, 0]:.1f}" for j in order])
        ax.step(years, model.lambdas_[order][states, 0], where="mid", color="k", lw=1.2, label="state rate")
        ax.set_title(f"{k}-state Poisson HMM, Viterbi path")
        _save_figure(fig, plt, output_dir, "earthquakes_poisson_hmm.png")
def earthquake_hmm_vi_vs_nuts(output_dir, plt):
    """A two-state Poisson HMM of the earthquake counts: variational Bayes EM against NUTS.

    NUTS samples the exact posterior of the rates and transition probabilities (the state
    paths summed out by the forward algorithm); the variational posterior is compared with it.
    """
    years, counts, X = _earthquake_counts()
    print("\nPoisson HMM of the earthquake counts: variational Bayes against NUTS")
    t0 = time.perf_counter()
    vem = VariationalHMM(2, emission="poisson", n_init=N_INIT or 3, random_state=0).fit(X)
    t_vem = time.perf_counter() - t0
    t0 = time.perf_counter()
    print(f"  NUTS: {NUTS_WARMUP} warm-up steps and {NUTS_DRAWS} draws (progress on standard error)", flush=True)
    nuts = VariationalHMM(2, emission="poisson", inference="nuts", num_samples=NUTS_DRAWS,
                          warmup_steps=NUTS_WARMUP, random_state=0, verbose=1).fit(X)
    t_nuts = time.perf_counter() - t0
    a, b = vem.lambdas_posterior_
    draws = nuts.posterior_samples_["rate"][:, :, 0]
    order = np.argsort(a[:, 0] / b[:, 0])
    print(f"  VB-EM {vem.n_iter_} iterations in {t_vem:.2f} s; NUTS {len(draws)} draws (+{NUTS_WARMUP} warm-up) "
          f"in {t_nuts:.1f} s")
    for k in order:
        print(f"  state rate: VB {a[k, 0] / b[k, 0]:.2f} +- {np.sqrt(a[k, 0]) / b[k, 0]:.2f}   "
              f"NUTS {draws[:, k].mean():.2f} +- {draws[:, k].std():.2f}")
    stay_vb = np.diag(vem.transmat_)[order]
    stay_nuts = np.diag(nuts.posterior_samples_["transmat"].mean(0))[order]
    print(f"  probability of staying in a state: VB {np.round(stay_vb, 3).tolist()}, NUTS {np.round(stay_nuts, 3).tolist()}")
    print(f"  posterior-predictive log-likelihood of the series: VB {vem.score(X):.2f}, NUTS {nuts.score(X):.2f}")
    if plt is not None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        states = vem.predict(X)
        axes[0].plot(years, counts, "k.-", lw=0.7, label="major earthquakes")
        axes[0].plot(years, vem.lambdas_[states, 0], "r-", lw=2, label="rate of the decoded state (VB)")
        axes[0].set_xlabel("year")
        axes[0].legend(fontsize=8)
        for k, colour in zip(order, ("tab:blue", "tab:orange")):
            axes[1].hist(draws[:, k], bins=30, density=True, alpha=0.5, color=colour)
            grid = np.linspace(draws[:, k].min() - 2, draws[:, k].max() + 2, 200)
            from scipy import stats

            axes[1].plot(grid, stats.gamma(a[k, 0], scale=1 / b[k, 0]).pdf(grid), color=colour)
        axes[1].set_xlabel("state rate (histogram: NUTS; line: variational Gamma posterior)")
        _save_figure(fig, plt, output_dir, "earthquakes_hmm_vi_vs_nuts.png")


def main(argv=None):
    parser = argparse.ArgumentParser(description="probkit demo: mixtures (and more) on real data")
    parser.add_argument("--output-dir", default="demo_output", help="where figures are written")
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
        print("matplotlib is not installed: figures are skipped (pip install matplotlib)")
    old_faithful_gmm(args.output_dir, plt)
    earthquake_poisson_mixture(args.output_dir, plt)
    old_faithful_regimes(args.output_dir, plt)
    earthquake_poisson_hmm(args.output_dir, plt)
    old_faithful_dirichlet_process(args.output_dir, plt)
    earthquake_hmm_vi_vs_nuts(args.output_dir, plt)


if __name__ == "__main__":
    main()
