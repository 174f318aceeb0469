"""Training engines: how prepared jobs are trained.

An engine is a function ``fit(jobs, lead="") -> histories``: one history per job (see
``regexp.training``); ``lead`` starts the live progress line (a sweep's count of jobs).
Everything after training (final metrics, files, plots) is shared, so every engine
writes the same run folder.

- ``keras``: plain ``model.fit``, the reference. Keras shuffles with its own generator.
- ``compiled``: Keras' own ``train_step`` and ``test_step`` on the same model, looped
  over batches and epochs inside one ``tf.function``: the same arithmetic without
  ``fit``'s per-step and per-epoch Python overhead. Batches follow ``BatchOrders``.
- ``fused`` (``regexp.fused``): many runs at once as one vectorized model.

``keras`` and ``compiled`` train one job at a time; ``fused`` a group of any size.
Every engine stops early, keeping the history so far, when the loss stops being finite
(the run diverged: ``training.outcome`` tells) or on Ctrl-C / SIGTERM (interrupted).
With ``trainer.early_stopping`` every engine applies Keras' ``EarlyStopping`` rule after
each epoch (``keras`` the callback itself; ``compiled`` and ``fused`` ``training.Stopping``
in the graph), records the stopped and best epochs and the best epoch's weights in the
``Job``, and ends with the best weights when ``restore_best``.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from regexp.config import ENGINE_CHOICES, early_stopping
from regexp.diagnostics import for_model
from regexp.fused import fit_members
from regexp.progress import Epochs
from regexp.timing import phase
from regexp.training import (
    BatchOrders,
    ChunkHistory,
    ChunkStops,
    History,
    Job,
    Stopping,
    first_non_finite,
    interrupts_deferred,
    train_in_chunks,
    truncate,
)


def fit_keras(jobs: Sequence[Job], lead: str = "") -> list[History]:
    """Plain ``model.fit``: the reference engine. One job."""
    import keras
    import tensorflow as tf

    (job,) = jobs
    model, data, trainer = job.model, job.data, job.cfg.trainer
    epochs = int(trainer.epochs)
    diag, current = for_model(job)
    current = tf.function(current)
    names = [*job.kind.columns, *diag.names]
    recorded: History = {name: [] for name in names}
    progress = Epochs(trainer, epochs, lead=lead)
    stops = ChunkStops(epochs, len(data.x_train))  # its milestones: every engine snapshots there
    job.snapshot(0, model.get_weights)

    def report(epoch: int, logs: dict) -> None:
        for name, value in {**logs, **current()}.items():
            if name in recorded:
                recorded[name].append(float(value))
        if not np.isfinite(logs["loss"]):
            model.stop_training = True
        elif stops.milestone(epoch + 1):
            job.snapshot(epoch + 1, model.get_weights)
        progress.update(epoch + 1, {k: logs[k] for k in job.kind.shown})

    callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=report)]
    spec = early_stopping(trainer)
    if spec is not None:
        rule = keras.callbacks.EarlyStopping(
            monitor=spec.monitor,
            patience=spec.patience,
            min_delta=spec.min_delta,
            mode=spec.mode,
            restore_best_weights=spec.restore_best,
        )
        callbacks.append(rule)

        def keep_best(epoch: int, logs: dict) -> None:  # after the rule has seen the epoch
            if rule.best_epoch == epoch:
                job.best_weights = model.get_weights()

        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=keep_best))
    try:
        model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            epochs=epochs,
            batch_size=int(trainer.batch_size),
            shuffle=bool(trainer.shuffle),
            verbose=0,
            callbacks=callbacks,
        )
    except KeyboardInterrupt:
        pass  # the epochs recorded so far stand; the caller marks the run interrupted
    else:
        if spec is not None:  # Keras' epochs are 0-based; it never stops after epoch 0
            job.stopped_epoch = rule.stopped_epoch + 1 if rule.stopped_epoch > 0 else None
            job.best_epoch = rule.best_epoch + 1
    progress.close()
    done = min(len(v) for v in recorded.values())
    return [truncate(recorded, done)]


def fit_compiled(jobs: Sequence[Job], lead: str = "") -> list[History]:
    """Keras' ``train_step``/``test_step`` looped inside one ``tf.function``. One job.

    Per epoch, as ``model.fit`` does: reset the metrics, one ``train_step`` per batch,
    read the train metrics; reset, one ``test_step`` per validation batch (batch size
    ``trainer.batch_size``), read the validation metrics. The epochs run in about ten
    graph calls (``ChunkStops``), with a progress line after each; each call is given its
    chunk's batch orders and fills a chunk's history buffers. With early stopping the
    rule runs in the graph after every epoch (``training.Stopping``), and a chunk ends
    at the epoch it stops.
    """
    import tensorflow as tf

    (job,) = jobs
    model, data, trainer = job.model, job.data, job.cfg.trainer
    epochs, bs = int(trainer.epochs), int(trainer.batch_size)
    x, y = tf.constant(data.x_train), tf.constant(data.y_train)
    xv, yv = tf.constant(data.x_val), tf.constant(data.y_val)
    n, nv = len(data.x_train), len(data.x_val)
    stops = ChunkStops(epochs, n)
    orders = BatchOrders(n, job.seed, bool(trainer.shuffle))

    model._symbolic_build(data_batch=(x[:bs], y[:bs]))  # what fit does before tracing
    diag, current = for_model(job)
    names = [*job.kind.columns, *diag.names]
    history = ChunkHistory(names, stops.longest)
    buffers = history.variables
    spec = early_stopping(trainer)
    rule = None if spec is None else Stopping([spec], model.weights)

    def metrics_into(prefix: str, epoch) -> None:
        result = model.get_metrics_result()
        for s in job.kind.series:
            buffers[prefix + s][epoch].assign(tf.cast(result[s], tf.float32))
        for m in model.metrics:
            m.reset_state()

    def loop(steps, body) -> None:
        """``body(b)`` for b in 0 .. steps - 1, in the graph, as autograph loops over a
        ``tf.range`` (with its iteration count as a hint)."""

        def step(b):
            body(b)
            return (b + 1,)

        tf.while_loop(lambda b: b < steps, step, (tf.constant(0),), maximum_iterations=steps)

    def epoch_body(order, epoch):
        for m in model.metrics:
            m.reset_state()
        perm = order[epoch]

        def train_batch(b):
            idx = perm[b * bs : tf.minimum((b + 1) * bs, n)]
            model.train_step((tf.gather(x, idx), tf.gather(y, idx)))

        def val_batch(b):
            model.test_step((xv[b * bs : (b + 1) * bs], yv[b * bs : (b + 1) * bs]))

        loop((n + bs - 1) // bs, train_batch)
        metrics_into("", epoch)
        for name, value in current().items():
            buffers[name][epoch].assign(value)
        loop((nv + bs - 1) // bs, val_batch)
        metrics_into("val_", epoch)
        if rule is not None:
            rule.update(buffers[rule.monitor][epoch])
        return (epoch + 1,)

    # one trace for every chunk, the shorter last one too; the loops written as while
    # loops (autograph converting this function took a third of the trace)
    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, n], tf.int32)])
    def run(order):
        """Train one epoch per row of ``order`` (its sample order); row i of the buffers
        holds the epoch's numbers. Early stopping ends the chunk after the epoch where it
        stops."""
        count = tf.shape(order)[0]

        def more(e):
            return e < count if rule is None else (e < count) & tf.reduce_any(rule.active())

        tf.while_loop(more, lambda e: epoch_body(order, e), (tf.constant(0),),
                      maximum_iterations=count)  # fmt: skip

    with phase("trace"), interrupts_deferred():  # the one trace, before the first chunk
        run.get_concrete_function()
    progress = Epochs(trainer, epochs, lead=lead)
    job.snapshot(0, model.get_weights)

    def trained(start: int, stop: int) -> int:
        """The epochs of the chunk [start, stop) that ran: all, or up to the stop."""
        stopped = None if rule is None else rule.result()[0]
        return stop - start if stopped is None else stopped - start

    def train(start: int, stop: int) -> None:
        run(orders.take(stop - start))
        history.keep(trained(start, stop))

    def after_chunk(start: int, stop: int) -> int | None:
        chunk = history.last
        bad = first_non_finite(chunk["loss"])
        if bad is not None:
            return start + bad + 1
        end = start + len(chunk["loss"])  # stop, or the epoch where early stopping ended it
        if stops.milestone(end):
            job.snapshot(end, model.get_weights)
        progress.update(end, {k: float(chunk[k][-1]) for k in job.kind.shown})
        return end if rule is not None and rule.stopped() else None

    done = train_in_chunks(train, stops, after_chunk)
    progress.close()
    if rule is not None:
        job.stopped_epoch, job.best_epoch = rule.result()
        job.best_weights = rule.best_values()
        if rule.restore_best:  # as Keras' on_train_end: stopped or not
            model.set_weights(job.best_weights)
    values = history.values(done)
    return [{k: [float(v) for v in values[k]] for k in names}]


# Every engine by its ``trainer.engine`` name (``config.ENGINE_CHOICES`` less ``auto``).
ENGINES: dict[str, Callable[..., list[History]]] = {
    "compiled": fit_compiled,
    "keras": fit_keras,
    "fused": fit_members,
}
SINGLE = ("compiled", "keras")  # engines that train one job at a time
assert set(ENGINES) == set(ENGINE_CHOICES) - {"auto"}
