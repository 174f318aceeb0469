"""Hydra launchers beyond the fused default, and run inspection without TensorFlow."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from regexp.cli import main

SWEEP = ["experiment=b4_l1_activity", "seed=0,1", "reg.lam=0.01,0.001", "trainer.epochs=2"]
SERIES = ["loss", "data_loss", "accuracy", "val_loss", "val_data_loss", "val_accuracy"]


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    out = tmp_path_factory.mktemp("fused")
    assert main(["run", "-m", *SWEEP, f"hydra.sweep.dir={out}"]) == 0
    return out


@pytest.fixture(scope="module", autouse=True)
def _stop_ray():
    """The Ray tests start one local Ray instance; stop it with this module."""
    yield
    if "ray" in sys.modules:
        import ray

        ray.shutdown()


# A local Ray instance without its dashboard, on this machine's cores.
RAY = ["+hydra.launcher.ray.init.include_dashboard=false", "+hydra.launcher.ray.init.num_cpus=2"]


@pytest.mark.parametrize(
    "launcher, engine",
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ("compiled", 1)),
        (["hydra/launcher=submitit_local"], ("compiled", 1)),
        (["hydra/launcher=ray", *RAY], ("compiled", 1)),
        # fused groups shipped to workers as single jobs
        (["hydra/launcher=fused_submitit_local"], ("fused", 4)),
        (["hydra/launcher=fused_ray", "hydra.launcher.max_members=2", *RAY], ("fused", 2)),
    ],
    ids=["joblib", "submitit_local", "ray", "fused_submitit_local", "fused_ray"],
)
def test_other_launchers_write_the_same_run_folders(launcher, engine, fused, tmp_path):
    assert main(["run", "-m", *SWEEP, *launcher, f"hydra.sweep.dir={tmp_path}"]) == 0
    theirs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name[0].isdigit())
    ours = sorted(p for p in fused.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert [p.name for p in theirs] == [p.name for p in ours] and len(ours) == 4
    for a, b in zip(theirs, ours, strict=True):
        files = {p.name for p in b.iterdir()}
        assert files <= {p.name for p in a.iterdir()}  # submitit may add its own logs
        assert OmegaConf.load(a / "config.yaml") == OmegaConf.load(b / "config.yaml")
        ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
        assert ((ha[SERIES] - hb[SERIES]).abs() <= 1e-4 * hb[SERIES].abs()).all().all()
        record = json.loads((a / "metrics.json").read_text())
        assert (record["status"], record["engine"], record["group_size"]) == ("completed", *engine)
        env = json.loads((a / "env.json").read_text())  # workers do not fight over cores
        assert env["tf_threads"] == {"intra_op": 1, "inter_op": 1}
    if "fused_submitit_local" in launcher[0]:  # the folder names its Slurm/submitit job
        (job,) = [p.name for p in (tmp_path / ".submitit").iterdir() if p.name.isdigit()]
        assert OmegaConf.load(theirs[3] / ".hydra" / "hydra.yaml").hydra.job.id == f"{job}_3"


def test_a_failed_worker_names_its_jobs_and_keeps_the_others(tmp_path, capsys):
    regs = "tests.user_regularizers.PerUnit,tests.user_regularizers.Eager,keras.regularizers.L1"
    rc = main(["run", "-m", "reg=l1_kernel", "reg.hidden.kernel=null",
               f"+reg.hidden.kernel._target_={regs}", "trainer.epochs=2",
               "hydra/launcher=fused_submitit_local", f"hydra.sweep.dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1  # one bad input, one crash: the crash decides
    assert "regexp: error: jobs #0: layer h1 kernel regularizer " in err
    assert "must return a scalar" in err
    assert "regexp: error: jobs #1: AttributeError: 'SymbolicTensor' object has no " in err
    assert f"(worker log: {tmp_path}/.submitit/" in err
    folders = sorted(p for p in tmp_path.iterdir() if p.name[0].isdigit())
    assert [(p / "metrics.json").is_file() for p in folders] == [False, False, True]
    assert json.loads((folders[2] / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.parametrize(
    "launcher",
    [["hydra/launcher=fused_submitit_local"], ["hydra/launcher=fused_ray", *RAY]],
    ids=["submitit", "ray"],
)
def test_interrupting_a_sweep_on_workers_cancels_them(launcher, tmp_path):
    import signal
    import threading
    import time

    cmd = [sys.executable, "-m", "regexp", "run", "-m", "experiment=b4_l1_activity", "seed=0,1",
           "trainer.epochs=100000", *launcher, f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    submitted = threading.Event()

    def watch():  # the launching process's log says when the group is with its worker
        for line in proc.stdout:
            if "Submitted 1 fused groups" in line:
                submitted.set()

    threading.Thread(target=watch, daemon=True).start()
    assert submitted.wait(timeout=180)
    time.sleep(2)  # the worker starts to import and build
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err
    assert f"cancelled the workers of jobs #0-#1, whose folders are not complete; the same " \
           f"sweep with resume={tmp_path} trains only them" in err  # fmt: skip

    def workers():  # processes still running from this sweep (submitit's carry its folder)
        return [p for p in Path("/proc").glob("[0-9]*/cmdline")
                if str(tmp_path) in p.read_bytes().decode(errors="replace")]  # fmt: skip

    deadline = time.monotonic() + 30
    while workers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not workers()
    for folder in (p for p in tmp_path.iterdir() if p.name[0].isdigit()):
        assert not (folder / "metrics.json").exists()


def test_a_joblib_sweep_reports_its_failures(tmp_path, capsys):
    rc = main(["run", "-m", "experiment=b4_l1_activity", "optimizer.lr=0.001,1e4",
               "trainer.epochs=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               f"hydra.sweep.dir={tmp_path}"])  # fmt: skip
    assert rc == 1
    assert "1 of 2 runs did not complete: 1_b4_l1_activity" in capsys.readouterr().err


def test_show_compare_and_ls(fused, capsys):
    a, b = sorted(p for p in fused.iterdir() if p.is_dir() and p.name[0].isdigit())[:2]
    assert main(["show", str(a)]) == 0
    out = capsys.readouterr().out
    assert "trainer.epochs: 200 -> 2" in out and "status: completed" in out
    assert "history.csv" in out and "metrics.json" in out
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert "reg.lam: 0.01 -> 0.001" in out
    assert f"({mb['test_data_loss'] - ma['test_data_loss']:+.6g})" in out
    assert main(["ls", str(fused)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["when", "status", "test_acc", "run"] and len(lines) == 5
    assert all("completed" in line for line in lines[1:])
    assert main(["show", str(fused / "nope")]) == 2


def test_inspection_does_not_import_tensorflow(fused):
    run = next(p for p in fused.iterdir() if p.name.startswith("0_"))
    code = (
        f"import sys; from regexp.cli import main; main(['show', {str(run)!r}]); "
        f"main(['ls', {str(fused)!r}]); "
        "print('TF' if 'tensorflow' in sys.modules else 'NO_TF')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().endswith("NO_TF"), out.stderr


def test_shell_completion_through_hydra(tmp_path):
    import os

    def complete(line):
        env = {**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))}
        out = subprocess.run([sys.executable, "-m", "regexp", "-sc", "query=bash"],
                             capture_output=True, text=True, env=env)  # fmt: skip
        return out.stdout.split()

    assert "reg=l1_activity_preact" in complete("regexp run reg=l1_act")
    assert complete("regexp run trainer.ep") == ["trainer.epochs="]
    script = subprocess.run([sys.executable, "-m", "regexp", "run", "-sc", "install=bash"],
                            capture_output=True, text=True).stdout  # fmt: skip
    assert "complete -o nospace -o default -F hydra_bash_completion regexp" in script


def test_the_slurm_example_configures_submitit():
    from hydra import compose, initialize_config_dir

    from regexp.compose import register_resolvers
    from regexp.paths import CONF

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm_example"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.cpus_per_task) == ("cpu", 60, 2)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        overrides = ["hydra/launcher=fused_submitit_slurm", "hydra.launcher.partition=cpu",
                     "hydra.launcher.max_members=25"]  # fmt: skip
        cfg = compose("config", overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("fused_launcher.FusedSubmititSlurmLauncher")
    assert (launcher.partition, launcher.max_members, launcher.signal_delay_s) == ("cpu", 25, 120)


def _on_a_terminal(*args):
    """Run regexp with its output on a pseudo-terminal; return what the terminal showed."""
    import os
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "regexp", *args], stdin=slave, stdout=slave,
                            stderr=slave)  # fmt: skip
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    assert proc.wait() == 0
    return shown.decode(errors="replace")


def test_live_progress_only_on_a_terminal(tmp_path):
    run = ["run", "experiment=b4_l1_activity", "trainer.epochs=20"]
    shown = _on_a_terminal(*run, f"hydra.run.dir={tmp_path}/a")
    assert "\rjobs" not in shown and "epoch 20/20" in shown and "ETA 0:00:0" in shown
    quiet = _on_a_terminal(*run, "trainer.quiet=true", f"hydra.run.dir={tmp_path}/b")
    assert "ETA" not in quiet and "epoch 20/20  loss" in quiet  # the log line instead
    piped = subprocess.run([sys.executable, "-m", "regexp", *run, f"hydra.run.dir={tmp_path}/c"],
                           capture_output=True, text=True)  # fmt: skip
    assert "ETA" not in piped.stdout + piped.stderr and "\r" not in piped.stderr
    sweep = _on_a_terminal("run", "-m", "experiment=b4_l1_activity", "seed=0,1",
                           "trainer.epochs=20", f"hydra.sweep.dir={tmp_path}/s")  # fmt: skip
    assert "jobs 0/2 done, 2 running | epoch 20/20" in sweep
    workers = _on_a_terminal("run", "-m", "experiment=b4_l1_activity", "seed=0,1",
                             "trainer.epochs=2", "hydra/launcher=fused_submitit_local",
                             f"hydra.sweep.dir={tmp_path}/w")  # fmt: skip
    assert "jobs 0/2 done, 2 running in 1 worker" in workers
    assert "jobs 2/2 done, 0 running in 0 workers" in workers
