"""
Sunspot cycles with a linear-Gaussian state-space model
=======================================================

Yearly sunspot numbers (1700-2008) rise and fall in cycles of about eleven years. A
:class:`probkit.LinearGaussianSSM` describes them as a noisy linear dynamical system: a
hidden state ``x_t`` moves by ``x_t = A x_{t-1} + w_t`` and the (square-rooted) sunspot
number is ``y_t = C x_t + d + v_t``, with the level ``d`` given as the coefficient of a
constant input column. A damped oscillation is a pair of complex eigenvalues
``r exp(+-i theta)`` of ``A``, so the fitted ``A`` *measures* the cycle: its period is
``2 pi / theta`` years.

The model is fitted by EM to 1700-1919 and judged on 1920-2008 by the held-out
log-likelihood per year, ``(log p(y_all) - log p(y_train)) / n_test`` (each test year
predicted from all years before it), against a :class:`probkit.GaussianHMM` with four
states on the same data and split (the comparison of
``plot_neural_hmm_sunspots.py``). The figure shows the smoothed signal, a 30-year
forecast from 1919 with its 95% band, and the filling of a gap of ten years hidden from
the model.
"""

import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probkit import GaussianHMM, LinearGaussianSSM  # noqa: E402
from probkit.datasets import load_sunspots  # noqa: E402

FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)

years, sunspots = load_sunspots()
y = np.sqrt(sunspots)[:, None]  # a common variance-stabilising transform
ones = np.ones((len(y), 1))     # constant input: its feedthrough coefficient is the level
n_train = int(np.searchsorted(years, 1920))
n_iter = 60 if FAST else 500

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # EM on an LDS converges slowly; a fixed budget is enough here
    lds = LinearGaussianSSM(3, n_iter=n_iter, tol=1e-4, random_state=0).fit(y[:n_train], inputs=ones[:n_train])
    hmm = GaussianHMM(4, n_iter=30 if FAST else 200, n_init=1 if FAST else 5, random_state=0).fit(y[:n_train])

held_out_lds = (lds.score(y, inputs=ones) - lds.score(y[:n_train], inputs=ones[:n_train])) / (len(y) - n_train)
held_out_hmm = (hmm.score(y) - hmm.score(y[:n_train])) / (len(y) - n_train)
eigenvalues = np.linalg.eigvals(lds.transition_matrix_)
oscillating = eigenvalues[np.abs(eigenvalues.imag) > 1e-8]
period = 2 * np.pi / np.abs(np.angle(oscillating[0])) if oscillating.size else float("nan")
print(f"training years {years[0]}-{years[n_train - 1]}, test years {years[n_train]}-{years[-1]}")
print(f"eigenvalues of A: {np.round(eigenvalues, 3)} -> cycle period {period:.1f} years, "
      f"damping {np.abs(oscillating[0]) if oscillating.size else float('nan'):.3f} per year")
print(f"LinearGaussianSSM (n=3) held-out log-likelihood per year: {held_out_lds:.3f} ({lds.n_iter_} EM iterations)")
print(f"GaussianHMM      (K=4) held-out log-likelihood per year: {held_out_hmm:.3f}")

# %%
# Forecast from the end of the training years, and a gap filled by the smoother.
horizon = 30
means, covs = lds.forecast(y[:n_train], horizon, inputs=ones[:n_train], future_inputs=np.ones((horizon, 1)))
band = 1.96 * np.sqrt(covs[:, 0, 0])
future = years[n_train:n_train + horizon]

gap = (years >= 1850) & (years < 1860)
y_gap = y.copy()
y_gap[gap] = np.nan
filled = lds.predict(y_gap, inputs=ones)

fig, axes = plt.subplots(2, 1, figsize=(11, 7))
axes[0].plot(years[:n_train], lds.predict(y[:n_train], inputs=ones[:n_train])[:, 0], lw=3, alpha=0.4,
             label="smoothed signal E[C x_t + d | training years]")
axes[0].plot(years, y[:, 0], color="k", lw=0.8, label="sqrt(sunspots)")
axes[0].plot(future, means[:, 0], color="C3", lw=1.5, label=f"{horizon}-year forecast from {years[n_train - 1]}")
axes[0].fill_between(future, means[:, 0] - band, means[:, 0] + band, color="C3", alpha=0.2, label="95% band")
axes[0].axvline(years[n_train], color="k", ls="--", lw=1)
axes[0].set_ylabel("sqrt(sunspots)")
axes[0].set_title(f"LDS with 3 states: a {period:.1f}-year cycle in A's eigenvalues; held-out "
                  f"{held_out_lds:.2f} nats/year (Gaussian HMM: {held_out_hmm:.2f})")
axes[0].legend(loc="upper left", fontsize=8)

window = (years >= 1820) & (years < 1890)
axes[1].plot(years[window], y[window, 0], "o-", color="0.6", ms=3, lw=1, label="data (gap hidden from the model)")
axes[1].plot(years[window & gap], filled[window & gap, 0], "o-", color="C2", ms=4, label="E[y_t | observed years]")
axes[1].axvspan(1849.5, 1859.5, color="C2", alpha=0.1)
axes[1].set_xlabel("year")
axes[1].set_ylabel("sqrt(sunspots)")
axes[1].set_title("a missing decade filled in by the Kalman smoother")
axes[1].legend(loc="upper left", fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "sunspots_lds.png"), dpi=100)
