"""What every engine shares: the prepared ``Job``, the history it returns, the batch
orders, training in chunks (with a chunk's history buffers), early stopping in the graph
(``Stopping``), and how a history ends (completed, diverged, interrupted).

An engine trains a list of jobs (one, or a fused group) and returns one history per
job: each per-epoch series of its task (``loss``, ``data_loss`` and ``accuracy``, or
``mae`` and ``r2`` for regression: ``Job.kind.series``), their ``val_`` twins, and the
diagnostics, as a list with one float per epoch. ``loss`` includes the penalties and
label smoothing; ``data_loss`` does not.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import gc
import math
import numbers
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from regexp import tasks
from regexp.config import ORDER_BUDGET, EarlyStopping

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from regexp.data import Dataset
    from regexp.plan import LayerPlan

History = dict[str, list[float]]


@dataclass
class Job:
    """One configuration made ready to train: validated, data loaded, Keras model built
    (initial weights drawn under ``seed``) and compiled."""

    cfg: DictConfig
    plans: list[LayerPlan]
    data: Dataset
    network: Any  # its model: a regexp.model.Network, maybe shared with fused members
    loss_penalties: list
    seed: int
    # a fused member's final weights (model.get_weights() order), which the fused engine
    # leaves here rather than in a model its group may share; None: those in its model
    weights: list[np.ndarray] | None = None
    # (epoch, weights as model.get_weights() orders them): the initial weights and those
    # after every chunk of epochs, kept only for TensorBoard's histograms
    snapshots: list[tuple[int, list[np.ndarray]]] = field(default_factory=list)
    # early stopping (1-based epochs), set by the engine: the epoch after which the rule
    # stopped training (None: it ran every epoch), and the epoch whose monitored value was
    # best by the rule (None: no early stopping)
    stopped_epoch: int | None = None
    best_epoch: int | None = None
    # early stopping: the weights after ``best_epoch`` (model.get_weights() order), kept by
    # the engine whether or not ``restore_best`` put them back in the model; None without
    best_weights: list[np.ndarray] | None = None

    @property
    def model(self) -> Any:
        """Its Keras model, holding its penalties and its weights (the final ones once
        trained), which a ``Network`` shared by fused members puts in when it is used."""
        return self.network.holding(self)

    def keep_weights(self, weights: list[np.ndarray]) -> None:
        """Its final weights, put in its model when it is next used (``model``)."""
        self.weights = weights
        self.network.release(self)

    @property
    def task(self) -> tasks.Task:
        """What its data asks: the output layer, loss and metrics (``regexp.tasks``)."""
        return tasks.of(self.data)

    @property
    def kind(self) -> tasks.Kind:
        """What its history records (``kind.series``, ``kind.columns``) and shows."""
        return self.task.kind

    @property
    def wants_snapshots(self) -> bool:
        return bool(self.cfg.trainer.get("tensorboard"))

    def snapshot(self, epoch: int, weights) -> None:
        """Keep ``weights()`` as the weights after ``epoch``, if TensorBoard wants them."""
        if self.wants_snapshots:
            self.snapshots.append((epoch, weights()))


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C or SIGTERM in the block takes effect after it (as KeyboardInterrupt): while
    trained runs are written, after the last one (a trained run is never lost to an
    interrupt); while an engine traces its graph, after the trace (TensorFlow's tracing
    calls back into Python from C++, and an interrupt raised there came out as a
    ``SystemError``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum))
             for s in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise KeyboardInterrupt


class BatchOrders:
    """The sample order of each epoch in turn: a fresh permutation per epoch from one
    ``numpy.random.default_rng(seed)`` stream, or 0..n-1 when not shuffling.

    The compiled and fused engines both use it, so a fused member sees exactly the
    batches of the compiled run with the same seed. ``take`` hands out the next epochs'
    orders as each chunk of training needs them, so they never occupy more than a chunk's
    memory; how the epochs are cut into chunks does not change the orders.
    """

    def __init__(self, n: int, seed: int, shuffle: bool):
        self.n = n
        self.rng = np.random.default_rng(seed) if shuffle else None

    def take(self, count: int) -> np.ndarray:
        """The orders of the next ``count`` epochs, int32 [count, n]."""
        if self.rng is None:
            return np.tile(np.arange(self.n, dtype=np.int32), (count, 1))
        orders = np.empty((count, self.n), np.int32)
        for epoch in range(count):
            orders[epoch] = self.rng.permutation(self.n)
        return orders


def outcome(
    history: History, epochs: int, stopped_epoch: int | None = None
) -> tuple[str, int | None]:
    """``("completed", None)``, ``("diverged", epoch)`` with the first epoch whose loss
    is not finite (1-based), or ``("interrupted", None)`` for a short, finite history.

    A history is complete when it has every epoch, or ends at ``stopped_epoch``, where
    early stopping ended training (``Job.stopped_epoch``)."""
    losses = history.get("loss", [])
    bad = first_non_finite(losses)
    if bad is not None:
        return "diverged", bad + 1
    complete = len(losses) in (epochs, stopped_epoch)
    return ("completed" if complete else "interrupted"), None


def truncate(history: History, epochs: int) -> History:
    return {k: v[:epochs] for k, v in history.items()}


def first_non_finite(values) -> int | None:
    """The index of the first NaN or infinite value, or None."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(values, dtype=float)))
    return int(bad[0]) if len(bad) else None


