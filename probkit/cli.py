"""The ``probkit`` command line: fit a model to a CSV file, then score, decode or sample with it.

Run ``probkit --help`` (or ``python -m probkit --help``) for the commands, and
``probkit COMMAND --help`` for the options of one. A typical session::

    probkit fit gaussian-hmm data.csv --n-components 3 --columns price,volume -o model.pk
    probkit decode model.pk data.csv -o states.csv --plot states.png
    probkit score model.pk data.csv
    probkit sample model.pk -n 200 -o samples.csv
    probkit info model.pk

``probkit fit -v`` reports progress on standard error (a bar over the EM iterations);
``--json`` makes ``fit``, ``score`` and ``info`` print one JSON object instead of text;
``probkit datasets`` lists the CSV files shipped with probkit (``probkit datasets
old_faithful -o faithful.csv`` writes one to try the commands on).

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
import difflib
import importlib
import inspect
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from probkit._csv import CSVError, printable, read_numeric_csv

__all__ = ["MODELS", "CLIError", "ModelSpec", "build_parser", "changed_params", "main", "read_csv"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
#: Iteration limit of ``probkit fit`` when ``--max-iter`` is not given.
CLI_MAX_ITER = 200


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
    inputs : bool
        Takes ``--inputs COLUMNS``: covariates that drive the model (``inputs=`` of its
        methods); ``score`` and ``decode`` read the same columns again.
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
    inputs: bool = False

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
    "autoregressive-hmm": ModelSpec("probkit.hmm:ARHMM", "hidden Markov model whose states are linear Gaussian "
                                    "autoregressions of order 1 (switching AR)", sequential=True,
                                    iter_param="n_iter", options=("n_init",)),
    "gaussian-hsmm": ModelSpec("probkit.hsmm:HSMM", "hidden semi-Markov model: Gaussian emissions (one variance "
                               "per column), Poisson state durations of 1..50 steps", sequential=True,
                               iter_param="n_iter", options=("n_init",), fixed={"emission": "normal"}),
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
    "input-driven-hmm": ModelSpec("probkit.hmm:InputDrivenHMM", "hidden Markov model whose transitions and "
                                  "Gaussian emissions are regressions on --inputs columns (GLM-HMM)",
                                  sequential=True, iter_param="n_iter", options=("n_init", "alpha"), inputs=True),
    "linear-gaussian-ssm": ModelSpec("probkit.ssm:LinearGaussianSSM", "linear-Gaussian state-space model "
                                     "(Kalman filter; -k = state dimension; optional --inputs)", sequential=True,
                                     iter_param="n_iter", inputs=True),
}


# ---------------------------------------------------------------------------- CSV input
def read_csv(path, columns=None, delimiter=None, dropna=False, sequence_column=None, default_columns=None,
             extra_columns=None):
    """Read numeric columns of a CSV file for the CLI (:func:`probkit._csv.read_numeric_csv`, errors as CLIError).

    Parameters
    ----------
    path : str
        File name, or ``"-"`` for standard input.
    columns : str, optional
        Comma-separated column names or 0-based indices.
    delimiter : str, optional
    dropna : bool, default=False
    sequence_column : str, optional
    default_columns : list of str, optional
    extra_columns : str, optional
        ``--inputs``: columns appended after the modelled ones.

    Returns
    -------
    X : numpy.ndarray of shape (n_rows, n_columns)
    names : list of str
    lengths : numpy.ndarray of int or None

    Examples
    --------
    A bad cell is one line for the terminal, with the line and the column:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "counts.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("year,count\\n1900,13\\n1901,\\n")
    >>> read_csv(path, columns="count", dropna=True)[0].ravel().tolist()
    [13.0]
    >>> try:
    ...     read_csv(path)
    ... except CLIError as exc:
    ...     print(str(exc).split(": ", 1)[1])
    1 row(s) have empty or NaN cells (first: line 3, column 'count'); clean them or pass --dropna
    """
    try:
        return read_numeric_csv(path, columns, delimiter, dropna, sequence_column, default_columns, extra_columns)
    except CSVError as exc:
        raise CLIError(str(exc)) from None


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


def _read_with_inputs(args, inputs, columns=None, default_columns=None):
    """Data columns and the ``inputs`` columns (comma-separated names or indices, or None) read in
    one pass, so that ``--dropna`` drops the same rows of both."""
    if inputs is None:
        X, names, lengths = _read_data(args, default_columns=default_columns, columns=columns)
        return X, names, lengths, None, []
    m = len([t for t in inputs.split(",") if t.strip()])
    if m == 0:
        raise CLIError("--inputs needs at least one column name or index")
    X, names, lengths = _read_data(args, default_columns=default_columns, columns=columns, extra_columns=inputs)
    return X[:, :-m], names[:-m], lengths, X[:, -m:], names[-m:]


def _model_data(model, args, model_path):
    default = list(getattr(model, "cli_columns_", [])) or None
    stored_inputs = [str(c) for c in getattr(model, "cli_inputs_", [])]
    X, names, lengths, U, _ = _read_with_inputs(args, ",".join(stored_inputs) if stored_inputs else None,
                                                default_columns=default)
    if lengths is not None and not _is_sequential(model):
        raise CLIError("--sequence-column applies to hidden Markov models only")
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and X.shape[1] != expected:
        fitted_on = f" ({_names_text(default)})" if default else ""
        raise CLIError(f"{model_path} expects {expected} feature column(s){fitted_on} but {args.data} gives "
                       f"{X.shape[1]} ({_names_text(names)}); choose them with --columns")
    return X, names, lengths, U


def _read_data(args, default_columns=None, columns=None, extra_columns=None):
    t0 = time.perf_counter()
    X, names, lengths = read_csv(args.data, args.columns if columns is None else columns, args.delimiter,
                                 args.dropna, getattr(args, "sequence_column", None),
                                 default_columns=default_columns, extra_columns=extra_columns)
    if getattr(args, "verbose", 0):
        _progress(f"read {args.data}: {X.shape[0]} rows x {X.shape[1]} columns ({_names_text(names)})"
                  + (f" in {len(lengths)} sequences" if lengths is not None else "")
                  + f" in {time.perf_counter() - t0:.1f} s")
    return X, names, lengths


def _progress(text):
    from probkit.utils.progress import write_line

    write_line(text)


def _names_text(names):
    """Column names for the terminal: control characters escaped."""
    return ", ".join(printable(n) for n in names)


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


def _seq_kwargs(model, lengths, inputs=None):
    kw = {"lengths": lengths} if _is_sequential(model) and lengths is not None else {}
    if inputs is not None:
        kw["inputs"] = inputs
    return kw


def _emit_json(obj):
    print(json.dumps(obj, indent=2, allow_nan=False, default=_json_default))


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _cmd_fit(args):
    spec = MODELS[args.model]
    cls = spec.load()
    if spec.supervised or args.target is not None:
        return _fit_supervised(args, spec, cls)
    if args.plot:
        _no_discrete_states(cls, "--plot")
    if args.inputs is not None and not spec.inputs:
        raise CLIError(f"--inputs applies to {', '.join(n for n, m in MODELS.items() if m.inputs)}; "
                       f"{args.model} takes no covariates")
    X, names, lengths, inputs, input_names = _read_with_inputs(args, args.inputs)
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
    if args.verbose:
        # the estimator's own progress: a line per iteration, and a tqdm bar over long fits
        params["verbose"] = args.verbose
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
    if args.verbose:
        _progress(f"fitting {type(model).__name__} with {args.n_components} components "
                  f"(at most {params[spec.iter_param]} iterations"
                  + (f", {params['n_init']} starts" if params.get("n_init", 1) > 1 else "") + ")")
    t0 = time.perf_counter()
    kw = {"lengths": lengths} if spec.sequential and lengths is not None else {}
    if inputs is not None:
        kw["inputs"] = inputs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, **kw)
    seconds = time.perf_counter() - t0
    for w in caught:
        if issubclass(w.category, (UserWarning, RuntimeWarning)) and not issubclass(w.category, DeprecationWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    model.cli_columns_ = np.asarray(names, dtype=str)
    if input_names:
        model.cli_inputs_ = np.asarray(input_names, dtype=str)
    path = model.save(args.output)
    total = model.score(X, **kw) * (1 if spec.sequential else len(X))
    n_iter = getattr(model, "n_iter_", None)
    bic = model.bic(X, **kw) if hasattr(model, "bic") else None
    if args.json:
        _emit_json({"command": "fit", "model": args.model, "class": type(model).__name__,
                    "n_components": args.n_components, "n_rows": int(len(X)), "n_columns": int(X.shape[1]),
                    "columns": list(names), "inputs": list(input_names),
                    "n_sequences": None if lengths is None else int(len(lengths)),
                    "log_likelihood": _finite_or_none(total), "bic": None if bic is None else _finite_or_none(bic),
                    "lower_bound": None if bic is not None else _finite_or_none(model.lower_bound_),
                    "n_iter": None if n_iter is None else int(n_iter),
                    "converged": bool(getattr(model, "converged_", False)), "seconds": round(seconds, 3),
                    "saved": str(path)})
    else:
        print(f"fitted {args.model} ({type(model).__name__}, {args.n_components} components) on {len(X)} rows x "
              f"{X.shape[1]} columns ({_names_text(names)})"
              + (f" driven by {len(input_names)} input column(s) ({_names_text(input_names)})" if input_names else "")
              + (f" in {len(lengths)} sequences" if lengths is not None else ""))
        # Variational models report their evidence lower bound instead of an information criterion.
        criterion = f"BIC {bic:.2f}" if bic is not None else f"evidence lower bound {model.lower_bound_:.4f}"
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
    for name in ("covariance_type", "n_mix", "n_init", "plot", "inputs"):
        if getattr(args, name, None) is not None:
            raise CLIError(f"--{name.replace('_', '-')} does not apply to {args.model}")
    t0 = time.perf_counter()
    X, y, names, target = _supervised_data(args.data, args.target, args.columns, args.delimiter, args.dropna)
    if args.verbose:
        _progress(f"read {args.data}: {X.shape[0]} rows, target {printable(str(target))}, {X.shape[1]} feature "
                  f"column(s) ({_names_text(names)}) in {time.perf_counter() - t0:.1f} s")
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
    if args.verbose:
        _progress(f"fitting {type(model).__name__} of {printable(str(target))}")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
    seconds = time.perf_counter() - t0
    for w in caught:
        if issubclass(w.category, (UserWarning, RuntimeWarning)) and not issubclass(w.category, DeprecationWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    model.cli_columns_ = np.asarray(names, dtype=str)
    model.cli_target_ = str(target)
    path = model.save(args.output)
    score = model.score(X, y)
    if args.json:
        _emit_json({"command": "fit", "model": args.model, "class": type(model).__name__, "target": str(target),
                    "n_rows": int(len(X)), "n_columns": int(X.shape[1]), "columns": list(names),
                    "accuracy" if is_classifier(model) else "deviance_explained": _finite_or_none(score),
                    "aic": _finite_or_none(model.aic_) if hasattr(model, "aic_") else None,
                    "deviance": _finite_or_none(model.deviance_) if hasattr(model, "deviance_") else None,
                    "seconds": round(seconds, 3), "saved": str(path)})
        return EXIT_OK
    print(f"fitted {args.model} ({type(model).__name__}) of {printable(str(target))} on {len(X)} rows x "
          f"{X.shape[1]} columns ({_names_text(names)})")
    if hasattr(model, "coef_"):
        print(_coefficient_table(model, names))
    metric = "accuracy" if is_classifier(model) else "D^2 (deviance explained)"
    extra = f", AIC {model.aic_:.2f}, deviance {model.deviance_:.4f}" if hasattr(model, "aic_") else ""
    print(f"{metric} {score:.4f}{extra}")
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
            se_text = "" if se is None else f"  (se {se:.4g})"
            rows.append(f"  {label}{printable(str(name)):<20} {value: .6g}{se_text}")
    return "coefficients:\n" + "\n".join(rows)


def _convergence_text(model, spec):
    """'converged' only when the tolerance was met; otherwise how far the objective still moved."""
    if getattr(model, "converged_", False):
        return "converged"
    monitor = getattr(model, "monitor_", None)
    gain = getattr(monitor, "gain", math.nan)
    still = f" (the objective still changed by {gain:+.4g} in the last iteration)" if math.isfinite(gain) else ""
    flag = "--n-iter" if spec.iter_param == "n_iter" else "--max-iter"
    return f"NOT converged{still}; rerun with a larger {flag}"


def _cmd_score(args):
    model = _load_model(args.model, "score", ("score",))
    if _is_supervised(model):
        X, y = _supervised_model_data(model, args, with_target=True)
        from sklearn.base import is_classifier

        if is_classifier(model):
            y = _class_labels(y)
            score = model.score(X, y)
            if args.json:
                _emit_json({"command": "score", "class": type(model).__name__, "n_rows": int(len(X)),
                            "accuracy": _finite_or_none(score)})
            else:
                print(f"accuracy {score:.6f} over {len(X)} rows")
        else:
            score, deviance = model.score(X, y), model.deviance(X, y)
            if args.json:
                _emit_json({"command": "score", "class": type(model).__name__, "n_rows": int(len(X)),
                            "deviance_explained": _finite_or_none(score), "deviance": _finite_or_none(deviance)})
            else:
                print(f"D^2 (deviance explained) {score:.6f}, deviance {deviance:.6f} over {len(X)} rows")
        return EXIT_OK
    X, _, lengths, inputs = _model_data(model, args, args.model)
    kw = _seq_kwargs(model, lengths, inputs)
    per_row = model.score_samples(X, **kw) if hasattr(model, "score_samples") else None
    total = float(np.sum(per_row)) if per_row is not None else model.score(X, **kw)
    if args.json:
        _emit_json({"command": "score", "class": type(model).__name__, "n_rows": int(len(X)),
                    "log_likelihood": _finite_or_none(total), "mean_per_row": _finite_or_none(total / len(X))})
    else:
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
    X, names, lengths, inputs = _model_data(model, args, args.model)
    kw = _seq_kwargs(model, lengths, inputs)
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
    input_names = [str(c) for c in getattr(model, "cli_inputs_", [])]
    if input_names:
        raise CLIError(f"{args.model} was fitted with --inputs ({_names_text(input_names)}): a sample needs one row "
                       f"of those covariates per step; in Python: model.sample(n, inputs=U)")
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


def changed_params(model):
    """The constructor parameters of ``model`` that differ from the class defaults.

    Examples
    --------
    >>> from probkit import GaussianHMM
    >>> changed_params(GaussianHMM(3, covariance_type="full"))
    {'covariance_type': 'full', 'n_components': 3}
    """
    defaults = {name: p.default for name, p in inspect.signature(type(model).__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    changed = {}
    for name, value in sorted(model.get_params(deep=False).items()):
        default = defaults.get(name, inspect.Parameter.empty)
        if default is inspect.Parameter.empty or type(value) is not type(default) or repr(value) != repr(default):
            changed[name] = value
    return changed


# Fitted values `info` shows: scalars first, then the parameter arrays.
_INFO_SCALARS = ("n_features_in_", "n_iter_", "converged_", "lower_bound_")
_INFO_ARRAYS = ("weights_", "means_", "startprob_", "transmat_", "lambdas_", "emissionprob_", "transition_matrix_",
                "observation_matrix_", "classes_", "coef_", "intercept_", "bse_")


def _cmd_info(args):
    from probkit.io import ModelFileError, load

    try:
        model = load(args.model)
    except ModelFileError as exc:
        raise CLIError(str(exc)) from None
    cols = [str(c) for c in getattr(model, "cli_columns_", [])]
    params = changed_params(model)
    scalars = {name: getattr(model, name).item() if isinstance(getattr(model, name), np.generic)
               else getattr(model, name) for name in _INFO_SCALARS if hasattr(model, name)}
    arrays = {name: np.asarray(getattr(model, name)) for name in _INFO_ARRAYS if hasattr(model, name)}
    if args.json:
        _emit_json({"command": "info", "class": type(model).__name__, "columns": cols,
                    "target": None if getattr(model, "cli_target_", None) is None else str(model.cli_target_),
                    "params": {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                               for k, v in params.items()},
                    "fitted": {**scalars, **{k: v.tolist() for k, v in arrays.items()}}})
        return EXIT_OK
    print(f"{type(model).__name__}  (saved by probkit's model format)")
    if cols:
        print(f"  columns: {_names_text(cols)}")
    if getattr(model, "cli_target_", None):
        print(f"  target: {printable(str(model.cli_target_))}")
    print("  parameters (other than the defaults): "
          + (", ".join(f"{k}={v!r}" for k, v in params.items()) if params else "none"))
    if scalars:
        print("  fitted: " + ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in scalars.items()))
    else:
        print("  not fitted")
    for name, value in arrays.items():
        print(f"  {name} =\n" + "\n".join("    " + line for line in
                                           np.array2string(value, precision=4).splitlines()))
    return EXIT_OK


# ---------------------------------------------------------------------------- bundled data
def _dataset_files():
    from probkit import datasets

    folder = os.path.join(os.path.dirname(datasets.__file__), "data")
    return {name[:-len(".csv")]: os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.endswith(".csv")}


def _cmd_datasets(args):
    files = _dataset_files()
    if args.name is None:
        for name, path in files.items():
            with open(path) as f:
                header = f.readline().strip()
                n_rows = sum(1 for line in f if line.strip())
            print(f"{name:<28} {n_rows:>5} rows  columns: {header}")
        return EXIT_OK
    if args.name not in files:
        raise CLIError(f"no bundled data set {args.name!r}{_did_you_mean(args.name, files)}; "
                       f"choose from {', '.join(files)}")
    with open(files[args.name]) as f:
        text = f.read()
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        try:
            with open(args.output, "w") as f:
                f.write(text)
        except OSError as exc:
            raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _did_you_mean(word, choices):
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_name(word):
    """argparse type of MODEL: a known name, or a usage error suggesting the closest one."""
    if word in MODELS:
        return word
    raise argparse.ArgumentTypeError(f"invalid choice: {word!r}{_did_you_mean(word, MODELS)}; "
                                     f"choose from {', '.join(MODELS)}")


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
        plotting.plot_mixture_2d(model, X, ax=ax, feature_names=[printable(n) for n in names])
    else:
        plotting.plot_mixture_density(model, X[:, 0], ax=ax, feature_name=printable(names[0]))
    _save(fig, path, plt)


def _plot_decoded(model, X, states, lengths, names, path):
    """One panel per column, steps coloured by state; one legend, outside the data."""
    plotting = _plot_module()
    plt = plotting._plt()
    n_columns = X.shape[1]
    fig, axes = plt.subplots(n_columns, 1, figsize=(10, 1.2 + 2.2 * n_columns), sharex=True, squeeze=False)
    n_states = int(getattr(model, "n_components", int(np.max(states)) + 1))
    for j, ax in enumerate(axes[:, 0]):
        label = printable(names[j]) if names and j < len(names) else f"column {j}"
        plotting.plot_states(X[:, j], states, ax=ax, ylabel=label, legend=None,
                             state_names=[f"state {k}" for k in range(n_states)])
        if j < n_columns - 1:
            ax.set_xlabel("")
    axes[-1, 0].set_xlabel("row")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.995, 0.98), fontsize=8, frameon=False)
    _save(fig, path, plt)


def _save(fig, path, plt):
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot write the plot {path}: {exc}") from None
    finally:
        plt.close(fig)
    print(f"plot: {path}", file=sys.stderr)


# ---------------------------------------------------------------------------- parser
_EPILOG = """\
Typical session (probkit datasets old_faithful -o faithful.csv writes a file to try it on):
  probkit fit gaussian-hmm prices.csv --n-components 3 --columns return -o model.pk
  probkit decode model.pk prices.csv -o states.csv --plot states.png
  probkit score model.pk prices.csv
  probkit sample model.pk -n 500 -o simulated.csv
  probkit fit glm-poisson claims.csv --target n_claims -o glm.pk   (regression on the other columns)

