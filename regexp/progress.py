"""Live progress: one line on the terminal, rewritten in place.

For a run: ``epoch 120/200  loss 0.4123  val_loss 0.4511  ETA 0:00:03``; in a sweep, led
by ``jobs 10/50 done, 10 running |``. Shown only when standard error is a terminal and
``trainer.quiet`` is false; otherwise, and always in the run's log file, progress is a
log line every tenth of the epochs, with the task's primary metric too
(``val_accuracy 0.8123``, ``val_r2 0.4012``).
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from collections.abc import Mapping

log = logging.getLogger("regexp.engines")


class _Line:
    """The terminal's one progress line (there is one terminal)."""

    def __init__(self) -> None:
        self.shown = False

    def write(self, text: str) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        sys.stderr.write("\r" + text[:width].ljust(width))
        sys.stderr.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False


LINE = _Line()


def live(trainer) -> bool:
    return not trainer.get("quiet", False) and sys.stderr.isatty()


class Epochs:
    """Progress of one training (a run, or a fused group of ``members``); ``lead`` starts
    the line (a sweep's ``jobs 10/50 done, 10 running | ``)."""

    def __init__(self, trainer, epochs: int, members: int = 1, lead: str = ""):
        self.live, self.epochs, self.members = live(trainer), epochs, members
        self.lead = lead
        self.start = time.perf_counter()

    def update(self, epoch: int, numbers: Mapping[str, float]) -> None:
        """After ``epoch`` epochs (1-based) with these (mean, for a group) numbers:
        ``loss``, ``val_loss`` and the task's primary metric (``val_accuracy``, ``val_r2``)."""
        loss, val_loss = numbers["loss"], numbers["val_loss"]
        who = f"  ({self.members} runs)" if self.members > 1 else ""
        if self.live:
            spent = time.perf_counter() - self.start
            left = spent / epoch * (self.epochs - epoch)
            LINE.write(
                f"{self.lead}epoch {epoch}/{self.epochs}  loss {loss:.4f}  "
                f"val_loss {val_loss:.4f}  ETA {_clock(left)}"
            )
            if epoch == self.epochs:
                LINE.end()
            return
        every = max(1, math.ceil(self.epochs / 10))
        if epoch % every == 0 or epoch == self.epochs:
            shown = "  ".join(f"{name} {float(value):.4f}" for name, value in numbers.items())
            log.info("epoch %d/%d  %s%s", epoch, self.epochs, shown, who)

    def close(self) -> None:
        if self.live:
            LINE.end()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
