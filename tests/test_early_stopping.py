"""Early stopping (``trainer=early_stopping``): Keras' EarlyStopping rule in every engine.

model.fit with the callback is the reference, checked against the rule worked by hand on
its own history; the compiled engine must stop at the same epoch with the same history
and weights, and each fused member at its own epoch, equal to its own compiled run.
The data overfit fast (60 noisy moons, a large learning rate), so the rule really stops
within a few epochs: every test asserts it did, so ignoring it fails.
"""

import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from regexp import metrics
from regexp.cli import main
from regexp.engines import ENGINES
from regexp.fused import fit_members
from regexp.pipeline import group_key, plan, prepare
from regexp.pipeline import run as train
from regexp.training import outcome
from tests.conftest import make_cfg

SERIES = ["loss", "data_loss", "accuracy", "val_loss", "val_data_loss", "val_accuracy"]
EPOCHS = 12
FAST = ["trainer=early_stopping", "dataset=moons", "dataset.n_samples=60", "dataset.noise=0.4",
        "optimizer.lr=0.05", "trainer.batch_size=8", f"trainer.epochs={EPOCHS}"]  # fmt: skip


def _keras_rule(values, patience, min_delta, mode):
    """Keras 3.14's EarlyStopping, written out on a recorded series: (stopped epoch or
    None, best epoch), 1-based. Epoch 0 always improves; an improvement must beat the
    best by more than min_delta (compared in float32); the stop comes once ``wait``
    (epochs since the last improvement) reaches ``patience``, never after epoch 0."""
    best, best_epoch, wait = None, 0, 0
    for epoch, value in enumerate(values):
        wait += 1
        shifted = np.float32(value + min_delta if mode == "min" else value - min_delta)
        if best is None or (shifted < best if mode == "min" else shifted > best):
            best, best_epoch, wait = np.float32(value), epoch, 0
        elif wait >= patience and epoch > 0:
            return epoch + 1, best_epoch + 1
    return None, best_epoch + 1


def _train(engine, *overrides):
    """(job, history table) of one job trained by ``engine``."""
    job = prepare(make_cfg(*FAST, *overrides, f"trainer.engine={engine}"))
    return job, pd.DataFrame(ENGINES[engine]([job])[0])


def _max_rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float((np.abs(a - b) / np.maximum(np.abs(b), 1e-12)).max())


def _val_data_loss(job) -> float:
    """The validation data loss of the weights the job's model holds now."""
    return metrics.data_loss(job.data.y_val, np.asarray(job.model(job.data.x_val)))


RULES = [  # (overrides, monitor, mode): a min and a max monitor, restore_best true and false
    (["seed=2", "trainer.early_stopping.patience=2", "trainer.early_stopping.min_delta=0.05"],
     "val_data_loss", "min"),  # min_delta matters: with 0 it would stop 2 epochs later
    (["trainer.early_stopping.monitor=val_accuracy", "trainer.early_stopping.patience=2",
      "trainer.early_stopping.restore_best=false"], "val_accuracy", "max"),
    (["reg=l1_activity", "reg.lam=0.003", "trainer.early_stopping.monitor=val_loss",
      "trainer.early_stopping.patience=1"], "val_loss", "min"),  # with a penalty, on the loss
]  # fmt: skip


@pytest.mark.parametrize("overrides, monitor, mode", RULES, ids=[" ".join(r[0]) for r in RULES])
def test_compiled_stops_where_model_fit_stops_with_the_same_weights(overrides, monitor, mode):
    """model.fit's EarlyStopping against the rule worked by hand on its own history, then
    the compiled engine against model.fit: stop and best epoch, history, final weights."""
    runs = {e: _train(e, *overrides, "trainer.shuffle=false") for e in ("keras", "compiled")}
    (fit_job, fit), (job, compiled) = runs["keras"], runs["compiled"]
    spec = fit_job.cfg.trainer.early_stopping
    stopped, best = _keras_rule(fit[monitor], spec.patience, spec.min_delta, mode)
    assert stopped is not None and stopped < EPOCHS  # it really stopped early
    assert (fit_job.stopped_epoch, fit_job.best_epoch, len(fit)) == (stopped, best, stopped)
    # the weights it ends with: the best epoch's (restore_best), else the last epoch's
    ends_with = best if spec.restore_best else stopped
    assert _val_data_loss(fit_job) == pytest.approx(fit["val_data_loss"][ends_with - 1], rel=1e-5)
    if spec.restore_best:  # and the restored weights are not the last epoch's
        assert abs(fit["val_data_loss"].iloc[-1] / fit["val_data_loss"][best - 1] - 1) > 1e-2

    assert (job.stopped_epoch, job.best_epoch, len(compiled)) == (stopped, best, stopped)
    assert _max_rel(compiled[SERIES], fit[SERIES]) < 1e-4
    for w, w_fit in zip(job.model.get_weights(), fit_job.model.get_weights(), strict=True):
        np.testing.assert_allclose(w, w_fit, rtol=1e-4, atol=1e-6)
    x = job.data.x_test  # what metrics.json's test numbers are computed from
    np.testing.assert_allclose(job.model(x), fit_job.model(x), rtol=1e-4, atol=1e-6)


