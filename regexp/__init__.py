"""regexp: a config-driven experiment runner for regularization studies of neural networks.

Train from the shell (``regexp run``, ``regexp run -m`` for a sweep); read the results
in Python. The API, three functions:

- ``regexp.runs(*paths, status="completed")``: a pandas DataFrame, one row per run folder
  at or under the paths (run folders, sweep folders, parents or globs; default
  ``outputs/``). Columns: ``run`` (the folder), ``status``, ``engine``, every resolved
  config key flattened with dots (``reg.name``, ``reg.lam``, ``seed``,
  ``dataset.split_seed``, ...), and every number of the run's ``metrics.json``
  (``test_accuracy``, ``test_data_loss``, ``epochs_run``, ``data.rows.train``,
  ``diagnostics.act_zero_h1``, ...). ``status`` is a status, a list of them, or None for
  every run: ``completed``, ``diverged``, ``interrupted``, ``unfinished`` (no
  ``metrics.json``: running or killed), ``damaged`` (unreadable; named on stderr).
- ``regexp.history(run)``: the run's ``history.csv`` as a DataFrame, one row per epoch,
  ``epoch`` first.
- ``regexp.load_model(run, best=False)``: the run's saved Keras model (``model.keras``;
  ``best=True``: ``model_best.keras`` of early stopping). Imports TensorFlow.

Example, after ``regexp run -m reg=l1_activity reg.lam=1e-3,1e-2 seed=0,1,2``::

    import regexp

    df = regexp.runs("outputs/2026-11-23/10-00-00-000000_multirun")
    df.groupby("reg.lam")["test_accuracy"].agg(["mean", "std", "count"])
    regexp.history(df.run[0])[["epoch", "loss", "val_loss"]].tail()
    model = regexp.load_model(df.run[0])

``import regexp`` and ``regexp.runs`` / ``regexp.history`` never import TensorFlow.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["runs", "history", "load_model"]

_API = {"runs": "regexp.results", "history": "regexp.results", "load_model": "regexp.saved"}


def __getattr__(name: str) -> Any:
    """The API's functions, imported on first use (so ``import regexp`` stays cheap)."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'regexp' has no attribute {name!r}")
