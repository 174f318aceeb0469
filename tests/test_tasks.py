"""Tasks: regression (MSE; MAE and R² wherever accuracy appears) and label smoothing, in
every engine and every record, against NumPy, scikit-learn and Keras' own metrics."""

import numpy as np
import pandas as pd
import pytest

from regexp import metrics, rundir, tasks
from regexp.config import validate
from regexp.data import Dataset
from regexp.engines import ENGINES
from regexp.errors import ConfigError, UserError
from regexp.model import total_penalty
from regexp.pipeline import prepare
from tests.conftest import make_cfg
from tests.test_engines import _history, _max_rel, _members_match_their_compiled_runs

# --- the NumPy formulas of metrics.json --------------------------------------------


def test_regression_metrics_are_their_formulas_and_keras_r2_accumulated_over_batches():
    import keras
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(3)
    y = rng.normal(1.5, 2.0, size=(40, 1))
    p = y + rng.normal(0, 1.0, size=(40, 1))
    assert metrics.mse(y, p) == pytest.approx(mean_squared_error(y, p), rel=1e-12)
    assert metrics.mae(y, p) == pytest.approx(mean_absolute_error(y, p), rel=1e-12)
    assert metrics.r2(y, p) == pytest.approx(r2_score(y, p), rel=1e-12)
    by_hand = 1 - sum((y - p).ravel() ** 2) / sum((y - y.mean()).ravel() ** 2)
    assert metrics.r2(y, p) == pytest.approx(by_hand, rel=1e-12)
    assert 0.3 < metrics.r2(y, p) < 0.95  # a real fit, neither trivial nor perfect
    keras_r2 = keras.metrics.R2Score()
    for start in range(0, 40, 16):  # three batches, as an epoch accumulates them
        keras_r2.update_state(y[start : start + 16].astype("float32"),
                              p[start : start + 16].astype("float32"))  # fmt: skip
    assert float(keras_r2.result()) == pytest.approx(metrics.r2(y, p), rel=1e-5)
    assert metrics.r2(np.ones((5, 1)), np.zeros((5, 1))) == 0.0  # constant target: as Keras


def test_the_task_follows_the_data_and_names_what_is_recorded():
    x, y = np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32")
    data = Dataset("hand-made", x, y, x, y, x, y, 0, False, task="regression")
    assert tasks.of(data).name == "regression" and tasks.of(data).output(0) == (1, "linear")
    columns = ("loss", "data_loss", "mae", "r2", "val_loss", "val_data_loss", "val_mae", "val_r2")
    assert tasks.REGRESSION.columns == columns
    assert tasks.REGRESSION.shown == ("loss", "val_loss", "val_r2")
    assert tasks.CLASSIFICATION.of_split("test") == ("test_accuracy", "test_data_loss")
    assert [tasks.direction(c) for c in ("val_r2", "test_accuracy", "val_mae", "loss")] == [
        "max", "max", "min", "min"]  # fmt: skip


def test_a_regression_history_reads_and_a_partial_one_names_its_missing_column(tmp_path):
    frame = pd.DataFrame({c: [0.5, 0.4] for c in tasks.REGRESSION.columns})
    frame.insert(0, "epoch", [1, 2])
    frame.to_csv(tmp_path / rundir.HISTORY, index=False)
    assert list(rundir.read_history(tmp_path).columns) == list(frame.columns)
    frame.drop(columns="val_r2").to_csv(tmp_path / rundir.HISTORY, index=False)
    with pytest.raises(UserError, match="lacks the column 'val_r2'"):
        rundir.read_history(tmp_path)


# --- regression in every engine ---------------------------------------------------


REGRESSION = ["dataset=regression", "model.depth=2", "model.width=16", "optimizer.lr=0.01",
              "trainer.epochs=4"]  # fmt: skip


def test_regression_compiled_matches_model_fit():
    overrides = [*REGRESSION, "reg=l2_kernel", "reg.lam=0.01", "trainer.shuffle=false"]
    fit = _history("keras", *overrides)
    compiled = _history("compiled", *overrides)
    assert list(fit.columns) == list(tasks.REGRESSION.columns)
    assert _max_rel(compiled, fit) < 1e-4
    assert (fit["r2"].diff().iloc[1:] > 0).all() and fit["val_r2"].iloc[-1] > 0.2  # it learns
    assert (fit["loss"] - fit["data_loss"] > 1e-3).all()  # the penalty counts in loss only