CSV files: one row per observation, numbers only (a header row is detected), the
delimiter (, ; tab |) is detected unless --delimiter is given. For hidden Markov
models, rows are one sequence in time order, or several sequences marked by
--sequence-column. Empty cells are an error unless --dropna. Add -v to fit for
progress on standard error, --json to fit, score and info for machine-readable output.

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


def _model_command(sub, name, func, help, description, data):
    """A subcommand that reads a saved MODEL (and, with ``data``, a CSV file DATA)."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("model", metavar="MODEL.pk")
    if data:
        p.add_argument("data", metavar="DATA.csv")
    p.set_defaults(func=func)
    return p


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
    p.add_argument("model", type=_model_name, metavar="MODEL", help="one of: " + ", ".join(MODELS))
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
                   help=f"maximum EM iterations; --n-iter is the same option under hmmlearn's name "
                        f"(default: {CLI_MAX_ITER})")
    p.add_argument("--tol", type=float, help="convergence threshold (default: the model's own)")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="random seed (default: 0)")
    p.add_argument("--target", metavar="COL",
                   help="regression and classification models: the column to predict from the others (the "
                        "features are --columns, default: every other column)")
    p.add_argument("--alpha", type=float, metavar="A", help="regression and classification models (and "
                   "input-driven-hmm): L2 penalty strength (default: the model's own)")
    p.add_argument("--inputs", metavar="A,B", help="input-driven-hmm, linear-gaussian-ssm: covariate columns that "
                   "drive the model (not modelled themselves); score and decode read them again by name")
    p.add_argument("--plot", metavar="FIG.png", help="also draw the fit (needs matplotlib)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="report reading and fitting on standard error: the objective of every iteration "
                        "under a progress bar (the estimator's verbose=1; -vv: verbose=2)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=_cmd_fit)

    p = _model_command(sub, "score", _cmd_score, help="log-likelihood of data under a saved model",
                       description="Print the total log-likelihood of DATA under MODEL; with -o, write the "
                                   "log-likelihood of each row (HMMs: log p(x_t | x_1..x_t-1)).", data=True)
    p.add_argument("-o", "--output", metavar="OUT.csv", help="per-row log-likelihoods ('-' for standard output)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _data_options(p)

    p = _model_command(sub, "decode", _cmd_decode, help="most likely hidden state (or component) of each row",
                       description="Write the most likely hidden state of each row of DATA (HMMs: the Viterbi "
                                   "path; mixtures: the most probable component) as CSV.", data=True)
    p.add_argument("-o", "--output", metavar="STATES.csv", help="where to write (default: standard output)")
    p.add_argument("--proba", action="store_true", help="also write the posterior probability of every state")
    p.add_argument("--plot", metavar="FIG.png", help="draw every column coloured by state (needs matplotlib)")
    _data_options(p)

    p = _model_command(sub, "sample", _cmd_sample, help="simulate data from a saved model",
                       description="Draw N rows from MODEL (HMMs: one sequence of N steps) and write them as CSV, "
                                   "with the hidden state of each row.", data=False)
    p.add_argument("-n", "--n-samples", type=int, default=100, metavar="N", help="rows to draw (default: 100)")
    p.add_argument("-o", "--output", metavar="OUT.csv", help="where to write (default: standard output)")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="random seed (default: 0)")
    p.add_argument("--plot", metavar="FIG.png", help="draw the samples (needs matplotlib)")

    p = _model_command(sub, "info", _cmd_info, help="show what a saved model holds",
                       description="Print the class, the parameters set to other than their defaults and the "
                                   "main fitted values of MODEL.", data=False)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    p = sub.add_parser("datasets", help="list the bundled data sets, or write one as CSV",
                       description="Without NAME, list the CSV data sets shipped with probkit; with NAME, write "
                                   "that file (to try the commands: probkit datasets old_faithful -o faithful.csv).")
    p.add_argument("name", nargs="?", metavar="NAME", help="data set to write")
    p.add_argument("-o", "--output", metavar="OUT.csv", help="where to write (default: standard output)")
    p.set_defaults(func=_cmd_datasets)
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
    except (CLIError, CSVError) as exc:
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
