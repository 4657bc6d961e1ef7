"""Initial responsibilities for EM: k-means, k-means++, random, random_from_data."""

from __future__ import annotations

import numpy as np

__all__ = ["INIT_METHODS", "INIT_SMOOTHING", "initial_responsibilities"]

# Initial hard assignments are blended with this much uniform weight (by the models fitted
# from responsibilities of any family) so that every component starts from all of the data:
# a Gamma or Normal fitted to a cluster of equal values would otherwise be degenerate.
INIT_SMOOTHING = 0.1

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def initial_responsibilities(X, n_components, method, random_state):
    """Initial soft assignments of the rows of ``X`` to ``n_components`` components.

    The same draws as scikit-learn's mixtures, so a probkit and a scikit-learn model given
    the same ``random_state`` start from the same point.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
    n_components : int
    method : {"kmeans", "k-means++", "random", "random_from_data"}
        ``kmeans``: one-hot labels of a k-means clustering; ``k-means++``: one-hot on
        the k-means++ seeds; ``random``: uniform draws normalised per row;
        ``random_from_data``: one-hot on randomly chosen rows.
    random_state : numpy.random.RandomState

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_components)

    Examples
    --------
    >>> X = np.array([[0.0], [0.1], [5.0], [5.1]])
    >>> R = initial_responsibilities(X, 2, "kmeans", np.random.RandomState(0))
    >>> R.sum(1).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    from sklearn.cluster import KMeans, kmeans_plusplus  # slow to import; needed at fit time only

    n_samples = X.shape[0]
    if method == "kmeans":
        resp = np.zeros((n_samples, n_components), dtype=X.dtype)
        labels = KMeans(n_clusters=n_components, n_init=1, random_state=random_state).fit(X).labels_
        resp[np.arange(n_samples), labels] = 1
    elif method == "random":
        resp = random_state.uniform(size=(n_samples, n_components)).astype(X.dtype)
        resp /= resp.sum(axis=1)[:, np.newaxis]
    elif method == "random_from_data":
        resp = np.zeros((n_samples, n_components), dtype=X.dtype)
        indices = random_state.choice(n_samples, size=n_components, replace=False)
        resp[indices, np.arange(n_components)] = 1
    elif method == "k-means++":
        resp = np.zeros((n_samples, n_components), dtype=X.dtype)
        _, indices = kmeans_plusplus(X, n_components, random_state=random_state)
        resp[indices, np.arange(n_components)] = 1
    else:
        raise ValueError(f"init_params must be one of {INIT_METHODS}, got {method!r}")
    return resp