def test_regression_fused_members_match_their_compiled_runs():
    members = [["seed=0"], ["seed=1", "reg.lam=0.03", "dataset.split_seed=1", "optimizer.lr=0.02"]]
    fused = _members_match_their_compiled_runs([*REGRESSION, "reg=l2_kernel", "reg.lam=0.01"],
                                               members)  # fmt: skip
    assert fused[0]["val_r2"] != fused[1]["val_r2"]


# --- label smoothing --------------------------------------------------------------

CLASSES = {"binary": [], "multiclass": ["dataset=iris"]}
SMALL = ["model.depth=2", "model.width=16", "optimizer.lr=0.01", "trainer.epochs=3"]


@pytest.mark.parametrize("task", CLASSES)
def test_label_smoothing_compiled_matches_model_fit_and_loss_adds_its_part(task):
    """Compiled equals model.fit with smoothing and an L2 kernel penalty. On the validation
    split at the last epoch (the final weights), in NumPy: ``data_loss`` is the plain
    cross-entropy, and ``loss`` adds the penalty and smoothing's part, which is far larger
    than the tolerance (so an engine that ignored smoothing would fail)."""
    s = 0.2
    overrides = [*CLASSES[task], *SMALL, "reg=l2_kernel", "reg.lam=0.01", f"reg.smoothing={s}",
                 "trainer.shuffle=false"]  # fmt: skip
    fit = _history("keras", *overrides)
    job = prepare(make_cfg(*overrides, "trainer.engine=compiled"))
    compiled = pd.DataFrame(ENGINES["compiled"]([job])[0])[list(fit.columns)]
    assert _max_rel(compiled, fit) < 1e-4
    x, y = job.data.x_val, job.data.y_val
    p = np.asarray(job.model(x, training=False))
    target = y * (1 - s) + s / (2 if y.shape[1] == 1 else y.shape[1])
    plain, smoothed = metrics.data_loss(y, p), metrics.data_loss(target, p)
    penalty = total_penalty(job.model, x, job.loss_penalties)
    last = compiled.iloc[-1]
    assert last["val_data_loss"] == pytest.approx(plain, rel=1e-5)
    assert last["val_loss"] - last["val_data_loss"] == pytest.approx(
        penalty + smoothed - plain, rel=1e-3
    )
    assert smoothed - plain > 0.01 and penalty > 0.01  # both parts count, far beyond 1e-4


def test_fused_members_differing_in_smoothing_match_their_compiled_runs():
    """Two classes, smoothing alone: 0 and 0.3 in one group, the split varied too."""
    members = [["seed=0", "reg.smoothing=0.0"],
               ["seed=1", "reg.smoothing=0.3", "dataset.split_seed=1"]]  # fmt: skip
    fused = _members_match_their_compiled_runs([*SMALL, "reg=label_smoothing"], members)
    gaps = [np.subtract(h["loss"], h["data_loss"]) for h in fused]  # no penalty: smoothing's
    assert abs(gaps[0]).max() < 1e-6 and gaps[1].min() > 0.01


def test_fused_members_differing_in_smoothing_and_l2_match_their_compiled_runs():
    """Three classes, smoothing combined with an L2 kernel penalty of its own strength."""
    members = [["seed=0", "reg.smoothing=0.0", "reg.lam=0.01"],
               ["seed=1", "reg.smoothing=0.25", "reg.lam=0.003"]]  # fmt: skip
    fused = _members_match_their_compiled_runs(["dataset=iris", *SMALL, "reg=l2_kernel"], members)
    assert fused[0]["data_loss"] != fused[1]["data_loss"]


def test_label_smoothing_is_one_group_key_free_to_differ():
    from regexp.pipeline import group_key, plan

    keys = {group_key(plan(make_cfg("reg=label_smoothing", f"reg.smoothing={s}"), "-",
                           fused=True)) for s in (0.0, 0.1, 0.5)}  # fmt: skip
    assert len(keys) == 1


# --- refusals -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1.0", "-0.1", "1.5"])
def test_smoothing_out_of_range_is_refused_in_one_line(value, capsys):
    from regexp.cli import main

    with pytest.raises(ConfigError) as err:
        validate(make_cfg("reg=label_smoothing", f"reg.smoothing={value}"))
    assert err.value.key == "reg.smoothing" and "[0, 1)" in err.value.accepted
    assert main(["check", "reg=label_smoothing", f"reg.smoothing={value}"]) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "reg.smoothing" in out and "[0, 1)" in out


