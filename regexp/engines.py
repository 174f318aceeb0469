"""Training engines: how a compiled Keras model is trained on a dataset.

An engine has one method, ``fit(job) -> history``, where
``history`` maps each per-epoch series (``loss``, ``data_loss``, ``accuracy`` and their
``val_`` twins) to a list with one float per epoch. ``loss`` includes the penalties;
``data_loss`` does not. Everything after training (final metrics, files, plots) is
shared, so every engine writes the same run folder.

- ``keras``: plain ``model.fit``, the reference. Keras shuffles with its own generator.
- ``compiled`` (default): Keras' own ``train_step`` and ``test_step`` on the same model,
  looped over batches and epochs inside one ``tf.function``: the same arithmetic without
  ``fit``'s per-step and per-epoch Python overhead. Batches follow ``batch_orders``.
- ``fused`` (``regexp.fused``): many runs at once as one vectorized model.

Every engine stops early, keeping the history so far, when the loss stops being finite
(the run diverged: ``outcome`` tells) or on Ctrl-C / SIGTERM (interrupted).

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from regexp.progress import Epochs

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from regexp.config import LayerPlan
    from regexp.data import Dataset

History = dict[str, list[float]]
SERIES = ("loss", "data_loss", "accuracy")
SHOWN = ("loss", "val_loss", "val_accuracy")  # what progress shows
COLUMNS = tuple(f"{p}{s}" for p in ("", "val_") for s in SERIES)  # every engine's history


@dataclass
class Job:
    """One configuration made ready to train: validated, data loaded, Keras model built
    (initial weights drawn under ``seed``) and compiled."""

    cfg: DictConfig
    plans: list[LayerPlan]
    data: Dataset
    model: Any
    loss_penalties: list
    seed: int
    # (epoch, weights as model.get_weights() orders them): the initial weights and those
    # after every chunk of epochs, kept only for TensorBoard's histograms
    snapshots: list[tuple[int, list[np.ndarray]]] = field(default_factory=list)

    @property
    def wants_snapshots(self) -> bool:
        return bool(self.cfg.trainer.get("tensorboard"))

    def snapshot(self, epoch: int, weights) -> None:
        """Keep ``weights()`` as the weights after ``epoch``, if TensorBoard wants them."""
        if self.wants_snapshots:
            self.snapshots.append((epoch, weights()))


class Engine(Protocol):
    def fit(self, job: Job) -> History: ...


def batch_orders(n: int, epochs: int, seed: int, shuffle: bool) -> np.ndarray:
    """The sample order of every epoch, shape [epochs, n]: a fresh permutation per epoch
    from ``numpy.random.default_rng(seed)``, or 0..n-1 when not shuffling.

    The compiled and fused engines both use it, so a fused member sees exactly the
    batches of the compiled run with the same seed.
    """
    if not shuffle:
        return np.tile(np.arange(n), (epochs, 1))
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(epochs)])


def outcome(history: History, epochs: int) -> tuple[str, int | None]:
    """``("completed", None)``, ``("diverged", epoch)`` with the first epoch whose loss
    is not finite (1-based), or ``("interrupted", None)`` for a short, finite history."""
    losses = history.get("loss", [])
    bad = first_non_finite(losses)
    if bad is not None:
        return "diverged", bad + 1
    return ("completed" if len(losses) == epochs else "interrupted"), None


def truncate(history: History, epochs: int) -> History:
    return {k: v[:epochs] for k, v in history.items()}


def first_non_finite(values) -> int | None:
    """The index of the first NaN or infinite value, or None."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(values, dtype=float)))
    return int(bad[0]) if len(bad) else None


def chunk_stops(epochs: int) -> list[int]:
    """The epochs after which training comes back to Python: about ten, the last one
    included. Progress is shown and weights are snapshot there."""
    chunk = max(1, math.ceil(epochs / 10))
    return [min(epochs, start + chunk) for start in range(0, epochs, chunk)]


def train_in_chunks(run, epochs: int, after_chunk) -> int:
    """Train in about ten graph calls: ``run(start, stop)`` trains epochs [start, stop);
    ``after_chunk(start, stop)`` returns how many epochs stand when training must stop
    (divergence), else None. Ctrl-C or SIGTERM ends it too. Returns the epochs that stand.
    """
    done = 0
    try:
        for stop in chunk_stops(epochs):
            start = done
            run(start, stop)
            done = stop
            stand = after_chunk(start, stop)
            if stand is not None:
                return stand
    except KeyboardInterrupt:
        pass  # the epochs of finished chunks stand; the caller marks the run interrupted
    return done


