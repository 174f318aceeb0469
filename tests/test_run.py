"""End to end: real runs of a few epochs, in-process, checked number by number."""

import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from regexp.cli import main
from regexp.pipeline import run as train
from tests.conftest import make_cfg

FILES = {"config.yaml", "env.json", "model.txt", "history.csv", "metrics.json",
         "loss.png", "accuracy.png", "activations.png", "data.png", "activations.npz"}  # fmt: skip


def _run(tmp_path, name, *overrides):
    out = tmp_path / name
    metrics = train(make_cfg(*overrides), out)
    return out, metrics, pd.read_csv(out / "history.csv")


@pytest.fixture(scope="module")
def b4(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("b4"), "run", "experiment=b4_l1_activity",
                "trainer.epochs=3")  # fmt: skip


def test_a_run_writes_every_file(b4):
    out, metrics, history = b4
    assert FILES <= {p.name for p in out.iterdir()}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    env = json.loads((out / "env.json").read_text())
    assert env["seed"] == 0 and env["versions"]["keras"] >= "3.14"
    assert OmegaConf.load(out / "config.yaml").reg.hidden.activity == {"kind": "l1", "lam": 0.01}
    assert "h5 (Dense)" in (out / "model.txt").read_text()


def test_run_numbers_are_consistent(b4):
    _, m, h = b4
    assert list(h["epoch"]) == [1, 2, 3] and m["epochs_run"] == 3 and m["status"] == "completed"
    assert (m["train_n"], m["test_n"]) == (225, 75) and m["val_is_test"]
    # Keras' end-of-epoch validation metrics and our NumPy metrics see the same weights.
    assert h["val_accuracy"].iloc[-1] == pytest.approx(m["val_accuracy"], abs=1e-6)
    assert h["val_data_loss"].iloc[-1] == pytest.approx(m["val_data_loss"], rel=1e-5)
    assert m["test_accuracy"] == m["val_accuracy"]  # validated on the test split
    for split in ("train", "val", "test"):
        assert 0 <= m[f"{split}_accuracy"] <= 1
        assert m[f"{split}_penalty"] > 0
        assert m[f"{split}_total_loss"] == pytest.approx(
            m[f"{split}_data_loss"] + m[f"{split}_penalty"]
        )
    # Keras' loss includes the penalty, its data_loss metric does not.
    assert (h["loss"] > h["data_loss"]).all() and (h["penalty"] > 0).all()
    assert set(m["activity_mean"]) == {"h1", "h2", "h3", "h4", "h5"}


def test_same_seed_gives_an_identical_history(tmp_path, b4):
    _, m, h = _run(tmp_path, "again", "experiment=b4_l1_activity", "trainer.epochs=3")
    pd.testing.assert_frame_equal(h, b4[2])
    assert m["test_data_loss"] == b4[1]["test_data_loss"]
    _, _, other = _run(tmp_path, "seed1", "experiment=b4_l1_activity", "trainer.epochs=3",
                       "seed=1")  # fmt: skip
    assert not np.allclose(other["loss"], h["loss"])


def test_lam_zero_gives_the_same_history_as_no_regularizer(tmp_path):
    _, m0, zero = _run(tmp_path, "zero", "experiment=b4_l1_activity", "reg.lam=0",
                       "trainer.epochs=2")  # fmt: skip
    _, mn, none = _run(tmp_path, "none", "experiment=b4_l1_activity", "reg=none",
                       "trainer.epochs=2")  # fmt: skip
    cols = ["loss", "data_loss", "accuracy", "val_loss", "val_data_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(zero[cols], none[cols])
    assert m0["test_penalty"] == 0 and mn["test_penalty"] == 0


def test_loss_mode_trains_like_keras_regularizers(tmp_path):
    runs = [_run(tmp_path, mode, "experiment=b1_loss_fn", f"reg.mode={mode}", "trainer.epochs=2")
            for mode in ("loss", "layers")]  # fmt: skip
    (_, m_loss, h_loss), (_, m_layers, h_layers) = runs
    np.testing.assert_allclose(h_loss["loss"], h_layers["loss"], rtol=1e-5)
    np.testing.assert_allclose(h_loss["val_loss"], h_layers["val_loss"], rtol=1e-5)
    assert m_loss["test_penalty"] == pytest.approx(m_layers["test_penalty"], rel=1e-5)
    assert m_loss["test_penalty"] > 0


def test_iris_multiclass_run(tmp_path):
    out, m, h = _run(tmp_path, "iris", "experiment=a2_iris_l1_activity", "trainer.epochs=2")
    assert (m["train_n"], m["test_n"]) == (112, 38)
    assert h["val_accuracy"].iloc[-1] == pytest.approx(m["val_accuracy"], abs=1e-6)
    assert set(m["activity_mean"]) == {"h1"}
    assert not (out / "data.png").exists()  # 4 features: no scatter


def test_a_two_job_multirun_writes_two_complete_folders(tmp_path):
    sweep = tmp_path / "sweep"
    rc = main(["run", "-m", "reg=l1_activity", "reg.lam=0.01,0.001", "trainer.epochs=2",
               f"hydra.sweep.dir={sweep}"])  # fmt: skip
    assert rc == 0
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0_l1_activity", "1_l1_activity"]
    lams, penalties = [], []
    for job in jobs:
        assert FILES <= {p.name for p in job.iterdir()}
        assert (job / ".hydra" / "overrides.yaml").is_file()
        lams.append(OmegaConf.load(job / "config.yaml").reg.lam)
        penalties.append(json.loads((job / "metrics.json").read_text())["test_penalty"])
    assert lams == [0.01, 0.001]
    assert penalties[0] > penalties[1] > 0


def test_a_one_layer_network_runs_and_sweeps_to_complete_folders(tmp_path, capsys):
    """depth=1 once trained, then crashed while writing its folder (no metrics.json)."""
    assert main(["run", "model.depth=1", "trainer.epochs=2", f"hydra.run.dir={tmp_path}/one"]) == 0
    assert main(["run", "-m", "model.depth=1", "reg=none,l1_activity", "seed=0,1",
                 "trainer.epochs=2", f"hydra.sweep.dir={tmp_path}/sweep"]) == 0  # fmt: skip
    files = [tmp_path / "one/metrics.json", *sorted((tmp_path / "sweep").glob("*/metrics.json"))]
    records = [json.loads(p.read_text()) for p in files]
    assert len(records) == 5 and {m["status"] for m in records} == {"completed"}
    assert [m["group_size"] for m in records] == [1, 2, 2, 2, 2]
