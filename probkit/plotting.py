"""Matplotlib helpers for probkit models (matplotlib is an optional dependency: ``pip install probkit[plot]``)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_mixture_2d", "plot_criterion", "plot_curve"]


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "probkit.plotting needs matplotlib; install it with `pip install probkit[plot]` "
            "or `pip install matplotlib`"
        ) from exc
    return plt


def _covariance_matrices(model):
    cov = np.asarray(model.covariances_)
    k, d = model.means_.shape
    ct = model.covariance_type
    if ct == "full":
        return cov
    if ct == "tied":
        return np.repeat(cov[None], k, axis=0)
    if ct == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(d) * c for c in cov])


def plot_mixture_2d(model, X, ax=None, dims=(0, 1), feature_names=None, n_std=(1.0, 2.0)):
    """Scatter ``X`` coloured by component, with each Gaussian component's covariance ellipses.

    Parameters
    ----------
    model : fitted GaussianMixture
    X : array-like of shape (n_samples, n_features)
    ax : matplotlib Axes, optional
    dims : pair of int
        The two features to draw.
    feature_names : list of str, optional
    n_std : tuple of float
        Ellipse radii in standard deviations.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> from probkit import GaussianMixture
    >>> X = np.random.RandomState(0).normal(size=(50, 2))
    >>> ax = plot_mixture_2d(GaussianMixture(2, random_state=0).fit(X), X)
    """
    plt = _plt()
    from matplotlib.patches import Ellipse

    X = np.asarray(X)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    labels = model.predict(X)
    i, j = dims
    ax.scatter(X[:, i], X[:, j], c=labels, s=10, cmap="tab10", vmin=0, vmax=9, alpha=0.7)
    covs = _covariance_matrices(model)
    for k, (mean, cov) in enumerate(zip(model.means_, covs)):
        sub = cov[np.ix_([i, j], [i, j])]
        vals, vecs = np.linalg.eigh(sub)
        angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
        for r in n_std:
            ax.add_patch(Ellipse((mean[i], mean[j]), 2 * r * np.sqrt(vals[-1]), 2 * r * np.sqrt(vals[0]),
                                 angle=angle, fill=False, color=plt.cm.tab10(k % 10), lw=1.5))
        ax.plot(mean[i], mean[j], "k+", ms=10)
    if feature_names is not None:
        ax.set_xlabel(feature_names[i])
        ax.set_ylabel(feature_names[j])
    return ax


def plot_criterion(values, ax=None, xlabel="number of components", ylabel="BIC", chosen=None):
    """Plot an information criterion per candidate model.

    Parameters
    ----------
    values : dict of label -> (list of x, list of y)
        One curve per label (e.g. per covariance type).
    chosen : tuple (x, y), optional
        Marks the selected model.

    Examples
    --------
    >>> ax = plot_criterion({"full": ([1, 2, 3], [10.0, 8.0, 9.0])}, chosen=(2, 8.0))
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    for label, (xs, ys) in values.items():
        ax.plot(xs, ys, marker="o", label=str(label))
    if chosen is not None:
        ax.plot([chosen[0]], [chosen[1]], marker="*", ms=16, color="k", ls="none", label="chosen")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


def plot_curve(values, ax=None, xlabel="iteration", ylabel="log-likelihood", label=None):
    """Plot an optimisation trace (log-likelihood per EM iteration, ELBO per step, ...).

    Examples
    --------
    >>> ax = plot_curve([-3.0, -2.0, -1.5])
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(values) + 1), values, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if label is not None:
        ax.legend()
    return ax
