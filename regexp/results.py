"""Runs as data: ``regexp.runs()`` and ``regexp.history()`` give pandas tables.

- ``runs(*paths, status="completed")``: one row per run folder at or under the paths
  (run folders, sweep folders, any parent, or globs; default ``outputs/``). Columns:
  ``run`` (the folder), ``status``, ``engine`` (what trained it: ``compiled``, ``keras``,
  ``fused``), then every key of the resolved ``config.yaml`` flattened with dots
  (``reg.lam``, ``seed``, ``dataset.split_seed``; lists as JSON text), then every number
  of ``metrics.json`` (nested ones with dots: ``data.rows.train``,
  ``diagnostics.act_zero_h1``). A key both files hold (``seed``) is the config's column.
- ``history(run)``: a run's ``history.csv``, one row per epoch, ``epoch`` first.

Statuses: ``completed``, ``diverged`` and ``interrupted`` (what ``metrics.json`` says),
``unfinished`` (no ``metrics.json``: running, or killed) and ``damaged`` (a
``config.yaml`` or ``metrics.json`` that cannot be read; one line on stderr names it).
Folders are read only through ``regexp.rundir``. Never imports TensorFlow.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterable
from numbers import Number
from pathlib import Path
from typing import Any

import pandas as pd

from regexp import rundir
from regexp.errors import ConfigError, UserError
from regexp.keys import flatten

STATUSES = ("completed", "diverged", "interrupted", "unfinished", "damaged")
FIRST = ("run", "status", "engine")


def runs(*paths: str | Path, status: str | Iterable[str] | None = "completed") -> pd.DataFrame:
    """One row per run folder at or under ``paths`` (default ``outputs/``) whose status is
    ``status`` (a status, a list of them, or None for every run)."""
    return table([str(p) for p in paths] or ["outputs"], status)


def history(run: str | Path) -> pd.DataFrame:
    """The run's ``history.csv``: ``epoch`` (from 1), then the engine's series per epoch
    (``loss``, ``data_loss``, ``accuracy``, their ``val_`` twins, the penalties and the
    diagnostics)."""
    frame = rundir.read_history(Path(run))
    return frame[["epoch", *(c for c in frame.columns if c != "epoch")]]


def table(paths: list[str], status: str | Iterable[str] | None = None, warn: bool = True):
    """``runs(*paths, status=status)``; ``warn=False`` leaves damaged folders unnamed (for a
    caller that names them itself)."""
    wanted = _statuses(status)
    for pattern in paths:
        if not glob.glob(pattern) and not Path(pattern).exists():
            raise UserError(
                f"regexp.runs: {pattern} matches no file or folder; expected run or sweep "
                "folders, their parents, or globs (default outputs/)"
            )
    rows = []
    for folder in rundir.find_runs(paths, unfinished=True):
        row, problem = _row(folder)
        if problem and warn:
            print(f"regexp: {problem}; its status is 'damaged'", file=sys.stderr)
        if wanted is None or row["status"] in wanted:
            rows.append(row)
    columns = list(FIRST)
    for part in ("config", "metrics"):
        columns += dict.fromkeys(k for row in rows for k in row[part] if k not in columns)
    records = [{"run": r["run"], "status": r["status"], "engine": r["engine"],
                **r["metrics"], **r["config"]} for r in rows]  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns).infer_objects()


def _statuses(status: str | Iterable[str] | None) -> set[str] | None:
    if status is None:
        return None
    wanted = [status] if isinstance(status, str) else list(status)
    for value in wanted:
        if value not in STATUSES:
            raise ConfigError("status", value, f"one of {', '.join(STATUSES)}, a list, or None")
    return set(wanted)


def _row(folder: Path) -> tuple[dict[str, Any], str | None]:
    """The run's row (``config`` and ``metrics`` as flat dicts) and what was wrong with it."""
    problem = None
    config: dict[str, Any] = {}
    try:
        from omegaconf import OmegaConf

        config = flatten(OmegaConf.to_container(rundir.read_config(folder), resolve=True))
    except UserError as e:
        problem = str(e)
    except Exception as e:  # an interpolation that no longer resolves, say
        problem = f"{folder / rundir.CONFIG}: cannot resolve it ({type(e).__name__}: {e})"
    record = rundir.read_metrics(folder)
    if record is None and (folder / rundir.METRICS).exists():
        problem = problem or f"{folder / rundir.METRICS}: not a readable record (damaged)"
    status = "unfinished" if record is None else str(record.get("status"))
    if record is not None and status not in STATUSES:
        problem = problem or f"{folder / rundir.METRICS}: status {record.get('status')!r}"
    metrics = {
        k: v
        for k, v in flatten(record or {}).items()
        if isinstance(v, Number) and k not in FIRST and k not in config
    }
    return {
        "run": str(folder),
        "status": "damaged" if problem else status,
        "engine": (record or {}).get("engine"),
        "config": config,
        "metrics": metrics,
    }, problem
