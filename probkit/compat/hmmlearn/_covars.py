"""hmmlearn's ``covars_`` / ``_covars_`` / ``n_features`` attributes on a probkit Gaussian HMM."""

from __future__ import annotations

import numpy as np

from probkit.hmm.gaussian import full_covariances


class _SettableNFeatures:
    """``n_features`` follows the means (as after hmmlearn's ``_check``) and can be assigned
    before any means exist (hmmlearn's examples set it on a model built by hand)."""

    def _means_for_n_features(self):
        return self.__dict__.get("means_")

    def _n_features_or_none(self):
        means = self._means_for_n_features()
        if means is not None:
            return np.shape(means)[-1]
        return self.__dict__.get("_n_features")

    @property
    def n_features(self):
        """Number of features: the means' last dimension, or the value assigned before there are means."""
        d = self._n_features_or_none()
        if d is None:
            raise AttributeError("n_features is not known yet (set means_, n_features, or fit)")
        return d

    @n_features.setter
    def n_features(self, value):
        self.__dict__["_n_features"] = value


class _FullCovarsView(_SettableNFeatures):
    """``covars_`` reads back as ``(n_components, n_features, n_features)`` matrices, as in hmmlearn.

    hmmlearn keeps the compact array (shape set by ``covariance_type``) in ``_covars_``
    and fills it out to full matrices when ``covars_`` is read; assigning ``covars_``
    takes the compact shape. probkit's methods read and write the compact array under
    the same name, so inside them (:meth:`_HMMLearnAPI._probkit_call`) ``covars_`` is
    ``_covars_``.
    """

    @property
    def covars_(self):
        compact = self._covars_
        if self._in_probkit():
            return compact
        d = self._n_features_or_none()
        if d is None and self.covariance_type == "spherical":
            raise AttributeError("covars_ of a spherical model needs n_features (set means_ or n_features)")
        return full_covariances(compact, self.covariance_type, self.n_components, d)

    @covars_.setter
    def covars_(self, covars):
        covars = np.array(covars, dtype=np.float64, copy=True)
        if self.covariance_type == "spherical" and covars.ndim > 1 and covars.size == self.n_components:
            # hmmlearn accepts any array with one variance per state (e.g. shape (K, 1, 1, 1))
            covars = covars.reshape(self.n_components)
        self._covars_ = covars
