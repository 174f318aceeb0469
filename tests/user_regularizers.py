"""Regularizers a user might write, for the fault tests."""

import keras


class PerUnit(keras.regularizers.Regularizer):
    """A mistake: returns one value per unit instead of a scalar."""

    def __init__(self, lam: float = 0.01):
        self.lam = lam

    def __call__(self, x):
        return self.lam * keras.ops.sum(keras.ops.abs(x), axis=0)
