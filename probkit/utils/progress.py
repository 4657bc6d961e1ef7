"""Progress bars for long fits (tqdm), shown only when ``verbose`` asks for them."""

from __future__ import annotations

import sys


def progress_bar(total, verbose, desc):
    """Return a tqdm bar when ``verbose`` >= 2 (or ``verbose=True`` with ``total`` large), else a no-op bar.

    Parameters
    ----------
    total : int
        Expected number of steps.
    verbose : bool or int
        ``0``/``False``: silent. ``1``/``True``: per-iteration lines are printed by the
        convergence monitor; a bar is added for fits of more than 50 iterations.
        ``2`` or more: always a bar.
    desc : str
        Label of the bar.

    Examples
    --------
    >>> with progress_bar(3, verbose=False, desc="EM") as bar:
    ...     bar.update(1)
    """
    show = int(verbose) >= 2 or (bool(verbose) and total > 50)
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm  # imported when a bar is shown, not with probkit

    return tqdm(total=total, desc=desc, leave=False)


class _NoBar:
    """What a hidden bar needs to be: a context manager with ``update`` (a disabled tqdm costs more)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass


def write_line(text, file=None):
    """Print one line of progress to standard error without breaking an open tqdm bar.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> write_line("iteration 1", file=out)
    >>> out.getvalue()
    'iteration 1\\n'
    """
    file = sys.stderr if file is None else file
    if "tqdm" in sys.modules:
        from tqdm.auto import tqdm

        tqdm.write(text, file=file)
    else:
        print(text, file=file)
