"""Numpy-style docstring sections assembled from one table of shared descriptions.

A family of estimators that shares parameters (the HMMs' ``n_iter``, ``tol``, ...) keeps
one description of each in a :class:`DocFragments` table; a docstring names a group of
the table on a line of its own, ``%(group)s``, and :meth:`DocFragments.fill` replaces
that line by the group's entries, indented as the line. An entry of a *parameter* group
is rendered only when the documented callable (the class's ``__init__``, the method or
the function) takes every parameter the entry names, and ``$name`` in it becomes that
parameter's default, so a subclass with other defaults or fewer parameters gets its own,
exact text. A *section* is inserted as written. :data:`COMMON_DOCS` holds the sections
that estimators of several packages share.
"""

from __future__ import annotations

import inspect
import math
import string

__all__ = ["COMMON_DOCS", "ROWS", "STEPWISE_OPTIONS", "TARGETS", "DocFragments", "parameters_returns",
           "stepwise_returns"]


def _format_default(value):
    """A default as the docstrings write it: strings in double quotes; powers of ten below 0.01 as ``1e-3``
    (as signatures write tolerances and learning rates, where Python's repr gives ``0.001`` or ``1e-06``)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and 0.0 < value < 1e-2:
        exponent = round(math.log10(value))
        if float(f"1e{exponent}") == value:
            return f"1e{exponent}"
    return repr(value)


def _entry_names(entry):
    """The parameter names an entry documents: the comma-separated names before `` : ``."""
    header = entry.split("\n", 1)[0]
    return [name.strip() for name in header.split(" : ", 1)[0].split(",")]


def _placeholder(line):
    """The fragment name of a line holding only ``%(name)s``, else None."""
    stripped = line.strip()
    if stripped.startswith("%(") and stripped.endswith(")s") and stripped[2:-2].isidentifier():
        return stripped[2:-2]
    return None


class DocFragments:
    """Shared docstring sections: parameter groups (filtered and filled per signature) and plain sections.

    Parameters
    ----------
    parameters : dict of str to sequence of str, optional
        Each group's entries, in order. An entry is numpy-style text, ``"a, b : type, default=$a"``
        and its indented description; ``$name`` (``$$`` for a dollar sign) is replaced by the
        default of parameter ``name`` in the documented signature.
    sections : dict of str to str, optional
        Text inserted unchanged (attributes, notes, a whole ``Returns`` section).

    Examples
    --------
    >>> docs = DocFragments(
    ...     parameters={"loop": ["n_iter : int, default=$n_iter\\n    Maximum number of iterations.",
    ...                          "n_init : int, default=$n_init\\n    Number of restarts."]},
    ...     sections={"fitted": "n_iter_ : int\\n    Iterations run."})
    >>> @docs.fill
    ... class Model:
    ...     \"\"\"A model.
    ...
    ...     Parameters
    ...     ----------
    ...     %(loop)s
    ...
    ...     Attributes
    ...     ----------
    ...     %(fitted)s
    ...     \"\"\"
    ...     def __init__(self, n_iter=100):
    ...         self.n_iter = n_iter
    >>> import inspect
    >>> print(inspect.getdoc(Model))
    A model.
    <BLANKLINE>
    Parameters
    ----------
    n_iter : int, default=100
        Maximum number of iterations.
    <BLANKLINE>
    Attributes
    ----------
    n_iter_ : int
        Iterations run.
    """

    def __init__(self, parameters=None, sections=None):
        self.parameters = {name: tuple(entries) for name, entries in (parameters or {}).items()}
        self.sections = dict(sections or {})
        overlap = set(self.parameters) & set(self.sections)
        if overlap:
            raise ValueError(f"fragment names used both as parameter groups and sections: {sorted(overlap)}")

    def render(self, name, signature):
        """The text of fragment ``name`` for a callable of this ``signature`` (unindented)."""
        if name in self.sections:
            return self.sections[name]
        if name not in self.parameters:
            raise KeyError(f"no docstring fragment named {name!r}; known: {sorted([*self.parameters, *self.sections])}")
        params = signature.parameters
        texts = []
        for entry in self.parameters[name]:
            names = _entry_names(entry)
            if all(n in params for n in names):
                defaults = {n: _format_default(params[n].default) for n in names
                            if params[n].default is not inspect.Parameter.empty}
                texts.append(string.Template(entry).substitute(defaults))
        return "\n".join(texts)

    def substitute(self, doc, signature):
        """Replace each line holding only ``%(name)s`` by fragment ``name``, indented as the line.

        An unknown ``name`` is a ``KeyError``, so that a misspelt placeholder fails at import.
        """
        if not doc or "%(" not in doc:
            return doc
        lines = []
        for line in doc.split("\n"):
            name = _placeholder(line)
            if name is None:
                lines.append(line)
                continue
            indent = line[: len(line) - len(line.lstrip())]
            text = self.render(name, signature)
            lines.extend(indent + part if part else part for part in text.split("\n") if text)
        return "\n".join(lines)

    def fill(self, obj):
        """Decorator: fill a function's docstring, or a class's (against its ``__init__``) and its own methods'.

        Methods include the functions behind classmethods, staticmethods and scikit-learn's
        ``available_if``.
        """
        if not isinstance(obj, type):
            obj.__doc__ = self.substitute(obj.__doc__, inspect.signature(obj))
            return obj
        obj.__doc__ = self.substitute(obj.__doc__, inspect.signature(obj.__init__))
        for value in vars(obj).values():
            func = getattr(value, "__func__", getattr(value, "fn", value))
            if inspect.isfunction(func) and func.__doc__ and "%(" in func.__doc__:
                func.__doc__ = self.substitute(func.__doc__, inspect.signature(func))
        return obj


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


def stepwise_returns(batch_record):
    """The ``Returns`` and ``Notes`` sections of a ``partial_fit`` that takes one stepwise-EM step
    (:mod:`probkit.em.online`); ``batch_record`` says where the model keeps each batch's log-likelihood.

    Examples
    --------
    >>> print(stepwise_returns("``history_`` holds the log-likelihood of every batch."))
    Returns
    -------
    self
    <BLANKLINE>
    Notes
    -----
    ``n_iter_`` counts the batches of the online run; stepwise EM has no stopping rule:
    ``converged_`` is False.
    ``history_`` holds the log-likelihood of every batch.
    """
    return "\n".join(["Returns", "-------", "self", "", "Notes", "-----",
                      "``n_iter_`` counts the batches of the online run; stepwise EM has no stopping rule:",
                      "``converged_`` is False.", batch_record])


# Sections that read the same in estimators of several packages.
# the options of one stepwise-EM step (probkit.em.online), taken by every ``partial_fit`` on it
STEPWISE_OPTIONS = [
    """learning_offset : float, default=$learning_offset
    ``>= 0``; larger values make the first steps smaller.""",
    """learning_decay : float, default=$learning_decay
    ``kappa`` in ``[0, 1]``; ``(0.5, 1]`` gives convergence, ``0`` makes every step a
    full EM step on its batch alone.""",
]

COMMON_DOCS = DocFragments(parameters={"stepwise_options": STEPWISE_OPTIONS}, sections={
    "rows_to_array": parameters_returns([ROWS], "ndarray"),
    "rows_to_labels": parameters_returns([ROWS], "ndarray of shape (n_samples,)"),
    "unsupervised_fit": parameters_returns([ROWS, "y : Ignored"], "self"),
    "labelled_rows_to_float": parameters_returns(
        [ROWS, TARGETS, "sample_weight : array-like of shape (n_samples,), optional"], "float"),
})
