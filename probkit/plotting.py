"""Matplotlib helpers for probkit models (matplotlib is an optional dependency: ``pip install matplotlib``,
or ``pip install -e ".[plot]"`` in a probkit checkout).

Every function draws on ``ax`` (a new figure when omitted) and returns the Axes, so
plots compose into subplots. Without matplotlib each raises an ``ImportError`` that
says how to install it.

==============================  =====================================================
:func:`plot_states`             a series coloured by its decoded hidden states
:func:`plot_posteriors`         posterior state probabilities over time
:func:`plot_transition_matrix`  transition-matrix heatmap
:func:`plot_mixture_2d`         two features with each component's covariance ellipses
:func:`plot_mixture_density`    one feature's histogram with the mixture density
:func:`plot_convergence`        log-likelihood / ELBO per iteration of a fitted model
:func:`plot_curve`              any optimisation trace
:func:`plot_criterion`          BIC/AIC per candidate model
==============================  =====================================================
"""

from __future__ import annotations

import numpy as np

from probkit.utils._docstrings import DocFragments

__all__ = [
    "plot_convergence",
    "plot_criterion",
    "plot_curve",
    "plot_mixture_2d",
    "plot_mixture_density",
    "plot_posteriors",
    "plot_states",
    "plot_transition_matrix",
]


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "probkit.plotting needs matplotlib; install it with `pip install matplotlib` "
            "(or `pip install -e '.[plot]'` in a probkit checkout)"
        ) from exc
    return plt


# The result section of every plotting function, and the last parameters of those that draw a trace.
_RETURNS_AXES = "Returns\n-------\nmatplotlib Axes"
_DOCS = DocFragments(sections={
    "returns_axes": _RETURNS_AXES,
    "label_returns_axes": "label : str, optional\n    Legend entry.\n\n" + _RETURNS_AXES,
})


def _new_axes(ax, figsize):
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return plt, ax


def _state_color(plt, k):
    return plt.cm.tab10(int(k) % 10)


def _display_order(order, n_states, what="order"):
    """``order`` checked as a permutation of the states (identity when None), and its inverse.

    ``order[i]`` is the state drawn in position ``i`` (colour ``i``, name ``state_names[i]``).
    """
    if order is None:
        ident = np.arange(n_states)
        return ident, ident
    order = np.asarray(order)
    if order.ndim != 1 or len(order) != n_states or not np.array_equal(np.sort(order), np.arange(n_states)):
        raise ValueError(f"{what} must be a permutation of the {n_states} state indices, got {order.tolist()}")
    position = np.empty(n_states, dtype=int)
    position[order] = np.arange(n_states)
    return order.astype(int), position


def _covariance_matrices(model):
    if not hasattr(model, "covariances_") and hasattr(model, "full_covars_"):
        return np.asarray(model.full_covars_)  # Gaussian HMMs
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


@_DOCS.fill
def plot_mixture_2d(model, X, ax=None, dims=(0, 1), feature_names=None, n_std=(1.0, 2.0), order=None):
    """Scatter ``X`` coloured by component, with each Gaussian component's covariance ellipses.

    Parameters
    ----------
    model : fitted GaussianMixture or GaussianHMM
        For an HMM, the rows are coloured by their decoded state and the ellipses are
        the states' emission covariances.
    X : array-like of shape (n_samples, n_features)
    ax : matplotlib Axes, optional
    dims : pair of int
        The two features to draw.
    feature_names : list of str, optional
    n_std : tuple of float
        Ellipse radii in standard deviations.
    order : sequence of int, optional
        Display order of the components: component ``order[i]`` gets colour ``i``. Pass
        the same order to :func:`plot_states` and :func:`plot_transition_matrix` so that a
        state keeps its colour in every panel (e.g. ``np.argsort(model.means_[:, 0])``).

    %(returns_axes)s

    Examples
    --------
    >>> from probkit import GaussianMixture
    >>> X = np.random.RandomState(0).normal(size=(50, 2))
    >>> model = GaussianMixture(2, random_state=0).fit(X)
    >>> ax = plot_mixture_2d(model, X, order=np.argsort(model.means_[:, 0]))
    """
    plt, ax = _new_axes(ax, (5, 4))
    from matplotlib.patches import Ellipse

    X = np.asarray(X)
    _, position = _display_order(order, len(model.means_))
    labels = position[np.asarray(model.predict(X)).astype(int)]
    i, j = dims
    ax.scatter(X[:, i], X[:, j], c=labels % 10, s=10, cmap="tab10", vmin=0, vmax=9, alpha=0.7)
    covs = _covariance_matrices(model)
    for component, (mean, cov) in enumerate(zip(model.means_, covs)):
        k = position[component]
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


