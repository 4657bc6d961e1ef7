"""Numeric CSV input of the command line (``probkit fit|score|decode``).

Two readers share one contract. The fast one hands the whole body to numpy's C parser
(:func:`numpy.loadtxt`); it accepts only the common case: every cell a finite number,
every row as wide as the header. Anything else (an empty or ``NA`` cell, a word, a ragged
row, ``inf``, a non-numeric sequence column) falls through to the careful reader, which
walks the file with the :mod:`csv` module and reports the first problem with its line
number, column name and cell. Both return the same arrays on the files they both accept.

Examples
--------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
>>> with open(path, "w") as f:
...     _ = f.write("x,y\\n1,2\\n3,4\\n")
>>> X, names, lengths = read_numeric_csv(path)
>>> X.tolist(), names, lengths
([[1.0, 2.0], [3.0, 4.0]], ['x', 'y'], None)
"""

from __future__ import annotations

import csv
import io
import math
import sys
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["CSVError", "printable", "read_numeric_csv", "read_text"]

#: Cells read as missing values (case-insensitive).
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "?"})
#: Delimiters tried, in this order, when none is given.
DELIMITERS = ",;\t|"
# Rows looked at to guess the delimiter.
_SNIFF_LINES = 50


class CSVError(ValueError):
    """A problem with the user's CSV file, worded as one line for the terminal.

    Examples
    --------
    >>> isinstance(CSVError("data.csv, line 3: 1 fields where the header has 2"), ValueError)
    True
    """


def printable(text):
    """``text`` with control and other non-printable characters escaped (``\\x1b`` stays visible, inert).

    Column names come from the user's file; printed raw, an ANSI escape sequence in a
    header would restyle or rewrite the terminal.

    Examples
    --------
    >>> printable("price\\x1b[31m")
    'price\\\\x1b[31m'
    >>> printable("délai")
    'délai'
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def read_text(path):
    """The text of ``path`` (``"-"``: standard input), or a :class:`CSVError` saying why not.

    Examples
    --------
    >>> read_text("no/such/file.csv")
    Traceback (most recent call last):
    ...
    probkit._csv.CSVError: cannot read no/such/file.csv: no such file
    """
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CSVError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise CSVError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise CSVError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.startswith(b"PK\x03\x04"):
        raise CSVError(f"{path} is a zip archive (a probkit model file?), not a CSV data file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CSVError(f"{path} is not a text (UTF-8) CSV file") from None


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_blank(row):
    return not row or (len(row) == 1 and not row[0].strip())


def _guess_delimiter(lines):
    best, best_score = ",", -1
    for d in DELIMITERS:
        counts = [line.count(d) for line in lines]
        if counts and min(counts) > 0 and len(set(counts)) == 1 and counts[0] > best_score:
            best, best_score = d, counts[0]
    return best


def _check_delimiter(delimiter):
    if delimiter is None or len(delimiter) == 1:
        return delimiter
    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
    if len(delimiter) != 1:
        raise CSVError(f"--delimiter must be one character, got {delimiter!r}")
    return delimiter


@dataclass
class _Head:
    """The first non-blank row of a file: header or first data row."""

    names: list
    header: bool
    line: int  # 1-based line number of that row
    delimiter: str


def _read_head(text, path, delimiter):
    # Only the first lines are split here: the body of a large file is never split in Python
    # on the fast path.
    first_lines = text[: 1 << 16].split("\n", 4 * _SNIFF_LINES)[: 4 * _SNIFF_LINES]
    sample = [line.rstrip("\r") for line in first_lines if line.strip()][:_SNIFF_LINES]
    if not sample:
        if text.strip():  # blank lines beyond the sample: let the careful reader look
            sample = [line for line in text.splitlines() if line.strip()][:_SNIFF_LINES]
        if not sample:
            raise CSVError(f"{path} is empty")
    if delimiter is None:
        delimiter = _guess_delimiter(sample)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    for row in reader:
        if not _is_blank(row):
            first = [c.strip() for c in row]
            header = not all(_is_number(c) or c.lower() in MISSING for c in first)
            names = first if header else [f"column{j}" for j in range(len(first))]
            return _Head(names=names, header=header, line=reader.line_num, delimiter=delimiter)
    raise CSVError(f"{path} is empty")


def _select(names, path, spec, default=None):
    """Indices of the chosen columns (names or 0-based indices, comma-separated)."""
    if spec is None:
        if default is not None and all(name in names for name in default):
            return [names.index(name) for name in default]
        return list(range(len(names)))
    chosen = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if item in names:
            chosen.append(names.index(item))
        elif item.lstrip("-").isdigit() and -len(names) <= int(item) < len(names):
            chosen.append(int(item) % len(names))
        else:
            raise CSVError(f"{path} has no column '{printable(item)}'; its columns are "
                           f"{', '.join(printable(n) for n in names)}")
    if not chosen:
        raise CSVError("--columns selects no column")
    return chosen


def _fast_body(text, head):
    """Every cell of the body as float64 by numpy's C parser, or None when the careful reader must look."""
    skip = head.line if head.header else head.line - 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about a body with no rows; the careful reader says it
            body = np.loadtxt(io.StringIO(text), delimiter=head.delimiter, skiprows=skip, dtype=np.float64,
                              comments=None, quotechar='"', ndmin=2, encoding=None)
    except ValueError:  # a non-numeric, empty or ragged cell: the careful reader says which
        return None
    if body.shape[0] == 0 or body.shape[1] != len(head.names) or not np.isfinite(body).all():
        return None
    return body


