"""Linear algebra that reports failures as ``ValueError`` naming the matrix, never as a torch error type."""

from __future__ import annotations

import torch


def cholesky(matrix, name):
    """Lower Cholesky factor of a batch of symmetric positive-definite matrices.

    Parameters
    ----------
    matrix : Tensor (..., d, d)
    name : str
        What the matrix is, for the error message.

    Raises
    ------
    ValueError
        If some matrix is not positive definite (``torch.linalg.cholesky`` would raise
        ``torch.linalg.LinAlgError``).

    Examples
    --------
    >>> cholesky(torch.eye(2, dtype=torch.float64) * 4, "covariance").diagonal().tolist()
    [2.0, 2.0]
    >>> cholesky(torch.zeros(2, 2), "covariance")
    Traceback (most recent call last):
    ...
    ValueError: covariance is not positive definite (singular or with negative eigenvalues); regularise it (e.g. reg_covar) or check the data for constant or collinear columns
    """
    L, info = torch.linalg.cholesky_ex(matrix)
    if bool((info != 0).any()):
        raise ValueError(f"{name} is not positive definite (singular or with negative eigenvalues); regularise it "
                         "(e.g. reg_covar) or check the data for constant or collinear columns")
    return L