def test_smoothing_is_refused_for_regression_in_one_line(capsys):
    from regexp.cli import main

    validate(make_cfg("dataset=regression"))  # regression without smoothing
    validate(make_cfg("reg=label_smoothing"))  # classification with it
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("dataset=regression", "reg=label_smoothing"))
    assert err.value.key == "reg.smoothing" and "dataset.task=regression" in err.value.accepted
    assert main(["check", "dataset=diabetes", "reg.smoothing=0.05"]) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "reg.smoothing=0.05" in out and "regression" in out


# --- a regression run's records: metrics.json, figures, report, ls ------------------


@pytest.fixture(scope="module")
def regression_runs(tmp_path_factory):
    """A sweep on dataset=regression: reg=none and reg=l2_kernel at seeds 0, 1, 2, each
    recipe trained as one fused group."""
    from regexp.cli import main

    out = tmp_path_factory.mktemp("regression")
    assert main(["run", "-m", *REGRESSION, "reg=none,l2_kernel", "reg.lam=0.01",
                 "seed=0,1,2", f"hydra.sweep.dir={out}"]) == 0  # fmt: skip
    return out


@pytest.mark.xdist_group("regression_runs")  # one sweep for both tests (--dist loadgroup)
def test_a_regression_run_records_r2_mae_and_mse_everywhere(regression_runs):
    """metrics.json's validation numbers (NumPy, final weights) equal the engine's last
    validation pass (accumulated over batches as Keras' metrics do)."""
    folders = sorted(p.parent for p in regression_runs.glob("*/metrics.json"))
    assert len(folders) == 6
    for folder in folders:
        m = rundir.read_metrics(folder)
        assert m["status"] == "completed" and m["engine"] == "fused" and m["group_size"] == 3
        assert "test_accuracy" not in m and {"test_r2", "test_mae", "test_data_loss"} <= set(m)
        assert m["test_total_loss"] == pytest.approx(m["test_data_loss"] + m["test_penalty"])
        last = rundir.read_history(folder).iloc[-1]
        for series in ("data_loss", "mae", "r2"):
            assert last[f"val_{series}"] == pytest.approx(m[f"val_{series}"], rel=1e-4), series
        assert {"loss.png", "mae.png", "r2.png"} <= {f.name for f in folder.iterdir()}
        assert not (folder / "accuracy.png").exists()
        assert m["test_r2"] > 0.3  # the runs really fit


@pytest.mark.xdist_group("regression_runs")
def test_the_report_gives_regression_groups_r2_mae_and_loss_with_intervals(regression_runs,
                                                                          tmp_path):  # fmt: skip
    from scipy import stats

    from regexp.inspect_runs import ls
    from regexp.report import build

    build([str(regression_runs)], tmp_path, baseline="reg.name=none")
    table = pd.read_csv(tmp_path / "report.csv").set_index("group")
    assert list(table.index) == ["l2_kernel", "none"] and "test_accuracy" not in table.columns
    row = table.loc["l2_kernel"]
    runs = [rundir.read_metrics(p.parent) for p in regression_runs.glob("*_l2_kernel/metrics.json")]
    r2 = np.array([m["test_r2"] for m in runs])
    half = stats.t.ppf(0.975, 2) * r2.std(ddof=1) / np.sqrt(3)
    assert row["test_r2"] == pytest.approx(r2.mean())
    assert row["test_r2_ci_high"] == pytest.approx(r2.mean() + half)
    assert row["test_mae"] == pytest.approx(np.mean([m["test_mae"] for m in runs]))
    assert row["gap"] == pytest.approx(np.mean([m["train_r2"] - m["val_r2"] for m in runs]))
    comparisons = pd.read_csv(tmp_path / "comparisons.csv")
    assert list(comparisons["metric"]) == ["test_r2", "test_mae", "test_data_loss"]
    assert set(comparisons["verdict"]) <= {
        "better",
        "worse",
        "equivalent",
        "inconclusive",
        "too few seeds",
    }
    assert (tmp_path / "r2_curves.png").is_file() and (tmp_path / "mae_curves.png").is_file()
    assert "higher r2, lower mae and loss" in (tmp_path / "report.md").read_text()
    listing = ls(str(regression_runs))
    assert listing.splitlines()[0].split() == ["when", "status", "test_acc", "test_r2", "run"]
    assert f"{runs[0]['test_r2']:.4f}" in listing
