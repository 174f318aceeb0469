"""Training engines: how a compiled Keras model is trained on a dataset.

An engine has one method, ``fit(model, data, trainer) -> history``, where ``history``
maps each per-epoch series (``loss``, ``data_loss``, ``accuracy`` and their ``val_``
twins) to a list with one float per epoch. ``loss`` includes the penalties;
``data_loss`` does not. Everything after training (final metrics, files, plots) is
shared, so every engine writes the same run folder.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

from regexp.data import Dataset

log = logging.getLogger(__name__)

History = dict[str, list[float]]


class Engine(Protocol):
    def fit(self, model, data: Dataset, trainer) -> History: ...


class KerasEngine:
    """Plain ``model.fit``: the reference engine."""

    def fit(self, model, data: Dataset, trainer) -> History:
        import keras

        epochs = int(trainer.epochs)
        every = max(1, math.ceil(epochs / 10))

        def report(epoch: int, logs: dict) -> None:
            if (epoch + 1) % every == 0 or epoch + 1 == epochs:
                log.info(
                    "epoch %d/%d  loss %.4f  val_loss %.4f  val_accuracy %.4f",
                    epoch + 1, epochs, logs["loss"], logs["val_loss"], logs["val_accuracy"],
                )  # fmt: skip

        result = model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            epochs=epochs,
            batch_size=int(trainer.batch_size),
            shuffle=bool(trainer.shuffle),
            verbose=0,
            callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=report)],
        )
        return {k: [float(v) for v in vs] for k, vs in result.history.items()}


ENGINES: dict[str, type] = {"keras": KerasEngine}