# ORDER_BUDGET: the batch-order elements (int32: 64 MiB) one chunk may hold; with the
# history buffers, which hold one chunk too, it bounds what training allocates whatever
# trainer.epochs is (the memory estimate counts it).


class ChunkStops:
    """The epochs after which training comes back to Python, in order, the last included.

    Normally one per tenth of the epochs: the *milestones*, where progress is logged and
    weights are snapshot. A tenth whose batch orders (``per_epoch`` elements an epoch: the
    training samples times the members) would exceed ``ORDER_BUDGET`` is cut into equal
    chunks of at most ``size`` epochs, so that memory follows the chunk, not the epochs;
    ordinary runs never need it. The stops are computed, never listed: iterating, ``in``
    and ``len`` cost the same for ``trainer.epochs=10**9`` as for 10.
    """

    def __init__(self, epochs: int, per_epoch: int):
        self.epochs = epochs
        self.tenth = max(1, math.ceil(epochs / 10))
        cap = max(1, ORDER_BUDGET // max(1, per_epoch))
        self.size = math.ceil(self.tenth / math.ceil(self.tenth / cap))  # at most cap
        self.longest = min(self.size, epochs)  # the rows a chunk's buffers need

    def __iter__(self) -> Iterator[int]:
        for start in range(0, self.epochs, self.tenth):
            end = min(self.epochs, start + self.tenth)
            yield from range(start + self.size, end, self.size)
            yield end

    def __len__(self) -> int:
        tenths, rest = divmod(self.epochs, self.tenth)
        return tenths * math.ceil(self.tenth / self.size) + math.ceil(rest / self.size)

    def __contains__(self, epoch: object) -> bool:
        return self._within(epoch) and (epoch == self.epochs or epoch % self.tenth % self.size == 0)

    def milestone(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based) ends a tenth of the epochs, or is the last: a stop
        however the tenths are cut, so that progress and snapshots keep their epochs."""
        return self._within(epoch) and (epoch == self.epochs or epoch % self.tenth == 0)

    def _within(self, epoch: object) -> bool:
        return isinstance(epoch, numbers.Integral) and 0 < epoch <= self.epochs


class ChunkHistory:
    """The per-epoch series of one training, filled a chunk at a time.

    The graph writes each epoch of a chunk into a row of ``variables`` (one per series,
    ``rows`` long: the longest chunk; ``shape`` is one epoch's value: () for one model,
    (K,) for a fused group). ``keep`` then copies the chunk out, so the graph's buffers
    never grow with ``trainer.epochs`` and the history grows only with epochs trained.
    """

    def __init__(self, names: list[str], rows: int, shape: tuple[int, ...] = ()):
        import tensorflow as tf

        self.variables = {
            name: tf.Variable(tf.zeros([rows, *shape]), trainable=False) for name in names
        }
        empty = {name: np.zeros([0, *shape], np.float32) for name in names}
        self.chunks: list[dict[str, np.ndarray]] = [empty]

    @property
    def last(self) -> dict[str, np.ndarray]:
        """The series of the chunk kept last, one row per epoch."""
        return self.chunks[-1]

    def keep(self, count: int) -> None:
        """Copy out the first ``count`` rows: the epochs of the chunk just trained."""
        chunk = {name: v[:count].numpy() for name, v in self.variables.items()}
        self.chunks.append(chunk)  # one append: an interrupt keeps every series or none

    def values(self, epochs: int) -> dict[str, np.ndarray]:
        """Each series over the first ``epochs`` epochs kept."""
        return {
            name: np.concatenate([chunk[name] for chunk in self.chunks])[:epochs]
            for name in self.variables
        }


class Stopping:
    """Keras' ``EarlyStopping`` rule, evaluated inside the graph after every epoch, for
    one run (``members=None``: scalar state) or for each member of a fused group ([K]
    state, each member with its own patience and min_delta).

    The rule of ``keras/src/callbacks/early_stopping.py`` (Keras 3.14) with its defaults
    ``baseline=None`` and ``start_from_epoch=0``, after epoch ``e`` (0-based) whose
    monitored value is ``v``:

    - ``wait += 1``;
    - ``v`` improves on ``best`` if there is no best yet (so epoch 0 always does), or if
      ``v + min_delta < best`` (mode min) or ``v - min_delta > best`` (mode max), the
      sum taken in float64 and rounded to float32 before comparing, as Keras compares
      (its logs are Python floats, ``keras.ops`` makes float32 tensors of them);
    - if it improves: ``best = v``, ``best_epoch = e``, the best weights are the current
      weights, ``wait = 0``;
    - else, if ``wait >= patience`` and ``e > 0``: training stops after epoch ``e``.

    So patience 0 and 1 both stop at the first epoch that does not improve. Whether it
    stopped or ran every epoch, ``restore_best`` ends with the best weights (Keras'
    ``on_train_end``). The best weights are kept either way (``best_values``: a run saves
    them as ``model_best.keras``); keeping them never touches the weights trained. A
    member that has stopped keeps its state.
    """

    def __init__(self, specs: list[EarlyStopping], weights: list, members: int | None = None):
        """``specs``: each member's settings (one for a single run), which agree on
        ``monitor`` and ``restore_best``; ``weights``: the variables to keep the best of,
        in ``model.get_weights()`` order (a fused group's have the member axis first)."""
        import tensorflow as tf

        first = specs[0]
        assert all((s.monitor, s.restore_best) == (first.monitor, first.restore_best)
                   for s in specs)  # fmt: skip
        self.monitor, self.restore_best = first.monitor, first.restore_best
        self.less, self.members = first.mode == "min", members
        shape = [] if members is None else [members]
        sign = -1.0 if self.less else 1.0  # Keras' signed min_delta: negative for min

        def per_member(values: list, dtype):
            return tf.constant(values[0] if members is None else values, dtype)

        self.patience = per_member([s.patience for s in specs], tf.int32)
        self.delta = per_member([sign * s.min_delta for s in specs], tf.float64)
        self.best = tf.Variable(tf.zeros(shape), trainable=False)
        self.seen = tf.Variable(tf.zeros(shape, tf.bool), trainable=False)  # has a best
        self.wait = tf.Variable(tf.zeros(shape, tf.int32), trainable=False)
        self.epoch = tf.Variable(0, trainable=False)  # the epochs updated so far: the next one
        self.best_epoch = tf.Variable(tf.zeros(shape, tf.int32), trainable=False)
        self.stopped_epoch = tf.Variable(tf.fill(shape, -1), trainable=False)  # -1: not
        self.weights = list(weights)  # those to keep the best of
        self.best_weights = [tf.Variable(tf.convert_to_tensor(w), trainable=False)
                             for w in self.weights]  # fmt: skip

    def per_member(self, mask, like):
        """A member mask [K] shaped to select along the member axis of ``like``."""
        import tensorflow as tf

        if self.members is None:
            return mask
        return tf.reshape(mask, [-1] + [1] * (len(like.shape) - 1))

    def active(self):
        """Whether each member (the run) is still training: a bool tensor."""
        return self.stopped_epoch < 0

    def update(self, value) -> None:
        """Apply the rule after the next epoch, whose monitored value is ``value``
        (float32: a scalar, or [K])."""
        import tensorflow as tf

        epoch = self.epoch.read_value()
        self.epoch.assign_add(1)
        active = self.active()
        shifted = tf.cast(tf.cast(value, tf.float64) - self.delta, tf.float32)
        better = tf.less(shifted, self.best) if self.less else tf.greater(shifted, self.best)
        improved = active & (better | ~self.seen)
        wait = tf.where(active, self.wait + 1, self.wait)
        stop = active & ~improved & (wait >= self.patience) & (epoch > 0)
        for best, w in zip(self.best_weights, self.weights, strict=True):
            best.assign(tf.where(self.per_member(improved, best), tf.convert_to_tensor(w), best))
        self.best.assign(tf.where(improved, value, self.best))
        self.seen.assign(self.seen | improved)
        self.wait.assign(tf.where(improved, tf.zeros_like(wait), wait))
        self.best_epoch.assign(tf.where(improved, epoch, self.best_epoch))
        self.stopped_epoch.assign(tf.where(stop, epoch, self.stopped_epoch))

    def stopped(self) -> bool:
        """Whether the rule has stopped the run, or every member of the group."""
        return not self.active().numpy().any()

    def result(self, member: int | None = None) -> tuple[int | None, int | None]:
        """(stopped epoch, best epoch), 1-based, of the run or of ``member``; the stopped
        epoch is None when the rule never stopped it."""
        stopped, best = self.stopped_epoch.numpy(), self.best_epoch.numpy()
        if member is not None:
            stopped, best = stopped[member], best[member]
        return (None if stopped < 0 else int(stopped) + 1), int(best) + 1

    def best_values(self) -> list[np.ndarray]:
        """The best weights kept, in the order of ``weights``, as NumPy copies."""
        return [b.numpy() for b in self.best_weights]


_paused = 0  # collector_paused blocks entered and not left
_last_pass = 0.0  # seconds the last pass aside took, in this collector_paused block


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector kept out of the block: no automatic pass in it, one pass
    instead while each engine trains (``train_in_chunks``), as long as a pass fits beside
    a chunk of training; once one does not (a sweep that keeps thousands of configs),
    the automatic collector resumes for the rest of the block. A full pass walks every
    object a sweep keeps (its configs, models and graphs): in a 50-job sweep, two or
    three passes of 0.1 to 0.4 s landed in its composing, tracing and writing."""
    global _paused, _last_pass
    enabled = gc.isenabled()
    if not _paused:
        _last_pass = 0.0
    gc.disable()
    _paused += 1
    try:
        yield
    finally:
        _paused -= 1
        if not _paused:
            (gc.enable if enabled else gc.disable)()


COLLECT_AFTER = 0.1  # seconds: a first chunk shorter than this hides no pass
PRESSURE = 200_000  # objects made since the last pass: collect after a short training


def collect_when_pressed() -> None:
    """A pass of the cycle collector if more than ``PRESSURE`` objects were made since
    the last: what bounds the memory of garbage while automatic passes are off."""
    if gc.get_count()[0] > PRESSURE:
        gc.collect()


def _collect_aside() -> threading.Thread:
    """A collector's pass in a thread, once the graph runs (TensorFlow runs it in C++,
    without the interpreter's lock), so that it costs the training little: the main
    thread waits only if the chunk ends before the pass does."""

    def collect() -> None:
        global _last_pass
        time.sleep(0.02)  # the chunk's graph call has let go of the lock by then
        start = time.perf_counter()
        gc.collect()
        _last_pass = time.perf_counter() - start

    thread = threading.Thread(target=collect, name="regexp-collector", daemon=True)
    thread.start()
    return thread


def train_in_chunks(run, stops: ChunkStops, after_chunk) -> int:
    """Train a chunk per stop (about ten graph calls): ``run(start, stop)`` trains epochs
    [start, stop); ``after_chunk(start, stop)`` returns how many epochs stand when training
    must stop (divergence, early stopping), else None. Ctrl-C or SIGTERM ends it too.
    Returns the epochs that stand.

    In a ``collector_paused`` block with the automatic collector off, the collector's
    pass runs in a thread during the second chunk (its graph call runs without the
    interpreter's lock) when the first chunk took ``COLLECT_AFTER`` or more and the last
    such pass at most twice as long; when that pass took longer, the automatic collector
    resumes. Without a pass aside, one is run after the training if ``PRESSURE`` says so.
    """
    done = 0
    collecting = None  # in a collector_paused block: its pass, during the second chunk
    first = 0.0  # the first chunk's seconds
    try:
        for chunk, stop in enumerate(stops):
            start = done
            began = time.perf_counter()
            if chunk == 1 and _paused and not gc.isenabled() and first >= COLLECT_AFTER:
                if _last_pass <= 2 * first:
                    collecting = _collect_aside()
                else:  # passes no longer fit beside the training
                    gc.enable()
            run(start, stop)
            if chunk == 0:
                first = time.perf_counter() - began
            done = stop
            stand = after_chunk(start, stop)
            if stand is not None:
                return stand
    except KeyboardInterrupt:
        pass  # the epochs of finished chunks stand; the caller marks the run interrupted
    finally:
        if collecting is not None:
            collecting.join()
        elif _paused and not gc.isenabled():
            collect_when_pressed()
    return done
