"""What every engine shares: the prepared ``Job``, the history it returns, the batch
order, training in chunks, and how a history ends (completed, diverged, interrupted).

An engine trains a list of jobs (one, or a fused group) and returns one history per
job: each per-epoch series (``loss``, ``data_loss``, ``accuracy``, their ``val_`` twins,
and the diagnostics) as a list with one float per epoch. ``loss`` includes the
penalties; ``data_loss`` does not.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

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
