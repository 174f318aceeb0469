"""TensorBoard event files, read back with TensorFlow's own reader."""

import numpy as np
import pandas as pd
import pytest

from regexp.pipeline import run as train
from tests.conftest import make_cfg


def _events(folder):
    """Scalars as {tag: [(step, value)]}, histograms as {tag: {step: buckets [k, 3]}}."""
    import tensorflow as tf

    # the history's file; the HParams session has its own (tests/test_sweep_tracking.py)
    (path,) = [p for p in folder.glob("events.out.tfevents.*") if p.suffix != ".regexp-hparams"]
    scalars, histograms = {}, {}
    for event in tf.compat.v1.train.summary_iterator(str(path)):
        for value in event.summary.value:
            tensor = tf.make_ndarray(value.tensor)
            if tensor.ndim == 0:
                scalars.setdefault(value.tag, []).append((event.step, float(tensor)))
            else:
                histograms.setdefault(value.tag, {})[event.step] = tensor
    return scalars, histograms


def _span(buckets):
    """What a TensorBoard histogram says of its values: (min, max, count)."""
    return buckets[0, 0], buckets[-1, 1], buckets[:, 2].sum()


def test_tensorboard_events_hold_the_history_and_histograms(tmp_path):
    from regexp.pipeline import prepare

    cfg = make_cfg("experiment=b7_kl_sparsity", "trainer.epochs=20", "trainer.tensorboard=true")
    train(cfg, tmp_path / "run")
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    scalars, histograms = _events(tmp_path / "run" / "tensorboard")
    for column in ("loss", "val_data_loss", "val_accuracy", "penalty_h5_activity", "act_zero_h2"):
        steps, values = zip(*scalars[column], strict=True)
        assert list(steps) == list(range(1, 21))
        np.testing.assert_allclose(values, history[column], rtol=1e-6)
    kernels = histograms["weights/h2/kernel"]
    assert sorted(kernels) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]  # start, every chunk
    initial = prepare(cfg).model.get_layer("h2").kernel.numpy()  # drawn again, same seed
    np.testing.assert_allclose(_span(kernels[0]), (initial.min(), initial.max(), 32 * 32))
    acts = np.load(tmp_path / "run" / "activations.npz")["h5"]  # after the last epoch
    np.testing.assert_allclose(
        _span(histograms["activations/h5"][20]), (acts.min(), acts.max(), 75 * 32), rtol=1e-5
    )
    assert {f"weights/{n}/{w}" for n in ("h1", "out") for w in ("kernel", "bias")} <= set(
        histograms
    )


@pytest.mark.parametrize("engine", ["keras", "fused"])
def test_every_engine_snapshots_the_same_weights(engine, tmp_path):
    """The histograms of another engine match the compiled engine's at every step."""
    runs = {}
    for name in ("compiled", engine):
        cfg = make_cfg("experiment=b4_l1_activity", "trainer.epochs=6", "trainer.shuffle=false",
                       "trainer.tensorboard=true", f"trainer.engine={name}")  # fmt: skip
        train(cfg, tmp_path / name)
        runs[name] = _events(tmp_path / name / "tensorboard")[1]
    ours, theirs = runs["compiled"], runs[engine]
    assert set(ours) == set(theirs) and sorted(ours["weights/h3/kernel"]) == list(range(7))
    for tag in ours:
        for step in ours[tag]:
            got, want = _span(theirs[tag][step]), _span(ours[tag][step])
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=f"{tag}@{step}")


def test_a_diverged_run_writes_its_events_up_to_divergence(tmp_path):
    cfg = make_cfg("experiment=b4_l1_activity", "optimizer.lr=1e4", "trainer.epochs=6",
                   "trainer.tensorboard=true")  # fmt: skip
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "diverged"
    scalars, histograms = _events(tmp_path / "run" / "tensorboard")
    finite = [s for s, v in scalars.get("loss", [])]  # the finite epochs only
    assert finite == list(range(1, result["diverged_epoch"]))
    assert 0 in histograms["weights/h1/kernel"]  # the initial weights at least


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
                   f"tracking.artifacts={tmp_path}/artifacts", "experiment=b4_l1_activity",
                   "trainer.epochs=3")  # fmt: skip
    result = train(cfg, tmp_path / "run")
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.data.params["reg.lam"] == "0.01" and run.data.params["trainer.epochs"] == "3"
    assert run.data.tags["status"] == "completed"
    assert run.info.run_name == "run" and "mlflow.parentRunId" not in run.data.tags  # top level
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    logged = client.get_metric_history(run.info.run_id, "val_data_loss")
    assert [m.step for m in logged] == [1, 2, 3]
    np.testing.assert_allclose([m.value for m in logged], history["val_data_loss"], rtol=1e-12)
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(result["test_accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "loss.png", "config.yaml", "activations.png"} <= artifacts
    stored = tmp_path / "artifacts" / run.info.run_id / "artifacts" / "metrics.json"
    assert stored.read_bytes() == (tmp_path / "run" / "metrics.json").read_bytes()


def test_tracking_backend_is_validated():
    from regexp.config import validate
    from regexp.errors import ConfigError

    with pytest.raises(ConfigError, match="tracking.backend"):
        validate(make_cfg("+tracking=mlflow", "tracking.backend=wandb"))
