"""TensorBoard event files, read back with TensorFlow's own reader."""

import numpy as np
import pandas as pd
import pytest

from regexp.run import train
from tests.conftest import make_cfg


def _events(folder):
    import tensorflow as tf

    (path,) = folder.glob("events.out.tfevents.*")
    scalars, histograms = {}, {}
    for event in tf.compat.v1.train.summary_iterator(str(path)):
        for value in event.summary.value:
            tensor = tf.make_ndarray(value.tensor)
            if tensor.ndim == 0:
                scalars.setdefault(value.tag, []).append((event.step, float(tensor)))
            else:
                histograms[value.tag] = (event.step, tensor)
    return scalars, histograms


def test_tensorboard_events_hold_the_history_and_histograms(tmp_path):
    cfg = make_cfg("experiment=b7_kl_sparsity", "trainer.epochs=3", "trainer.tensorboard=true")
    train(cfg, tmp_path / "run")
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    scalars, histograms = _events(tmp_path / "run" / "tensorboard")
    for column in ("loss", "val_data_loss", "val_accuracy", "penalty_h5_activity", "act_zero_h2"):
        steps, values = zip(*scalars[column], strict=True)
        assert list(steps) == [1, 2, 3]
        np.testing.assert_allclose(values, history[column], rtol=1e-6)
    step, kernel = histograms["weights/h2/kernel"]
    assert step == 3 and kernel[:, 2].sum() == 32 * 32  # bucket counts cover every weight
    _, acts = histograms["activations/h5"]
    assert acts[:, 2].sum() == 75 * 32  # the test split's activations of the last hidden layer
    assert {f"weights/{n}/{w}" for n in ("h1", "out") for w in ("kernel", "bias")} <= set(
        histograms
    )


def test_tensorboard_off_writes_no_events(tmp_path):
    train(make_cfg("trainer.epochs=1"), tmp_path / "run")
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_tensorboard_flag_is_validated():
    from regexp.config import validate
    from regexp.errors import ConfigError

    with pytest.raises(ConfigError, match="true or false"):
        validate(make_cfg("trainer.tensorboard=maybe"))


def test_mlflow_tracking_is_read_back_through_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = make_cfg("+tracking=mlflow", f"tracking.uri={uri}", "tracking.experiment=tests",
                   "experiment=b4_l1_activity", "trainer.epochs=3")  # fmt: skip
    result = train(cfg, tmp_path / "run")
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.data.params["reg.lam"] == "0.01" and run.data.params["trainer.epochs"] == "3"
    assert run.data.tags["status"] == "completed"
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    logged = client.get_metric_history(run.info.run_id, "val_data_loss")
    assert [m.step for m in logged] == [1, 2, 3]
    np.testing.assert_allclose([m.value for m in logged], history["val_data_loss"], rtol=1e-12)
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(result["test_accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "loss.png", "config.yaml", "activations.png"} <= artifacts


def test_tracking_backend_is_validated():
    from regexp.config import validate
    from regexp.errors import ConfigError

    with pytest.raises(ConfigError, match="tracking.backend"):
        validate(make_cfg("+tracking=mlflow", "tracking.backend=wandb"))
