"""What every engine shares: the prepared ``Job``, the history it returns, the batch
orders, training in chunks (with a chunk's history buffers), and how a history ends
(completed, diverged, interrupted).

An engine trains a list of jobs (one, or a fused group) and returns one history per
job: each per-epoch series (``loss``, ``data_loss``, ``accuracy``, their ``val_`` twins,
and the diagnostics) as a list with one float per epoch. ``loss`` includes the
penalties; ``data_loss`` does not.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from regexp.config import ORDER_BUDGET

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from regexp.data import Dataset
    from regexp.plan import LayerPlan

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


def train_in_chunks(run, stops: ChunkStops, after_chunk) -> int:
    """Train a chunk per stop (about ten graph calls): ``run(start, stop)`` trains epochs
    [start, stop); ``after_chunk(start, stop)`` returns how many epochs stand when training
    must stop (divergence), else None. Ctrl-C or SIGTERM ends it too. Returns the epochs
    that stand.
    """
    done = 0
    try:
        for stop in stops:
            start = done
            run(start, stop)
            done = stop
            stand = after_chunk(start, stop)
            if stand is not None:
                return stand
    except KeyboardInterrupt:
        pass  # the epochs of finished chunks stand; the caller marks the run interrupted
    return done
