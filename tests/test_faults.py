"""Nothing lost, nothing confusing: bad input, divergence, interrupts, resume, verify."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regexp.cli import main
from regexp.engines import ENGINES
from regexp.fused import fit_members
from regexp.pipeline import prepare
from regexp.training import outcome
from regexp.verify import verify
from tests.conftest import make_cfg

ROOT = Path(__file__).resolve().parent.parent


def _csv(tmp_path, text):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return ["dataset=csv", f"dataset.path={path}", "dataset.label=y"]


GOOD_ROWS = "".join(f"{i},{i % 7},{i % 2}\n" for i in range(40))

# (overrides, what the one line must say). Each is a mistake a user will really type.
CATALOGUE = [
    (["reg=nope"], "reg='nope' is not accepted; expected one of batchnorm, dropout"),
    (["dataset=mnist"], "dataset='mnist' is not accepted; expected one of blobs"),
    (["optimizer=adagrad"], "optimizer='adagrad' is not accepted; expected one of adam"),
    (["trainer.epochz=3"], "trainer.epochz is not a config key; did you mean trainer.epochs?"),
    (["model.widht=16"], "model.widht is not a config key; did you mean model.width?"),
    (["reg.lamda=0.1"], "reg.lamda is not a config key; did you mean reg.lam?"),
    (["reg.lam=[1"], "cannot read the overrides"),
    (["reg=l1_activity", "reg.lam=-1"], "reg.lam=-1 is not accepted; expected a number >= 0"),
    (["reg=l1_activity", "reg.lam=abc"], "reg.lam='abc' is not accepted; expected a number >= 0"),
    (["trainer.epochs=0"], "trainer.epochs=0 is not accepted; expected an integer >= 1"),
    (["trainer.epochs=ten"], "trainer.epochs='ten' is not accepted; expected an integer >= 1"),
    (["trainer.batch_size=-5"], "trainer.batch_size=-5 is not accepted"),
    (["trainer.engine=jax"],
     "trainer.engine='jax' is not accepted; expected one of auto, compiled"),  # fmt: skip
    (["trainer.threads=-1"], "trainer.threads=-1 is not accepted; expected an integer >= 0"),
    (["model.depth=0"], "model.depth=0 is not accepted; expected an integer >= 1"),
    (["model.depth=2.5"], "model.depth=2.5 is not accepted"),
    (["model.width=[32,32]"], "model.width=[32, 32] is not accepted; expected one value, or a"),
    (["model.activation=rectifier"], "model.activation='rectifier' is not accepted"),
    (["optimizer.lr=0"], "optimizer.lr=0 is not accepted; expected a number > 0"),
    (["dataset.test_size=1.5"], "dataset.test_size=1.5 is not accepted; expected a number in"),
    (["dataset.val_size=-0.1"], "dataset.val_size=-0.1 is not accepted"),
    (["dataset.scaler_fit=sometimes"], "dataset.scaler_fit='sometimes' is not accepted"),
    (["seed=-1"], "seed=-1 is not accepted; expected an integer from 0 to 2**32 - 1"),
    (["seed=4294967296"], "seed=4294967296 is not accepted; expected an integer from 0 to 2**32"),
    (["reg=kl_sparsity", "reg.rho=1.5"], "reg.layers.-1.activity.rho=1.5 is not accepted"),
    (["reg=l1_activity", "reg.hidden.activity.kind=l4"], "reg.hidden.activity.kind='l4' is not"),
    (["reg=l1_activity", "+reg.layers.7={bias: null}"], "reg.layers.7=7 is not accepted"),
    (["reg=l1_activity", "reg.mode=loss"], "reg.mode='loss' is not accepted; expected mode=layers"),
    (["reg=loss_codes", "reg.codes=[1,3]"], "reg.codes[1]=3 is not accepted"),
    (["reg=l3", "reg.hidden.kernel._target_=nowhere.L3"],
     "reg.hidden.kernel._target_='nowhere.L3' is not accepted; expected an importable"),
    (["reg=l1_kernel", "reg.hidden.kernel={_target_: tests.user_regularizers.PerUnit}"],
     "clear it first: reg.hidden.kernel=null"),
    (["reg=l1_kernel", "reg.hidden.kernel=null",
      "reg.hidden.kernel={_target_: tests.user_regularizers.PerUnit, lam: 0.1}"],
     "returns shape (32,); a regularizer must return a scalar"),
    (["dataset=csv", "dataset.path=/no/such.csv"], "dataset.path='/no/such.csv' is not accepted"),
    (["dataset=csv"], "dataset.path=None is not accepted; expected an existing CSV file"),
    ("csv:", "the file is empty"),
    ("csv:a,b,label\n" + GOOD_ROWS, "dataset.label='y': no such column"),
    ("csv:a,b,y\n" + GOOD_ROWS + "3,x,1\n", "row 42, column 'b' has value 'x'"),
    ("csv:a,b,y\n" + GOOD_ROWS + "3,nan,1\n", "row 42, column 'b' is empty or NaN"),
    ("csv:a,b,y\n1,2,0\n3,4,0\n", "single class"),
    (["dataset.n_samples=-5"], "dataset.n_samples=-5 is not accepted; expected an integer >= 10"),
    (["dataset.test_size=0.999"],
     "dataset.test_size=0.999 is not accepted; expected a size that leaves rows in every split "
     "(300 rows of dataset=blobs give 0 train, 0 validation and 300 test)"),
    (["dataset=iris", "dataset.val_size=0.999"],
     "dataset.val_size=0.999 is not accepted; expected a size that leaves rows in every split"),
    # the typed schemas: booleans, generator and optimizer parameters, unknown keys
    (["trainer.shuffle=no"], "trainer.shuffle='no' is not accepted; expected true or false"),
    (["trainer.quiet=1"], "trainer.quiet=1 is not accepted; expected true or false"),
    (["trainer.epochs=2.0"], "trainer.epochs=2.0 is not accepted; expected an integer >= 1"),
    (["trainer.batch_size='20'"], "trainer.batch_size='20' is not accepted; expected an integer"),
    (["dataset.cluster_std=0"], "dataset.cluster_std=0 is not accepted; expected a number > 0"),
    (["dataset=moons", "dataset.noise=-0.1"],
     "dataset.noise=-0.1 is not accepted; expected a number >= 0"),
    (["dataset=circles", "dataset.factor=1.0"],
     "dataset.factor=1.0 is not accepted; expected a number in [0, 1)"),
    (["dataset=circles", "dataset.n_samples=3"],
     "dataset.n_samples=3 is not accepted; expected an integer >= 10"),
    (["dataset.split_seed=-3"], "dataset.split_seed=-3 is not accepted; expected an integer from"),
    (["+dataset.n_features=5"],
     "dataset.n_features=5 is not accepted; expected a key of dataset=blobs: name, test_size"),
    (["optimizer=sgd", "optimizer.momentum=1.5"],
     "optimizer.momentum=1.5 is not accepted; expected null or a number in [0, 1)"),
    (["+optimizer.beta_1=-0.5"], "optimizer.beta_1=-0.5 is not accepted"),
    (["+optimizer.momentum=0.9"],
     "optimizer.momentum=0.9 is not accepted; expected a key of optimizer adam: name, lr, beta_1"),
    (["optimizer.lr=inf"], "optimizer.lr=inf is not accepted; expected a number > 0"),
    (["reg=l1_activity", "reg.lam=nan"], "reg.lam=nan is not accepted; expected a number >= 0"),
    (["+trainer.patience=3"], "trainer.patience=3 is not accepted; expected a key of trainer:"),
    (["+lam=0.1"], "lam=0.1 is not accepted; expected a key of the config: seed"),
    (["model.width=[32,0,8,8,8]"],
     "model.width=[32, 0, 8, 8, 8] is not accepted; expected an integer >= 1, or a list of"),
    (["model.activation=[relu,tanh]"], "model.activation=['relu', 'tanh'] is not accepted"),
    (["reg=l1_activity", "reg.hidden.position=before"],
     "reg.hidden.position='before' is not accepted; expected one of post, pre"),
    (["reg=l1_activity", "+reg.hidden.activity.l2=0.1"],
     "reg.hidden.activity.l2=0.1 is not accepted; expected a key of kind l1: kind, lam"),
    (["reg=l1_activity", "+reg.output.activity={kind: l1, lam: 0.1}"],
     "reg.output.activity={'kind': 'l1', 'lam': 0.1} is not accepted; expected a key of "
     "reg.output: kernel, bias"),
    (["experiment_name=a/../../x"], "experiment_name='a/../../x' is not accepted"),
    (["reg.name=.."], "reg.name='..' is not accepted"),
    (["+tracking=mlflow", "tracking.uri=''"], "tracking.uri='' is not accepted"),
    (["reg.lam=${nope}"], "reg.lam: Interpolation key 'nope' not found"),
    (["-m", "seed=0,1", "hydra.launcher.max_members=0"],
     "hydra.launcher.max_members=0 is not accepted; expected an integer >= 1"),
    (["-m", "experiment=glob(nothing*)"],
     "the sweep has no jobs: experiment=glob(nothing*) gives no value"),
    (["-m", "seed=range(3,3)"], "the sweep has no jobs: seed=range(3,3) gives no value"),
    # Hydra's record of the run over the run's own config.yaml, on one of its files, or
    # outside the run folder (every job's in one place)
    (["hydra.output_subdir=."], "hydra.output_subdir='.' is not accepted; expected null, or"),
    (["hydra.output_subdir=config.yaml"], "hydra.output_subdir='config.yaml' is not accepted"),
    (["-m", "seed=0,1", "hydra.output_subdir=loss.png"],
     "hydra.output_subdir='loss.png' is not accepted"),
    (["hydra.output_subdir=/tmp/hydra_records"], "hydra.output_subdir='/tmp/hydra_records' is"),
    (["hydra.output_subdir=../up"], "hydra.output_subdir='../up' is not accepted"),
]  # fmt: skip


@pytest.mark.parametrize("case", CATALOGUE, ids=[str(c[1])[:40] for c in CATALOGUE])
def test_bad_input_is_one_line_and_leaves_no_complete_folder(case, tmp_path, capsys):
    overrides, message = case
    if isinstance(overrides, str):
        overrides = _csv(tmp_path, overrides[len("csv:") :])
    run_dir = tmp_path / "run"
    rc = main(["run", "trainer.epochs=1", *overrides, f"hydra.run.dir={run_dir}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("regexp: error: "), err
    assert message in err[0]
    assert not (run_dir / "metrics.json").exists()


def test_catalogue_size():
    assert len(CATALOGUE) >= 25


def test_report_and_output_folder_faults(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["run", f"hydra.run.dir={tmp_path}/afile/run"]) == 2
    err = capsys.readouterr().err
    assert "hydra.run.dir=" in err and "is a file" in err and err.count("\n") == 1


def _regexp(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "regexp", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})}, **kw)  # fmt: skip


def test_no_traceback_unless_hydra_full_error(tmp_path):
    bad = ["run", "trainer.epochs=0", f"hydra.run.dir={tmp_path}/r"]
    quiet = _regexp(*bad)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert quiet.stderr.count("\n") == 1
    loud = _regexp(*bad, env={"HYDRA_FULL_ERROR": "1"})
    assert loud.returncode != 0 and "Traceback" in loud.stderr
    csv = _regexp("run", *_csv(tmp_path, "a,b,y\n1,x,0\n2,3,1\n"), f"hydra.run.dir={tmp_path}/c")
    assert csv.returncode == 2 and "Traceback" not in csv.stderr
    assert csv.stderr.strip().splitlines() == [
        f"regexp: error: {tmp_path}/data.csv: row 2, column 'b' has value 'x'; "
        "expected a finite number (row 1 is the header)"
    ]


@pytest.mark.parametrize("engine", ["keras", "compiled", "fused"])
def test_divergence_stops_at_that_epoch_in_every_engine(engine, tmp_path):
    from regexp.pipeline import run as train

    cfg = make_cfg("experiment=b4_l1_activity", "optimizer.lr=1e4", "trainer.epochs=6",
                   f"trainer.engine={engine}")  # fmt: skip
    m = train(cfg, tmp_path / "run")
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert m["status"] == "diverged" and 1 <= m["diverged_epoch"] < 6
    assert len(history) == m["diverged_epoch"] == m["epochs_run"]
    assert not np.isfinite(history["loss"].iloc[-1]) and "test_accuracy" not in m
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "diverged"


def test_a_diverged_member_does_not_stop_its_group():
    jobs = [prepare(make_cfg("experiment=b4_l1_activity", f"optimizer.lr={lr}", "trainer.epochs=4"))
            for lr in (0.001, 1e4, 0.002)]  # fmt: skip
    histories = fit_members(jobs)
    assert [outcome(h, 4)[0] for h in histories] == ["completed", "diverged", "completed"]
    alone = ENGINES["compiled"](
        [prepare(make_cfg("experiment=b4_l1_activity", "optimizer.lr=0.002", "trainer.epochs=4"))]
    )[0]
    np.testing.assert_allclose(histories[2]["loss"], alone["loss"], rtol=1e-5)


def test_a_sweep_goes_on_past_a_diverged_job_and_exits_1(tmp_path, capsys):
    rc = main(["run", "-m", "experiment=b4_l1_activity", "optimizer.lr=0.001,1e4",
               "trainer.epochs=3", f"hydra.sweep.dir={tmp_path}"])  # fmt: skip
    assert rc == 1
    statuses = sorted(json.loads(p.read_text())["status"] for p in tmp_path.glob("*/metrics.json"))
    assert statuses == ["completed", "diverged"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("regexp: 1 of 2 runs did not complete: 1_b4_l1_activity")
    assert "diverged at epoch" in err[-1]


def _wait_for(predicate, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 130), (signal.SIGINT, 130)])
def test_an_interrupted_run_records_its_history_and_exits_promptly(sig, code, tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "regexp", "run", "experiment=b4_l1_activity",
               "trainer.epochs=5000", f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    log = run_dir / "regexp.log"
    assert _wait_for(lambda: log.exists() and "epoch 500/5000" in log.read_text())
    proc.send_signal(sig)
    start = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - start < 15 and proc.returncode == code
    m = json.loads((run_dir / "metrics.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    assert m["status"] == "interrupted" and 500 <= m["epochs_run"] == len(history) < 5000
    assert "interrupted" in err.strip().splitlines()[-1]


def test_a_killed_run_has_no_metrics(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "regexp", "run", "trainer.epochs=5000",
                             f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    assert _wait_for(lambda: (run_dir / "regexp.log").exists()
                     and "epoch 500/5000" in (run_dir / "regexp.log").read_text())  # fmt: skip
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    writers = [int(pid) for pid in children.stdout.split()
               if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]  # fmt: skip
    assert len(writers) == 1, children.stdout
    proc.kill()
    proc.wait(timeout=30)
    assert (run_dir / "config.yaml").exists() and not (run_dir / "metrics.json").exists()
    # its writer process does not outlive it (it would wait for jobs for ever)
    assert _wait_for(lambda: _ended(writers[0]), seconds=15)


def test_a_launching_process_killed_while_its_writer_starts_up_ends_it_too():
    """Killed before its writer process has finished starting up (imports, the first
    figure), the launching process still takes its writer with it."""
    script = ("import os, sys\n"
              "from regexp.writer import Writer\n"
              "w = Writer(1)\n"
              "print(*w.pool._processes, flush=True)\n"
              "os.kill(os.getpid(), 9)\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == -9
    (writer,) = [int(pid) for pid in done.stdout.split()]
    assert _wait_for(lambda: _ended(writer), seconds=15)


def _ended(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped has)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


SWEEP = ["experiment=b4_l1_activity", "reg=l1_activity,l2_activity", "seed=0,1,2",
         "trainer.epochs=30"]  # fmt: skip


def _results(sweep: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))}


def test_a_killed_sweep_resumes_to_the_uninterrupted_result(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "regexp", "run", "-m", *SWEEP,
                             f"hydra.sweep.dir={killed}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    assert _wait_for(lambda: len(list(killed.glob("*/metrics.json"))) >= 2)
    proc.kill()
    proc.wait(timeout=30)
    before = _results(killed)
    assert 2 <= len(before) < 6, "the kill should land halfway"
    stamps = {name: (killed / name / "metrics.json").stat().st_mtime_ns for name in before}

    assert main(["run", "-m", *SWEEP, f"resume={killed}"]) == 0
    after = _results(killed)
    assert len(after) == 6
    assert {n: (killed / n / "metrics.json").stat().st_mtime_ns for n in before} == stamps
    assert main(["run", "-m", *SWEEP, f"hydra.sweep.dir={tmp_path / 'whole'}"]) == 0
    whole = _results(tmp_path / "whole")
    assert sorted(after) == sorted(whole)  # same job numbers and names
    for name in whole:  # the same groups trained again: the same numbers to the last bit
        for key, value in whole[name].items():
            if key not in ("train_seconds", "config_hash"):
                assert after[name][key] == value, (name, key)
        history = pd.read_csv(killed / name / "history.csv")
        pd.testing.assert_frame_equal(
            history, pd.read_csv(tmp_path / "whole" / name / "history.csv")
        )


def test_ctrl_c_while_folders_are_written_loses_no_trained_run(tmp_path, monkeypatch, capsys):
    """SIGINT lands while the first of three trained runs is being finished (its model
    saved) here, with the writer process writing: all three folders are completed, then
    regexp stops with 130 and says so."""
    from regexp import saved

    save, sent = saved.save, []

    def interrupting(*args, **kwargs):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return save(*args, **kwargs)

    monkeypatch.setattr(saved, "save", interrupting)
    rc = main(["run", "-m", "seed=0,1,2", "trainer.epochs=2", f"hydra.sweep.dir={tmp_path}"])
    assert rc == 130 and sent
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/metrics.json"))]
    assert [m["status"] for m in records] == ["completed"] * 3
    assert "every run that had trained was written first" in capsys.readouterr().err


def test_ctrl_c_at_the_terminal_reaches_the_writer_too_and_loses_nothing(tmp_path):
    """Ctrl-C at a terminal signals the whole process group, the writer process too: it
    ignores it and writes every job handed to it, the launching process waits for it and
    exits 130. Every folder is complete (with its figures and .hydra/), interrupted (the
    group in training: its history so far) or unfinished (no metrics.json), and resume
    then completes the sweep."""
    from regexp import rundir

    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1,2,3,4,5", "reg=l1_activity", "reg.lam=1e-3,1e-2", "trainer.epochs=40",
            "hydra.launcher.max_members=2"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "regexp", "run", *args,
                             f"hydra.sweep.dir={sweep}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.time() + 240
    while not list(sweep.glob("*/metrics.json")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    folders = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(folders) == 12
    status = {f: rundir.read_metrics(f) for f in folders}
    status = {f: "unfinished" if m is None else m["status"] for f, m in status.items()}
    completed = [f for f, s in status.items() if s == "completed"]
    assert completed and len(completed) < 12, status  # the interrupt came mid-sweep
    assert set(status.values()) <= {"completed", "interrupted", "unfinished"}, status
    for folder in completed:  # the groups trained before the interrupt: written whole
        files = {p.name for p in folder.iterdir()}
        assert {"history.csv", "loss.png", "accuracy.png", "activations.png", ".hydra",
                "env.json", "model.keras", "regexp.log"} <= files, folder  # fmt: skip
    for folder in (f for f, s in status.items() if s == "interrupted"):  # the group training
        assert len(pd.read_csv(folder / "history.csv")) < 40
    rc = subprocess.run([sys.executable, "-m", "regexp", "run", *args, f"resume={sweep}"],
                        cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert rc.returncode == 0, rc.stderr[-2000:]
    assert len(list(sweep.glob("*/metrics.json"))) == 12


def test_a_writer_that_cannot_write_a_file_fails_that_job_in_one_line(tmp_path, capsys):
    """A real OSError in the writer process (history.csv cannot be a file: a folder of
    that name is there): that job's folder is left without metrics.json, the others are
    complete, and the sweep ends with one line naming the file, exit 2."""
    sweep = tmp_path / "sweep"
    (sweep / "1_none" / "history.csv").mkdir(parents=True)
    rc = main(["run", "-m", "seed=0,1,2", "trainer.epochs=1", f"hydra.sweep.dir={sweep}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "jobs #1" in err[0] and "history.csv" in err[0] and "Is a directory" in err[0], err
    assert sorted(p.parent.name for p in sweep.glob("*/metrics.json")) == ["0_none", "2_none"]


def test_without_resume_a_complete_sweep_is_not_overwritten(tmp_path, capsys):
    assert main(["run", "-m", "seed=0,1", "trainer.epochs=1", f"hydra.sweep.dir={tmp_path}"]) == 0
    stamp = (tmp_path / "0_none" / "metrics.json").stat().st_mtime_ns
    rc = main(["run", "-m", "seed=0,1", "trainer.epochs=1", f"hydra.sweep.dir={tmp_path}"])
    assert rc == 2 and "already holds a complete run" in capsys.readouterr().err
    assert (tmp_path / "0_none" / "metrics.json").stat().st_mtime_ns == stamp


def test_verify_confirms_a_run_and_catches_a_change(tmp_path, capsys):
    from regexp.pipeline import run as train

    train(make_cfg("experiment=b7_kl_sparsity", "trainer.epochs=3"), tmp_path / "run")
    diffs, largest = verify(tmp_path / "run")
    assert diffs == [] and largest == 0.0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    metrics["test_data_loss"] += 1e-9
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    assert main(["verify", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("differs: 1 results") and "test_data_loss" in out
    # and it says that the environment (versions, lock file, commit) is the recorded one
    assert f"the environment is the one {tmp_path / 'run' / 'env.json'} recorded" in out


def test_two_runs_started_together_get_their_own_folders(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "regexp", "run", "trainer.epochs=2",
                               f"hydra.run.dir={tmp_path}/out/${{now:%H-%M-%S-%f}}"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(2)]  # fmt: skip
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    folders = list((tmp_path / "out").iterdir())
    assert len(folders) == 2 and all((f / "metrics.json").is_file() for f in folders)


def test_an_interrupted_fused_sweep_records_its_group(tmp_path):
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "regexp", "run", "-m", "experiment=b4_l1_activity",
               "seed=0,1,2", "trainer.epochs=5000", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.time() + 120
    for line in proc.stdout:  # the group's first progress line: training is under way
        if "epoch 500/5000" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(records) == 3 and {m["status"] for m in records} == {"interrupted"}
    assert len({m["epochs_run"] for m in records}) == 1 and 0 < records[0]["epochs_run"] < 5000


def test_a_second_sweep_into_a_folder_being_written_is_refused(tmp_path, capsys):
    """Two sweeps into one folder never mix: the second is refused with one line while the
    first runs; once the first is killed, its lock is gone and resume finishes it."""
    sweep = tmp_path / "sweep"
    first = [
        "reg=l2_kernel",
        "reg.lam=0.01,0.02",
        "trainer.epochs=5000",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.Popen([sys.executable, "-m", "regexp", "run", "-m", *first], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    lock = sweep / ".regexp.lock"
    assert _wait_for(lambda: lock.exists() and lock.read_text().startswith("pid"))
    rc = main(["run", "-m", "reg=l2_kernel", "reg.lam=0.5,0.6", "trainer.epochs=2",
               f"hydra.sweep.dir={sweep}"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"hydra.sweep.dir={sweep} is being written by another regexp (pid {proc.pid}" in err[0]
    proc.kill()
    proc.wait(timeout=30)
    assert not list(sweep.glob("*/metrics.json"))  # nothing of the second sweep was written
    again = ["reg=l2_kernel", "reg.lam=0.01,0.02", "trainer.epochs=2", f"hydra.sweep.dir={sweep}"]
    assert main(["run", "-m", *again]) == 0  # the killed sweep left no lock behind
    assert len(list(sweep.glob("*/metrics.json"))) == 2


def test_run_files_have_the_usual_permissions(tmp_path):
    from regexp.pipeline import run as train

    train(make_cfg("trainer.epochs=1"), tmp_path / "run")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir() if p.is_file()}
    umask = os.umask(0)
    os.umask(umask)
    assert set(modes.values()) == {0o666 & ~umask}, modes


@pytest.mark.parametrize("launcher", ["fused", "basic"])
def test_jobs_that_would_share_a_folder_are_refused_before_training(launcher, tmp_path, capsys):
    rc = main(["run", "-m", "seed=0,1,2", "trainer.epochs=1", "hydra.sweep.subdir=${reg.name}",
               f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0] == (
        f"regexp: error: job #0, job #1, job #2 would all write {tmp_path}/none; make "
        "hydra.sweep.subdir tell them apart (the default starts with ${hydra.job.num})"
    )
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("config.yaml"))


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["trainer.epochs=1", "resume=/nowhere"],
            "resume='/nowhere' is not accepted; expected a sweep folder, with -m",
        ),
        (["-m", "trainer.epochs=1", "resume=/nowhere"], "expected an existing sweep folder"),
        (["-m", "trainer.epochs=1", "resume={run}"], "a sweep folder, not one run's folder"),
        (["-m", "trainer.epochs=1", "resume={tmp}"], "one that holds multirun.yaml"),
        (
            ["experiment_name=a/../../x"],
            "experiment_name='a/../../x' is not accepted; expected null or a plain name",
        ),
        (["reg.name=.."], "reg.name='..' is not accepted"),
        (["seed=4294967296"], "seed=4294967296 is not accepted; expected an integer from 0 to"),
        (["hydra.run.dir=/tmp/" + "x" * 300], "expected folder names of at most 255 bytes"),
    ],
)
def test_resume_and_folder_mistakes_are_one_line_and_touch_nothing(args, message, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "trainer.epochs=1", f"hydra.run.dir={run}"]) == 0
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    args = [a.format(run=run, tmp=tmp_path) for a in args]
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_full_disk_while_writing_is_one_line_and_leaves_no_complete_folder(
    tmp_path, monkeypatch, capsys
):
    import errno

    from regexp import rundir, writer

    def full(run_dir, history):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / "history.csv"))

    monkeypatch.setattr(writer, "PROCESSES", 0)  # written here, where the fault is patched in
    monkeypatch.setattr(rundir, "write_history", full)
    for args in (["hydra.run.dir=" + str(tmp_path / "one")],
                 ["-m", "seed=0,1", "hydra.sweep.dir=" + str(tmp_path / "sweep")]):  # fmt: skip
        assert main(["run", "trainer.epochs=1", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "No space left on device" in err[0], err
        assert "history.csv" in err[0]
    assert not list(tmp_path.rglob("metrics.json"))


@pytest.mark.parametrize(
    "override, cause",
    [("trainer.epochs=1000000000000", "the history of trainer.epochs=1000000000000"),
     ("model.width=1000000", "the weights of model.width=1000000")],
)  # fmt: skip
def test_a_training_that_cannot_fit_in_memory_is_refused_before_it_starts(
    override, cause, tmp_path, capsys
):
    for command in (["check", override], ["run", override, f"hydra.run.dir={tmp_path}/run"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "GiB is free; make it smaller" in err[0] and cause in err[0], err
    assert not (tmp_path / "run").exists()


def test_the_memory_estimate_grows_with_the_work():
    from regexp.config import ORDER_BUDGET, memory_needed
    from regexp.data import load
    from regexp.plan import layer_plan

    cfg = make_cfg("trainer.epochs=100")
    data, plans = load(cfg.dataset).shape, layer_plan(cfg)
    one = sum(memory_needed(cfg, data, plans).values())
    assert sum(memory_needed(cfg, data, plans, members=10).values()) == 10 * one
    more = make_cfg("trainer.epochs=200")
    assert sum(memory_needed(more, data, plans).values()) > one
    assert one < 50 * 2**20  # a 5 x 32 network for 100 epochs needs well under 50 MiB
    # batch orders are made a chunk at a time: their part stops growing with the epochs
    huge = memory_needed(make_cfg("trainer.epochs=1000000000"), data, plans)
    (orders,) = [v for k, v in huge.items() if "batch order" in k]
    assert orders == ORDER_BUDGET * 12


def test_verify_trains_a_fused_member_again_in_its_group_bit_for_bit(tmp_path, capsys):
    """A member alone drifts from its group's run (chaotically, over many epochs); in its
    recorded group it repeats exactly."""
    assert main(["run", "-m", "experiment=b4_l1_activity", "seed=0,1,2", "trainer.epochs=40",
                 f"hydra.sweep.dir={tmp_path}"]) == 0  # fmt: skip
    member = next(tmp_path.glob("1_*"))
    record = json.loads((member / "metrics.json").read_text())
    assert record["group"] == sorted(p.name for p in tmp_path.glob("[0-9]_*"))
    capsys.readouterr()
    assert main(["verify", str(member)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("identical:")


@pytest.mark.parametrize("case", CATALOGUE, ids=[str(c[1])[:40] for c in CATALOGUE])
def test_check_refuses_what_run_refuses(case, tmp_path, capsys):
    """regexp check and regexp run agree on the whole catalogue (the same one line), except
    where only building the model can tell, which check says it does not do."""
    overrides, message = case
    if isinstance(overrides, str):
        overrides = _csv(tmp_path, overrides[len("csv:") :])
    rc = main(["check", "trainer.epochs=1", *overrides])
    err = capsys.readouterr().err.strip().splitlines()
    if "a regularizer must return a scalar" in message or "fails (" in message:
        assert rc == 0  # a user's class is only called when the model is built
        return
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_a_failed_job_fails_the_sweep_whatever_its_folder_is_called(tmp_path, capsys):
    rc = main(["run", "-m", "experiment=b4_l1_activity", "optimizer.lr=0.001,1e4",
               "trainer.epochs=2", "hydra.sweep.subdir=job${hydra.job.num}",
               f"hydra.sweep.dir={tmp_path}"])  # fmt: skip
    assert rc == 1
    assert "1 of 2 runs did not complete: job1 diverged" in capsys.readouterr().err


@pytest.mark.parametrize("when, written, epochs", [("writing", 1, 30), ("training", 2, 300)])
def test_a_killed_writer_loses_nothing_the_launching_process_writes_its_jobs(
    tmp_path, when, written, epochs
):
    """The writer process killed mid-sweep (as the OOM killer would), while it writes the
    first group's folders, or idle while the second group trains (its next job then finds
    it dead): the launching process says so in one line and writes every job the writer
    had not finished, the one it was writing included, and every later one. The sweep
    completes (exit 0), each folder as an uninterrupted sweep writes it: the same
    numbers, history and files."""
    from regexp import rundir

    sweep, alone = tmp_path / "sweep", tmp_path / "alone"
    args = ["-m", "seed=0,1,2,3,4,5", f"trainer.epochs={epochs}", "hydra.launcher.max_members=2"]
    proc = subprocess.Popen([sys.executable, "-m", "regexp", "run", *args,
                             f"hydra.sweep.dir={sweep}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.time() + 240
    while len(list(sweep.glob("*/metrics.json"))) < written and time.time() < deadline:
        time.sleep(0.05)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    writers = [int(pid) for pid in children.stdout.split()
               if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]  # fmt: skip
    assert len(writers) == 1, children.stdout
    os.kill(writers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=240)
    text = err.decode()
    assert proc.returncode == 0, text[-3000:]
    assert text.count("writer process ended abruptly") == 1 and "Traceback" not in text
    (said,) = [line for line in text.splitlines() if "writer process ended abruptly" in line]
    assert "the folders it had not written are written here" in said
    done = subprocess.run([sys.executable, "-m", "regexp", "run", *args,
                           f"hydra.sweep.dir={alone}"], cwd=ROOT, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    folders, expected = rundir.job_folders(sweep), rundir.job_folders(alone)
    assert [f.name for f in folders] == [f.name for f in expected] and len(folders) == 6
    for folder, twin in zip(folders, expected, strict=True):
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in twin.iterdir())
        record, other = rundir.read_metrics(folder), rundir.read_metrics(twin)
        for key in ("train_seconds", "group"):
            record.pop(key), other.pop(key)
        assert record == other, folder.name
        assert (folder / "history.csv").read_bytes() == (twin / "history.csv").read_bytes()


def _slow_pid(i: int) -> tuple[int, int]:
    """A job that takes a while, and says where it ran."""
    time.sleep(0.3)
    if i < 0:
        raise ValueError(f"job {i} fails")
    return i, os.getpid()


def test_while_it_waits_the_launching_process_writes_what_the_writer_has_not_started():
    """``Writer.results`` does not sit idle while the writer process works through its
    backlog: it takes the jobs not yet started, from the last back, and runs them here.
    Every job runs once, the results come back in order, the writer process's are the
    first ones (it takes them in order), and an error still reaches the caller. A job
    an idle writer process would take at once (a single run's) is left to it."""
    from regexp import writer

    folders = writer.Writer(processes=1)
    try:
        for i in range(8):
            folders.submit(_slow_pid, i)
        done = folders.results()
        folders.submit(_slow_pid, 100)  # the writer idle: it is the one to write it
        (alone,) = folders.results()
        for i in (8, -1, 9):  # the last two taken here: the failure is still said
            folders.submit(_slow_pid, i)
        with pytest.raises(ValueError, match="job -1 fails"):
            folders.results()
    finally:
        folders.close()
    assert [i for i, _ in done] == list(range(8))
    there = [i for i, pid in done if pid != os.getpid()]
    here = [i for i, pid in done if pid == os.getpid()]
    assert there and here and there == list(range(len(there)))
    assert alone[1] != os.getpid()


def test_a_writer_killed_while_the_launching_process_helps_loses_no_job_and_exits():
    """The writer process killed while the launching process writes the backlog's jobs
    (``Writer.results``): every job still runs, those lost with the process again here,
    and their results come back in order; the process then exits. (Taking jobs back
    from the process pool with ``Future.cancel`` made Python 3.11's pool clean-up fail
    on them when its process died, and the exit hung for good.)"""
    code = textwrap.dedent(
        """
        import os, signal, threading
        from regexp import writer
        from tests.test_faults import _slow_pid

        folders = writer.Writer(processes=1)
        folders.submit(_slow_pid, 0)
        folders.results()  # the writer process is up
        for i in range(12):
            folders.submit(_slow_pid, i)
        (pid,) = folders.pool._processes
        threading.Timer(0.8, os.kill, (pid, signal.SIGKILL)).start()
        done = folders.results()
        print("jobs", [i for i, _ in done])
        here = sum(p == os.getpid() for _, p in done)
        print("here", here, "there", sum(p == pid for _, p in done))
        folders.submit(_slow_pid, 12)  # it is dead: written here
        print("after", folders.results()[0][1] == os.getpid(), folders.took_over)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"jobs {list(range(12))}", lines
    here, there = int(lines[1].split()[1]), int(lines[1].split()[3])
    assert here + there == 12 and here > 0 and there > 0, lines  # some were written there
    assert lines[2] == "after True True", lines
    assert done.stderr.count("writer process ended abruptly") == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_folder_written_again_never_looks_complete_while_it_is_written(tmp_path,
                                                                         monkeypatch):  # fmt: skip
    """What the launching process does for a job its dead writer was writing, or had
    just finished: ``write_folder`` takes ``metrics.json`` away first, so a folder never
    holds it beside files still being written, and puts it back last, the same."""
    from regexp import pipeline, rundir, writer

    monkeypatch.setattr(writer, "PROCESSES", 0)
    handed = []
    write_folder = pipeline.write_folder
    monkeypatch.setattr(pipeline, "write_folder", lambda done: handed.append(done) or
                        write_folder(done))  # fmt: skip
    assert main(["run", "trainer.epochs=2", f"hydra.run.dir={tmp_path}"]) == 0
    (done,) = handed
    first = (tmp_path / rundir.METRICS).read_bytes()
    seen = []
    write_history = rundir.write_history

    def history(run_dir, values):
        seen.append((run_dir / rundir.METRICS).exists())
        return write_history(run_dir, values)

    monkeypatch.setattr(rundir, "write_history", history)
    write_folder(done)
    assert seen == [False]
    assert (tmp_path / rundir.METRICS).read_bytes() == first


def test_hydra_records_under_another_name_are_no_runs(tmp_path):
    """``hydra.output_subdir=.cfg`` (any name): Hydra's record inside each job folder,
    with its own config.yaml, is not taken for a run (an unfinished one, failing the
    sweep); ``${hydra:job.num}`` in ``hydra.sweep.subdir`` names each job's folder as
    Hydra's run_job does."""
    from regexp import rundir

    sweep = tmp_path / "sweep"
    assert main(["run", "-m", "seed=0,1", "trainer.epochs=1", "hydra.output_subdir=.cfg",
                 "hydra.sweep.subdir=${hydra:job.num}_of_${hydra:job.name}",
                 f"hydra.sweep.dir={sweep}"]) == 0  # fmt: skip
    folders = rundir.job_folders(sweep)
    assert [f.name for f in folders] == ["0_of_regexp", "1_of_regexp"]
    assert all((f / ".cfg" / "hydra.yaml").is_file() for f in folders)
    assert [status for _, status, _ in rundir.sweep_outcomes(sweep)] == ["completed"] * 2


def test_a_job_whose_hydra_record_cannot_be_written_fails_in_one_line(tmp_path, capsys):
    """A damaged job folder (its ``.hydra`` a file) on resume: Hydra's own writing of the
    record fails; the sweep says which job and file in one line (exit 2), the other job
    is complete and the damaged one is not."""
    sweep = tmp_path / "sweep"
    args = ["run", "-m", "seed=0,1", "trainer.epochs=1"]
    assert main([*args, f"hydra.sweep.dir={sweep}"]) == 0
    (sweep / "1_none" / "metrics.json").unlink()
    shutil.rmtree(sweep / "1_none" / ".hydra")
    (sweep / "1_none" / ".hydra").write_text("not a folder")
    capsys.readouterr()
    assert main([*args, f"resume={sweep}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "jobs #1: cannot write" in err[0] and ".hydra" in err[0], err
    assert not (sweep / "1_none" / "metrics.json").exists()
    assert (sweep / "0_none" / "metrics.json").exists()
