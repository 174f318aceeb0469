"""Where a finished run can also be sent: TensorBoard event files, an MLflow store.

Both are called by ``finish`` with the history it writes (and TensorBoard with the weight
snapshots every engine keeps), so every engine, and every member of a fused group, is
recorded the same way. Metric names are the history's columns (``val_accuracy``; for
regression ``val_mae``, ``val_r2``) and, in MLflow, ``final_`` + ``metrics.json``'s keys.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from regexp.tasks import KINDS


def write_tensorboard(run_dir: Path, history: pd.DataFrame, job) -> Path:
    """``<run>/tensorboard/``: every history column as a scalar per epoch (step = epoch);
    and at epoch 0 and after every tenth of the epochs (the last included),
    histograms of each layer's kernel and bias and of each hidden layer's activations on
    the test split, from the weights the engine snapshot there (``Job.snapshots``)."""
    import tensorflow as tf

    from regexp.model import layer_weights
    from regexp.network import StackedNetwork

    folder = run_dir / "tensorboard"
    names = [weight.path for weight in job.model.weights]  # the order of get_weights()
    network = StackedNetwork([job.plans], [job.seed])
    slots = layer_weights(job.model, job.plans)
    x_test = tf.constant(job.data.x_test[None])
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for row in history.itertuples(index=False):
            for name, value in row._asdict().items():
                if name != "epoch" and np.isfinite(value):
                    tf.summary.scalar(name, value, step=int(row.epoch))
        for epoch, weights in job.snapshots:
            for name, values in zip(names, weights, strict=True):
                tf.summary.histogram(f"weights/{name}", values, step=epoch)
            stacked = [{name: weights[i][None] for name, i in at.items()} for at in slots]
            for s in network.walk(x_test, stacked):
                if s.layer.plan.units is not None:  # a hidden layer, after its activation
                    tf.summary.histogram(f"activations/{s.layer.plan.name}", s.a[0], step=epoch)
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

    from regexp.keys import flatten

    mlflow.set_tracking_uri(str(cfg.tracking.uri))
    name = str(cfg.tracking.experiment)
    if mlflow.get_experiment_by_name(name) is None:  # else MLflow's default: ./mlruns
        where = Path(str(cfg.tracking.get("artifacts") or "outputs/mlflow-artifacts"))
        mlflow.create_experiment(name, artifact_location=where.resolve().as_uri())
    mlflow.set_experiment(name)
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
        curves = [f"{c}.png" for kind in KINDS.values() for c in kind.curves]  # accuracy, mae, r2
        for name in ("config.yaml", "metrics.json", "loss.png", *curves, "activations.png",
                     "data.png"):  # fmt: skip
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
        return run.info.run_id
