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
    from tqdm.auto import tqdm  # imported when a fit runs, not with probkit

    show = int(verbose) >= 2 or (bool(verbose) and total > 50)
    return tqdm(total=total, desc=desc, disable=not show, leave=False)


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
