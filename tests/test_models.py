"""Saved models (``regexp.saved``): every completed run keeps ``model.keras`` (and
``model_best.keras`` under early stopping) with ``preprocess.json``; ``load_model``,
``regexp predict`` and ``regexp eval`` use them.

Every number is checked against one worked out apart from the code under test: metrics
recomputed in NumPy from the reloaded model's outputs on the run's split, the scaling
recomputed from the raw CSV file (``dataset.scaler_fit=all``: the mean and population
standard deviation of every row), the best epoch's validation loss read from the
history. Three trainings serve every test: a compiled CSV run of three classes under
early stopping without ``restore_best`` with a user's own kernel regularizer
(``tests/user_regularizers.py``), a fused sweep of two members (L1 activity, regexp's
Huber kernel penalty, regexp's dropout; early stopping with ``restore_best``), and a
regression run.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from regexp import data as datasets
from regexp import rundir
from regexp.cli import main
from regexp.pipeline import run as train
from regexp.saved import load_model
from tests.conftest import make_cfg

EPS = 1e-7
FEATURES = ["a", "b", "c"]


def _scores(y: np.ndarray, p: np.ndarray) -> dict:
    """Accuracy and mean cross-entropy (probabilities clipped to [1e-7, 1 - 1e-7]), written
    out here: one sigmoid column, or softmax columns against one-hot targets."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    if p.shape[1] == 1:
        t, q = y[:, 0], np.clip(p[:, 0], EPS, 1 - EPS)
        hits = (p[:, 0] > 0.5) == (t == 1)
        return {"accuracy": hits.mean(),
                "data_loss": -np.mean(t * np.log(q) + (1 - t) * np.log(1 - q))}  # fmt: skip
    q = np.clip(p / p.sum(axis=1, keepdims=True), EPS, 1 - EPS)
    return {"accuracy": np.mean(p.argmax(1) == y.argmax(1)),
            "data_loss": -np.mean((y * np.log(q)).sum(axis=1))}  # fmt: skip


def _write_csv(path: Path, regression: bool) -> pd.DataFrame:
    """150 rows: an id, three features on different scales, and a label: three named
    classes by a linear score, or a continuous target in the thousands."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(150, 3)) * [3.0, 0.5, 20.0] + [10.0, -2.0, 100.0]
    score = (x[:, 0] - 10) / 3 + (x[:, 1] + 2) / 0.5 - (x[:, 2] - 100) / 20
    frame = pd.DataFrame(x, columns=FEATURES)
    frame.insert(0, "id", [f"r{i}" for i in range(len(x))])
    if regression:
        frame["y"] = 5000 + 800 * score + rng.normal(scale=50, size=len(x))
    else:
        frame["y"] = np.where(score < -0.7, "low", np.where(score < 0.7, "mid", "high"))
    frame.to_csv(path, index=False, float_format="%.17g")
    return frame


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: run folder} of the three trainings."""
    tmp = tmp_path_factory.mktemp("models")
    out = {}
    for name, regression in (("csv", False), ("regression", True)):
        _write_csv(tmp / f"{name}.csv", regression)
    csv = ["dataset=csv", "dataset.label=y", "dataset.drop=[id]", "dataset.scaler_fit=all",
           "trainer.batch_size=16"]  # fmt: skip
    out["csv"] = tmp / "csv_run"
    quartic = "{_target_:tests.user_regularizers.Quartic,lam:0.001}"  # a user's own
    train(make_cfg(*csv, f"dataset.path={tmp / 'csv.csv'}", f"reg.hidden.kernel={quartic}",
                   "trainer=early_stopping", "trainer.early_stopping.restore_best=false",
                   "trainer.early_stopping.patience=1", "trainer.epochs=30", "optimizer.lr=0.03",
                   "trainer.engine=compiled"), out["csv"])  # fmt: skip
    out["regression"] = tmp / "regression_run"
    train(make_cfg(*csv, f"dataset.path={tmp / 'regression.csv'}", "dataset.task=regression",
                   "trainer.epochs=3", "reg=l2_kernel"), out["regression"])  # fmt: skip
    sweep = tmp / "sweep"
    assert main(["run", "-m", "reg=l1_activity", "reg.lam=0.001,0.01",
                 "reg.hidden.kernel={kind:huber,lam:0.001,delta:1.0}",
                 "reg.hidden.dropout={rate:0.2}",
                 "dataset=moons", "dataset.n_samples=120", "trainer.epochs=3",
                 "trainer=early_stopping",  # restore_best (the default): model_best = model
                 "trainer.quiet=true", "hydra/launcher=fused",
                 f"hydra.sweep.dir={sweep}"]) == 0  # fmt: skip
    for i, folder in enumerate(rundir.job_folders(sweep)):
        out[f"member{i}"] = folder
    return out


