"""
Poisson and negative-binomial regression of earthquake counts; naive Bayes on digits
====================================================================================

Annual counts of major earthquakes (1900-2006) on time: a Poisson GLM with the log link
gives a trend, but the counts vary far more than a Poisson allows (Pearson chi2 / df is
well above 1), so its standard errors are too small and its prediction intervals too
narrow. The negative-binomial GLM, ``Var(y) = mu + mu**2 / r`` with ``r`` estimated by
maximum likelihood, keeps the trend, widens the standard error and the intervals, and
wins on AIC.

Then naive Bayes of several families on scikit-learn's 8x8 digits (pixel intensities
0-16): independent normals (GaussianNB), a multinomial over the pixel counts
(MultinomialNB, Laplace smoothing = a Dirichlet(2) prior), Bernoulli pixels
(BernoulliNB), Poisson pixels with a Gamma prior on each rate, and, for comparison, the
discriminative softmax GLM.
"""

import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from probkit import GeneralizedLinearClassifier, GeneralizedLinearModel, NaiveBayes  # noqa: E402
from probkit.datasets import load_earthquakes  # noqa: E402
from probkit.distributions import Gamma  # noqa: E402

FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)

# %%
# Poisson and negative-binomial GLMs of the counts on time (in 50-year units from 1950).
years, counts = load_earthquakes()
t = ((years - 1950) / 50).reshape(-1, 1)
poisson = GeneralizedLinearModel(family="poisson").fit(t, counts)
negbin = GeneralizedLinearModel(family="negative_binomial", link="log").fit(t, counts)
print(f"{len(counts)} years, mean {counts.mean():.2f}, variance {counts.var(ddof=1):.2f}")
print(f"Pearson chi2 / df of the Poisson fit: {poisson.pearson_chi2_ / poisson.df_resid_:.2f} (1 if Poisson)")
for name, m in [("Poisson", poisson), ("negative binomial", negbin)]:
    extra = f", total_count {m.total_count_:.1f}" if name != "Poisson" else ""
    print(f"{name:>17}: slope {m.coef_[0]:+.4f} (se {m.bse_[0]:.4f}) per 50 years, "
          f"AIC {m.aic_:.1f}, deviance {m.deviance_:.1f} on {m.df_resid_:.0f} df{extra}")

# 90% prediction intervals of the counts under each fitted model.
grid = np.linspace(t.min(), t.max(), 200).reshape(-1, 1)
mu_p, mu_nb = poisson.predict(grid), negbin.predict(grid)
r = negbin.total_count_
bands = {"Poisson": stats.poisson.interval(0.9, mu_p),
         "negative binomial": stats.nbinom.interval(0.9, r, r / (r + mu_nb))}
for name, m in [("Poisson", poisson), ("negative binomial", negbin)]:
    mu = m.predict(t)
    low, high = (stats.poisson.interval(0.9, mu) if name == "Poisson"
                 else stats.nbinom.interval(0.9, r, r / (r + mu)))
    outside = np.mean((counts < low) | (counts > high))
    print(f"{name:>17}: {100 * outside:.0f}% of the years fall outside the 90% prediction interval")

# %%
# Naive Bayes of several families on the digits (a held-out half for accuracy).
X, y = load_digits(return_X_y=True)
if FAST:
    X, y = X[:600], y[:600]
rng = np.random.RandomState(0)
order = rng.permutation(len(y))
train, test = order[: len(y) // 2], order[len(y) // 2:]
models = {
    "Gaussian": NaiveBayes(),
    "multinomial": NaiveBayes(family="multinomial", alpha=1.0),
    "Bernoulli": NaiveBayes(family="bernoulli", binarize=4.0),
    "Poisson + Gamma prior": NaiveBayes(family="poisson", feature_prior=Gamma(concentration=1.5, rate=0.1)),
    "softmax GLM": GeneralizedLinearClassifier(alpha=1e-2, max_iter=50),
}
accuracy = {}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for name, model in models.items():
        model.fit(X[train], y[train])
        accuracy[name] = model.score(X[test], y[test])
        print(f"{name:>22}: held-out accuracy {accuracy[name]:.3f}")

# %%
# The figure: the two count models, the accuracies, and the multinomial class templates.
fig = plt.figure(figsize=(11, 8))
ax = fig.add_subplot(2, 1, 1)
ax.plot(years, counts, "o", color="0.3", ms=4, label="major earthquakes")
year_grid = 1950 + 50 * grid[:, 0]
for (name, (low, high)), model, mu, color in zip(bands.items(), (poisson, negbin), (mu_p, mu_nb), ("C0", "C3")):
    ax.plot(year_grid, mu, color=color, lw=2, label=f"{name} GLM mean (AIC {model.aic_:.0f})")
    ax.fill_between(year_grid, low, high, color=color, alpha=0.15, label=f"{name} 90% prediction interval")
ax.set_xlabel("year")
ax.set_ylabel("count")
ax.set_ylim(0, 58)
ax.legend(fontsize=8, ncol=2, loc="upper right")
ax.set_title("Poisson vs negative-binomial regression of yearly earthquake counts")

ax = fig.add_subplot(2, 2, 3)
names = list(accuracy)
ax.barh(names, [accuracy[n] for n in names], color=["C1"] * 4 + ["C2"])
ax.set_xlim(0.5, 1.0)
ax.set_xlabel("held-out accuracy (digits)")
for i, n in enumerate(names):
    ax.text(accuracy[n] - 0.01, i, f"{accuracy[n]:.3f}", va="center", ha="right", color="white", fontsize=8)

ax = fig.add_subplot(2, 2, 4)
probs = np.pad(models["multinomial"].distribution_.probs.reshape(10, 8, 8), ((0, 0), (1, 1), (1, 1)),
               constant_values=np.nan)  # a blank border around each digit
mosaic = np.vstack([np.hstack(list(probs[:5])), np.hstack(list(probs[5:]))])
ax.imshow(mosaic, cmap="gray_r")
ax.set_axis_off()
ax.set_title("multinomial naive Bayes: pixel probabilities per digit", fontsize=9)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "glm_earthquakes.png"), dpi=100)