@_DOCS.fill
def plot_criterion(values, ax=None, xlabel="number of components", ylabel="BIC", chosen=None):
    """Plot an information criterion per candidate model.

    Parameters
    ----------
    values : dict of label -> (list of x, list of y)
        One curve per label (e.g. per covariance type).
    ax : matplotlib Axes, optional
    xlabel, ylabel : str
    chosen : tuple (x, y), optional
        Marks the selected model.

    %(returns_axes)s

    Examples
    --------
    >>> ax = plot_criterion({"full": ([1, 2, 3], [10.0, 8.0, 9.0])}, chosen=(2, 8.0))
    """
    _, ax = _new_axes(ax, (5, 4))
    for label, (xs, ys) in values.items():
        ax.plot(xs, ys, marker="o", label=str(label))
    if chosen is not None:
        ax.plot([chosen[0]], [chosen[1]], marker="*", ms=16, color="k", ls="none", label="chosen")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


@_DOCS.fill
def plot_curve(values, ax=None, xlabel="iteration", ylabel="log-likelihood", label=None):
    """Plot an optimisation trace (log-likelihood per EM iteration, ELBO per step, ...).

    Parameters
    ----------
    values : sequence of float
    ax : matplotlib Axes, optional
    xlabel, ylabel : str
    %(label_returns_axes)s

    Examples
    --------
    >>> ax = plot_curve([-3.0, -2.0, -1.5])
    """
    plt, ax = _new_axes(ax, (5, 3.5))
    ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if label is not None:
        ax.legend()
    return ax


@_DOCS.fill
def plot_mixture_density(model, x, ax=None, feature_name=None, n_grid=400, bins=30, discrete=None,
                         show_components=True):
    """Histogram of one feature with the fitted mixture density (and each weighted component).

    Works for any fitted one-column mixture with ``score_samples`` and ``predict_proba``
    (``GaussianMixture``, ``MixtureModel`` of any family): the component curves are the
    mixture density times each component's posterior probability.

    Parameters
    ----------
    model : fitted mixture on one column
    x : array-like of shape (n_samples,) or (n_samples, 1)
    ax : matplotlib Axes, optional
    feature_name : str, optional
    n_grid : int, default=400
        Evaluation points of a continuous density.
    bins : int, default=30
    discrete : bool, optional
        Counts (integer grid, probability mass); detected from ``x`` when omitted.
    show_components : bool, default=True

    %(returns_axes)s

    Examples
    --------
    >>> from probkit import GaussianMixture
    >>> x = np.r_[np.random.RandomState(0).normal(0, 1, 100), np.random.RandomState(1).normal(5, 1, 100)]
    >>> ax = plot_mixture_density(GaussianMixture(2, random_state=0).fit(x[:, None]), x)
    """
    plt, ax = _new_axes(ax, (6, 4))
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if discrete is None:
        discrete = bool(np.all(x == np.round(x))) and not hasattr(model, "covariances_")
    if discrete:
        grid = np.arange(max(0, int(x.min()) - 2), int(x.max()) + 4, dtype=np.float64)
        ax.hist(x, bins=np.arange(grid[0], grid[-1] + 2) - 0.5, density=True, alpha=0.4, color="0.5",
                label="data")
    else:
        pad = 0.1 * (x.max() - x.min() + 1e-12)
        grid = np.linspace(x.min() - pad, x.max() + pad, n_grid)
        ax.hist(x, bins=bins, density=True, alpha=0.4, color="0.5", label="data")
    density = np.exp(model.score_samples(grid[:, None]))
    style = dict(marker="o", ms=3) if discrete else {}
    ax.plot(grid, density, "k-", lw=2, label="mixture", **style)
    if show_components:
        resp = model.predict_proba(grid[:, None])
        for k in range(resp.shape[1]):
            ax.plot(grid, density * resp[:, k], "--", color=_state_color(plt, k), lw=1.3, label=f"component {k}")
    ax.set_xlabel(feature_name or "x")
    ax.set_ylabel("probability" if discrete else "density")
    ax.legend(fontsize=8)
    return ax