MEMBERS = ["member0", "member1"]


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _data(run: Path, *overrides: str):
    """The data of the run's config (with ``dataset.KEY=VALUE`` overrides), as
    regexp.data loads it."""
    cfg = OmegaConf.load(run / "config.yaml")
    for item in overrides:
        key, value = item.split("=")
        OmegaConf.update(cfg, key, float(value))
    return datasets.load(cfg.dataset)


def test_the_runs_hold_the_layers_and_penalties_to_save(runs):
    records = [_metrics(runs[m]) for m in MEMBERS]
    assert [(r["engine"], r["group_size"]) for r in records] == [("fused", 2)] * 2
    summary = (runs["member0"] / "model.txt").read_text()
    assert "h1_dropout (RandomLayer)" in summary
    cfg = OmegaConf.load(runs["csv"] / "config.yaml")
    assert cfg.reg.hidden.kernel == {"_target_": "tests.user_regularizers.Quartic", "lam": 0.001}
    assert _metrics(runs["csv"])["engine"] == "compiled"


def test_each_fused_member_saves_the_model_it_would_have_built_alone(runs):
    """The two members share a network and seed, so they share one Keras model while
    they are written (``training.Network``), each member's penalties put in in turn. Each
    saved model's config equals a model's built alone from the member's config.yaml (its
    own strengths: the two differ), its weights its own, and the penalty it adds on the
    test split is the member's: 0.001 * Huber(kernel) for each hidden kernel (checked in
    NumPy) plus lam * mean|activity| summed over the hidden layers."""
    from regexp import tasks
    from regexp.config import validate
    from regexp.model import build_model, layer_outputs, total_penalty

    configs, weights = [], []
    for name in MEMBERS:
        cfg = OmegaConf.load(runs[name] / "config.yaml")
        data, saved = _data(runs[name]), load_model(runs[name])
        plans = validate(cfg).plans
        alone, _ = build_model(plans, data.n_features, tasks.of(data).output(data.n_classes),
                               str(cfg.reg.mode), seed=int(cfg.seed))  # fmt: skip
        config = json.dumps(saved.get_config(), sort_keys=True)  # tuples come back as lists
        assert config == json.dumps(alone.get_config(), sort_keys=True), name
        configs.append(config)
        l1 = saved.get_layer(plans[0].name).activity_regularizer.get_config()["l1"]
        assert l1 == pytest.approx(float(cfg.reg.lam))
        weights.append(saved.get_weights())
        x = data.x_test
        _, acts = layer_outputs(saved, plans, x)
        huber = 0.0
        for plan in plans[:-1]:
            w = np.abs(saved.get_layer(plan.name).kernel.numpy().astype(np.float64))
            huber += 0.001 * np.sum(np.where(w <= 1.0, 0.5 * w**2, w - 0.5))
        activity = sum(float(cfg.reg.lam) * np.abs(a.astype(np.float64)).sum() / len(x)
                       for a in acts.values())  # fmt: skip
        assert total_penalty(saved, x, []) == pytest.approx(huber + activity, rel=1e-5)
    assert configs[0] != configs[1]
    assert not all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))


@pytest.mark.parametrize("name", ["csv", "regression", *MEMBERS])
def test_a_completed_run_saves_its_model_before_metrics_json(runs, name):
    run = runs[name]
    names = {p.name for p in run.iterdir()}
    assert {"model.keras", "preprocess.json"} <= names
    assert ("model_best.keras" in names) == (name != "regression")  # early stopping only
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".model")]
    last = (run / "metrics.json").stat().st_mtime_ns
    assert all((run / n).stat().st_mtime_ns <= last for n in names if n.startswith("model"))


