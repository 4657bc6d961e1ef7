"""Numpy-style docstring sections written once and placed into several docstrings.

A docstring line that holds only ``%(name)s`` stands for the fragment ``name``; the
decorator :func:`doc_sections` replaces it, indented as that line, when the module is
imported, so ``help()`` and the doctests see the complete text.
"""

from __future__ import annotations

import re

__all__ = ["COMMON_SECTIONS", "ROWS", "TARGETS", "doc_sections", "expand_sections", "parameters_returns"]

ROWS = "X : array-like of shape (n_samples, n_features)"
TARGETS = "y : array-like of shape (n_samples,)"


def parameters_returns(parameters, returns):
    """A ``Parameters`` section listing ``parameters`` (lines) followed by a ``Returns`` section.

    Examples
    --------
    >>> print(parameters_returns([ROWS], "float"))
    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    <BLANKLINE>
    Returns
    -------
    float
    """
    return "\n".join(["Parameters", "----------", *parameters, "", "Returns", "-------", returns])


# Sections that read the same in estimators of several packages; a package adds its own.
COMMON_SECTIONS = {
    "rows_to_array": parameters_returns([ROWS], "ndarray"),
    "rows_to_labels": parameters_returns([ROWS], "ndarray of shape (n_samples,)"),
    "unsupervised_fit": parameters_returns([ROWS, "y : Ignored"], "self"),
}

_PLACEHOLDER = re.compile(r"^([ \t]*)%\((\w+)\)s[ \t]*$", re.MULTILINE)


def expand_sections(text, fragments):
    """``text`` with each placeholder line replaced by its fragment from ``fragments``.

    Examples
    --------
    >>> print(expand_sections("Sum.\\n\\n    %(returns)s\\n", {"returns": "Returns\\n-------\\nfloat"}))
    Sum.
    <BLANKLINE>
        Returns
        -------
        float
    <BLANKLINE>
    """
    def expand(match):
        indent, name = match.groups()
        if name not in fragments:
            raise KeyError(f"no docstring fragment named {name!r}; known: {sorted(fragments)}")
        return "\n".join(indent + line if line else line for line in fragments[name].split("\n"))

    return _PLACEHOLDER.sub(expand, text)


def doc_sections(fragments=None):
    """Decorator: expand the placeholders in a function's docstring, or a class's and its own methods'.

    The fragments are :data:`COMMON_SECTIONS` and ``fragments``.

    Examples
    --------
    >>> @doc_sections({"x_param": "x : float\\n    The input."})
    ... def double(x):
    ...     \"\"\"Twice ``x``.
    ...
    ...     Parameters
    ...     ----------
    ...     %(x_param)s
    ...     \"\"\"
    ...     return 2 * x
    >>> print(double.__doc__.splitlines()[4])
        x : float
    """
    fragments = {**COMMON_SECTIONS, **(fragments or {})}

    def decorate(obj):
        targets = [obj]
        if isinstance(obj, type):
            members = (getattr(member, "__func__", member) for member in vars(obj).values())
            targets += [member for member in members if callable(member)]
        for target in targets:
            doc = getattr(target, "__doc__", None)
            if doc and "%(" in doc:
                target.__doc__ = expand_sections(doc, fragments)
        return obj

    return decorate