def _careful_body(text, path, head):
    """Raw cells of the body and the line number of each row, with line-numbered errors."""
    reader = csv.reader(io.StringIO(text), delimiter=head.delimiter)
    width = len(head.names)
    where = "header" if head.header else "first row"
    rows, lines = [], []
    for row in reader:
        if reader.line_num < head.line or (head.header and reader.line_num == head.line) or _is_blank(row):
            continue
        if len(row) != width:
            raise CSVError(f"{path}, line {reader.line_num}: {len(row)} fields "
                           f"where the {where} has {width} (wrong --delimiter?)")
        rows.append([c.strip() for c in row])
        lines.append(reader.line_num)
    if not rows:
        raise CSVError(f"{path} has a header ({head.delimiter.join(printable(n) for n in head.names)}) "
                       "but no data rows")
    return rows, lines


def _cells_to_numbers(rows, lines, indices, path, head):
    out = np.empty((len(rows), len(indices)))
    delimiter = head.delimiter
    for i, row in enumerate(rows):
        for k, j in enumerate(indices):
            cell = row[j]
            if cell.lower() in MISSING:
                out[i, k] = np.nan
                continue
            try:
                value = float(cell)
            except ValueError:
                hint = ""
                others = [d for d in DELIMITERS if d != delimiter and d in cell]
                if others:
                    hint = f" (is the delimiter {others[0]!r}? pass --delimiter)"
                raise CSVError(f"{path}, line {lines[i]}, column '{printable(head.names[j])}': "
                               f"'{printable(cell)}' is not a number{hint}") from None
            if not math.isfinite(value):
                raise CSVError(f"{path}, line {lines[i]}, column '{printable(head.names[j])}': "
                               f"'{printable(cell)}' is not a finite number")
            out[i, k] = value
    return out


def _run_lengths(values):
    """Lengths of the runs of equal consecutive values."""
    values = np.asarray(values)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return np.diff(np.r_[starts, len(values)]).astype(np.int64)


