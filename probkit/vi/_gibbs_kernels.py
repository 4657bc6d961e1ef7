"""numba kernel of the collapsed Gibbs sampler of latent Dirichlet allocation.

Imported on the first call of :func:`probkit.vi.gibbs.gibbs_lda` (importing numba costs a
noticeable fraction of a second).
"""

from __future__ import annotations

from probkit.inference._numba_kernels import _jit


@_jit()
def lda_sweep(words, docs, topics, doc_topic, word_topic, topic_total, alpha, beta, vocab_beta, uniforms, weights):
    """One systematic-scan sweep over the tokens, updating assignments and counts in place.

    Token ``i`` (word ``words[i]`` of document ``docs[i]``) leaves its topic, then joins
    topic ``k`` with probability proportional to
    ``(doc_topic[d, k] + alpha) (word_topic[w, k] + beta) / (topic_total[k] + V beta)``
    (Griffiths and Steyvers 2004), chosen by inverting the cumulative weights at
    ``uniforms[i]``. ``weights`` is scratch space of length K.
    """
    n_topics = topic_total.shape[0]
    for i in range(words.shape[0]):
        w = words[i]
        d = docs[i]
        k = topics[i]
        doc_topic[d, k] -= 1
        word_topic[w, k] -= 1
        topic_total[k] -= 1
        total = 0.0
        for j in range(n_topics):
            total += (doc_topic[d, j] + alpha) * (word_topic[w, j] + beta) / (topic_total[j] + vocab_beta)
            weights[j] = total
        target = uniforms[i] * total
        k = n_topics - 1
        for j in range(n_topics):
            if weights[j] > target:
                k = j
                break
        topics[i] = k
        doc_topic[d, k] += 1
        word_topic[w, k] += 1
        topic_total[k] += 1
