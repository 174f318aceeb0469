"""The final numbers of ``metrics.json`` in NumPy, from the model's outputs.

Classification (from predicted probabilities): accuracy and the data loss, the loss
without any penalty, with probabilities clipped to [eps, 1 - eps] as Keras does
(eps = 1e-7). Regression (from predicted values): the mean squared error (the data
loss), the mean absolute error and R². Which task records which is ``regexp.tasks``.
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


def _pair(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions as float64 [n, outputs]."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    return y.reshape(len(y), -1), p.reshape(len(p), -1)


def mse(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error, ``mean((y - p)^2)``: regression's data loss."""
    y, p = _pair(y, p)
    return float(np.mean((y - p) ** 2))


def mae(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute error, ``mean(|y - p|)``."""
    y, p = _pair(y, p)
    return float(np.mean(np.abs(y - p)))


def r2(y: np.ndarray, p: np.ndarray) -> float:
    """The coefficient of determination, ``1 - sum (y - p)^2 / sum (y - mean y)^2`` per
    output, averaged over outputs (``keras.metrics.R2Score``'s default); 0 for an output
    whose targets are all equal, where Keras' infinite score is 0 too."""
    y, p = _pair(y, p)
    residual = np.sum((y - p) ** 2, axis=0)
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(total > 0, 1 - residual / total, 0.0)
    return float(np.mean(scores))