@pytest.mark.parametrize("name", ["csv", *MEMBERS])
def test_a_reloaded_model_gives_the_recorded_test_metrics(runs, name):
    """Each split's accuracy and data loss, recomputed in NumPy from the reloaded model's
    outputs on the run's own split, equal metrics.json's."""
    run, record = runs[name], _metrics(runs[name])
    data = _data(run)
    model = load_model(run)
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        scores = _scores(y, np.asarray(model(x)))
        assert scores["accuracy"] == record[f"{split}_accuracy"]
        assert scores["data_loss"] == pytest.approx(record[f"{split}_data_loss"], rel=1e-6)


def test_a_reloaded_regression_model_gives_the_recorded_test_metrics(runs):
    run, record = runs["regression"], _metrics(runs["regression"])
    data = _data(run)
    p = np.asarray(load_model(run)(data.x_test), np.float64)
    y = data.y_test.astype(np.float64)
    assert np.mean((y - p) ** 2) == pytest.approx(record["test_data_loss"], rel=1e-6)
    assert np.mean(np.abs(y - p)) == pytest.approx(record["test_mae"], rel=1e-6)
    r2 = 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 == pytest.approx(record["test_r2"], rel=1e-6)


def test_model_best_holds_the_best_epoch_and_model_the_last(runs):
    """Early stopping with restore_best=false ends on the last epoch's weights
    (model.keras, the final metrics') and keeps the best epoch's (model_best.keras): each
    one's validation data loss is its epoch's in history.csv."""
    run, record = runs["csv"], _metrics(runs["csv"])
    history = pd.read_csv(run / "history.csv")
    assert record["stopped_epoch"] == len(history) > record["best_epoch"]  # it did stop
    data = _data(run)
    last, best = load_model(run), load_model(run, best=True)
    loss = {m: _scores(data.y_val, np.asarray(m(data.x_val)))["data_loss"] for m in (last, best)}
    assert loss[last] == pytest.approx(history.val_data_loss.iloc[-1], rel=1e-5)
    assert loss[best] == pytest.approx(history.val_data_loss.iloc[record["best_epoch"] - 1],
                                       rel=1e-5)  # fmt: skip
    assert loss[best] == pytest.approx(history.val_data_loss.min(), rel=1e-5)
    assert abs(loss[best] - loss[last]) > 1e-3


@pytest.mark.parametrize("name", MEMBERS)
def test_with_restore_best_model_best_is_the_final_model(runs, name):
    """A fused member under early stopping with restore_best ends on its best epoch's
    weights: model_best.keras is model.keras, byte for byte."""
    run = runs[name]
    assert _metrics(run)["best_epoch"] is not None
    assert (run / "model_best.keras").read_bytes() == (run / "model.keras").read_bytes()


