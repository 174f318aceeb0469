"""Regularizers a user might write: two faulty ones for the fault tests, and a working one
for the saved-model tests."""

import keras


class PerUnit(keras.regularizers.Regularizer):
    """A mistake: returns one value per unit instead of a scalar."""

    def __init__(self, lam: float = 0.01):
        self.lam = lam

    def __call__(self, x):
        return self.lam * keras.ops.sum(keras.ops.abs(x), axis=0)


class Eager(keras.regularizers.Regularizer):
    """A bug: works on a concrete tensor, but training traces it into a graph."""

    def __init__(self, lam: float = 0.01):
        self.lam = lam

    def __call__(self, x):
        return self.lam * float(abs(x.numpy()).sum())


class Quartic(keras.regularizers.Regularizer):
    """A working one, as a user writes it (no get_config): ``lam * sum(x^4)``."""

    def __init__(self, lam: float = 0.01):
        self.lam = lam

    def __call__(self, x):
        return self.lam * keras.ops.sum(x**4)
