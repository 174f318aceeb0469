"""Where a finished run can also be sent: TensorBoard event files, an MLflow store.

Both read what ``finish`` already wrote, so every engine (and every member of a fused
group) is recorded the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_tensorboard(run_dir: Path, history: pd.DataFrame, model, activations: dict) -> Path:
    """``<run>/tensorboard/``: every history column as a scalar per epoch (step = epoch),
    and at the last epoch, histograms of each layer's kernel and bias and of each hidden
    layer's activations on the test split."""
    import tensorflow as tf

    folder = run_dir / "tensorboard"
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for row in history.itertuples(index=False):
            for name, value in row._asdict().items():
                if name != "epoch" and np.isfinite(value):
                    tf.summary.scalar(name, value, step=int(row.epoch))
        last = int(history["epoch"].iloc[-1]) if len(history) else 0
        for layer in model.layers:
            for weight in layer.weights:
                tf.summary.histogram(f"weights/{weight.path}", weight.numpy(), step=last)
        for name, values in activations.items():
            tf.summary.histogram(f"activations/{name}", values, step=last)
    writer.close()
    return folder


def log_mlflow(run_dir: Path, cfg, history: pd.DataFrame, result: dict) -> str:
    """One MLflow run per regexp run: the flattened config as params, every history column
    per epoch (step = epoch), the final numbers, and the run folder's figures, config and
    ``metrics.json`` as artifacts. Returns the MLflow run id."""
    import time

    import mlflow
    from mlflow.entities import Metric
    from omegaconf import OmegaConf

    from regexp.report import flatten

    mlflow.set_tracking_uri(str(cfg.tracking.uri))
    mlflow.set_experiment(str(cfg.tracking.experiment))
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    with mlflow.start_run(run_name=str(result.get("name"))) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.set_tags({"status": result["status"], "run_dir": str(run_dir.resolve())})
        now = int(time.time() * 1000)
        metrics = [
            Metric(column, float(value), now, int(epoch))
            for column in history.columns
            if column != "epoch"
            for epoch, value in zip(history["epoch"], history[column], strict=True)
            if np.isfinite(value)
        ]
        client = mlflow.tracking.MlflowClient()
        for start in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[start : start + 1000])
        finals = {
            f"final_{k}": float(v)
            for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        mlflow.log_metrics(finals)
        for name in (
            "config.yaml",
            "metrics.json",
            "loss.png",
            "accuracy.png",
            "activations.png",
            "data.png",
        ):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
        return run.info.run_id