def _eval(capsys, *args) -> dict:
    assert main(["eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", ["csv", "regression", *MEMBERS])
def test_eval_reproduces_metrics_json(runs, name, capsys):
    """The same numbers for every split: the penalty too, so the saved regularizers (a
    user's, regexp's Huber, Keras' L1 and L2) are the run's."""
    result, record = _eval(capsys, runs[name]), _metrics(runs[name])
    keys = [f"{s}_{k}" for s in ("train", "val", "test")
            for k in ("accuracy", "r2", "mae", "data_loss", "penalty", "total_loss", "n")
            if f"{s}_{k}" in record]  # fmt: skip
    assert len(keys) in (15, 18)
    assert {k: result[k] for k in keys} == pytest.approx({k: record[k] for k in keys}, rel=1e-9)
    assert record["test_penalty"] > 0


def test_eval_with_more_noise_measures_the_saved_model_on_that_data(runs, capsys):
    """On other data the model sees its inputs scaled as in training (the run's recorded
    scaler, as predict applies it), not by a scaler fit anew on the new data."""
    run = runs["member0"]
    result, record = _eval(capsys, run, "dataset.noise=0.5"), _metrics(run)
    cfg = OmegaConf.load(run / "config.yaml")
    OmegaConf.update(cfg, "dataset.noise", 0.5)
    OmegaConf.update(cfg, "dataset.scaler_fit", "none")  # the raw features
    data = datasets.load(cfg.dataset)
    scaler = json.loads((run / "preprocess.json").read_text())["scaler"]
    x = (data.x_test.astype(np.float64) - np.array(scaler["mean"])) / np.array(scaler["scale"])
    refit = _data(run, "dataset.noise=0.5").x_test  # a scaler fit on the noisier data
    assert not np.allclose(refit, x.astype(np.float32), atol=1e-3)  # so the test can tell
    scores = _scores(data.y_test, np.asarray(load_model(run)(x.astype(np.float32))))
    assert result["test_accuracy"] == scores["accuracy"]
    assert result["test_data_loss"] == pytest.approx(scores["data_loss"], rel=1e-6)
    assert result["test_data_loss"] != pytest.approx(record["test_data_loss"], rel=1e-3)
    assert result["overrides"] == ["dataset.noise=0.5"]


def test_eval_best_on_the_best_epochs_model(runs, capsys):
    run = runs["csv"]
    data = _data(run)
    scores = _scores(data.y_test, np.asarray(load_model(run, best=True)(data.x_test)))
    result = _eval(capsys, run, "--best")
    assert result["model"] == "model_best.keras"
    assert result["test_data_loss"] == pytest.approx(scores["data_loss"], rel=1e-6)


def _scaled(raw: np.ndarray) -> np.ndarray:
    """``dataset.scaler_fit=all``: each column less its mean, over its population std."""
    return ((raw - raw.mean(axis=0)) / raw.std(axis=0)).astype(np.float32)


def test_predict_gives_each_rows_class_and_probabilities(runs, tmp_path):
    run = runs["csv"]
    source = pd.read_csv(OmegaConf.load(run / "config.yaml").dataset.path)
    given = source[["c", "id", "a", "b"]].iloc[::3]  # any column order; the id is ignored
    given.to_csv(tmp_path / "new.csv", index=False, float_format="%.17g")
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run), "--data", str(tmp_path / "new.csv"), "--out", str(out)]) == 0
    got = pd.read_csv(out)
    classes = ["high", "low", "mid"]  # class i is the i-th name in sorted order
    assert list(got.columns) == ["prediction", *(f"p_{c}" for c in classes)]
    raw = source[FEATURES].to_numpy()
    p = np.asarray(load_model(run)(_scaled(raw)[::3]), np.float64)
    np.testing.assert_allclose(got[[f"p_{c}" for c in classes]].to_numpy(), p, rtol=1e-5)
    assert list(got.prediction) == [classes[i] for i in p.argmax(axis=1)]
    assert (got.prediction == source.y.iloc[::3].to_numpy()).mean() > 0.5  # it learned


def test_predict_gives_a_regression_target_in_its_original_units(runs, tmp_path):
    run = runs["regression"]
    path = OmegaConf.load(run / "config.yaml").dataset.path
    source = pd.read_csv(path)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run), "--data", path, "--out", str(out)]) == 0  # label: ignored
    got = pd.read_csv(out)
    assert list(got.columns) == ["prediction"]
    y = source.y.to_numpy()
    p = np.asarray(load_model(run)(_scaled(source[FEATURES].to_numpy())), np.float64)[:, 0]
    np.testing.assert_allclose(got.prediction, p * y.std() + y.mean(), rtol=1e-5)
    assert abs(got.prediction.mean() - y.mean()) < 0.5 * y.std()  # in the target's units


