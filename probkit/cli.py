"""The ``probkit`` command line: fit a model to a CSV file, then score, decode or sample with it.

Run ``probkit --help`` (or ``python -m probkit --help``) for the commands, and
``probkit COMMAND --help`` for the options of one. A typical session::

    probkit fit gaussian-hmm data.csv --n-components 3 --columns price,volume -o model.pk
    probkit decode model.pk data.csv -o states.csv --plot states.png
    probkit score model.pk data.csv
    probkit sample model.pk -n 200 -o samples.csv

Errors in the input (a missing file, a non-numeric or empty cell, a wrong number of
columns, a model file of the wrong kind) end the command with a one-line message on
standard error and exit status 1; wrong usage exits with status 2.

Examples
--------
>>> main(["--version"])  # doctest: +ELLIPSIS
probkit ...
0
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import math
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MODELS", "CLIError", "ModelSpec", "main", "read_csv"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
#: Iteration limit of ``probkit fit`` when ``--max-iter`` is not given.
CLI_MAX_ITER = 200
_MISSING = {"", "nan", "na", "n/a", "null", "none", "?"}
_DELIMITERS = ",;\t|"


class CLIError(Exception):
    """An error in the user's input: printed as one line, exit status 1.

    Examples
    --------
    >>> str(CLIError("data.csv is empty"))
    'data.csv is empty'
    """


# ---------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """How ``probkit fit NAME`` builds an estimator.

    Attributes
    ----------
    target : str
        ``"module:Class"`` imported when the model is used (so a model whose subpackage
        is not installed is reported, not a crash at start-up).
    summary : str
        One line for ``--help``.
    sequential : bool
        An HMM (accepts ``--sequence-column``; ``decode`` gives the Viterbi path).
    supervised : bool
        A regressor or classifier of the ``--target`` column on the others (``decode``
        writes its predictions, ``score`` its D^2 or accuracy).
    iter_param : str
        Name of the iteration-limit parameter (``max_iter`` or ``n_iter``).
    options : tuple of str
        Optional CLI options that map to constructor parameters of the same name.
    fixed : dict
        Constructor parameters the command always sets.

    Examples
    --------
    >>> MODELS["poisson-hmm"].load().__name__
    'PoissonHMM'
    """

    target: str
    summary: str
    sequential: bool = False
    supervised: bool = False
    iter_param: str = "max_iter"
    options: tuple = ()
    fixed: dict = field(default_factory=dict)

    def load(self):
        """Import and return the estimator class."""
        module, _, name = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            raise CLIError(f"{name} is not available in this installation of probkit ({module} has no {name})") \
                from None


#: The models ``probkit fit`` knows, by command-line name.
MODELS = {
    "gaussian-mixture": ModelSpec("probkit.mixture:GaussianMixture",
                                  "Gaussian mixture (rows are independent), fitted by EM",
                                  options=("covariance_type", "n_init")),
    "bayesian-gaussian-mixture": ModelSpec("probkit.mixture:BayesianGaussianMixture",
                                           "variational Bayesian Gaussian mixture (unused components fade out)",
                                           options=("covariance_type", "n_init")),
    "poisson-mixture": ModelSpec("probkit.mixture:MixtureModel",
                                 "mixture of Poisson distributions for counts (one rate per column)",
                                 options=("n_init",), fixed={"family": "poisson"}),
    "gaussian-hmm": ModelSpec("probkit.hmm:GaussianHMM", "hidden Markov model with Gaussian emissions",
                              sequential=True, iter_param="n_iter", options=("covariance_type", "n_init")),
    "gmm-hmm": ModelSpec("probkit.hmm:GMMHMM", "hidden Markov model whose states emit Gaussian mixtures",
                         sequential=True, iter_param="n_iter", options=("covariance_type", "n_init", "n_mix")),
    "categorical-hmm": ModelSpec("probkit.hmm:CategoricalHMM",
                                 "hidden Markov model over symbols 0..M-1 (one integer column)",
                                 sequential=True, iter_param="n_iter", options=("n_init",)),
    "poisson-hmm": ModelSpec("probkit.hmm:PoissonHMM", "hidden Markov model with Poisson emissions for counts",
                             sequential=True, iter_param="n_iter", options=("n_init",)),
    "glm-poisson": ModelSpec("probkit.glm:GeneralizedLinearModel", "Poisson regression of a --target count column",
                             supervised=True, options=("alpha",), fixed={"family": "poisson"}),
    "glm-negative-binomial": ModelSpec("probkit.glm:GeneralizedLinearModel",
                                       "negative-binomial regression (log link) of over-dispersed counts",
                                       supervised=True, options=("alpha",),
                                       fixed={"family": "negative_binomial", "link": "log"}),
    "glm-gamma": ModelSpec("probkit.glm:GeneralizedLinearModel", "Gamma regression (log link) of a positive --target",
                           supervised=True, options=("alpha",), fixed={"family": "gamma", "link": "log"}),
    "logistic-regression": ModelSpec("probkit.glm:GeneralizedLinearClassifier",
                                     "logistic / softmax regression of a --target class column",
                                     supervised=True, options=("alpha",)),
    "naive-bayes": ModelSpec("probkit.naive_bayes:NaiveBayes",
                             "Gaussian naive Bayes classifier of a --target class column", supervised=True),
    "linear-gaussian-ssm": ModelSpec("probkit.ssm:LinearGaussianSSM", "linear-Gaussian state-space model "
                                     "(Kalman filter; -k = state dimension)", sequential=True, iter_param="n_iter"),
}


# ---------------------------------------------------------------------------- CSV input
@dataclass
class _Table:
    """A parsed CSV file: numeric columns (NaN where a cell is empty) and their names."""

    names: list
    columns: list  # list of lists of str (raw cells)
    path: str
    n_rows: int
    header: bool

    def line(self, i):
        """Line number in the file of data row ``i`` (0-based)."""
        return i + (2 if self.header else 1)


def _read_text(path):
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CLIError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.startswith(b"PK\x03\x04"):
        raise CLIError(f"{path} is a zip archive (a probkit model file?), not a CSV data file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not a text (UTF-8) CSV file") from None


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _guess_delimiter(lines):
    best, best_score = ",", -1
    for d in _DELIMITERS:
        counts = [line.count(d) for line in lines if line.strip()]
        if counts and min(counts) > 0 and len(set(counts)) == 1:
            score = counts[0]
            if score > best_score:
                best, best_score = d, score
    return best


def _parse_table(text, path, delimiter=None):
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise CLIError(f"{path} is empty")
    if delimiter is None:
        delimiter = _guess_delimiter([line for line in lines[:50] if line.strip()])
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r and any(c.strip() for c in r)]
    first = [c.strip() for c in rows[0]]
    has_header = not all(_is_number(c) or c.lower() in _MISSING for c in first)
    names = first if has_header else [f"column{j}" for j in range(len(first))]
    body = rows[1:] if has_header else rows
    if not body:
        raise CLIError(f"{path} has a header ({delimiter.join(first)}) but no data rows")
    width = len(names)
    for i, row in enumerate(body):
        if len(row) != width:
            line_no = i + (2 if has_header else 1)
            where = "header" if has_header else "first row"
            raise CLIError(f"{path}, line {line_no}: {len(row)} fields where the {where} has {width} "
                           "(wrong --delimiter?)")
    columns = [[row[j].strip() for row in body] for j in range(width)]
    return _Table(names=names, columns=columns, path=path, n_rows=len(body), header=has_header), delimiter


def _select(table, spec, n_expected=None, default=None):
    """Indices of the chosen columns (names or 0-based indices, comma-separated)."""
    if spec is None:
        if default is not None and all(name in table.names for name in default):
            return [table.names.index(name) for name in default]
        return list(range(len(table.names)))
    chosen = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if item in table.names:
            chosen.append(table.names.index(item))
        elif item.lstrip("-").isdigit() and -len(table.names) <= int(item) < len(table.names):
            chosen.append(int(item) % len(table.names))
        else:
            raise CLIError(f"{table.path} has no column {item!r}; its columns are {', '.join(table.names)}")
    if not chosen:
        raise CLIError("--columns selects no column")
    return chosen


def _to_numbers(table, indices, delimiter):
    out = np.empty((table.n_rows, len(indices)))
    for k, j in enumerate(indices):
        for i, cell in enumerate(table.columns[j]):
            if cell.lower() in _MISSING:
                out[i, k] = np.nan
                continue
            try:
                out[i, k] = float(cell)
            except ValueError:
                hint = ""
                others = [d for d in _DELIMITERS if d != delimiter and d in cell]
                if others:
                    hint = f" (is the delimiter {others[0]!r}? pass --delimiter)"
                raise CLIError(f"{table.path}, line {table.line(i)}, column {table.names[j]!r}: {cell!r} is not "
                               f"a number{hint}") from None
            if not math.isfinite(out[i, k]):
                raise CLIError(f"{table.path}, line {table.line(i)}, column {table.names[j]!r}: {cell!r} is not "
                               "a finite number")
    return out


def read_csv(path, columns=None, delimiter=None, dropna=False, sequence_column=None, default_columns=None):
    """Read numeric columns of a CSV file for the CLI.

    The delimiter is detected among ``, ; TAB |`` unless given; a first row with a
    non-numeric cell is a header. Empty cells (and ``nan``, ``NA``, ``null``) are an
    error unless ``dropna`` drops their rows.

    Parameters
    ----------
    path : str
        File name, or ``"-"`` for standard input.
    columns : str, optional
        Comma-separated column names or 0-based indices (default: every column except
        the sequence column).
    delimiter : str, optional
    dropna : bool, default=False
    sequence_column : str, optional
        Column whose value names the sequence of each row; consecutive rows with the
        same value form one sequence.
    default_columns : list of str, optional
        Columns to use when ``columns`` is not given and the file has them all (the
        columns a model was fitted on).

    Returns
    -------
    X : numpy.ndarray of shape (n_rows, n_columns)
    names : list of str
    lengths : numpy.ndarray of int or None
        Sequence lengths when ``sequence_column`` is given.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("id;x;y\\n1;0.5;2\\n1;1.5;3\\n2;2.5;4\\n")
    >>> X, names, lengths = read_csv(path, sequence_column="id")
    >>> X.tolist(), names, lengths.tolist()
    ([[0.5, 2.0], [1.5, 3.0], [2.5, 4.0]], ['x', 'y'], [2, 1])
    """
    text = _read_text(path)
    if delimiter is not None and len(delimiter) != 1:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise CLIError(f"--delimiter must be one character, got {delimiter!r}")
    table, delimiter = _parse_table(text, path, delimiter)
    seq_idx = None
    if sequence_column is not None:
        seq_idx = _select(table, sequence_column)
        if len(seq_idx) != 1:
            raise CLIError("--sequence-column names one column")
        seq_idx = seq_idx[0]
    default = [n for n in default_columns] if default_columns is not None else None
    indices = _select(table, columns, default=default)
    if columns is None and default is None and seq_idx is not None:
        indices = [j for j in indices if j != seq_idx]
    if seq_idx is not None and seq_idx in indices:
        raise CLIError(f"column {table.names[seq_idx]!r} is the sequence column and cannot also be a feature")
    if not indices:
        raise CLIError(f"{path} has no feature column left to model")
    X = _to_numbers(table, indices, delimiter)
    keep = np.ones(len(X), dtype=bool)
    missing = np.isnan(X)
    if missing.any():
        if not dropna:
            i, k = np.argwhere(missing)[0]
            raise CLIError(f"{path}: {int(missing.any(1).sum())} row(s) have empty or NaN cells (first: line "
                           f"{table.line(i)}, column {table.names[indices[k]]!r}); clean them or pass --dropna")
        keep = ~missing.any(1)
        if not keep.any():
            raise CLIError(f"{path}: every row has an empty or NaN cell; nothing left after --dropna")
    X = X[keep]
    lengths = None
    if seq_idx is not None:
        ids = [v for v, k in zip(table.columns[seq_idx], keep) if k]
        lengths = []
        for j, v in enumerate(ids):
            if j > 0 and v == ids[j - 1]:
                lengths[-1] += 1
            else:
                lengths.append(1)
        lengths = np.asarray(lengths, dtype=np.int64)
    return X, [table.names[j] for j in indices], lengths


def _write_csv(path, header, rows):
    out = sys.stdout if path in (None, "-") else None
    try:
        f = out or open(path, "w", newline="")
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    finally:
        if out is None:
            f.close()
    if out is None:
        print(f"wrote {path}", file=sys.stderr)


def _fmt(v):
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


# ---------------------------------------------------------------------------- commands
def _load_model(path, command, needs):
    from probkit.io import ModelFileError, load

    try:
        model = load(path)
    except ModelFileError as exc:
        raise CLIError(str(exc)) from None
    missing = [m for m in needs if not callable(getattr(model, m, None))]
    if missing:
        raise CLIError(f"{path} holds a {type(model).__name__}, which cannot be used with '{command}' "
                       f"(it has no {missing[0]} method)")
    if not hasattr(model, "n_features_in_") and not hasattr(model, "startprob_"):
        raise CLIError(f"{path} holds an unfitted {type(model).__name__}; fit it first")
    return model


def _is_sequential(model):
    from probkit.hmm._base import BaseHMM

    return isinstance(model, BaseHMM) or hasattr(model, "startprob_") or _continuous_states(model)


def _continuous_states(model):
    """A state-space model (instance or class): its hidden states are vectors, not the labels HMM commands
    print and plot."""
    from probkit.ssm import LinearGaussianSSM

    return isinstance(model, LinearGaussianSSM) or (isinstance(model, type) and issubclass(model, LinearGaussianSSM))


def _no_discrete_states(model, what):
    if _continuous_states(model):
        raise CLIError(f"{what} needs a model with discrete states (an HMM); {type(model).__name__} has continuous "
                       "states: use its transform/predict/forecast methods in Python")


def _model_data(model, args, model_path):
    default = list(getattr(model, "cli_columns_", [])) or None
    X, names, lengths = read_csv(args.data, args.columns, args.delimiter, args.dropna,
                                 getattr(args, "sequence_column", None), default_columns=default)
    if lengths is not None and not _is_sequential(model):
        raise CLIError("--sequence-column applies to hidden Markov models only")
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and X.shape[1] != expected:
        fitted_on = f" ({', '.join(default)})" if default else ""
        raise CLIError(f"{model_path} expects {expected} feature column(s){fitted_on} but {args.data} gives "
                       f"{X.shape[1]} ({', '.join(names)}); choose them with --columns")
    return X, names, lengths


def _supervised_data(path, target, columns, delimiter, dropna):
    """Features and the target column, read in one pass (``--dropna`` drops the same rows of both)."""
    if columns is not None:
        X, names, _ = read_csv(path, f"{columns},{target}", delimiter, dropna)
        j = X.shape[1] - 1
        if names[j] in names[:j]:
            raise CLIError(f"the --target column {names[j]!r} is also one of the --columns")
    else:
        X, names, _ = read_csv(path, None, delimiter, dropna)
        if target in names:
            j = names.index(target)
        elif target.lstrip("-").isdigit() and -len(names) <= int(target) < len(names):
            j = int(target) % len(names)
        else:
            raise CLIError(f"{path} has no column {target!r} for --target; its columns are {', '.join(names)}")
    if X.shape[1] < 2:
        raise CLIError(f"{path} has no feature column besides the target {names[j]!r}")
    y = X[:, j]
    return np.delete(X, j, axis=1), y, [n for k, n in enumerate(names) if k != j], names[j]


def _is_supervised(model):
    return hasattr(model, "cli_target_")


def _class_labels(y):
    return y.astype(np.int64) if np.all(y == np.round(y)) else y


def _seq_kwargs(model, lengths):
    return {"lengths": lengths} if _is_sequential(model) and lengths is not None else {}


def _cmd_fit(args):
    spec = MODELS[args.model]
    cls = spec.load()
    if spec.supervised or args.target is not None:
        return _fit_supervised(args, spec, cls)
    if args.plot:
        _no_discrete_states(cls, "--plot")
    X, names, lengths = read_csv(args.data, args.columns, args.delimiter, args.dropna, args.sequence_column)
    if lengths is not None and not spec.sequential:
        raise CLIError(f"--sequence-column applies to hidden Markov models; {args.model} treats rows as independent")
    params = dict(spec.fixed)
    params["n_components"] = args.n_components
    params["random_state"] = args.random_state
    # hmmlearn's default of 10 iterations rarely reaches convergence; the command line,
    # where nobody inspects monitor_, runs up to CLI_MAX_ITER unless told otherwise.
    params[spec.iter_param] = CLI_MAX_ITER if args.max_iter is None else args.max_iter
    if args.tol is not None:
        params["tol"] = args.tol
    for name in spec.options:
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    for name in ("covariance_type", "n_mix"):
        if getattr(args, name, None) is not None and name not in spec.options:
            raise CLIError(f"--{name.replace('_', '-')} does not apply to {args.model}")
    if spec.target.endswith(":CategoricalHMM"):
        X = X.astype(np.int64) if np.all(X == np.round(X)) else X
    model = cls(**params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, **({"lengths": lengths} if spec.sequential and lengths is not None else {}))
    for w in caught:
        if issubclass(w.category, (UserWarning, RuntimeWarning)) and not issubclass(w.category, DeprecationWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    model.cli_columns_ = np.asarray(names, dtype=str)
    path = model.save(args.output)
    kw = {"lengths": lengths} if spec.sequential and lengths is not None else {}
    total = model.score(X, **kw) * (1 if spec.sequential else len(X))
    n_iter = getattr(model, "n_iter_", None)
    print(f"fitted {args.model} ({type(model).__name__}, {args.n_components} components) on {len(X)} rows x "
          f"{X.shape[1]} columns ({', '.join(names)})"
          + (f" in {len(lengths)} sequences" if lengths is not None else ""))
    # Variational models report their evidence lower bound instead of an information criterion.
    criterion = (f"BIC {model.bic(X, **kw):.2f}" if hasattr(model, "bic")
                 else f"evidence lower bound {model.lower_bound_:.4f}")
    print(f"log-likelihood {total:.4f}, {criterion}, iterations {n_iter}, {_convergence_text(model, spec)}")
    print(f"saved {path}")
    if args.plot:
        _plot_model(model, X, lengths, names, args.plot)
    return EXIT_OK


def _fit_supervised(args, spec, cls):
    if not spec.supervised:
        raise CLIError(f"--target applies to regression and classification models; {args.model} models all columns")
    if args.target is None:
        raise CLIError(f"{args.model} needs --target COLUMN, the column to predict from the others")
    if args.sequence_column is not None:
        raise CLIError(f"--sequence-column applies to hidden Markov models; {args.model} treats rows as independent")
    for name in ("covariance_type", "n_mix", "n_init", "plot"):
        if getattr(args, name, None) is not None:
            raise CLIError(f"--{name.replace('_', '-')} does not apply to {args.model}")
    X, y, names, target = _supervised_data(args.data, args.target, args.columns, args.delimiter, args.dropna)
    params = dict(spec.fixed)
    if args.max_iter is not None and "max_iter" in cls().get_params():
        params["max_iter"] = args.max_iter
    if args.tol is not None:
        params["tol"] = args.tol
    if args.alpha is not None:
        if "alpha" not in spec.options:
            raise CLIError(f"--alpha does not apply to {args.model}")
        params["alpha"] = args.alpha
    from sklearn.base import is_classifier

    model = cls(**params)
    if is_classifier(model):
        y = _class_labels(y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
    for w in caught:
        if issubclass(w.category, (UserWarning, RuntimeWarning)) and not issubclass(w.category, DeprecationWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    model.cli_columns_ = np.asarray(names, dtype=str)
    model.cli_target_ = str(target)
    path = model.save(args.output)
    print(f"fitted {args.model} ({type(model).__name__}) of {target} on {len(X)} rows x {X.shape[1]} columns "
          f"({', '.join(names)})")
    if hasattr(model, "coef_"):
        print(_coefficient_table(model, names))
    metric = "accuracy" if is_classifier(model) else "D^2 (deviance explained)"
    extra = f", AIC {model.aic_:.2f}, deviance {model.deviance_:.4f}" if hasattr(model, "aic_") else ""
    print(f"{metric} {model.score(X, y):.4f}{extra}")
    print(f"saved {path}")
    return EXIT_OK


def _coefficient_table(model, names):
    coef = np.atleast_2d(model.coef_)
    intercept = np.atleast_1d(model.intercept_)
    bse = None if getattr(model, "bse_", None) is None else np.atleast_2d(model.bse_)
    ibse = None if getattr(model, "intercept_bse_", None) is None else np.atleast_1d(model.intercept_bse_)
    classes = getattr(model, "classes_", None)
    rows = []
    for k in range(coef.shape[0]):
        label = "" if classes is None or coef.shape[0] == 1 else f"[{classes[k]}] "
        entries = [("intercept", intercept[k], None if ibse is None else ibse[k])]
        entries += [(n, coef[k, j], None if bse is None else bse[k, j]) for j, n in enumerate(names)]
        for name, value, se in entries:
            rows.append(f"  {label}{name:<20} {value: .6g}" + ("" if se is None else f"  (se {se:.4g})"))
    return "coefficients:\n" + "\n".join(rows)


def _convergence_text(model, spec):
    """'converged' only when the tolerance was met; otherwise how far the objective still moved."""
    if getattr(model, "converged_", False):
        return "converged"
    monitor = getattr(model, "monitor_", None)
    gain = getattr(monitor, "gain", math.nan)
    still = f" (the objective still changed by {gain:+.4g} in the last iteration)" if math.isfinite(gain) else ""
    return f"NOT converged{still}; rerun with a larger --max-iter"


def _cmd_score(args):
    model = _load_model(args.model, "score", ("score",))
    if _is_supervised(model):
        X, y = _supervised_model_data(model, args, with_target=True)
        from sklearn.base import is_classifier

        if is_classifier(model):
            y = _class_labels(y)
            print(f"accuracy {model.score(X, y):.6f} over {len(X)} rows")
        else:
            print(f"D^2 (deviance explained) {model.score(X, y):.6f}, deviance {model.deviance(X, y):.6f} over "
                  f"{len(X)} rows")
        return EXIT_OK
    X, _, lengths = _model_data(model, args, args.model)
    kw = _seq_kwargs(model, lengths)
    per_row = model.score_samples(X, **kw) if hasattr(model, "score_samples") else None
    total = float(np.sum(per_row)) if per_row is not None else model.score(X, **kw)
    print(f"log-likelihood {total:.6f} over {len(X)} rows (mean {total / len(X):.6f} per row)")
    if args.output:
        _write_csv(args.output, ["log_likelihood"], [[_fmt(v)] for v in per_row])
    return EXIT_OK


def _supervised_model_data(model, args, with_target):
    columns = args.columns if args.columns is not None else ",".join(model.cli_columns_)
    if with_target:
        X, y, _, _ = _supervised_data(args.data, model.cli_target_, columns, args.delimiter, args.dropna)
    else:
        X, _, _ = read_csv(args.data, columns, args.delimiter, args.dropna)
        y = None
    if X.shape[1] != model.n_features_in_:
        raise CLIError(f"{args.model} expects {model.n_features_in_} feature column(s) but {args.data} gives "
                       f"{X.shape[1]}; choose them with --columns")
    return X, y


def _cmd_decode(args):
    model = _load_model(args.model, "decode", ("predict",))
    if _is_supervised(model):
        X, _ = _supervised_model_data(model, args, with_target=False)
        pred = model.predict(X)
        header, rows = [f"predicted_{model.cli_target_}"], [[_fmt(v)] for v in pred]
        if args.proba and hasattr(model, "predict_proba"):
            proba = model.predict_proba(X)
            header += [f"p_{c}" for c in model.classes_]
            rows = [r + [_fmt(p) for p in ps] for r, ps in zip(rows, proba)]
        _write_csv(args.output, header, rows)
        return EXIT_OK
    _no_discrete_states(model, "decode")
    X, names, lengths = _model_data(model, args, args.model)
    kw = _seq_kwargs(model, lengths)
    states = model.predict(X, **kw)
    header, rows = ["state"], [[int(s)] for s in states]
    if args.proba:
        proba = model.predict_proba(X, **kw)
        header += [f"p{k}" for k in range(proba.shape[1])]
        rows = [r + [_fmt(p) for p in ps] for r, ps in zip(rows, proba)]
    _write_csv(args.output, header, rows)
    if args.output not in (None, "-"):
        counts = np.bincount(states, minlength=getattr(model, "n_components", 0))
        print("rows per state: " + ", ".join(f"{k}: {c}" for k, c in enumerate(counts)))
    if args.plot:
        _plot_decoded(model, X, states, lengths, names, args.plot)
    return EXIT_OK


def _cmd_sample(args):
    model = _load_model(args.model, "sample", ("sample",))
    if args.n_samples < 1:
        raise CLIError(f"-n must be a positive number of rows, got {args.n_samples}")
    if args.plot:
        _no_discrete_states(model, "--plot")
    X, labels = model.sample(args.n_samples, random_state=args.random_state)
    X = np.asarray(X).reshape(args.n_samples, -1)
    names = [str(c) for c in getattr(model, "cli_columns_", [])] or [f"x{j}" for j in range(X.shape[1])]
    if len(names) != X.shape[1]:
        names = [f"x{j}" for j in range(X.shape[1])]
    if _continuous_states(model):  # one column per state dimension
        states = np.asarray(labels)
        _write_csv(args.output, names + [f"state{j}" for j in range(states.shape[1])],
                   [[_fmt(v) for v in row] + [_fmt(v) for v in z] for row, z in zip(X, states)])
        return EXIT_OK
    _write_csv(args.output, names + ["state"], [[_fmt(v) for v in row] + [int(z)] for row, z in zip(X, labels)])
    if args.plot:
        _plot_decoded(model, X, np.asarray(labels), None, names, args.plot)
    return EXIT_OK


def _cmd_info(args):
    from probkit.io import ModelFileError, load

    try:
        model = load(args.model)
    except ModelFileError as exc:
        raise CLIError(str(exc)) from None
    print(f"{type(model).__name__}  (saved by probkit's model format)")
    cols = list(getattr(model, "cli_columns_", []))
    if cols:
        print(f"  columns: {', '.join(cols)}")
    for name, value in sorted(model.get_params(deep=False).items()):
        print(f"  {name} = {value!r}")
    if getattr(model, "cli_target_", None):
        print(f"  target: {model.cli_target_}")
    for name in ("weights_", "means_", "startprob_", "transmat_", "lambdas_", "emissionprob_", "classes_", "coef_",
                 "intercept_", "bse_"):
        if hasattr(model, name):
            print(f"  {name} =\n" + "\n".join("    " + line for line in
                                               np.array2string(np.asarray(getattr(model, name)), precision=4)
                                               .splitlines()))
    return EXIT_OK


# ---------------------------------------------------------------------------- plots
def _plot_module():
    try:
        from probkit import plotting

        plotting._plt()
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    return plotting


def _plot_model(model, X, lengths, names, path):
    plotting = _plot_module()
    plt = plotting._plt()
    if _is_sequential(model):
        states = model.predict(X, **_seq_kwargs(model, lengths))
        return _plot_decoded(model, X, states, lengths, names, path)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if hasattr(model, "means_") and X.shape[1] >= 2 and hasattr(model, "covariances_"):
        plotting.plot_mixture_2d(model, X, ax=ax, feature_names=names)
    else:
        plotting.plot_mixture_density(model, X[:, 0], ax=ax, feature_name=names[0])
    _save(fig, path, plt)


def _plot_decoded(model, X, states, lengths, names, path):
    plotting = _plot_module()
    plt = plotting._plt()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    plotting.plot_states(X[:, 0], states, ax=ax, ylabel=names[0] if names else None)
    _save(fig, path, plt)


def _save(fig, path, plt):
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot write the plot {path}: {exc}") from None
    finally:
        plt.close(fig)
    print(f"plot: {path}", file=sys.stderr)


# ---------------------------------------------------------------------------- parser
_EPILOG = """\
Typical session:
  probkit fit gaussian-hmm prices.csv --n-components 3 --columns return -o model.pk
  probkit decode model.pk prices.csv -o states.csv --plot states.png
  probkit score model.pk prices.csv
  probkit sample model.pk -n 500 -o simulated.csv
  probkit fit glm-poisson claims.csv --target n_claims -o glm.pk   (regression on the other columns)

