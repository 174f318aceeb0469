"""Keras regularizers that Keras does not ship: L3 (source B3) and KL sparsity (source B7).

Both are ordinary ``keras.regularizers.Regularizer`` subclasses, serializable with
``get_config`` and registered under the ``regexp`` package name.
"""

from __future__ import annotations

import keras
from keras import ops


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="regexp")
class L3(keras.regularizers.Regularizer):
    """Cubic penalty of source B3: ``loss = lam * reduce_sum(abs(x) ** 3)``."""

    def __init__(self, lam: float = 0.01):
        self.lam = _non_negative("lam", lam)

    def __call__(self, x):
        return ops.cast(self.lam, x.dtype) * ops.sum(ops.power(ops.absolute(x), 3))

    def get_config(self) -> dict:
        return {"lam": self.lam}


@keras.saving.register_keras_serializable(package="regexp")
class KLSparsity(keras.regularizers.Regularizer):
    """KL-divergence sparsity penalty of source B7 (Ng, CS294A), for activities.

    ``rho_hat_j = clip(mean over the batch of x[:, j], 1e-6, 0.99999)``

    ``loss = lam * sum_j [rho log(rho / rho_hat_j) + (1 - rho) log((1 - rho) / (1 - rho_hat_j))]``

    Used as an activity regularizer, Keras (>= 3.14) divides the result by the batch size.
    """

    def __init__(self, lam: float = 0.1, rho: float = 0.05):
        self.lam = _non_negative("lam", lam)
        rho = float(rho)
        if not 0 < rho < 1:
            raise ValueError(f"rho must be in (0, 1), got {rho!r}")
        self.rho = rho

    def __call__(self, x):
        rho_hat = ops.clip(ops.mean(x, axis=0), 1e-6, 0.99999)
        rho = ops.cast(self.rho, x.dtype)
        kl = rho * ops.log(rho / rho_hat) + (1 - rho) * ops.log((1 - rho) / (1 - rho_hat))
        return ops.cast(self.lam, x.dtype) * ops.sum(kl)

    def get_config(self) -> dict:
        return {"lam": self.lam, "rho": self.rho}