@pytest.mark.parametrize(
    "args, csv, said",
    [
        (["predict", "{csv}"], "a,b\n1,2\n",
         "new.csv: no column 'c'; expected the features a, b, c"),
        (["predict", "{csv}"], "a,b,c,d\n1,2,3,4\n",
         "new.csv: column 'd' is not a feature of the model; expected the features a, b, c "
         "(and, ignored, id, y)"),
        (["predict", "{csv}"], "a,b,c\n1,2,3\n1,x,3\n", "new.csv: line 3, column 'b' has 'x'"),
        (["predict", "{tmp}"], "a\n", "not a run folder (no config.yaml)"),
        (["eval", "{tmp}"], None, "not a run folder (no config.yaml)"),
        (["eval", "{csv}", "optimizer.lr=1"], None,
         "optimizer.lr=1 is not accepted; expected dataset overrides only"),
        (["eval", "{csv}", "dataset.noise=0.5"], None, "dataset.noise=0.5 is not accepted"),
        (["eval", "{regression}", "--best"], None, "has no model_best.keras: only runs with early"),
        (["eval", "{member0}", "dataset=iris"], None, "the data's features (sepal length"),
    ],
    ids=["missing", "extra", "text", "predict-no-run", "eval-no-run", "key", "csv-noise", "best",
         "features"],
)  # fmt: skip
def test_bad_input_is_one_line(runs, tmp_path, capsys, args, csv, said):
    where = {**runs, "tmp": tmp_path}
    args = [a.format(**where) for a in args]
    if csv is not None:
        (tmp_path / "new.csv").write_text(csv)
        args += ["--data", str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("regexp: error: "), err
    assert said in err


def test_saved_models_load_in_a_fresh_process_and_commands_import_only_what_they_need(runs):
    """In a new Python: ``regexp predict`` imports neither scikit-learn, matplotlib nor
    Hydra; the fused members load with ``keras.saving.load_model`` once regexp's objects
    are registered, and predict what they predict here; ``regexp eval`` imports neither
    matplotlib nor Hydra."""
    members = [str(runs[m]) for m in MEMBERS]
    data = _data(runs["member0"])  # every member has the same data (split_seed 0)
    np.save(runs["member0"].parent / "x_test.npy", data.x_test)
    np.save(runs["member0"].parent / "x_csv.npy", _data(runs["csv"]).x_test)
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        import numpy as np
        from regexp.cli import main
        HEAVY = ("sklearn", "matplotlib", "hydra")
        out = {{}}
        csv = {str(runs["csv"] / "p.csv")!r}
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["predict", {str(runs["csv"])!r}, "--data",
                         {str(Path(OmegaConf.load(runs["csv"] / "config.yaml").dataset.path))!r},
                         "--out", csv]) == 0
        out["predict"] = [m for m in HEAVY if m in sys.modules]
        import keras
        from regexp.saved import custom_objects
        x = np.load({str(runs["member0"].parent / "x_test.npy")!r})
        out["p"] = []
        for run in {members!r}:
            model = keras.saving.load_model(run + "/model.keras",
                                            custom_objects=custom_objects(run))
            out["p"].append(np.asarray(model(x)).tolist())
        model = keras.saving.load_model({str(runs["csv"] / "model.keras")!r},
                                        custom_objects=custom_objects({str(runs["csv"])!r}))
        out["user"] = type(model.get_layer("h1").kernel_regularizer).__name__
        out["csv"] = np.asarray(model(np.load({str(runs["member0"].parent / "x_csv.npy")!r})))
        out["csv"] = out["csv"].tolist()
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["eval", {members[1]!r}, "dataset.split_seed=3"]) == 0
        out["eval"] = [m for m in ("matplotlib", "hydra") if m in sys.modules]
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["predict"] == [] and out["eval"] == []
    for run, p in zip(MEMBERS, out["p"], strict=True):
        assert np.array_equal(np.float32(p), np.asarray(load_model(runs[run])(data.x_test)))
    assert out["user"] == "Quartic"
    x = _data(runs["csv"]).x_test
    assert np.array_equal(np.float32(out["csv"]), np.asarray(load_model(runs["csv"])(x)))


