"""Topic models: latent Dirichlet allocation by variational Bayes or collapsed Gibbs sampling.

* :class:`LatentDirichletAllocation` -- batch coordinate-ascent variational inference and
  online stochastic variational inference, with scikit-learn's API and results.
* :class:`CollapsedGibbsLDA` -- the exact posterior of the same model by collapsed Gibbs
  sampling, several chains, R-hat of the log-likelihood trace.
* :func:`match_topics` -- align two sets of topics (Hungarian algorithm).
* :func:`shakespeare_speeches`, :func:`python_doc_topics` -- document-term matrices of
  text available offline.

Examples
--------
>>> from probkit.topics import LatentDirichletAllocation
>>> LatentDirichletAllocation(n_components=3).n_components
3
"""

from probkit.utils._lazy import lazy_package

__getattr__, __dir__, __all__ = lazy_package(
    __name__,
    {
        ".lda": ["CollapsedGibbsLDA", "LatentDirichletAllocation", "match_topics"],
        ".corpora": ["python_doc_topics", "shakespeare_speeches"],
    },
)
