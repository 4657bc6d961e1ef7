"""Document-term matrices of text that is available offline, for topic models.

* :func:`shakespeare_speeches` -- the speeches of the tiny-shakespeare corpus shipped with
  probkit (:func:`probkit.datasets.load_tinyshakespeare`), speaker names removed.
* :func:`python_doc_topics` -- the help topics of Python's own documentation
  (``pydoc_data.topics``, part of the standard library).

Both count words with scikit-learn's ``CountVectorizer`` (English stop words removed).
"""

from __future__ import annotations

import numpy as np

from probkit.utils.validation import check_int

__all__ = ["python_doc_topics", "shakespeare_speeches"]


def _count(texts, min_df, max_df, max_features):
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(stop_words="english", min_df=min_df, max_df=max_df, max_features=max_features,
                          token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    X = vec.fit_transform(texts).astype(np.float64)
    return X.tocsr(), list(vec.get_feature_names_out())


def shakespeare_speeches(speeches_per_document=1, *, min_df=5, max_df=0.5, max_features=None):
    """Word counts of the tiny-shakespeare speeches.

    The corpus is split at blank lines into its 7,222 speeches; the first line of each
    (the speaker, e.g. ``"First Citizen:"``) is dropped, and ``speeches_per_document``
    consecutive speeches make one document.

    Parameters
    ----------
    speeches_per_document : int, default=1
    min_df, max_df, max_features
        Vocabulary pruning, as in scikit-learn's ``CountVectorizer``.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_documents, n_words), float64 counts
    vocabulary : list of str

    Examples
    --------
    >>> X, vocab = shakespeare_speeches(speeches_per_document=3)
    >>> X.shape[0], len(vocab) == X.shape[1]
    (2408, True)
    """
    from probkit.datasets import load_tinyshakespeare

    speeches_per_document = check_int(speeches_per_document, "speeches_per_document")
    blocks = [b for b in load_tinyshakespeare().split("\n\n") if b.strip()]
    speeches = [b.split("\n", 1)[1] if "\n" in b else "" for b in blocks]
    size = int(speeches_per_document)
    docs = [" ".join(speeches[i:i + size]) for i in range(0, len(speeches), size)]
    return _count(docs, min_df, max_df, max_features)


def python_doc_topics(*, min_df=2, max_df=0.5, max_features=None):
    """Word counts of the help topics of Python's documentation (``pydoc_data.topics``).

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_topics, n_words), float64 counts
    vocabulary : list of str
    names : list of str
        The topic names (``"assert"``, ``"for"``, ...), one per row.

    Examples
    --------
    >>> X, vocab, names = python_doc_topics()
    >>> X.shape[0] == len(names) and X.shape[0] > 50
    True
    """
    from pydoc_data.topics import topics

    names = sorted(topics)
    X, vocab = _count([topics[n] for n in names], min_df, max_df, max_features)
    return X, vocab, names
