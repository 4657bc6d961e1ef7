"""Small real data sets shipped with probkit (no download needed).

Provenance and licences are in ``probkit/datasets/data/README.md``.
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

__all__ = ["load_earthquakes", "load_old_faithful", "load_sunspots", "load_tinyshakespeare"]


def _path(name):
    return resources.files("probkit.datasets").joinpath("data", name)


def load_old_faithful():
    """Old Faithful geyser eruptions: 272 rows of (eruption minutes, waiting minutes).

    Returns
    -------
    X : numpy.ndarray of shape (272, 2)
    feature_names : list of str

    Examples
    --------
    >>> X, names = load_old_faithful()
    >>> X.shape, names
    ((272, 2), ['eruptions', 'waiting'])
    """
    with _path("old_faithful.csv").open("r") as f:
        header = f.readline().strip().split(",")
        X = np.loadtxt(f, delimiter=",")
    return X, header


def load_earthquakes():
    """Annual counts of major (magnitude >= 7) earthquakes worldwide, 1900-2006.

    Returns
    -------
    years : numpy.ndarray of shape (107,)
    counts : numpy.ndarray of shape (107,), integer

    Examples
    --------
    >>> years, counts = load_earthquakes()
    >>> int(years[0]), int(counts[0]), round(float(counts.mean()), 3)
    (1900, 13, 19.364)
    """
    with _path("earthquakes_1900_2006.csv").open("r") as f:
        data = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.int64)
    return data[:, 0], data[:, 1]


def load_sunspots():
    """Yearly mean sunspot numbers (the original Wolf/Zurich series), 1700-2008.

    The classic non-linear, quasi-periodic (about 11 years) series of time-series
    textbooks. Values of the version-1 series (before the 2015 recalibration); see
    ``probkit/datasets/data/README.md`` for provenance.

    Returns
    -------
    years : numpy.ndarray of shape (309,), integer
    sunspots : numpy.ndarray of shape (309,), float

    Examples
    --------
    >>> years, sunspots = load_sunspots()
    >>> int(years[0]), int(years[-1]), round(float(sunspots.mean()), 3)
    (1700, 2008, 49.752)
    """
    with _path("sunspots_yearly_1700_2008.csv").open("r") as f:
        data = np.loadtxt(f, delimiter=",", skiprows=1)
    return data[:, 0].astype(np.int64), data[:, 1]


def load_tinyshakespeare():
    """The tiny-shakespeare corpus (1,115,394 characters) as one string.

    Examples
    --------
    >>> text = load_tinyshakespeare()
    >>> len(text), len(set(text))
    (1115394, 65)
    """
    with _path("tinyshakespeare.txt.gz").open("rb") as f:
        return gzip.decompress(f.read()).decode("utf-8")