class KerasEngine:
    """Plain ``model.fit``: the reference engine."""

    def fit(self, job: Job) -> History:
        import keras
        import tensorflow as tf

        from regexp.diagnostics import for_model

        model, data, trainer = job.model, job.data, job.cfg.trainer
        epochs = int(trainer.epochs)
        diag, current = for_model(job)
        current = tf.function(current)
        names = [*COLUMNS, *diag.names]
        recorded: History = {name: [] for name in names}
        progress = Epochs(trainer, epochs)
        stops = set(chunk_stops(epochs))
        job.snapshot(0, model.get_weights)

        def report(epoch: int, logs: dict) -> None:
            for name, value in {**logs, **current()}.items():
                if name in recorded:
                    recorded[name].append(float(value))
            if not np.isfinite(logs["loss"]):
                model.stop_training = True
            elif epoch + 1 in stops:
                job.snapshot(epoch + 1, model.get_weights)
            progress.update(epoch + 1, logs["loss"], logs["val_loss"], logs["val_accuracy"])

        try:
            model.fit(
                data.x_train,
                data.y_train,
                validation_data=(data.x_val, data.y_val),
                epochs=epochs,
                batch_size=int(trainer.batch_size),
                shuffle=bool(trainer.shuffle),
                verbose=0,
                callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=report)],
            )
        except KeyboardInterrupt:
            pass  # the epochs recorded so far stand; the caller marks the run interrupted
        progress.close()
        done = min(len(v) for v in recorded.values())
        return truncate(recorded, done)


class CompiledEngine:
    """Keras' ``train_step``/``test_step`` looped inside one ``tf.function``.

    Per epoch, as ``model.fit`` does: reset the metrics, one ``train_step`` per batch,
    read the train metrics; reset, one ``test_step`` per validation batch (batch size
    ``trainer.batch_size``), read the validation metrics. The epochs run in about ten
    graph calls, with a progress line after each.
    """

    def fit(self, job: Job) -> History:
        import tensorflow as tf

        model, data, trainer = job.model, job.data, job.cfg.trainer
        epochs, bs = int(trainer.epochs), int(trainer.batch_size)
        x, y = tf.constant(data.x_train), tf.constant(data.y_train)
        xv, yv = tf.constant(data.x_val), tf.constant(data.y_val)
        n, nv = len(data.x_train), len(data.x_val)
        order = tf.constant(batch_orders(n, epochs, job.seed, bool(trainer.shuffle)), tf.int32)

        from regexp.diagnostics import for_model

        model._symbolic_build(data_batch=(x[:bs], y[:bs]))  # what fit does before tracing
        diag, current = for_model(job)
        names = [*COLUMNS, *diag.names]
        buffers = {k: tf.Variable(tf.zeros([epochs]), trainable=False) for k in names}

        def metrics_into(prefix: str, epoch) -> None:
            result = model.get_metrics_result()
            for s in SERIES:
                buffers[prefix + s][epoch].assign(tf.cast(result[s], tf.float32))
            for m in model.metrics:
                m.reset_state()

        @tf.function
        def run(start, stop):
            for epoch in tf.range(start, stop):
                for m in model.metrics:
                    m.reset_state()
                perm = order[epoch]
                for b in tf.range((n + bs - 1) // bs):
                    idx = perm[b * bs : tf.minimum((b + 1) * bs, n)]
                    model.train_step((tf.gather(x, idx), tf.gather(y, idx)))
                metrics_into("", epoch)
                for name, value in current().items():
                    buffers[name][epoch].assign(value)
                for b in tf.range((nv + bs - 1) // bs):
                    model.test_step((xv[b * bs : (b + 1) * bs], yv[b * bs : (b + 1) * bs]))
                metrics_into("val_", epoch)

        progress = Epochs(trainer, epochs)
        job.snapshot(0, model.get_weights)

        def after_chunk(start: int, stop: int) -> int | None:
            bad = first_non_finite(buffers["loss"][start:stop].numpy())
            if bad is not None:
                return start + bad + 1
            job.snapshot(stop, model.get_weights)
            last = {k: float(buffers[k][stop - 1]) for k in SHOWN}
            progress.update(stop, last["loss"], last["val_loss"], last["val_accuracy"])
            return None

        done = train_in_chunks(
            lambda a, b: run(tf.constant(a), tf.constant(b)), epochs, after_chunk
        )
        progress.close()
        return {k: [float(v) for v in buffers[k].numpy()[:done]] for k in names}


class FusedEngine:
    """One run through the fused engine (a group of one); sweeps fuse many (``regexp.fused``)."""

    def fit(self, job: Job) -> History:
        from regexp.fused import fit_members

        return fit_members([job])[0]


ENGINES: dict[str, type] = {"compiled": CompiledEngine, "keras": KerasEngine, "fused": FusedEngine}