def read_numeric_csv(path, columns=None, delimiter=None, dropna=False, sequence_column=None, default_columns=None,
                     extra_columns=None):
    """Read numeric columns of a CSV file.

    The delimiter is detected among ``, ; TAB |`` unless given; a first row with a
    non-numeric cell is a header. Blank lines are skipped. Empty cells (and ``nan``,
    ``NA``, ``null``, ``?``), rows of empty cells included, are an error unless ``dropna``
    drops their rows.

    Parameters
    ----------
    path : str
        File name, or ``"-"`` for standard input.
    columns : str, optional
        Comma-separated column names or 0-based indices (default: every column except
        the sequence column).
    delimiter : str, optional
        One character (``"tab"`` and ``"\\t"`` name the tab).
    dropna : bool, default=False
    sequence_column : str, optional
        Column whose value names the sequence of each row; consecutive rows with the
        same value form one sequence.
    default_columns : list of str, optional
        Columns to use when ``columns`` is not given and the file has them all (the
        columns a model was fitted on).
    extra_columns : str, optional
        Further columns (names or 0-based indices, comma-separated; the CLI's ``--inputs``)
        appended after the chosen ones, in the given order; without ``columns`` they are
        left out of the default "every column".

    Returns
    -------
    X : numpy.ndarray of shape (n_rows, n_columns)
    names : list of str
        The column names as written in the file (escape them with :func:`printable`
        before showing them).
    lengths : numpy.ndarray of int or None
        Sequence lengths when ``sequence_column`` is given.

    Raises
    ------
    CSVError
        With the file name, and the line and column of the first bad cell.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("id;x;y\\n1;0.5;2\\n1;1.5;3\\n2;2.5;4\\n")
    >>> X, names, lengths = read_numeric_csv(path, sequence_column="id")
    >>> X.tolist(), names, lengths.tolist()
    ([[0.5, 2.0], [1.5, 3.0], [2.5, 4.0]], ['x', 'y'], [2, 1])
    >>> with open(path, "w") as f:
    ...     _ = f.write("x,y\\n1,2\\n3,oops\\n")
    >>> read_numeric_csv(path)
    Traceback (most recent call last):
    ...
    probkit._csv.CSVError: ..., line 3, column 'y': 'oops' is not a number
    """
    delimiter = _check_delimiter(delimiter)
    text = read_text(path)
    head = _read_head(text, path, delimiter)
    names = head.names
    seq_idx = None
    if sequence_column is not None:
        seq = _select(names, path, sequence_column)
        if len(seq) != 1:
            raise CSVError("--sequence-column names one column")
        seq_idx = seq[0]
    default = list(default_columns) if default_columns is not None else None
    indices = _select(names, path, columns, default=default)
    extra = [] if extra_columns is None else _select(names, path, extra_columns)
    if columns is None and default is None:
        indices = [j for j in indices if j != seq_idx and j not in extra]
    if seq_idx is not None and seq_idx in indices + extra:
        raise CSVError(f"column '{printable(names[seq_idx])}' is the sequence column and cannot also be a feature")
    if not indices:
        raise CSVError(f"{path} has no feature column left to model")
    for j in extra:
        if j in indices:
            raise CSVError(f"column '{printable(names[j])}' is one of the --inputs columns and cannot also be "
                           "modelled")
        if extra.count(j) > 1:
            raise CSVError(f"column '{printable(names[j])}' is named twice in --inputs")
    indices = indices + extra

    body = _fast_body(text, head)
    if body is not None:
        X = np.ascontiguousarray(body[:, indices])
        lengths = _run_lengths(body[:, seq_idx]) if seq_idx is not None else None
        return X, [names[j] for j in indices], lengths

    rows, lines = _careful_body(text, path, head)
    X = _cells_to_numbers(rows, lines, indices, path, head)
    keep = np.ones(len(X), dtype=bool)
    missing = np.isnan(X)
    if missing.any():
        if not dropna:
            i, k = np.argwhere(missing)[0]
            raise CSVError(f"{path}: {int(missing.any(1).sum())} row(s) have empty or NaN cells (first: line "
                           f"{lines[i]}, column '{printable(names[indices[k]])}'); clean them or pass --dropna")
        keep = ~missing.any(1)
        if not keep.any():
            raise CSVError(f"{path}: every row has an empty or NaN cell; nothing left after --dropna")
    X = X[keep]
    lengths = None
    if seq_idx is not None:
        ids = [row[seq_idx] for row, k in zip(rows, keep) if k]
        lengths = _run_lengths(np.asarray(ids, dtype=object))
    return X, [names[j] for j in indices], lengths