@pytest.mark.parametrize("damage", ["model_cut", "model_empty", "preprocess_partial"])
def test_a_damaged_saved_file_is_one_line_naming_it(runs, tmp_path, capsys, damage):
    """A model.keras cut short or emptied, or a preprocess.json lacking a key: one line
    naming the file, exit 2, for predict and eval alike (never Keras' "File not found")."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["csv"], run)
    model = run / "model.keras"
    if damage == "model_cut":
        model.write_bytes(model.read_bytes()[:3000])
    elif damage == "model_empty":
        model.write_bytes(b"")
    else:
        (run / "preprocess.json").write_text(json.dumps({"features": ["x1", "x2"]}))
    data = str(Path(OmegaConf.load(runs["csv"] / "config.yaml").dataset.path))
    named = "preprocess.json" if damage == "preprocess_partial" else "model.keras"
    for args in (["predict", str(run), "--data", data], ["eval", str(run)]):
        if damage == "preprocess_partial" and args[0] == "eval":
            continue  # eval reads the run's own data through its config, not preprocess.json
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("regexp: error: "), err
        assert f"{run / named}: " in err and ("damaged" in err), err


def test_a_second_save_reuses_what_keras_worked_out_for_the_first(tmp_path, monkeypatch):
    """Keras works out which attributes of a layer to skip when saving by building a
    reference Layer, and, misfiling what it worked out, did so on every save
    (``saved._keep_skipsets``). A second save builds none, and the two files hold the
    same config and weights."""
    import zipfile

    from keras.src.layers.layer import Layer

    from regexp import saved
    from regexp.pipeline import prepare

    job = prepare(make_cfg("trainer.epochs=1"))
    for d in "ab":
        (tmp_path / d).mkdir()
        rundir.write_config(tmp_path / d, job.cfg)
    saved.save(job, tmp_path / "a")
    built = []
    init = Layer.__init__

    def counted(self, *args, **kwargs):
        if type(self) is Layer:  # a reference Layer: the models' layers are subclasses
            built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Layer, "__init__", counted)
    saved.save(job, tmp_path / "b")
    assert built == []
    files = [zipfile.ZipFile(tmp_path / d / "model.keras") for d in "ab"]
    assert files[0].read("config.json") == files[1].read("config.json")
    a, b = (load_model(tmp_path / d) for d in "ab")
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


class Counted:
    """A model, the length of the inputs of each of its calls kept in ``calls``."""

    def __init__(self, model, calls: list[int]) -> None:
        self.model, self.calls = model, calls

    def __call__(self, x, **kwargs):
        self.calls.append(len(x))
        return self.model(x, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_with_validation_on_the_test_split_its_numbers_are_computed_once_and_the_same(runs):
    """``dataset.val_size=0``: ``evaluate`` copies the validation numbers to the test
    split; they are what calling the model on the test split gives."""
    import dataclasses

    from regexp.saved import evaluate

    data = _data(runs["csv"], "dataset.val_size=0")
    assert data.val_is_test
    model = load_model(runs["csv"])
    calls: list[int] = []
    once = evaluate(Counted(model, calls), data)
    assert calls == [len(data.x_train), len(data.x_val)]
    apart = evaluate(model, dataclasses.replace(data, val_is_test=False))
    assert once == apart and once["test"]["n"] == len(data.x_test)


@pytest.mark.parametrize("val_size", ["0", "0.25"])
def test_the_test_split_is_called_once_for_its_numbers_and_its_activations(runs, val_size):
    """``finish`` gets the test split's final numbers and its layers' outputs from one
    call (``model.Probe``): the numbers, penalties included, equal those of calling the
    model itself, and the layers' outputs those of a call of their own, bit for bit;
    the model itself is then called on the training split (and validation) only."""
    from regexp.config import validate
    from regexp.model import Probe, layer_outputs
    from regexp.saved import evaluate

    run = runs["member1"]  # L1 activity penalties, a Huber kernel penalty, dropout
    plans = validate(OmegaConf.load(run / "config.yaml")).plans
    data, model = _data(run, f"dataset.val_size={val_size}"), load_model(run)
    assert data.val_is_test == (val_size == "0")
    calls: list[int] = []
    probe = Probe(model, plans)
    together = evaluate(Counted(model, calls), data, probe=probe)
    alone = [len(data.x_train)] + ([] if data.val_is_test else [len(data.x_val)])
    assert calls == alone
    assert together == evaluate(model, data)
    # the activity penalties are the call's: they differ from the training split's
    assert together["test"]["penalty"] != together["train"]["penalty"]
    post, acts = layer_outputs(model, plans, data.x_test)
    assert sorted(probe.post) == sorted(post) and sorted(probe.acts) == sorted(acts) != []
    for name in post:
        np.testing.assert_array_equal(probe.post[name], post[name])
    for name in acts:
        np.testing.assert_array_equal(probe.acts[name], acts[name])
