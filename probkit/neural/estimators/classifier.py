"""SequenceClassifier: one label per sequence from a neural backbone pooled over time."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from probkit.neural.heads import CategoricalHead
from probkit.utils.sequences import keyword_lengths
from probkit.utils.threads import limit_torch_threads

from ._base import SequenceNetEstimator, store_params
from ._docs import NEURAL_DOCS

__all__ = ["SequenceClassifier"]


@NEURAL_DOCS.fill
class SequenceClassifier(ClassifierMixin, SequenceNetEstimator):
    """Classify whole sequences with a neural backbone (Mamba, RWKV, gated CNN, ...).

    Each step of a sequence is embedded (a linear map of its features, or a token
    embedding), the backbone maps the sequence to features of width ``d_model``, which
    are pooled over the valid steps (``pooling``) and fed to a categorical head; the
    network is trained on the cross-entropy by the shared loop of
    :func:`probkit.neural.train_module`. Real-valued features are standardised with the
    training mean and standard deviation.

    Parameters
    ----------
    %(model_params)s
    %(pooling_params)s
    %(training_params)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    %(fitted_attrs)s

    Notes
    -----
    %(sequence_forms)s

    %(tabular_rows)s

    %(training_notes)s

    Examples
    --------
    Is the sequence's mean positive? Sequences of 4 to 11 steps, 2 features:

    >>> import numpy as np
    >>> from probkit.neural import SequenceClassifier
    >>> rng = np.random.RandomState(0)
    >>> seqs = [rng.normal(size=(rng.randint(4, 12), 2)) + s for s in rng.choice([-1, 1], 120)]
    >>> y = np.array([int(s.mean() > 0) for s in seqs])
    >>> clf = SequenceClassifier(backbone="gru", d_model=16, n_layers=1, max_epochs=30, lr=1e-2,
    ...                          random_state=0).fit(seqs[:100], y[:100])
    >>> clf.predict_proba(seqs[100:]).shape
    (20, 2)
    >>> clf.score(seqs[100:], y[100:]) > 0.9
    True
    """

    def __init__(self, backbone="mamba", d_model=64, n_layers=2, *, backbone_kwargs=None, vocab_size=None,
                 pooling="mean", bidirectional=False, batch_size=32, max_epochs=100, lr=1e-3, weight_decay=0.01,
                 clip_grad_norm=1.0, schedule="cosine", warmup=0.05, early_stopping=True, validation_fraction=0.1,
                 patience=10, mixed_precision="auto", random_state=None, device=None, dtype=None, verbose=0):
        store_params(self, locals())

    def _make_head(self):
        return CategoricalHead(self.d_model, len(self.classes_))

    @limit_torch_threads
    def fit(self, X, y, *, lengths=None, valid_lengths=None):
        """Train on sequences ``X`` with one label each.

        %(sequence_params)s
        y : array-like of shape (n_sequences,)
            Class labels.

        Returns
        -------
        self
        """
        options = self._check_params()
        batch = self._read(X, lengths, valid_lengths, reset=True)
        y = column_or_1d(np.asarray(self._check_targets(batch, y, X, lengths, valid_lengths)), warn=True)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        data = self._training_data(batch, {"y": codes})

        def loss_fn(model, batch):
            logits = model(batch["x"], batch["lengths"])
            return F.cross_entropy(logits.float(), batch["y"]), batch["y"].shape[0]

        self._train(options, data, loss_fn)
        return self

    @limit_torch_threads
    @keyword_lengths
    def predict_log_proba(self, X, *, lengths=None, valid_lengths=None):
        """Log-probabilities of the classes.

        %(sequences_to_class_table)s
        """
        return self._pooled(X, lengths, valid_lengths, lambda out, b: F.log_softmax(out.double(), dim=-1))

    @keyword_lengths
    def predict_proba(self, X, *, lengths=None, valid_lengths=None):
        """Class probabilities; columns follow ``classes_``.

        %(sequences_to_class_table)s
        """
        return np.exp(self.predict_log_proba(X, lengths=lengths, valid_lengths=valid_lengths))

    @keyword_lengths
    def predict(self, X, *, lengths=None, valid_lengths=None):
        """Most probable class of each sequence.

        %(sequences_to_labels)s
        """
        log_proba = self.predict_log_proba(X, lengths=lengths, valid_lengths=valid_lengths)
        return self.classes_[np.argmax(log_proba, axis=1)]

    def score(self, X, y, sample_weight=None, *, lengths=None, valid_lengths=None):
        """Accuracy on ``(X, y)``.

        %(sequence_params)s
        y : array-like of shape (n_sequences,)
        sample_weight : array-like of shape (n_sequences,), optional

        Returns
        -------
        float
        """
        return self._score_predictions("accuracy_score", X, y, sample_weight, lengths, valid_lengths)
