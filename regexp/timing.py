"""Where a process's time goes, by phase: seconds summed per name.

The pipeline and the launchers wrap each step in ``phase(name)``; ``make bench`` reads
the sums (``SPENT``) to split a sweep's wall time, and ``regexp run`` writes them to the
file named by ``REGEXP_TIMING`` when that variable is set (the bench's single-run line).
A writer process (``regexp.writer``) sends its own sums back, merged here with
``add``. Timing never changes what is computed.

Phases: ``import`` (TensorFlow), ``compose`` (Hydra composes and the pipeline plans
and claims), ``prepare`` (data, models), ``trace`` (an engine's graph tracing),
``train``, ``evaluate`` (final metrics, activations, saved models: the steps that need
the trained model), ``write`` (files, ``.hydra/``, tracking), ``plot`` (figures), and
``wait`` (the launching process waiting for a writer).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ENV = "REGEXP_TIMING"
SPENT: defaultdict[str, float] = defaultdict(float)
_open: list[str] = []  # the phases running now, innermost last


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as ``name``; a nested phase's time counts for it alone."""
    start = time.perf_counter()
    _open.append(name)
    try:
        yield
    finally:
        _open.pop()
        seconds = time.perf_counter() - start
        SPENT[name] += seconds
        if _open:  # the enclosing phase does not count it twice
            SPENT[_open[-1]] -= seconds


def add(spent: Mapping[str, float]) -> None:
    """Add another process's sums (a writer's) to this one's."""
    for name, seconds in spent.items():
        SPENT[name] += seconds


def take() -> dict[str, float]:
    """The sums so far, rounded to milliseconds; then start again from zero."""
    taken = {k: round(v, 3) for k, v in SPENT.items()}
    SPENT.clear()
    return taken


def dump() -> None:
    """Write the sums as JSON to the file ``REGEXP_TIMING`` names, if it names one."""
    path = os.environ.get(ENV)
    if path:
        Path(path).write_text(json.dumps(take(), sort_keys=True) + "\n")
