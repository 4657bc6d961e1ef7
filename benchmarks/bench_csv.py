"""The command line's CSV reader (probkit/_csv.py) against numpy.loadtxt on the same file.

    PYTHONPATH=. python benchmarks/bench_csv.py --rows 1000000 --repeats 5

Thread counts are fixed to 1 for both sides in the environment before numpy is imported
(both parsers are single-threaded; the setting keeps BLAS pools out of the picture). Each
repeat times the two readers back to back, alternating, on the same file written once;
the table reports medians. The file has a header row and 2 numeric columns (like Old
Faithful), written with ``%.6g``. ``--columns 8`` widens it.

The CLI reader does more than ``np.loadtxt``: it detects the delimiter and the header,
checks every row's width and every cell's finiteness, and on any failure hands the file to
a careful reader that names the line and column. The careful reader alone is timed on a
file whose last cell is empty (the fast path fails on it only at the end), as the cost of
a file with missing values.
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import alternate  # noqa: E402

from probkit._csv import read_numeric_csv  # noqa: E402


def write_file(path, n_rows, n_columns, missing_last=False):
    rng = np.random.RandomState(0)
    X = rng.normal(50, 20, size=(n_rows, n_columns))
    header = ",".join(f"c{j}" for j in range(n_columns))
    np.savetxt(path, X, delimiter=",", header=header, comments="", fmt="%.6g")
    if missing_last:
        with open(path, "a") as f:
            f.write(",".join([""] * n_columns) + "\n")
    return X


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--careful-rows", type=int, default=100_000,
                        help="rows of the file with a missing cell (the careful reader's cost)")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp()
    clean = os.path.join(folder, "clean.csv")
    X = write_file(clean, args.rows, args.columns)
    ours = read_numeric_csv(clean)[0]
    ref = np.loadtxt(clean, delimiter=",", skiprows=1, ndmin=2)
    assert np.array_equal(ours, ref), "the two readers disagree"
    del X, ours, ref
    medians, _ = alternate({
        "np.loadtxt": lambda: np.loadtxt(clean, delimiter=",", skiprows=1, ndmin=2),
        "probkit": lambda: read_numeric_csv(clean),
    }, args.repeats)
    size_mb = os.path.getsize(clean) / 1e6
    threads = os.environ["OMP_NUM_THREADS"]
    print(f"OMP/MKL/OPENBLAS threads {threads}; {args.rows:,} rows x {args.columns} columns ({size_mb:.1f} MB), "
          f"medians of {args.repeats} alternating repeats")
    print("| reader | seconds | ratio to np.loadtxt |")
    print("|---|---|---|")
    base = medians["np.loadtxt"]
    print(f"| np.loadtxt | {base:.3f} | 1.00 |")
    print(f"| probkit CLI reader (fast path) | {medians['probkit']:.3f} | **{medians['probkit'] / base:.2f}** |")
    if args.careful_rows:
        missing = os.path.join(folder, "missing.csv")
        write_file(missing, args.careful_rows, args.columns, missing_last=True)
        careful, _ = alternate({
            "np.loadtxt": lambda: np.genfromtxt(missing, delimiter=",", skip_header=1),
            "probkit": lambda: read_numeric_csv(missing, dropna=True),
        }, max(1, args.repeats // 2))
        print(f"| careful path, {args.careful_rows:,} rows with one empty row, --dropna "
              f"(vs np.genfromtxt {careful['np.loadtxt']:.3f} s) | {careful['probkit']:.3f} | "
              f"{careful['probkit'] / careful['np.loadtxt']:.2f} (to genfromtxt) |")


if __name__ == "__main__":
    main()
