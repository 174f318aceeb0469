"""One run, top to bottom: config -> dataset -> model -> engine -> run folder.

``train(cfg, run_dir)`` is the whole job. The Hydra entry point (``regexp run``),
the tests and ``make reproduce-all`` all call it, so they run the same code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from regexp import data as datasets
from regexp import metrics, plots
from regexp.config import validate
from regexp.engines import ENGINES, Job, outcome, truncate
from regexp.rundir import (
    METRICS,
    config_hash,
    env_record,
    run_name,
    write_config,
    write_json_atomic,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide what TensorFlow's C++ side prints while it loads (it ignores TF_CPP_MIN_LOG_LEVEL).

    Python exceptions still propagate; set REGEXP_TF_LOGS=1 to see the logs.
    """
    if os.environ.get("REGEXP_TF_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_tf_threads: int | None = None


def _import_keras(threads: int = 0):
    """Import Keras on TensorFlow with op determinism on (same seed, same numbers).

    ``threads`` sizes TensorFlow's thread pools (0 = TensorFlow's default). Pools can
    only be set before TensorFlow first runs, so the first run of a process decides.
    """
    global _tf_threads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _quiet_native_stderr():
        import keras
        import tensorflow as tf

        if _tf_threads is None:
            try:
                if threads:
                    tf.config.threading.set_intra_op_parallelism_threads(threads)
                    tf.config.threading.set_inter_op_parallelism_threads(threads)
                _tf_threads = threads
            except RuntimeError:  # TensorFlow already ran in this process
                _tf_threads = tf.config.threading.get_intra_op_parallelism_threads()
            tf.config.list_physical_devices()
            tf.config.experimental.enable_op_determinism()
    if threads != _tf_threads:
        log.warning(
            "trainer.threads=%d ignored: this process already runs TensorFlow with %d",
            threads, _tf_threads,
        )  # fmt: skip
    return keras


def _threads() -> dict[str, int]:
    """The sizes of this process's TensorFlow thread pools."""
    import tensorflow as tf

    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def _is_diagnostic(column: str) -> bool:
    return column.startswith(("penalty_", "l1_", "l2_", "act_mean_", "act_zero_"))


def history_frame(history: dict[str, list[float]]) -> pd.DataFrame:
    """One row per epoch; ``penalty`` is the mean total loss minus the mean data loss."""
    frame = pd.DataFrame(history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    frame["penalty"] = frame["loss"] - frame["data_loss"]
    frame["val_penalty"] = frame["val_loss"] - frame["val_data_loss"]
    return frame


def prepare(cfg: DictConfig) -> Job:
    """Validate, load the data, and build and compile the model under ``cfg.seed``.

    The initial weights depend only on the structure and the seed, so every engine
    starts the same job from the same weights.
    """
    plans = validate(cfg)
    data = datasets.load(cfg.dataset)
    keras = _import_keras(int(cfg.trainer.threads))
    from regexp.model import build_model, compile_model

    seed = int(cfg.seed)
    keras.utils.set_random_seed(seed)
    model, loss_penalties = build_model(plans, data.n_features, data.n_classes, cfg.reg.mode)
    compile_model(model, cfg.optimizer, data.binary, loss_penalties)
    return Job(cfg, plans, data, model, loss_penalties, seed)


# (run folder, status, diverged epoch) of every run this process finished: a single
# run's exit code comes from here (a sweep's from its folders).
OUTCOMES: list[tuple[Path, str, int | None]] = []


def train(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train one configuration and write its run folder; return ``metrics.json``'s content.

    Raises KeyboardInterrupt after writing the folder of an interrupted run.
    """
    validate(cfg)
    write_config(Path(run_dir), cfg)
    job = prepare(cfg)
    engine = cfg.trainer.engine
    start = time.perf_counter()
    history = ENGINES[engine]().fit(job)
    result = finish(job, history, time.perf_counter() - start, Path(run_dir), overrides, engine)
    if result["status"] == "interrupted":
        raise KeyboardInterrupt
    return result


def finish(
    job: Job,
    history: dict[str, list[float]],
    seconds: float,
    run_dir: Path,
    overrides: list[str] | None,
    engine: str,
) -> dict[str, Any]:
    """Write the run folder of a trained job; ``metrics.json`` last. Shared by every engine.

    A diverged or interrupted run gets its history so far, its curves, and a
    ``metrics.json`` whose status says so; no final metrics are computed from it.
    """
    from regexp.model import layer_outputs, total_penalty

    cfg, data, model = job.cfg, job.data, job.model
    status, bad_epoch = outcome(history, int(cfg.trainer.epochs))
    if bad_epoch is not None:
        history = truncate(history, bad_epoch)
    write_config(run_dir, cfg)
    write_json_atomic(run_dir / "env.json", env_record(job.seed, overrides, _threads()))
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    (run_dir / "model.txt").write_text("\n".join(lines) + "\n")
    frame = history_frame(history)
    frame.to_csv(run_dir / "history.csv", index=False)
    title = run_name(cfg.get("experiment_name"), cfg.reg.name)
    record = {
        "status": status,
        "name": title,
        "engine": engine,
        "seed": job.seed,
        "epochs_run": len(frame),
        "train_seconds": round(seconds, 3),
        "config_hash": config_hash(cfg),
    }
    OUTCOMES.append((run_dir, status, bad_epoch))
    if cfg.trainer.get("tensorboard"):  # a diverged or interrupted run's curves too
        from regexp.tracking import write_tensorboard

        write_tensorboard(run_dir, frame, job)
    if status != "completed":
        if len(frame):
            plots.curves(frame, run_dir / "loss.png", "loss", f"{title}: loss ({status})")
        record["diverged_epoch"] = bad_epoch
        write_json_atomic(run_dir / METRICS, record)
        log.warning("%s: %s after %d epochs (%s)", title, status, len(frame), run_dir)
        return record

    final: dict[str, Any] = {}
    for split in SPLITS:
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        p = np.asarray(model(x, training=False))
        loss = metrics.data_loss(y, p)
        penalty = total_penalty(model, x, job.loss_penalties)
        final[split] = {
            "accuracy": metrics.accuracy(y, p),
            "data_loss": loss,
            "penalty": penalty,
            "total_loss": loss + penalty,
            "n": len(x),
        }

    plots.curves(frame, run_dir / "loss.png", "loss", f"{title}: loss")
    plots.curves(frame, run_dir / "accuracy.png", "accuracy", f"{title}: accuracy")
    post, acts = layer_outputs(model, job.plans, data.x_test)
    np.savez_compressed(run_dir / "activations.npz", **post)
    if acts:
        plots.activations(acts, run_dir / "activations.png", f"{title}: activations on test")
    if data.n_features == 2:
        x_all = np.concatenate([data.x_train, data.x_test])
        y_all = np.concatenate([data.labels(data.y_train), data.labels(data.y_test)])
        plots.scatter(x_all, y_all, run_dir / "data.png", f"{data.name} (train + test)")

    result = {
        **record,
        "val_is_test": data.val_is_test,
        **{f"{split}_{k}": v for split, vals in final.items() for k, v in vals.items()},
        "activity_mean": {name: float(a.mean()) for name, a in acts.items()},
        "diagnostics": {k: float(v) for k, v in frame.iloc[-1].items() if _is_diagnostic(k)},
    }
    write_json_atomic(run_dir / METRICS, result)
    if cfg.get("tracking"):  # after metrics.json: a tracking failure cannot spoil the folder
        from regexp.tracking import log_mlflow

        try:
            log_mlflow(run_dir, cfg, frame, result)
        except Exception as e:  # the run itself is complete and recorded
            log.warning(
                "MLflow logging failed (%s: %s); the run folder is complete", type(e).__name__, e
            )
    log.info(
        "%s: test accuracy %.4f, test data loss %.4f (%s)",
        title, result["test_accuracy"], result["test_data_loss"], run_dir,
    )  # fmt: skip
    return result
