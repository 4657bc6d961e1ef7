"""Warnings that point at the user's line, however deep inside probkit they are raised."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_stacklevel():
    """The ``stacklevel`` that makes a warning raised by the caller name the first frame outside probkit.

    Decorators, the EM engine and private helpers sit between a public method and the
    line that called it; counting frames by hand breaks whenever one is added.

    Examples
    --------
    >>> user_stacklevel() >= 1
    True
    """
    frame = sys._getframe(1)  # the function that will call warnings.warn
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def warn_user(message, category=UserWarning):
    """``warnings.warn`` with the stack level of the first caller outside probkit.

    Parameters
    ----------
    message : str
    category : type of Warning, default=UserWarning

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_user("look here")
    >>> caught[0].filename.startswith(_PACKAGE_DIR)
    False
    """
    warnings.warn(message, category, stacklevel=user_stacklevel())
