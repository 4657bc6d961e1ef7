"""Parameter sections shared by several public functions, substituted into their docstrings."""

from __future__ import annotations

import textwrap


def fill_parameters(section):
    """Decorator that puts ``section`` (a numpy-style ``Parameters`` section written without
    indentation) in place of ``{parameters}`` in a docstring, indented like the docstring's body."""

    def decorate(func):
        if func.__doc__:  # None under python -OO
            func.__doc__ = func.__doc__.replace("{parameters}", textwrap.indent(section, "    ").lstrip())
        return func

    return decorate
