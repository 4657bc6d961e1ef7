"""Convergence monitoring shared by every iterative fit (EM, VB-EM)."""

from __future__ import annotations

import math
import sys
import time


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


class MixtureVerboseMonitor(ConvergenceMonitor):
    """A monitor that prints scikit-learn's mixture progress lines.

    ``verbose=1``: ``Initialization 0``, ``  Iteration 10`` every ``verbose_interval``
    iterations, ``Initialization converged.``; ``verbose=2`` adds the time since the last
    line, the change of the objective and the final lower bound, in scikit-learn's words.
    Lines go to standard error through :func:`probkit.utils.progress.write_line`, so they
    do not break a progress bar. Build one per initialisation with
    :func:`mixture_monitor_factory`.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> m = MixtureVerboseMonitor(1e-3, 100, verbose=1, init_index=0, verbose_interval=2, file=out)
    >>> for value in [-3.0, -2.5, -2.4999]:
    ...     m.report(value)
    >>> m.end_run(converged=True)
    >>> print(out.getvalue(), end="")
    Initialization 0
      Iteration 2
    Initialization converged.
    """

    def __init__(self, tol, n_iter, verbose=1, signed=False, *, init_index=0, verbose_interval=10, file=None):
        super().__init__(tol, n_iter, verbose=False, signed=signed)
        self.level = int(verbose)
        self.init_index = init_index
        self.verbose_interval = max(1, int(verbose_interval))
        self.file = file
        self._start = self._last = time.perf_counter()
        self._write(f"Initialization {init_index}")

    def _write(self, text):
        from probkit.utils.progress import write_line

        write_line(text, file=self.file)

    def report(self, value):
        """Record the objective of one iteration; print every ``verbose_interval`` iterations."""
        super().report(value)
        if self.iter % self.verbose_interval:
            return
        if self.level >= 2:
            now = time.perf_counter()
            change = self.gain if len(self.history) >= 2 else self.history[-1]
            self._write(f"  Iteration {self.iter}\t time lapse {now - self._last:.5f}s\t ll change {change:.5f}")
            self._last = now
        else:
            self._write(f"  Iteration {self.iter}")

    def end_run(self, converged):
        """Print the end of one initialisation (called by the EM engine)."""
        message = "converged" if converged else "did not converge"
        if self.level >= 2:
            lower_bound = self.history[-1] if self.history else float("nan")
            self._write(f"Initialization {message}. time lapse {time.perf_counter() - self._start:.5f}s\t "
                        f"lower bound {lower_bound:.5f}.")
        else:
            self._write(f"Initialization {message}.")


def mixture_monitor_factory(verbose, verbose_interval=10):
    """A ``monitor_factory`` for :func:`probkit.em.engine.run_em` printing scikit-learn's mixture lines.

    Returns ``None`` (the engine's default, silent monitor) when ``verbose`` is 0.

    Examples
    --------
    >>> mixture_monitor_factory(0) is None
    True
    """
    if not verbose:
        return None
    counter = {"runs": 0}

    def factory(tol, n_iter, verbose_, signed):
        monitor = MixtureVerboseMonitor(tol, n_iter, verbose, signed, init_index=counter["runs"],
                                        verbose_interval=verbose_interval)
        counter["runs"] += 1
        return monitor

    return factory
