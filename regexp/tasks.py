"""The task a dataset poses, and everything that follows from it: the output layer, the
loss, the metrics, what a history records and which number leads.

Three tasks, one entry each in ``TASKS``:

| task | output layer | ``data_loss`` | metrics |
| --- | --- | --- | --- |
| ``binary`` (2 classes) | 1 sigmoid unit | binary cross-entropy | accuracy |
| ``multiclass`` (C classes) | C softmax units | categorical cross-entropy | accuracy |
| ``regression`` | 1 linear unit | mean squared error | ``mae``, ``r2`` (R²) |

``loss``, the objective, is the data loss plus the penalties; for classification with
``reg.smoothing`` = s > 0 its data part is the cross-entropy on smoothed targets, as
Keras' ``label_smoothing``: binary ``y (1 - s) + s / 2``, C classes ``y (1 - s) + s / C``.
``data_loss`` is always on the true targets, so data losses compare across smoothing
values and ``loss - data_loss`` is the penalties plus smoothing's part.

Each task belongs to a ``Kind``, the value of ``dataset.task``: ``classification``
(binary or multiclass, by the number of classes) or ``regression``. The kind decides
what is recorded and shown: a history's series (each with a ``val_`` twin), the final
numbers per split in ``metrics.json``, and the primary metric (accuracy; R²) that the
progress line, the log line, the report and the plots lead with. Accuracy and R² are
better higher, losses and MAE lower (``direction``); accuracy lies in [0, 1], R² at
most 1, losses and MAE at least 0 (``bounds``).

A task states its formulas three ways, which the tests hold equal: Keras' loss and
metrics (the ``keras`` and ``compiled`` engines); the same on members stacked on axis 0,
[K, batch, outputs] (the fused engine: a per-sample loss, and per-batch sums from which
each epoch's metrics are computed as Keras' metrics accumulate them); and NumPy, for
``metrics.json`` (``regexp.metrics``).

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from regexp import metrics
from regexp.errors import ConfigError


@dataclass(frozen=True)
class Kind:
    """What runs of one kind of task record and show.

    ``series``: a history's per-epoch series (every engine's, each with a ``val_`` twin);
    ``scores``: the numbers per split in ``metrics.json`` (``test_r2``, ...), the primary
    metric first.
    """

    name: str
    series: tuple[str, ...]
    scores: tuple[str, ...]

    @property
    def primary(self) -> str:
        return self.scores[0]

    def of_split(self, split: str) -> tuple[str, ...]:
        """``metrics.json``'s keys of one split: ``test_accuracy``, ``test_data_loss``, ..."""
        return tuple(f"{split}_{score}" for score in self.scores)

    @property
    def columns(self) -> tuple[str, ...]:
        """A history's columns, as every engine returns them."""
        return tuple(f"{p}{s}" for p in ("", "val_") for s in self.series)

    @property
    def shown(self) -> tuple[str, ...]:
        """What the progress line shows."""
        return ("loss", "val_loss", f"val_{self.primary}")

    @property
    def curves(self) -> tuple[str, ...]:
        """The series beside the losses: each is a run's figure ``<series>.png``."""
        return tuple(s for s in self.series if s not in ("loss", "data_loss"))


CLASSIFICATION = Kind(
    "classification", ("loss", "data_loss", "accuracy"), ("accuracy", "data_loss")
)
REGRESSION = Kind("regression", ("loss", "data_loss", "mae", "r2"), ("r2", "mae", "data_loss"))
KINDS = {kind.name: kind for kind in (CLASSIFICATION, REGRESSION)}
MAXIMIZED = ("accuracy", "r2")  # better higher; every other series lower


def direction(column: str) -> str:
    """``max`` for accuracy and R² (also as ``val_r2``, ``test_accuracy``, ...), else ``min``."""
    for prefix in ("val_", "train_", "test_"):
        column = column.removeprefix(prefix)
    return "max" if column in MAXIMIZED else "min"


# the values a series can take, where it is bounded; every other loss is >= 0 as well
BOUNDS = {"accuracy": (0.0, 1.0), "r2": (-math.inf, 1.0), "mae": (0.0, math.inf)}


