"""Run folders as a sweep of ``regexp run`` leaves them, without training: the real
composed config (``config.yaml``), and made-up but realistic numbers in ``history.csv``,
``metrics.json`` and ``activations.npz``, written by ``regexp.rundir``'s own writers.
For tests of the report's rendering, which need many groups but no TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regexp import rundir
from regexp.compose import compose


def write_run(folder: Path, cfg, accuracy: float, epochs: int, rng) -> Path:
    """One completed classification run of the composed config ``cfg`` whose accuracy
    rises to about ``accuracy``."""
    rundir.write_config(folder, cfg)
    t = np.arange(1, epochs + 1) / epochs
    noise = lambda: rng.normal(0, 0.01, epochs)  # noqa: E731
    acc = np.clip(0.5 + (accuracy - 0.5) * t + noise(), 0, 1)
    val_acc = np.clip(acc - 0.02 + noise(), 0, 1)
    loss = 0.7 - 0.4 * t * (accuracy - 0.5) * 2 + noise()
    val_loss = loss + 0.03 + noise()
    history = {"loss": loss + 0.01, "data_loss": loss, "accuracy": acc, "val_loss": val_loss + 0.01,
               "val_data_loss": val_loss, "val_accuracy": val_acc}  # fmt: skip
    rundir.write_history(folder, {k: list(v) for k, v in history.items()})
    layers = [f"h{i}" for i in range(1, cfg.model.depth + 1)]
    acts = {h: np.maximum(rng.normal(0.05, 0.1, (60, cfg.model.width)), 0) for h in layers}
    rundir.write_activations(folder, {h: a.astype(np.float32) for h, a in acts.items()})
    test_acc = float(np.clip(accuracy + rng.normal(0, 0.01), 0, 1))
    rundir.write_metrics(folder, {
        "status": "completed", "name": str(cfg.reg.name), "engine": "keras", "seed": cfg.seed,
        "epochs_run": epochs, "stopped_epoch": None, "best_epoch": None,
        "config_hash": rundir.config_hash(cfg),
        "data": {"name": str(cfg.dataset.name), "task": "classification", "n_classes": 2},
        "train_accuracy": float(acc[-1]), "train_data_loss": float(loss[-1]),
        "val_accuracy": float(val_acc[-1]), "val_data_loss": float(val_loss[-1]),
        "test_accuracy": test_acc, "test_data_loss": float(val_loss[-1] + rng.normal(0, 0.01)),
        "activity_mean": {h: float(a.mean()) for h, a in acts.items()},
    })  # fmt: skip
    return folder


def write_sweep(root: Path, arms: list[tuple[list[str], float, int]], epochs: int = 6) -> Path:
    """A sweep folder ``root`` with one job folder per (arm, seed): ``arms`` are
    (overrides, accuracy the arm reaches, number of seeds). Seeded, so the same every time."""
    rng = np.random.default_rng(0)
    job = 0
    for overrides, accuracy, seeds in arms:
        cfg = compose(*overrides)  # once per arm (Hydra takes a while): the seed set below
        for seed in range(seeds):
            cfg.seed = seed
            spread = rng.normal(0, 0.03 if seeds > 2 else 0.2)  # two seeds: far apart
            write_run(root / f"{job}_{cfg.reg.name}", cfg,
                      float(np.clip(accuracy + spread, 0.3, 0.99)), epochs, rng)  # fmt: skip
            job += 1
    return root
