"""Convergence monitoring shared by every iterative fit (EM, VB-EM)."""

from __future__ import annotations

import math
import sys


class ConvergenceMonitor:
    """Record the objective of an iterative fit and whether it met its tolerance.

    Parameters
    ----------
    tol : float
        Convergence threshold on the gain of the objective between two iterations.
    n_iter : int
        Maximum number of iterations.
    verbose : bool or int, default=False
        Print a header and one line per iteration to ``sys.stderr``.
    signed : bool, default=False
        ``False``: converged when ``|gain| < tol`` (scikit-learn). ``True``: converged when
        ``gain < tol``, so a (numerical) decrease also stops the fit (hmmlearn).

    Attributes
    ----------
    history : list of float
        The objective after each iteration (the whole trajectory, not only the last two).
    iter : int
        Number of iterations performed.

    Notes
    -----
    hmmlearn's monitor also reports ``converged=True`` when the fit merely ran out of
    iterations; here ``converged`` is true only when the tolerance was met, and a fit that
    stops at ``n_iter`` warns with :class:`~sklearn.exceptions.ConvergenceWarning`.

    Examples
    --------
    >>> m = ConvergenceMonitor(tol=1e-3, n_iter=10)
    >>> for value in [-10.0, -5.0, -4.9999]:
    ...     m.report(value)
    >>> m.iter, m.converged
    (3, True)
    >>> m = ConvergenceMonitor(tol=1e-3, n_iter=2)
    >>> for value in [-10.0, -5.0]:
    ...     m.report(value)
    >>> m.iter, m.converged
    (2, False)
    """

    _header = "{:>10s} {:>16s} {:>16s}".format("iteration", "objective", "gain")
    _template = "{iter:>10d} {value:>16.8f} {delta:>16s}"

    def __init__(self, tol, n_iter, verbose=False, signed=False):
        self.tol = tol
        self.n_iter = n_iter
        self.verbose = verbose
        self.signed = signed
        self.history = []
        self.iter = 0

    def __repr__(self):
        return (
            f"{type(self).__name__}(tol={self.tol}, n_iter={self.n_iter}, iter={self.iter}, "
            f"converged={self.converged})"
        )

    def report(self, value):
        """Record the objective of one iteration (and print it when verbose).

        Raises
        ------
        FloatingPointError
            If ``value`` is NaN: the fit stops with the iteration number rather than
            carrying NaN parameters forward.
        """
        value = float(value)
        if math.isnan(value):
            raise FloatingPointError(
                f"the objective became NaN at iteration {self.iter + 1}; "
                "check the data for extreme values or increase regularisation"
            )
        if self.verbose:
            from probkit.utils.progress import write_line

            if not self.history:
                write_line(self._header)
            delta = f"{value - self.history[-1]:+16.8f}" if self.history else ""
            write_line(self._template.format(iter=self.iter + 1, value=value, delta=delta))
        self.history.append(value)
        self.iter += 1

    @property
    def gain(self):
        """The last change of the objective (``nan`` before two iterations)."""
        return self.history[-1] - self.history[-2] if len(self.history) >= 2 else math.nan

    @property
    def converged(self):
        """Whether the last gain met the tolerance (running out of iterations is not convergence)."""
        if len(self.history) < 2:
            return False
        gain = self.gain
        return (gain if self.signed else abs(gain)) < self.tol
