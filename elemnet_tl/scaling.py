"""A standard scaler that keeps new rows near the training range (imports scikit-learn: load it lazily)."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import StandardScaler

from .attributes import near_range


class BoundedScaler(StandardScaler):
    """scikit-learn's ``StandardScaler`` whose output is kept within the training rows' z-score range widened
    by that range on each side (a constant column stays at 0), as the networks' attribute inputs are: a
    column that barely varies in training (Magpie's 1e-5 moments of Ti and Sc) would otherwise turn a new
    row's ordinary value into a z-score of 1e5, and ridge into a wild prediction."""

    def fit(self, X, y=None, sample_weight=None):  # noqa: N803 (scikit-learn's names)
        super().fit(X, y, sample_weight)
        z = super().transform(X)
        self.lo_, self.hi_ = (z.min(axis=0), z.max(axis=0)) if len(z) else (np.zeros(z.shape[1]),) * 2
        return self

    def transform(self, X, copy=None):  # noqa: N803
        return near_range(super().transform(X, copy=copy), self.lo_, self.hi_)

    def fit_transform(self, X, y=None, **params):  # noqa: N803
        return self.fit(X, y, **params).transform(X)
