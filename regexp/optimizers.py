"""The optimizer catalogue: name -> Keras optimizer and the same update rule on stacked
weights, with one table of hyperparameters and their defaults (Keras' own).

A config's ``optimizer`` group has ``name`` and ``lr``, and may set any hyperparameter
of the table (``optimizer.momentum=0.9`` for SGD, ``+optimizer.beta_1=0.8`` for Adam).
The Keras optimizer is built with every hyperparameter passed explicitly, and the fused
engine's update rule reads the same values, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from regexp.checks import POSITIVE, STRENGTH, UNIT_INTERVAL, Rule, Schema, parse


@dataclass(frozen=True)
class Optimizer:
    """One optimizer: its Keras class, and its hyperparameters with their defaults and
    types (its typed schema). ``update`` is its rule on stacked variables (see ``Stacked``)."""

    name: str
    keras_class: str
    defaults: Mapping[str, float]
    types: Mapping[str, Rule]
    update: Callable
    slots: int  # optimizer state variables per weight

    def hyper(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        """The hyperparameters a config asks for: the defaults, overridden by ``cfg``."""
        return {k: float(v if cfg.get(k) is None else cfg[k]) for k, v in self.defaults.items()}

    def schema(self) -> type[Schema]:
        """The ``optimizer`` group's typed schema: ``name``, ``lr`` and the hyperparameters
        (each may be left out or null for Keras' default)."""
        return _schema(self.name)

    def validate(self, cfg: Mapping[str, Any]) -> None:
        parse(self.schema(), cfg, "optimizer", what=f"optimizer {self.name}")

    def keras(self, cfg: Mapping[str, Any]):
        """The Keras optimizer with this config's learning rate and hyperparameters."""
        from hydra.utils import get_class

        hyper = self.hyper(cfg)
        if hyper["weight_decay"] == 0 == self.defaults["weight_decay"]:
            hyper["weight_decay"] = None  # Keras' own default: no decay step at all
        return get_class(self.keras_class)(learning_rate=float(cfg["lr"]), **hyper)


def _adam(h, lr, t, g, v, slots) -> None:
    """Keras' Adam: ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)``, ``m += (g - m)(1 - b1)``,
    ``s += (g^2 - s)(1 - b2)``, ``v -= alpha m / (sqrt(s) + eps)``."""
    import tensorflow as tf

    b1, b2, eps = h["beta_1"], h["beta_2"], h["epsilon"]
    m, s = slots
    alpha = lr * tf.sqrt(1 - tf.pow(b2, t)) / (1 - tf.pow(b1, t))
    m.assign_add((g - m) * (1 - b1))
    s.assign_add((tf.square(g) - s) * (1 - b2))
    v.assign_sub((m * alpha) / (tf.sqrt(s) + eps))


def _rmsprop(h, lr, t, g, v, slots) -> None:
    """Keras' RMSprop: ``s = rho s + (1 - rho) g^2``, ``v -= lr g / sqrt(s + eps)``."""
    import tensorflow as tf

    rho, eps = h["rho"], h["epsilon"]
    (s,) = slots
    s.assign(rho * s + (1 - rho) * tf.square(g))
    v.assign_sub(lr * g / tf.sqrt(s + eps))


def _sgd(h, lr, t, g, v, slots) -> None:
    """Keras' SGD: ``v -= lr g``; with momentum ``m = momentum m - lr g``, ``v += m``."""
    if h["momentum"]:
        (m,) = slots
        m.assign(m * h["momentum"] - g * lr)
        v.assign_add(m)
    else:
        v.assign_sub(g * lr)


# Decoupled weight decay (Keras' ``weight_decay``): before each update, every weight
# shrinks by ``weight * weight_decay * lr``. 0 builds the optimizer without it.
_DECAY = {"weight_decay": 0.0}
_DECAY_TYPE = {"weight_decay": STRENGTH}

OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o
    for o in (
        Optimizer("adam", "keras.optimizers.Adam",
                  {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, **_DECAY},
                  {"beta_1": UNIT_INTERVAL, "beta_2": UNIT_INTERVAL, "epsilon": POSITIVE,
                   **_DECAY_TYPE}, _adam, slots=2),
        # AdamW is Adam with Keras' default decay of 0.004
        Optimizer("adamw", "keras.optimizers.AdamW",
                  {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": 0.004},
                  {"beta_1": UNIT_INTERVAL, "beta_2": UNIT_INTERVAL, "epsilon": POSITIVE,
                   **_DECAY_TYPE}, _adam, slots=2),
        Optimizer("sgd", "keras.optimizers.SGD", {"momentum": 0.0, **_DECAY},
                  {"momentum": UNIT_INTERVAL, **_DECAY_TYPE}, _sgd, slots=1),
        Optimizer("rmsprop", "keras.optimizers.RMSprop",
                  {"rho": 0.9, "epsilon": 1e-7, **_DECAY},
                  {"rho": UNIT_INTERVAL, "epsilon": POSITIVE, **_DECAY_TYPE}, _rmsprop, slots=1),
    )
}  # fmt: skip


@functools.cache
def _schema(name: str) -> type[Schema]:
    from typing import Annotated, Literal

    from pydantic import create_model

    optimizer = OPTIMIZERS[name]
    fields = {
        k: (Annotated[float | None, rule.or_none()], None) for k, rule in optimizer.types.items()
    }
    return create_model(
        optimizer.name,
        __base__=Schema,
        name=(Literal[optimizer.name], ...),
        lr=(Annotated[float, POSITIVE], ...),
        **fields,
    )


class Stacked:
    """An optimizer's update rule on stacked variables [K, ...], with one learning rate
    and one weight decay per member: the fused engine's optimizer."""

    def __init__(self, cfg: Mapping[str, Any], lr, variables, weight_decay=None):
        import tensorflow as tf

        self.optimizer = OPTIMIZERS[cfg["name"]]
        self.h, self.lr = self.optimizer.hyper(cfg), lr
        self.weight_decay = weight_decay  # [K], or None when no member decays
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.slots = [
            [tf.Variable(tf.zeros_like(v), trainable=False) for _ in range(self.optimizer.slots)]
            for v in variables
        ]

    def apply(self, grads, variables) -> None:
        """As Keras' ``apply``: the weight decay of every variable, then the update."""
        import tensorflow as tf

        t = tf.cast(self.iterations + 1, tf.float32)
        for g, v, slots in zip(grads, variables, self.slots, strict=True):
            shape = [-1] + [1] * (len(v.shape) - 1)
            lr = tf.reshape(self.lr, shape)
            if self.weight_decay is not None:  # Keras: variable -= variable * wd * lr
                v.assign_sub(v * tf.reshape(self.weight_decay, shape) * lr)
            self.optimizer.update(self.h, lr, t, g, v, slots)
        self.iterations.assign_add(1)