@_DOCS.fill
def plot_states(series, states, ax=None, time=None, ylabel=None, state_names=None, shade=True, order=None,
                legend="best"):
    """A series (one feature over time) with each step coloured by its decoded hidden state.

    Parameters
    ----------
    series : array-like of shape (n_steps,) or (n_steps, 1)
    states : array-like of int of shape (n_steps,)
        E.g. ``model.predict(X)`` of an HMM.
    ax : matplotlib Axes, optional
    time : array-like of shape (n_steps,), optional
        x-axis values (default: 0 .. n_steps - 1).
    ylabel : str, optional
    state_names : list of str, optional
        Names in display order (``state_names[i]`` names state ``order[i]``).
    shade : bool, default=True
        Shade the background of each run of one state.
    order : sequence of int, optional
        Display order of the states: state ``order[i]`` gets colour ``i`` (default: the
        state indices as they are). Use the same order in every panel of a figure.
    legend : {"best", "outside", None}, default="best"
        Where the legend goes: inside the axes, to the right of them, or nowhere (take
        the handles with ``ax.get_legend_handles_labels()`` for a figure legend).

    %(returns_axes)s

    Examples
    --------
    >>> ax = plot_states([1.0, 1.2, 5.0, 5.1, 0.9], [1, 1, 0, 0, 1], order=[1, 0],
    ...                  state_names=["low", "high"], legend="outside")
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['low', 'high']
    """
    plt, ax = _new_axes(ax, (9, 3.5))
    y = np.asarray(series, dtype=np.float64).reshape(-1)
    z = np.asarray(states).reshape(-1).astype(int)
    if len(y) != len(z):
        raise ValueError(f"series has {len(y)} steps but states has {len(z)}")
    if legend not in ("best", "outside", None):
        raise ValueError(f"legend must be 'best', 'outside' or None, got {legend!r}")
    t = np.arange(len(y)) if time is None else np.asarray(time)
    n_states = max(int(z.max()) + 1 if len(z) else 0, len(order) if order is not None else 0,
                   len(state_names) if state_names is not None else 0)
    _, position = _display_order(order, n_states)
    z = position[z]  # display positions from here on
    ax.plot(t, y, color="0.6", lw=0.8, zorder=1)
    present = np.unique(z)
    for k in present:
        mask = z == k
        name = state_names[k] if state_names is not None else f"state {order[k] if order is not None else k}"
        ax.scatter(t[mask], y[mask], s=12, color=_state_color(plt, k), label=name, zorder=2)
    if shade and len(t) > 1:
        change = np.flatnonzero(np.diff(z)) + 1
        starts = np.r_[0, change]
        ends = np.r_[change, len(z)]
        step = np.median(np.diff(t)) if len(t) > 1 else 1
        for a, b in zip(starts, ends):
            left = t[a] - step / 2
            right = t[b - 1] + step / 2
            ax.axvspan(left, right, color=_state_color(plt, z[a]), alpha=0.12, lw=0, zorder=0)
    ax.set_xlabel("time" if time is None else "")
    if ylabel:
        ax.set_ylabel(ylabel)
    if legend == "best":
        ax.legend(fontsize=8, loc="best", ncol=min(len(present), 4))
    elif legend == "outside":
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    return ax


