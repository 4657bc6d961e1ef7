"""Numpy-style docstring sections assembled from one table of shared descriptions.

A family of estimators that shares parameters (the HMMs' ``n_iter``, ``tol``, ...) keeps
one description of each in a :class:`DocFragments` table; a docstring names a group of
the table on a line of its own, ``%(group)s``, and :meth:`DocFragments.fill` replaces
that line by the group's entries, indented as the line. An entry of a *parameter* group
is rendered only when the documented callable (the class's ``__init__``, or the method)
takes every parameter the entry names, and ``$name`` in it becomes that parameter's
default, so a subclass with other defaults or fewer parameters gets its own, exact text.
"""

from __future__ import annotations

import inspect
import string

__all__ = ["DocFragments"]


def _format_default(value):
    """A default as the numpy docstring convention writes it: strings in double quotes."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _entry_names(entry):
    """The parameter names an entry documents: the comma-separated names before `` : ``."""
    header = entry.split("\n", 1)[0]
    return [name.strip() for name in header.split(" : ", 1)[0].split(",")]


class DocFragments:
    """Shared docstring sections: parameter groups (filtered and filled per signature) and plain sections.

    Parameters
    ----------
    parameters : dict of str to sequence of str
        Each group's entries, in order. An entry is numpy-style text, ``"a, b : type, default=$a"``
        and its indented description; ``$name`` (``$$`` for a dollar sign) is replaced by the
        default of parameter ``name`` in the documented signature.
    sections : dict of str to str, optional
        Text inserted unchanged (attributes, notes).

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

    def __init__(self, parameters, sections=None):
        self.parameters = {name: tuple(entries) for name, entries in parameters.items()}
        self.sections = dict(sections or {})
        overlap = set(self.parameters) & set(self.sections)
        if overlap:
            raise ValueError(f"fragment names used both as parameter groups and sections: {sorted(overlap)}")

    def render(self, name, signature):
        """The text of fragment ``name`` for a callable of this ``signature`` (unindented)."""
        if name in self.sections:
            return self.sections[name]
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
        """Replace each line holding only ``%(name)s`` of a known fragment by its text, indented as the line."""
        if not doc or "%(" not in doc:
            return doc
        lines = []
        for line in doc.split("\n"):
            stripped = line.strip()
            name = stripped[2:-2]
            if stripped.startswith("%(") and stripped.endswith(")s") and (name in self.parameters
                                                                           or name in self.sections):
                indent = line[: len(line) - len(line.lstrip())]
                text = self.render(name, signature)
                lines.extend(indent + part if part else part for part in text.split("\n") if text)
            else:
                lines.append(line)
        return "\n".join(lines)

    def fill(self, cls):
        """Class decorator: fill ``cls.__doc__`` (against ``cls.__init__``) and its own methods' docstrings."""
        cls.__doc__ = self.substitute(cls.__doc__, inspect.signature(cls.__init__))
        for value in vars(cls).values():
            # the function behind a classmethod / staticmethod, or scikit-learn's available_if
            func = getattr(value, "__func__", getattr(value, "fn", value))
            if inspect.isfunction(func) and func.__doc__ and "%(" in func.__doc__:
                func.__doc__ = self.substitute(func.__doc__, inspect.signature(func))
        return cls