MEMBERS = [  # each stops at its own epoch (2, 11, 3); the group trains on after the first
    ["seed=0", "trainer.early_stopping.patience=0", "trainer.early_stopping.min_delta=0.01"],
    ["seed=1", "trainer.early_stopping.patience=3"],
    ["seed=2", "trainer.early_stopping.patience=1", "dataset.split_seed=1"],
]


def test_fused_members_stop_at_their_own_epochs_frozen_and_equal_to_their_compiled_runs():
    """restore_best=false: each member ends with the weights of its own stop epoch, while
    the group trains on; a member that kept moving would not."""
    base = [*FAST, "trainer.early_stopping.restore_best=false"]
    jobs = [prepare(make_cfg(*base, *m)) for m in MEMBERS]
    assert len({group_key(plan(j.cfg, "-", fused=True)) for j in jobs}) == 1
    fused = fit_members(jobs)
    lengths = [len(h["loss"]) for h in fused]
    assert len(set(lengths)) == len(MEMBERS) and max(lengths) < EPOCHS  # all stop, each its own
    for member, job, history in zip(MEMBERS, jobs, fused, strict=True):
        spec = job.cfg.trainer.early_stopping  # its own patience and min_delta
        rule = _keras_rule(history["val_data_loss"], spec.patience, spec.min_delta, "min")
        assert (job.stopped_epoch, job.best_epoch) == rule, member
        assert job.stopped_epoch == len(history["loss"]), member
        assert outcome(history, EPOCHS, job.stopped_epoch)[0] == "completed"
        # frozen: its weights still give its stop epoch's validation loss
        assert _val_data_loss(job) == pytest.approx(history["val_data_loss"][-1], rel=1e-5)
        alone, h = _train("compiled", "trainer.early_stopping.restore_best=false", *member)
        assert (job.stopped_epoch, job.best_epoch) == (alone.stopped_epoch, alone.best_epoch)
        assert _max_rel(pd.DataFrame(history)[SERIES], h[SERIES]) < 1e-4, member
        x = job.data.x_test
        np.testing.assert_allclose(job.model(x), alone.model(x), rtol=1e-4, atol=1e-6)
        # weights to within Adam's amplified rounding: a weight whose gradient is ~0 may
        # take a different step of up to ~lr when the last bits of the gradient differ
        for w, w_alone in zip(job.model.get_weights(), alone.model.get_weights(), strict=True):
            np.testing.assert_allclose(w, w_alone, rtol=1e-4, atol=1e-3)


def test_a_stopped_run_is_complete_and_records_its_epochs(tmp_path):
    """Validated on the test split: the test numbers are the best epoch's (restored)."""
    out = tmp_path / "run"
    m = train(make_cfg(*FAST, "trainer.early_stopping.patience=1", "dataset.val_size=0"), out)
    h = pd.read_csv(out / "history.csv")
    assert m["status"] == "completed" and m["val_is_test"]
    assert 1 <= m["best_epoch"] < m["stopped_epoch"] == m["epochs_run"] == len(h) < EPOCHS
    assert m == json.loads((out / "metrics.json").read_text())
    assert m["test_data_loss"] == pytest.approx(h["val_data_loss"][m["best_epoch"] - 1], rel=1e-5)
    assert m["test_data_loss"] != pytest.approx(h["val_data_loss"].iloc[-1], rel=1e-3)
    recorded = OmegaConf.load(out / "config.yaml").trainer.early_stopping
    assert recorded == {"monitor": "val_data_loss", "patience": 1, "min_delta": 0.0,
                        "restore_best": True}  # fmt: skip