@_DOCS.fill
def plot_posteriors(proba, ax=None, time=None, state_names=None, order=None):
    """Posterior probability of each hidden state over time, as stacked areas.

    Parameters
    ----------
    proba : array-like of shape (n_steps, n_states)
        E.g. ``model.predict_proba(X)`` of an HMM.
    ax : matplotlib Axes, optional
    time : array-like of shape (n_steps,), optional
    state_names : list of str, optional
        Names in display order.
    order : sequence of int, optional
        Display order of the states (see :func:`plot_states`).

    %(returns_axes)s

    Examples
    --------
    >>> ax = plot_posteriors([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    """
    plt, ax = _new_axes(ax, (9, 2.8))
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"proba must have shape (n_steps, n_states), got {p.shape}")
    order, _ = _display_order(order, p.shape[1])
    p = p[:, order]
    t = np.arange(len(p)) if time is None else np.asarray(time)
    labels = state_names or [f"state {k}" for k in order]
    ax.stackplot(t, p.T, colors=[_state_color(plt, k) for k in range(p.shape[1])], labels=labels, alpha=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlim(t[0], t[-1])
    ax.set_ylabel("posterior probability")
    ax.legend(fontsize=8, loc="upper right", ncol=min(p.shape[1], 4))
    return ax


@_DOCS.fill
def plot_transition_matrix(transmat, ax=None, state_names=None, annotate=True, cmap="Blues", order=None):
    """Heatmap of a transition matrix (row: from, column: to).

    Parameters
    ----------
    transmat : array-like of shape (K, K), or a fitted HMM (its ``transmat_``)
    ax : matplotlib Axes, optional
    state_names : list of str, optional
    annotate : bool, default=True
        Write each probability in its cell.
    cmap : str, default="Blues"
    order : sequence of int, optional
        Display order of the states: rows and columns are permuted to it (see
        :func:`plot_states`).

    %(returns_axes)s

    Examples
    --------
    >>> ax = plot_transition_matrix([[0.9, 0.1], [0.3, 0.7]])
    """
    plt, ax = _new_axes(ax, (4.2, 3.6))
    A = np.asarray(getattr(transmat, "transmat_", transmat), dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"a transition matrix must be square, got shape {A.shape}")
    order, _ = _display_order(order, len(A))
    A = A[np.ix_(order, order)]
    im = ax.imshow(A, cmap=cmap, vmin=0, vmax=1)
    names = state_names or [str(k) for k in order]
    ax.set_xticks(range(len(A)), names)
    ax.set_yticks(range(len(A)), names)
    ax.set_xlabel("to state")
    ax.set_ylabel("from state")
    if annotate:
        for i in range(len(A)):
            for j in range(len(A)):
                ax.text(j, i, f"{A[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if A[i, j] > 0.6 else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


# Where fitted estimators keep their objective trace, and what it is.
_TRACES = (
    ("monitor_", "history", "log-likelihood (total)"),
    ("lower_bounds_", None, "log-likelihood per sample"),
    ("elbo_history_", None, "ELBO"),
    ("loss_history_", None, "training loss"),
)


@_DOCS.fill
def plot_convergence(model, ax=None, label=None):
    """Objective per iteration of a fitted model: EM log-likelihood, ELBO or training loss.

    Reads ``monitor_.history`` (HMMs and every estimator with a ``ConvergenceMonitor``),
    ``lower_bounds_`` (EM mixtures), ``elbo_history_`` or ``loss_history_``.

    Parameters
    ----------
    model : fitted estimator, or a sequence of values
    ax : matplotlib Axes, optional
    %(label_returns_axes)s

    Examples
    --------
    >>> from probkit import GaussianMixture
    >>> X = np.random.RandomState(0).normal(size=(100, 1))
    >>> ax = plot_convergence(GaussianMixture(2, random_state=0).fit(X))
    >>> ax.get_ylabel()
    'log-likelihood per sample'
    """
    if isinstance(model, (list, tuple, np.ndarray)):
        return plot_curve(list(model), ax=ax, label=label, ylabel="objective")
    for attr, inner, ylabel in _TRACES:
        if hasattr(model, attr):
            values = getattr(model, attr)
            if inner is not None:
                values = getattr(values, inner)
            return plot_curve(list(values), ax=ax, label=label, ylabel=ylabel)
    raise ValueError(f"{type(model).__name__} has no objective trace (monitor_, lower_bounds_, elbo_history_ or "
                     "loss_history_); is it fitted?")
