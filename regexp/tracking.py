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
