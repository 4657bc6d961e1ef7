"""The design matrix of a linear model with an implicit intercept column, and checks on it.

The intercept is never materialised as a column of ones (a copy of an ``(n, p)`` array
per fit): products with ``[1, X]`` are assembled from products with ``X``.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, sparse

__all__ = ["Design", "PerfectSeparationError", "check_full_rank", "find_separation"]


class PerfectSeparationError(ValueError):
    """The classes are separated by a linear function of the features: the maximum-likelihood
    coefficients are infinite (complete or quasi-complete separation). An L2 penalty
    (``alpha > 0``) gives finite coefficients.

    Examples
    --------
    >>> issubclass(PerfectSeparationError, ValueError)
    True
    """


class Design:
    """``[1, X]`` (with ``fit_intercept``) or ``X``: linear predictors, gradients and weighted Gram matrices.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features), float64
    fit_intercept : bool

    Examples
    --------
    >>> d = Design(np.array([[1.0, 2.0], [3.0, 4.0]]), fit_intercept=True)
    >>> d.linear(np.array([1.0, 0.5, -1.0]))
    array([-0.5, -1.5])
    >>> d.gram(np.ones(2))
    array([[ 2.,  4.,  6.],
           [ 4., 10., 14.],
           [ 6., 14., 20.]])
    """

    def __init__(self, X, fit_intercept):
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.fit_intercept = bool(fit_intercept)
        self.n_samples, self.n_features = self.X.shape
        self.n_columns = self.n_features + self.fit_intercept

    def split(self, theta):
        """``(intercept, coef)`` of a parameter vector (intercept 0 without one)."""
        if self.fit_intercept:
            return float(theta[0]), theta[1:]
        return 0.0, theta

    def linear(self, theta):
        """``[1, X] @ theta``."""
        intercept, coef = self.split(theta)
        eta = self.X @ coef
        if intercept:
            eta += intercept
        return eta

    def linear_many(self, theta):
        """``[1, X] @ theta.T`` for a matrix of parameter rows (one row per class)."""
        eta = self.X @ theta[:, self.fit_intercept:].T
        if self.fit_intercept:
            eta += theta[:, 0]
        return eta

    def rmatvec(self, v):
        """``[1, X].T @ v`` for a vector or the columns of a matrix ``v``."""
        out = self.X.T @ v
        if self.fit_intercept:
            return np.concatenate([v.sum(0, keepdims=True), out], axis=0)
        return out

    def gram(self, h, rows=None):
        """``[1, X].T @ diag(h) @ [1, X]`` for non-negative ``h``."""
        X = self.X if rows is None else self.X[rows]
        root = np.sqrt(h)
        scaled = X * root[:, None]
        inner = scaled.T @ scaled  # numpy calls BLAS syrk for a product of a matrix with its own transpose
        if not self.fit_intercept:
            return inner
        q = self.n_columns
        out = np.empty((q, q))
        out[0, 0] = h.sum()
        cross = root @ scaled
        out[0, 1:] = cross
        out[1:, 0] = cross
        out[1:, 1:] = inner
        return out

    def cross_gram(self, h):
        """``[1, X].T @ diag(h) @ [1, X]`` for a weight vector of any sign."""
        if np.all(h >= 0):
            return self.gram(h)
        return self.gram(np.maximum(h, 0.0)) - self.gram(np.maximum(-h, 0.0))


def check_full_rank(design, weights, context, gram=None):
    """Raise a ``ValueError`` if the rows of positive weight do not determine every coefficient.

    The check runs on the Gram matrix of the columns scaled to unit length; a suspiciously
    small eigenvalue is confirmed by the SVD rank of the weighted design itself.

    Parameters
    ----------
    design : Design
    weights : numpy.ndarray of shape (n_samples,)
    context : str
        How to fix it, appended to the message.
    gram : numpy.ndarray, optional
        ``[1, X]' diag(h) [1, X]`` for weights ``h`` positive exactly where ``weights`` is (saves
        computing one).

    Examples
    --------
    >>> X = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    >>> try:
    ...     check_full_rank(Design(X, True), np.ones(3), "set alpha > 0")
    ... except ValueError as exc:
    ...     print(str(exc)[:52])
    the design matrix is rank-deficient: rank 2 < 3 colu
    """
    rows = weights > 0
    n_rows = int(rows.sum())
    q = design.n_columns
    intercept = " (intercept included)" if design.fit_intercept else ""
    if n_rows < q:
        raise ValueError(f"cannot estimate {q} coefficients{intercept} from {n_rows} sample"
                         f"{'s' if n_rows != 1 else ''} of positive weight: the design matrix is rank-deficient; "
                         f"{context}")
    w = weights[rows]
    if gram is None:
        gram = design.gram(w / w.sum(), rows=None if rows.all() else rows)
    norms = np.sqrt(np.diag(gram))
    zero = norms == 0
    if np.any(zero):
        raise ValueError(f"the design matrix is rank-deficient: column(s) {_column_names(np.flatnonzero(zero), design)} "
                         f"are zero on every sample of positive weight; {context}")
    scaled = gram / np.outer(norms, norms)
    eigval, eigvec = np.linalg.eigh(scaled)
    if eigval[0] > 1e-9 * eigval[-1]:
        return
    X1 = design.X[rows] if not rows.all() else design.X
    if design.fit_intercept:
        X1 = np.column_stack([np.ones(X1.shape[0]), X1])
    weighted = X1 * np.sqrt(w)[:, None] / norms
    rank = np.linalg.matrix_rank(weighted)
    if rank < q:
        null = eigvec[:, 0]
        involved = np.flatnonzero(np.abs(null) > 0.1 * np.abs(null).max())
        raise ValueError(f"the design matrix is rank-deficient: rank {rank} < {q} columns{intercept}; column(s) "
                         f"{_column_names(involved, design)} are (nearly) linear combinations of each other, so the "
                         f"coefficients are not identifiable; {context}")


def _column_names(indices, design):
    names = []
    for j in indices:
        if design.fit_intercept:
            names.append("intercept" if j == 0 else f"X[:, {j - 1}]")
        else:
            names.append(f"X[:, {j}]")
    return ", ".join(names)


def find_separation(design, labels, n_classes, weights):
    """A direction along which the linear predictors separate the classes, or ``None``.

    The maximum-likelihood estimate of a logistic (or softmax) model is finite exactly
    when no nonzero direction ``D`` orders every sample's own class above the others:
    ``x_i (d_{y_i} - d_k) >= 0`` for every sample ``i`` and class ``k`` (Albert and
    Anderson, 1984). A linear program looks for such a ``D`` in a box, maximising the sum
    of the margins; a positive optimum is (complete or quasi-complete) separation.

    Parameters
    ----------
    design : Design
    labels : numpy.ndarray of int, shape (n_samples,)
        Class indices; for proportions, ``-1`` marks rows with successes and failures
        (their predictor must then be 0 along ``D``).
    n_classes : int
    weights : numpy.ndarray
        Rows of zero weight are ignored.

    Returns
    -------
    numpy.ndarray of shape (n_classes - 1, n_columns) or None

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> find_separation(Design(X, True), np.array([0, 0, 1, 1]), 2, np.ones(4)) is not None
    True
    >>> find_separation(Design(X, True), np.array([0, 1, 0, 1]), 2, np.ones(4)) is None
    True
    """
    rows = weights > 0
    X1 = design.X[rows]
    if design.fit_intercept:
        X1 = np.column_stack([np.ones(X1.shape[0]), X1])
    scale = np.abs(X1).max(0)
    scale[scale == 0] = 1.0
    X1 = X1 / scale
    y = labels[rows]
    n, q = X1.shape
    n_dir = n_classes - 1  # class 0 is the reference (its row of D is 0)
    rows_idx, cols_idx, values = [], [], []
    n_constraints = 0
    cols = np.arange(q)
    for k in range(n_classes):
        own = np.flatnonzero(y == k)
        if own.size == 0:
            continue
        block = X1[own]
        for other in range(n_classes):
            if other == k:
                continue
            # the margin x_i (d_k - d_other) of each sample i of class k must be >= 0
            r = n_constraints + np.repeat(np.arange(own.size), q)
            for slot, sign in ((k, 1.0), (other, -1.0)):
                if slot > 0:
                    rows_idx.append(r)
                    cols_idx.append(np.tile((slot - 1) * q + cols, own.size))
                    values.append(sign * block.ravel())
            n_constraints += own.size
    if n_constraints == 0:
        return None
    margins = sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows_idx), np.concatenate(cols_idx))),
                                shape=(n_constraints, n_dir * q))
    objective = -np.asarray(margins.sum(0)).ravel()
    both = np.flatnonzero(y == -1)
    a_eq = sparse.csr_matrix(X1[both]) if both.size else None
    b_eq = np.zeros(both.size) if both.size else None
    res = optimize.linprog(objective, A_ub=-margins, b_ub=np.zeros(margins.shape[0]), A_eq=a_eq, b_eq=b_eq,
                           bounds=[(-1.0, 1.0)] * (n_dir * q), method="highs")
    if res.status != 0:
        return None
    total = -res.fun
    # A separating direction has total margin of order one sample's |x| (columns scaled to
    # max 1); rounding in the solver leaves about its feasibility tolerance per constraint.
    if total > 1e-6 * max(1.0, np.sqrt(n)):
        return (res.x.reshape(n_dir, q) / scale).copy()
    return None
