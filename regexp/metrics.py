"""Accuracy and data loss in NumPy, computed from predicted probabilities.

These are the numbers written to ``metrics.json``. The data loss is the loss without
any penalty, with probabilities clipped to [eps, 1 - eps] as Keras does (eps = 1e-7).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Fraction of correct predictions.

    Binary (one column): ``mean((p > 0.5) == y)``, as in source B.
    Multiclass (one-hot): ``mean(argmax p == argmax y)``.
    """
    y, p = np.asarray(y), np.asarray(p)
    if p.ndim == 1 or p.shape[1] == 1:
        return float(np.mean((p.ravel() > 0.5) == (y.ravel() > 0.5)))
    return float(np.mean(p.argmax(axis=1) == y.argmax(axis=1)))


def data_loss(y: np.ndarray, p: np.ndarray, eps: float = EPS) -> float:
    """Mean cross-entropy over samples.

    Binary: ``-mean(y log p + (1 - y) log(1 - p))``. Multiclass: ``-mean(sum_k y_k log p_k)``
    with ``p`` renormalised to sum to 1, as Keras' categorical cross-entropy does.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if p.ndim == 1 or p.shape[1] == 1:
        y, p = y.ravel(), np.clip(p.ravel(), eps, 1 - eps)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    p = np.clip(p / p.sum(axis=1, keepdims=True), eps, 1 - eps)
    return float(-np.mean(np.sum(y * np.log(p), axis=1)))