CSV files: one row per observation, numbers only (a header row is detected), the
delimiter (, ; tab |) is detected unless --delimiter is given. For hidden Markov
models, rows are one sequence in time order, or several sequences marked by
--sequence-column. Empty cells are an error unless --dropna.

Models (probkit fit MODEL ...):
""" + "\n".join(f"  {name:<27} {spec.summary}" for name, spec in MODELS.items())


def _data_options(p, sequence=True):
    p.add_argument("--columns", metavar="A,B",
                   help="comma-separated column names or 0-based indices to model (default: all columns; for "
                        "score/decode: the columns the model was fitted on)")
    p.add_argument("--delimiter", metavar="CHAR", help="field separator (default: detected among , ; tab |)")
    p.add_argument("--dropna", action="store_true", help="drop rows with empty/NaN cells instead of stopping")
    if sequence:
        p.add_argument("--sequence-column", metavar="COL",
                       help="HMMs: column naming the sequence of each row (consecutive equal values form one "
                            "sequence); without it all rows are one sequence")


def build_parser():
    """The ``argparse`` parser of the ``probkit`` command.

    Examples
    --------
    >>> build_parser().parse_args(["fit", "poisson-hmm", "d.csv", "-k", "2"]).n_components
    2
    """
    from probkit import __version__

    parser = argparse.ArgumentParser(
        prog="probkit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit probabilistic models (mixtures, hidden Markov models, GLMs, naive Bayes) to CSV data, "
                    "then score new data, decode hidden states (or predict a target) or simulate from the fitted "
                    "model.",
        epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"probkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("fit", help="fit a model to a CSV file and save it",
                       description="Fit MODEL to the numeric columns of DATA and save it (probkit's safe model "
                                   "format; load it in Python with probkit.load).",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Models:\n" + "\n".join(f"  {n:<27} {s.summary}" for n, s in MODELS.items()))
    p.add_argument("model", choices=list(MODELS), metavar="MODEL", help="one of: " + ", ".join(MODELS))
    p.add_argument("data", metavar="DATA.csv", help="CSV file ('-' for standard input)")
    p.add_argument("-k", "--n-components", type=int, default=2, metavar="K",
                   help="number of mixture components or hidden states (default: 2)")
    p.add_argument("-o", "--output", default="model.pk", metavar="MODEL.pk", help="where to save (default: model.pk)")
    _data_options(p)
    p.add_argument("--covariance-type", choices=["full", "diag", "tied", "spherical"],
                   help="Gaussian models: covariance shape (default: the model's own)")
    p.add_argument("--n-mix", type=int, metavar="M", help="gmm-hmm: Gaussian components per state")
    p.add_argument("--n-init", type=int, metavar="N", help="number of restarts; the best is kept")
    p.add_argument("--max-iter", "--n-iter", dest="max_iter", type=int, metavar="N",
                   help=f"maximum EM iterations (default: {CLI_MAX_ITER})")
    p.add_argument("--tol", type=float, help="convergence threshold (default: the model's own)")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="random seed (default: 0)")
    p.add_argument("--target", metavar="COL",
                   help="regression and classification models: the column to predict from the others (the "
                        "features are --columns, default: every other column)")
    p.add_argument("--alpha", type=float, metavar="A", help="regression and classification models: L2 penalty "
                   "strength (default: 0, maximum likelihood)")
    p.add_argument("--plot", metavar="FIG.png", help="also draw the fit (needs matplotlib)")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("score", help="log-likelihood of data under a saved model",
                       description="Print the total log-likelihood of DATA under MODEL; with -o, write the "
                                   "log-likelihood of each row (HMMs: log p(x_t | x_1..x_t-1)).")
    p.add_argument("model", metavar="MODEL.pk")
    p.add_argument("data", metavar="DATA.csv")
    p.add_argument("-o", "--output", metavar="OUT.csv", help="per-row log-likelihoods ('-' for standard output)")
    _data_options(p)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("decode", help="most likely hidden state (or component) of each row",
                       description="Write the most likely hidden state of each row of DATA (HMMs: the Viterbi "
                                   "path; mixtures: the most probable component) as CSV.")
    p.add_argument("model", metavar="MODEL.pk")
    p.add_argument("data", metavar="DATA.csv")
    p.add_argument("-o", "--output", metavar="STATES.csv", help="where to write (default: standard output)")
    p.add_argument("--proba", action="store_true", help="also write the posterior probability of every state")
    p.add_argument("--plot", metavar="FIG.png", help="draw the first column coloured by state (needs matplotlib)")
    _data_options(p)
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("sample", help="simulate data from a saved model",
                       description="Draw N rows from MODEL (HMMs: one sequence of N steps) and write them as CSV, "
                                   "with the hidden state of each row.")
    p.add_argument("model", metavar="MODEL.pk")
    p.add_argument("-n", "--n-samples", type=int, default=100, metavar="N", help="rows to draw (default: 100)")
    p.add_argument("-o", "--output", metavar="OUT.csv", help="where to write (default: standard output)")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="random seed (default: 0)")
    p.add_argument("--plot", metavar="FIG.png", help="draw the samples (needs matplotlib)")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("info", help="show what a saved model holds",
                       description="Print the class, parameters and main fitted values of MODEL.")
    p.add_argument("model", metavar="MODEL.pk")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv=None):
    """Run the ``probkit`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Examples
    --------
    >>> main(["score", "no-such-model.pk", "no-such-data.csv"])
    1
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"probkit {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. `probkit sample model.pk | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"probkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"probkit {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
