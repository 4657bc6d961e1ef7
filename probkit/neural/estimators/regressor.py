"""SequenceRegressor: real-valued targets per sequence from a neural backbone pooled over time."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_array

from probkit.base import StrOptions
from probkit.neural.heads import GaussianHead
from probkit.utils.sequences import keyword_lengths
from probkit.utils.threads import limit_torch_threads

from ._base import SequenceNetEstimator, check_standardizer, standardizer, store_params, unwrap
from ._docs import NEURAL_DOCS

__all__ = ["SequenceRegressor"]


@NEURAL_DOCS.fill
class SequenceRegressor(RegressorMixin, SequenceNetEstimator):
    """Predict one real vector per sequence with a neural backbone (Mamba, RWKV, gated CNN, ...).

    Encoder, backbone and pooling as in :class:`SequenceClassifier`; the pooled features
    feed a Gaussian head. With ``loss="squared_error"`` only its means are trained (mean
    squared error); with ``loss="gaussian"`` means and standard deviations are trained on
    the Gaussian negative log-likelihood and ``predict(X, return_std=True)`` returns the
    predictive standard deviations. Targets and real-valued features are standardised
    with their training mean and standard deviation.

    Parameters
    ----------
    %(model_params)s
    %(pooling_params)s
    loss : {"squared_error", "gaussian"}, default="squared_error"
        Training objective.
    %(training_params)s

    Attributes
    ----------
    n_outputs_ : int
        Dimension of the targets.
    %(fitted_attrs)s

    Notes
    -----
    %(sequence_forms)s

    %(tabular_rows)s
    ``y`` is ``(n_sequences,)`` or ``(n_sequences, k)``.

    %(training_notes)s

    Examples
    --------
    The mean of a noisy sequence, from sequences of 3 to 9 steps:

    >>> import numpy as np
    >>> from probkit.neural import SequenceRegressor
    >>> rng = np.random.RandomState(0)
    >>> mus = rng.normal(size=150)
    >>> seqs = [m + 0.3 * rng.normal(size=(rng.randint(3, 10), 1)) for m in mus]
    >>> reg = SequenceRegressor(backbone="gru", d_model=16, n_layers=1, max_epochs=40, lr=1e-2,
    ...                         random_state=0).fit(seqs[:120], mus[:120])
    >>> reg.score(seqs[120:], mus[120:]) > 0.8         # R^2
    True
    """

    _parameter_constraints = {
        **SequenceNetEstimator._parameter_constraints,
        "loss": [StrOptions({"squared_error", "gaussian"})],
    }

    def __init__(self, backbone="mamba", d_model=64, n_layers=2, *, backbone_kwargs=None, vocab_size=None,
                 pooling="mean", bidirectional=False, loss="squared_error", batch_size=32, max_epochs=100, lr=1e-3,
                 weight_decay=0.01, clip_grad_norm=1.0, schedule="cosine", warmup=0.05, early_stopping=True,
                 validation_fraction=0.1, patience=10, mixed_precision="auto", random_state=None, device=None,
                 dtype=None, verbose=0):
        store_params(self, locals())

    def _make_head(self):
        return GaussianHead(self.d_model, self.n_outputs_, learn_scale=self.loss == "gaussian")

    @limit_torch_threads
    def fit(self, X, y, *, lengths=None, valid_lengths=None):
        """Train on sequences ``X`` with targets ``y``.

        %(sequence_params)s
        y : array-like of shape (n_sequences,) or (n_sequences, k)

        Returns
        -------
        self
        """
        options = self._check_params()
        batch = self._read(X, lengths, valid_lengths, reset=True)
        y = check_array(self._check_targets(batch, y, X, lengths, valid_lengths), ensure_2d=False, dtype=np.float64,
                        input_name="y")
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        self._y_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self.n_outputs_ = y2.shape[1]
        self._y_mean, self._y_scale = standardizer(y2)
        data = self._training_data(batch, {"y": (y2 - self._y_mean) / self._y_scale})
        gaussian = self.loss == "gaussian"

        def loss_fn(model, batch):
            out = model(batch["x"], batch["lengths"])
            head = unwrap(model).head
            if gaussian:
                loss = -head.log_prob(out, batch["y"]).mean()
            else:
                loss = (head.mean(out) - batch["y"]).pow(2).sum(-1).mean()
            return loss, batch["y"].shape[0]

        self._train(options, data, loss_fn)
        return self

    @limit_torch_threads
    @keyword_lengths
    def predict(self, X, *, lengths=None, valid_lengths=None, return_std=False):
        """Predicted targets (means of the Gaussian head).

        %(sequence_params)s
        return_std : bool, default=False
            Also return the predictive standard deviations (``loss="gaussian"`` only).

        Returns
        -------
        y_pred : ndarray of shape (n_sequences,) or (n_sequences, k)
        y_std : ndarray, same shape (only with ``return_std``)
        """
        if return_std and self.loss != "gaussian":
            raise ValueError("return_std=True needs a model fitted with loss='gaussian'")

        def mean_and_scale(out, b):
            head = self.module_.head
            return torch.cat([head.mean(out), head.scale(out)], -1).double()

        out = self._pooled(X, lengths, valid_lengths, mean_and_scale)
        k = self.n_outputs_
        mean = out[:, :k] * self._y_scale + self._y_mean
        std = out[:, k:] * self._y_scale
        if self._y_1d:
            mean, std = mean[:, 0], std[:, 0]
        return (mean, std) if return_std else mean

    def score(self, X, y, sample_weight=None, *, lengths=None, valid_lengths=None):
        """Coefficient of determination R^2 of the predictions.

        %(sequence_params)s
        y : array-like of shape (n_sequences,) or (n_sequences, k)
        sample_weight : array-like of shape (n_sequences,), optional

        Returns
        -------
        float
        """
        return self._score_predictions("r2_score", X, y, sample_weight, lengths, valid_lengths)

    def _io_check_state(self):
        super()._io_check_state()
        if hasattr(self, "module_"):
            check_standardizer(self._y_mean, self._y_scale, self.n_outputs_, ("_y_mean", "_y_scale"))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