def bounds(column: str) -> tuple[float, float]:
    """The range of a series' values (also as ``val_r2``, ``test_accuracy``, ...):
    accuracy in [0, 1], R² <= 1, MAE and every loss (``loss``, ``data_loss``) >= 0, so a
    plotted confidence band is clipped to it; (-inf, inf) for any other column."""
    for prefix in ("val_", "train_", "test_"):
        column = column.removeprefix(prefix)
    if column in BOUNDS:
        return BOUNDS[column]
    return (0.0, math.inf) if column.endswith("loss") else (-math.inf, math.inf)


def kind_named(name: Any) -> Kind:
    """The kind a run's ``dataset.task`` names; classification when it names none."""
    return KINDS.get(str(name), CLASSIFICATION) if name else CLASSIFICATION


def smoothing_of(cfg) -> float:
    """``reg.smoothing`` of a config, 0 when absent."""
    return float(cfg.reg.get("smoothing") or 0.0)


def check(kind: Any, smoothing: Any) -> None:
    """Label smoothing smooths class labels: refused for ``dataset.task=regression``."""
    if kind == REGRESSION.name and smoothing:
        raise ConfigError(
            "reg.smoothing",
            smoothing,
            "0 with dataset.task=regression (label smoothing is for class labels)",
        )


class Task:
    """One task's formulas. Stacked tensors have the members on axis 0: targets ``y`` and
    outputs ``out`` (logits for classification, values for regression) [K, B, outputs]."""

    name: str
    kind: Kind
    activation: str  # the output layer's

    def units(self, n_classes: int) -> int:
        return 1

    def output(self, n_classes: int) -> tuple[int, str]:
        """The output layer: units and activation."""
        return self.units(n_classes), self.activation

    def keras_loss(self, smoothing: float = 0.0):
        raise NotImplementedError

    def keras_metrics(self) -> list:
        """Keras metrics named as the history's series (``data_loss`` without smoothing)."""
        raise NotImplementedError

    def smoother(self, smoothing: Sequence[float], classes: int) -> Callable | None:
        """Stacked targets -> each member's smoothed targets; None when no member smooths."""
        if any(smoothing):
            raise ValueError(f"{self.name}: no label smoothing")
        return None

    def stacked_loss(self, y, out):
        """Per member and sample, the data loss [K, B]."""
        raise NotImplementedError

    def sum_shapes(self, outputs: int) -> dict[str, tuple[int, ...]]:
        """The per-member shape of each per-batch sum ``stacked_sums`` returns."""
        raise NotImplementedError

    def stacked_sums(self, y, out, data_loss) -> tuple:
        """Per member, sums over a batch from which an epoch's metrics follow (in the order
        of ``sum_shapes``); ``data_loss`` is ``stacked_loss(y, out)``."""
        raise NotImplementedError

    def stacked_series(self, sums: Mapping[str, Any], count: int) -> dict[str, Any]:
        """Per member, each series but ``loss`` over ``count`` samples, from the summed
        ``stacked_sums`` of every batch."""
        raise NotImplementedError

    def final(self, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        """The numbers of one split in ``metrics.json`` (``kind.scores``), in NumPy from the
        model's outputs ``p`` (probabilities or values)."""
        raise NotImplementedError


class _Classification(Task):
    kind = CLASSIFICATION

    def final(self, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        return {"accuracy": metrics.accuracy(y, p), "data_loss": metrics.data_loss(y, p)}

    def sum_shapes(self, outputs: int) -> dict[str, tuple[int, ...]]:
        return {"data_loss": (), "hits": ()}

    def stacked_sums(self, y, out, data_loss) -> tuple:
        import tensorflow as tf

        return tf.reduce_sum(data_loss, axis=1), tf.reduce_sum(self._hits(y, out), axis=1)

    def stacked_series(self, sums: Mapping[str, Any], count: int) -> dict[str, Any]:
        return {"data_loss": sums["data_loss"] / count, "accuracy": sums["hits"] / count}

    def smoother(self, smoothing: Sequence[float], classes: int) -> Callable | None:
        """``y (1 - s) + added``, with Keras' float32 arithmetic for each member's s."""
        if not any(smoothing):
            return None
        import tensorflow as tf

        keep = tf.constant(np.float32([1.0 - s for s in smoothing]))[:, None, None]
        added = tf.constant(self._added(smoothing, classes))[:, None, None]
        return lambda y: y * keep + added

    def _added(self, smoothing: Sequence[float], classes: int) -> np.ndarray:
        raise NotImplementedError

    def _hits(self, y, out):
        raise NotImplementedError


class Binary(_Classification):
    """Two classes: one sigmoid unit, binary cross-entropy, ``accuracy`` at 0.5."""

    name, activation = "binary", "sigmoid"

    def keras_loss(self, smoothing: float = 0.0):
        import keras

        return keras.losses.BinaryCrossentropy(label_smoothing=smoothing)

    def keras_metrics(self) -> list:
        import keras

        return [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.BinaryCrossentropy(name="data_loss"),
        ]

    def _added(self, smoothing: Sequence[float], classes: int) -> np.ndarray:
        return np.float32([0.5 * s for s in smoothing])

    def stacked_loss(self, y, out):
        import tensorflow as tf

        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=out), -1)

    def _hits(self, y, out):
        import tensorflow as tf

        return tf.cast(tf.equal(tf.sigmoid(out) > 0.5, y > 0.5), tf.float32)[..., 0]