def test_without_early_stopping_the_epochs_are_null_and_divergence_still_wins(tmp_path):
    m = train(make_cfg(*FAST[1:], "trainer.epochs=2"), tmp_path / "plain")
    assert (m["status"], m["stopped_epoch"], m["best_epoch"]) == ("completed", None, None)
    diverged = train(make_cfg(*FAST, "optimizer.lr=1e4", "trainer.early_stopping.patience=20"),
                     tmp_path / "diverged")  # fmt: skip
    assert diverged["status"] == "diverged" and diverged["stopped_epoch"] is None


def test_a_sweep_of_patiences_is_fused_complete_and_resumes_as_complete(tmp_path):
    """Validated on the test split: each member's test numbers are its best epoch's
    (restore_best in a fused group)."""
    sweep = tmp_path / "sweep"
    args = ["run", "-m", *FAST, "dataset.val_size=0", "trainer.early_stopping.patience=0,3",
            "seed=0,1"]  # fmt: skip
    assert main([*args, f"hydra.sweep.dir={sweep}"]) == 0
    files = sorted(sweep.glob("*/metrics.json"))
    records = [json.loads(p.read_text()) for p in files]
    assert [(m["status"], m["engine"], m["group_size"]) for m in records] == [
        ("completed", "fused", 4)
    ] * 4
    for m, file in zip(records, files, strict=True):
        h = pd.read_csv(file.parent / "history.csv")
        assert m["best_epoch"] < m["stopped_epoch"] == m["epochs_run"] == len(h) < EPOCHS
        best = h["val_data_loss"][m["best_epoch"] - 1]
        assert m["test_data_loss"] == pytest.approx(best, rel=1e-5)
    assert len({m["epochs_run"] for m in records}) > 1
    stamps = [p.stat().st_mtime_ns for p in files]
    assert main([*args, f"resume={sweep}"]) == 0  # nothing left to train
    assert [p.stat().st_mtime_ns for p in files] == stamps


def test_a_history_that_ends_where_the_rule_stopped_is_complete():
    short = {"loss": [0.5, 0.4, 0.45]}
    assert outcome(short, 10, stopped_epoch=3) == ("completed", None)
    assert outcome(short, 10) == ("interrupted", None)  # no stop recorded: cut short
    assert outcome(short, 10, stopped_epoch=5) == ("interrupted", None)
    assert outcome({"loss": [0.5, float("nan")]}, 10, stopped_epoch=2) == ("diverged", 2)


REFUSED = [
    ("trainer.early_stopping.monitor=val_foo",
     "trainer.early_stopping.monitor='val_foo' is not accepted; expected one of loss, data_loss"),
    ("trainer.early_stopping.patience=-1",
     "trainer.early_stopping.patience=-1 is not accepted; expected an integer >= 0"),
    ("trainer.early_stopping.restore_best=maybe",
     "trainer.early_stopping.restore_best='maybe' is not accepted; expected true or false"),
    ("trainer.early_stopping.min_delta=-0.1",
     "trainer.early_stopping.min_delta=-0.1 is not accepted; expected a number >= 0"),
    ("trainer.early_stopping.monitor=val_r2",
     "trainer.early_stopping.monitor='val_r2' is not accepted; expected a series "
     "dataset.task=classification records: one of loss, data_loss, accuracy, val_loss"),
    ("trainer.early_stopping=yes",
     "trainer.early_stopping='yes' is not accepted; expected null or a mapping"),
    ("dataset=diabetes trainer.early_stopping.monitor=val_accuracy",
     "trainer.early_stopping.monitor='val_accuracy' is not accepted; expected a series "
     "dataset.task=regression records: one of loss, data_loss, mae, r2, val_loss"),
]  # fmt: skip


@pytest.mark.parametrize("overrides, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_early_stopping_settings_are_one_line(overrides, message, tmp_path, capsys):
    run = ["run", "trainer=early_stopping", *overrides.split(), f"hydra.run.dir={tmp_path}/run"]
    rc = main(run)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"regexp: error: {message}"), err
    assert not (tmp_path / "run" / "metrics.json").exists()
