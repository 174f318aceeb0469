"""The fused engine: many runs of one network trained at once, as one vectorized model.

The members of a group share the dataset and the network's structure. Each keeps what
makes it a separate run:

- its split of the data (``dataset.split_seed``), of the same sizes as the others';
- its initial weights: those its own Keras model drew under its seed;
- its batch order: ``BatchOrders(n, seed, shuffle)``, as the compiled engine uses;
- its learning rate and penalty strengths (``reg.lam`` or any strength in the recipe),
  and its label smoothing (``reg.smoothing``).

Every weight gets a leading member axis ([K, in, out]); a Dense layer becomes one batched
matmul; each member's loss is its own data loss plus its own penalties, and the sum over
members is differentiated, so members never mix. The optimizer is Keras' update formula
applied to the stacked variables with a per-member learning rate
(``optimizers.Stacked``). Per epoch the same
numbers as ``model.fit`` are recorded for each member: the batch-size-weighted mean of
the total loss, the per-sample mean data loss and the task's metrics (accuracy; MAE, and
R² accumulated over the epoch as ``keras.metrics.R2Score`` does: ``regexp.tasks``), and
the same on validation batches of ``trainer.batch_size``.

Built-in penalties use their vectorized formula (``Kind.stacked``); a ``_target_``
regularizer is applied to each member's slice in turn, which is exact but slower.

Early stopping (``trainer.early_stopping``) keeps Keras' rule per member
(``training.Stopping``: members may differ in patience and min_delta). A member that
stops is frozen: after every training step its variables are put back as they were, so
neither its gradient nor its optimizer's momentum moves it again; its history ends at its
own epoch. The group ends when every member has stopped, or after the last epoch.

Layer regularizers and constraints (``regexp.layers``) keep per-member values too: each
member's dropout and noise are drawn from its own seed at the group's step count, the
numbers its own compiled run draws; batch normalization keeps each member's moving
statistics; each member's constrained kernels are projected after every update.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from regexp.config import early_stopping
from regexp.diagnostics import Diagnostics
from regexp.optimizers import OPTIMIZERS, Stacked
from regexp.progress import Epochs
from regexp.tasks import smoothing_of
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
)


def member_variables(jobs: Sequence[Job]) -> tuple[list, list[dict], list]:
    """Every weight of the members' models, stacked on a member axis: ``variables`` in the
    order of ``model.get_weights()`` (each member starts from its own model's initial
    weights), the same as ``network.Weights`` (one mapping per Dense layer: kernel, bias,
    batch normalization's gamma, beta and moving statistics), and the trainable ones."""
    import tensorflow as tf

    from regexp.model import layer_weights

    first = jobs[0].model
    initial = [j.model.get_weights() for j in jobs]
    for job, values in zip(jobs, initial, strict=True):
        job.snapshot(0, lambda values=values: values)
    variables = [
        tf.Variable(np.stack(values), trainable=w.trainable)
        for values, w in zip(zip(*initial, strict=True), first.weights, strict=True)
    ]
    weights = [{name: variables[i] for name, i in slots.items()}
               for slots in layer_weights(first, jobs[0].plans)]  # fmt: skip
    trainable = [v for v, w in zip(variables, first.weights, strict=True) if w.trainable]
    return variables, weights, trainable


def fit_members(jobs: Sequence[Job], lead: str = "") -> list[History]:
    """Train jobs of one group together; leave each job's final weights in
    ``job.weights`` (``job.model`` holds them).

    The jobs must agree on everything but what ``keys.GROUP`` leaves out (the pipeline
    groups them so)."""
    import tensorflow as tf

    first = jobs[0]
    data, trainer = first.data, first.cfg.trainer
    epochs, bs = int(trainer.epochs), int(trainer.batch_size)
    n, nv = len(data.x_train), len(data.x_val)

    def stacked(name: str):  # each member's own split: [K, n, features]
        return tf.constant(np.stack([getattr(j.data, name) for j in jobs]))

    x, y, xv, yv = (stacked(name) for name in ("x_train", "y_train", "x_val", "y_val"))
    k = len(jobs)
    stops = ChunkStops(epochs, n * k)
    orders = [BatchOrders(n, j.seed, bool(trainer.shuffle)) for j in jobs]

    variables, weights, trainable = member_variables(jobs)
    lr = tf.constant([float(j.cfg.optimizer.lr) for j in jobs], tf.float32)
    decays = [OPTIMIZERS[j.cfg.optimizer.name].hyper(j.cfg.optimizer)["weight_decay"] for j in jobs]
    decay = tf.constant(decays, tf.float32) if any(decays) else None
    optimizer = Stacked(first.cfg.optimizer, lr, trainable, decay)
    seeds = [j.seed for j in jobs]  # also the stacked network trained here:
    diag = Diagnostics([j.plans for j in jobs], xv, seeds, (n, bs))
    task, kind = first.task, first.kind
    outputs = int(y.shape[-1])
    smooth = task.smoother([smoothing_of(j.cfg) for j in jobs], outputs)  # None: none smooths
    sum_names = list(task.sum_shapes(outputs))

    def batch_numbers(xb, yb, training=False):
        """Per member: the batch's total loss (with each member's smoothing), and the
        task's sums over the batch (``Task.stacked_sums``: data loss, hits, ...)."""
        out, activity = diag.forward(xb, weights, training, optimizer.iterations)
        data_loss = task.stacked_loss(yb, out)  # on the true targets
        fitted = data_loss if smooth is None else task.stacked_loss(smooth(yb), out)
        total = tf.reduce_mean(fitted, axis=1) + diag.weight_penalty(weights) + activity
        return total, task.stacked_sums(yb, out, data_loss)

    names = [*kind.columns, *diag.names]
    history = ChunkHistory(names, stops.longest, (k,))
    buffers = history.variables
    rule = _stopping(jobs, variables)

    def epoch_body(order, epoch):
        """Epoch ``epoch`` of a chunk whose orders are ``order`` [epochs, K, n]."""
        zeros = tuple(tf.zeros([k, *shape]) for shape in task.sum_shapes(outputs).values())

        def train_batch(b, loss, sums):
            idx = order[epoch][:, b * bs : tf.minimum((b + 1) * bs, n)]
            xb, yb = tf.gather(x, idx, batch_dims=1), tf.gather(y, idx, batch_dims=1)
            size = tf.cast(tf.shape(idx)[1], tf.float32)
            with tf.GradientTape() as tape:
                total, batch = batch_numbers(xb, yb, training=True)
                objective = tf.reduce_sum(total)
            optimizer.apply(tape.gradient(objective, trainable), trainable)
            diag.constrain(weights)  # as Keras: after the update
            return (
                b + 1,
                loss + total * size,
                tuple(a + s for a, s in zip(sums, batch, strict=True)),
            )

        def val_batch(b, loss, sums):
            xb, yb = xv[:, b * bs : (b + 1) * bs], yv[:, b * bs : (b + 1) * bs]
            size = tf.cast(tf.shape(xb)[1], tf.float32)
            total, batch = batch_numbers(xb, yb)
            return (
                b + 1,
                loss + total * size,
                tuple(a + s for a, s in zip(sums, batch, strict=True)),
            )

        step = train_batch if rule is None else _frozen_when_stopped(train_batch, rule, variables)
        for prefix, body, count, steps in (
            ("", step, n, (n + bs - 1) // bs),
            ("val_", val_batch, nv, (nv + bs - 1) // bs),
        ):
            start = (tf.constant(0), tf.zeros([k]), zeros)
            _, loss, sums = tf.while_loop(lambda b, *_, s=steps: b < s, body, start)
            sums = dict(zip(sum_names, sums, strict=True))
            series = {"loss": loss / count, **task.stacked_series(sums, count)}
            for name in kind.series:
                buffers[prefix + name][epoch].assign(series[name])
        for name, value in diag(weights, optimizer.iterations).items():
            buffers[name][epoch].assign(value)
        if rule is not None:
            rule.update(buffers[rule.monitor][epoch])
        return (epoch + 1,)

    # one trace for every chunk, the shorter last one too
    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, k, n], tf.int32)])
    def run(order):
        """Train one epoch per row of ``order`` (the members' sample orders)."""
        count = tf.shape(order)[0]

        def more(e):  # epochs left in the chunk, and a member still training
            return e < count if rule is None else (e < count) & tf.reduce_any(rule.active())

        tf.while_loop(more, lambda e: epoch_body(order, e), (tf.constant(0),))
        return tf.constant(0)

    with phase("trace"), interrupts_deferred():  # the one trace, before the first chunk
        run.get_concrete_function()

    def train(start: int, stop: int) -> None:
        run(np.stack([o.take(stop - start) for o in orders], axis=1))  # [epochs, K, n]
        history.keep(_epochs_run(rule, start, stop))

    progress = Epochs(trainer, epochs, members=k, lead=lead)

    def after_chunk(start: int, stop: int) -> int | None:
        end = start + len(history.last["loss"])  # stop, or the epoch the last member stopped
        last = {s: history.last[s][-1] for s in kind.shown}
        finite = np.isfinite(last["loss"])
        if not finite.any():
            return end  # every member has diverged
        progress.update(end, {s: float(v[finite].mean()) for s, v in last.items()})
        # the same for every member: trainer is in the group key
        if first.wants_snapshots and stops.milestone(end):
            now = [v.numpy() for v in variables]
            for m in np.flatnonzero(finite):
                jobs[m].snapshot(end, lambda m=m: [w[m] for w in now])
        return end if rule is not None and rule.stopped() else None

    done = train_in_chunks(train, stops, after_chunk)
    progress.close()

    best = None if rule is None else rule.best_values()
    restore = rule is not None and rule.restore_best  # as Keras' on_train_end: stopped or not
    final = best if restore else [v.numpy() for v in variables]
    for m, job in enumerate(jobs):  # its model may be shared: put in when it is used
        job.keep_weights([w[m] for w in final])
    values = history.values(done)
    histories = []
    for m, job in enumerate(jobs):
        length = done
        if rule is not None:
            job.stopped_epoch, job.best_epoch = rule.result(m)
            job.best_weights = [w[m] for w in best]
            length = min(done, job.stopped_epoch or done)  # a stopped member ends there
        bad = first_non_finite(values["loss"][:length, m])
        length = length if bad is None else bad + 1  # a diverged member stops at that epoch
        histories.append({name: [float(v) for v in values[name][:length, m]] for name in names})
    return histories


def _stopping(jobs: Sequence[Job], variables: list) -> Stopping | None:
    """Each member's early stopping, in one rule over the group; None without it."""
    specs = [early_stopping(j.cfg.trainer) for j in jobs]
    if specs[0] is None:
        return None
    return Stopping(specs, variables, members=len(jobs))


def _frozen_when_stopped(step, rule: Stopping, variables: list):
    """``step`` (one training batch), after which the members that have stopped get their
    variables back as they were before it: every variable, whatever it holds, since each
    has the member axis first. The optimizer's own state of a stopped member may still
    move, but never reaches its weights again."""
    import tensorflow as tf

    def frozen(*args):
        before = [v.read_value() for v in variables]
        out = step(*args)
        active = rule.active()
        for v, old in zip(variables, before, strict=True):
            v.assign(tf.where(rule.per_member(active, v), v, old))
        return out

    return frozen


def _epochs_run(rule: Stopping | None, start: int, stop: int) -> int:
    """The epochs of the chunk [start, stop) the group trained: all of them, or up to the
    epoch its last member stopped."""
    if rule is None or not rule.stopped():
        return stop - start
    return int(rule.stopped_epoch.numpy().max()) + 1 - start