class Multiclass(_Classification):
    """C classes: C softmax units, categorical cross-entropy, ``accuracy`` of the argmax."""

    name, activation = "multiclass", "softmax"

    def units(self, n_classes: int) -> int:
        return n_classes

    def keras_loss(self, smoothing: float = 0.0):
        import keras

        return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)

    def keras_metrics(self) -> list:
        import keras

        return [
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.CategoricalCrossentropy(name="data_loss"),
        ]

    def _added(self, smoothing: Sequence[float], classes: int) -> np.ndarray:
        return np.float32(smoothing) / np.float32(classes)  # Keras: s / float32(C)

    def stacked_loss(self, y, out):
        import tensorflow as tf

        return tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=out)

    def _hits(self, y, out):
        import tensorflow as tf

        return tf.cast(tf.equal(tf.argmax(out, -1), tf.argmax(y, -1)), tf.float32)


class Regression(Task):
    """A continuous target: one linear unit, mean squared error, ``mae`` and ``r2``.

    R² as ``keras.metrics.R2Score`` accumulates it over an epoch's batches, per output:
    sums of y, y² and (y - p)², then ``1 - residual / (sum y² - sum y * mean y)`` (an
    infinite score counts 0), averaged over outputs.
    """

    name, kind, activation = "regression", REGRESSION, "linear"

    def keras_loss(self, smoothing: float = 0.0):
        import keras

        if smoothing:
            raise ValueError("regression: no label smoothing")
        return keras.losses.MeanSquaredError()

    def keras_metrics(self) -> list:
        import keras

        return [
            keras.metrics.MeanSquaredError(name="data_loss"),
            keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.R2Score(name="r2"),
        ]

    def stacked_loss(self, y, out):
        import tensorflow as tf

        return tf.reduce_mean(tf.square(y - out), axis=-1)

    def sum_shapes(self, outputs: int) -> dict[str, tuple[int, ...]]:
        return {"data_loss": (), "abs_error": (), "y": (outputs,), "y_squared": (outputs,),
                "residual": (outputs,)}  # fmt: skip

    def stacked_sums(self, y, out, data_loss) -> tuple:
        import tensorflow as tf

        return (
            tf.reduce_sum(data_loss, axis=1),
            tf.reduce_sum(tf.reduce_mean(tf.abs(y - out), axis=-1), axis=1),
            tf.reduce_sum(y, axis=1),
            tf.reduce_sum(y * y, axis=1),
            tf.reduce_sum((y - out) ** 2, axis=1),
        )

    def stacked_series(self, sums: Mapping[str, Any], count: int) -> dict[str, Any]:
        import tensorflow as tf

        mean = sums["y"] / count
        total = sums["y_squared"] - sums["y"] * mean
        scores = 1 - sums["residual"] / total
        scores = tf.where(tf.math.is_inf(scores), tf.zeros_like(scores), scores)
        return {
            "data_loss": sums["data_loss"] / count,
            "mae": sums["abs_error"] / count,
            "r2": tf.reduce_mean(scores, axis=-1),
        }

    def final(self, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        return {"r2": metrics.r2(y, p), "mae": metrics.mae(y, p), "data_loss": metrics.mse(y, p)}


TASKS: dict[str, Task] = {task.name: task for task in (Binary(), Multiclass(), Regression())}


def of(data) -> Task:
    """The task of a loaded dataset: its ``task`` and, for classification, its number of
    classes."""
    if data.task == REGRESSION.name:
        return TASKS["regression"]
    return TASKS["binary" if data.n_classes == 2 else "multiclass"]
