"""Sweeps on a real Slurm cluster: one node, this machine, started by tests/slurm/cluster.sh.

The module's fixture starts the cluster (slurmctld, slurmd, slurmdbd with its own MariaDB,
and munged, all under a temporary folder; the script installs slurm-wlm, slurmdbd, munge
and mariadb-server with apt-get when they are missing, so it needs root on Debian or
Ubuntu) and stops it by the process ids it recorded when the module ends. When the
cluster cannot start, the Slurm tests are skipped and pytest's summary says why
("Slurm test cluster could not start: ..."). ``REGEXP_SLURM=off`` skips them without
trying; ``-m "not slurm"`` deselects them.

Each sweep's numbers are compared with the same sweep run by the in-process launchers,
which run at the same time (the node's two CPUs go to the Slurm jobs, one each, and the
in-process sweep trains on one thread).
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

SCRIPT = Path(__file__).parent / "slurm" / "cluster.sh"
SWEEP = ["experiment=b4_l1_activity", "seed=0,1"]
# what a job needs on the test node (2 CPUs): one CPU each, so two jobs run at once
ON_SLURM = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=10"]  # fmt: skip
SERIES = ["loss", "data_loss", "accuracy", "val_loss", "val_data_loss", "val_accuracy"]
# The cancelled sweep: long enough to be cancelled while it trains (its first progress
# line comes after a tenth of the epochs), short enough to train again in about 15 s.
EPOCHS = 1000
SWEEP_SECONDS = 300  # the longest any sweep here may take


def start_cluster(state: Path, command: list[str] | None = None) -> dict[str, str]:
    """Start the test cluster with its state in ``state``; return the environment that
    reaches it (``SLURM_CONF``). When it cannot start, skip with the reason: the script's
    last line ("cluster.sh: <what> failed: <why>"), or the exception that stopped it."""
    command = command or ["bash", str(SCRIPT)]
    for attempt in range(3):
        # the script takes the first ports nobody listens on; another process may bind one
        # before the daemon does (tests run in two workers): then again, on other ports
        base = str(7410 + 100 * attempt + random.randrange(100))
        env = {**os.environ, "SLURM_TEST_PORT_BASE": base}
        try:
            started = subprocess.run([*command, "start", str(state)], capture_output=True,
                                     text=True, timeout=900, env=env)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:  # no bash, a hung apt-get, ...
            stop_cluster(state, command, check=False)
            pytest.skip(f"Slurm test cluster could not start: {type(e).__name__}: {e}")
        logs = state / "log"
        clash = (
            started.returncode != 0
            and logs.is_dir()
            and any("already in use" in p.read_text(errors="replace") for p in logs.glob("*"))
        )
        if not clash:
            break
        stop_cluster(state, command, check=False)
        for child in state.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    if started.returncode != 0:
        said = [line for line in started.stderr.splitlines() if line.strip()]
        reason = said[-1].removeprefix("cluster.sh: ") if said else f"exit {started.returncode}"
        pytest.skip(f"Slurm test cluster could not start: {reason}")
    return {**os.environ, "SLURM_CONF": str(state / "etc" / "slurm.conf")}


def stop_cluster(state: Path, command: list[str] | None = None, check: bool = True) -> None:
    """Stop what ``start_cluster`` started: its jobs, then the daemons, by their pids."""
    command = command or ["bash", str(SCRIPT)]
    try:
        stopped = subprocess.run([*command, "stop", str(state)], capture_output=True,
                                 text=True, timeout=180)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        if check:
            raise
        return
    if check:
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


# one cluster for the module: under pytest-xdist, every test of it runs in one worker
pytestmark = pytest.mark.xdist_group("slurm")


@pytest.fixture(scope="module")
def slurm():
    """The environment of the test cluster, started for this module and stopped after it."""
    if os.environ.get("REGEXP_SLURM", "").lower() in ("0", "off", "no", "false"):
        pytest.skip("Slurm tests turned off (REGEXP_SLURM=off)")
    # Not under pytest's tmp_path (nor a private TMPDIR): munged wants every folder above
    # its socket searchable by all
    base = "/tmp" if os.path.isdir("/tmp") else None
    state = Path(tempfile.mkdtemp(prefix="regexp-slurm-", dir=base))
    state.chmod(0o755)
    env = start_cluster(state)  # on failure, the state folder stays for its logs
    yield env
    stop_cluster(state)
    shutil.rmtree(state, ignore_errors=True)


def launch(logs: Path, sweep: Path, *overrides: str, env=None) -> subprocess.Popen:
    """``regexp run -m <overrides>`` into ``sweep``, in the background, from ``logs``'
    folder; its stdout and stderr go to ``logs``.out and ``logs``.err."""
    cmd = [sys.executable, "-m", "regexp", "run", "-m", *overrides, f"hydra.sweep.dir={sweep}"]
    with open(f"{logs}.out", "w") as out, open(f"{logs}.err", "w") as err:
        return subprocess.Popen(cmd, cwd=logs.parent, env=env, stdout=out, stderr=err)


@pytest.fixture
def sweeps(tmp_path):
    """``launch`` with the logs in ``tmp_path``; stops the sweeps still running at the end."""
    started = []

    def start(name: str, sweep: Path, *overrides: str, env=None) -> subprocess.Popen:
        started.append(launch(tmp_path / name, sweep, *overrides, env=env))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finish(proc: subprocess.Popen, logs: Path) -> tuple[int, str, str]:
    """Wait for a ``launch``; its exit code, stdout and stderr."""
    rc = proc.wait(timeout=SWEEP_SECONDS)
    return rc, Path(f"{logs}.out").read_text(), Path(f"{logs}.err").read_text()


def folders(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())


def slurm_jobs(sweep: Path, env) -> dict[str, str]:
    """Each Slurm job (array task) of the sweep, as submitit's folders name them, and its
    final state as sacct (accounting) tells it. A worker's result can be read a moment
    before Slurm has ended its job."""
    ids = {p.name.split("_")[0] for p in (sweep / ".submitit").iterdir()
           if re.fullmatch(r"\d+(_\d+)?", p.name)}  # fmt: skip
    assert ids, f"no Slurm job in {sweep}/.submitit"
    cmd = ["sacct", "-X", "-n", "--parsable2", "-o", "JobID,State", *(f"-j{i}" for i in ids)]
    deadline = time.monotonic() + 60
    while True:
        listed = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        assert not listed.stderr, listed.stderr
        states = dict(line.split("|")[:2] for line in listed.stdout.splitlines() if line)
        ending = {"PENDING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}
        if not ending & set(states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def job_of(folder: Path, jobs: dict[str, str]) -> str:
    """Which of ``jobs`` trained a job folder: its ``.hydra`` records the Slurm job as
    ``hydra.job.id``, <array job>_<task> for submitit_slurm, <job>_<job number> for a
    fused group."""
    recorded = str(OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra.job.id)
    return recorded if recorded in jobs else recorded.rsplit("_", 1)[0]


def assert_no_sacct_warning(sweep: Path, *outputs: str) -> None:
    """Without accounting, submitit warns at every poll ("Bypassing sacct error ...,
    status may be inaccurate"): in the launching process's output, or the workers' logs."""
    logs = [p.read_text() for p in (sweep / ".submitit").rglob("*_log.*")]
    for text in [*outputs, *logs]:
        said = [line for line in text.splitlines() if "sacct" in line.lower()]
        assert not said, said


def assert_same_runs(theirs: Path, ours: Path, engine: str, group_size: int) -> None:
    """Both sweeps wrote the same two job folders, complete and trained by ``engine`` in
    groups of ``group_size``, with the same history (to 1e-4 relative)."""
    a, b = folders(theirs), folders(ours)
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 2
    for x, y in zip(a, b, strict=True):
        for folder in (x, y):
            record = json.loads((folder / "metrics.json").read_text())
            got = (record["status"], record["engine"], record["group_size"])
            assert got == ("completed", engine, group_size), folder
        hx, hy = pd.read_csv(x / "history.csv"), pd.read_csv(y / "history.csv")
        assert len(hx) == len(hy)
        assert ((hx[SERIES] - hy[SERIES]).abs() <= 1e-4 * hy[SERIES].abs()).all().all(), x


@pytest.mark.slurm
@pytest.mark.parametrize(
    "launcher, reference, engine",
    [
        ("submitit_slurm", ["trainer.engine=compiled"], ("compiled", 1)),
        ("fused_submitit_slurm", [], ("fused", 2)),
    ],
    ids=["submitit_slurm", "fused_submitit_slurm"],
)
def test_a_sweep_on_slurm_writes_the_in_process_numbers(
    slurm, sweeps, tmp_path, launcher, reference, engine
):
    overrides = [*SWEEP, "trainer.epochs=3"]
    sweep, ours = tmp_path / "slurm", tmp_path / "here"
    theirs = sweeps("slurm", sweep, *overrides, f"hydra/launcher={launcher}", *ON_SLURM, env=slurm)
    here = sweeps("here", ours, *overrides, *reference)  # the in-process launcher, meanwhile
    rc, out, err = finish(theirs, tmp_path / "slurm")
    assert rc == 0, err
    assert finish(here, tmp_path / "here")[0] == 0
    jobs = slurm_jobs(sweep, slurm)  # one job per sweep job, or one for the fused group
    assert list(jobs.values()) == ["COMPLETED"] * (2 if engine[0] == "compiled" else 1), jobs
    assert sorted({job_of(folder, jobs) for folder in folders(sweep)}) == sorted(jobs)
    assert_same_runs(sweep, ours, *engine)
    assert_no_sacct_warning(sweep, out, err)


def wait_for_training(proc: subprocess.Popen, sweep: Path, logs: Path, env) -> str:
    """Until the sweep's Slurm job runs and its worker logs training progress; its id."""
    progress = re.compile(rf"\] epoch \d+/{EPOCHS} ")
    deadline = time.monotonic() + SWEEP_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, Path(f"{logs}.err").read_text()  # still sweeping
        queue = subprocess.run(["squeue", "-h", "-o", "%i %t"], env=env, capture_output=True,
                               text=True, check=True).stdout.split()  # fmt: skip
        worker = list((sweep / ".submitit").rglob("*_log.out")) if sweep.is_dir() else []
        if queue[1:2] == ["R"] and any(progress.search(p.read_text()) for p in worker):
            return queue[0]
        time.sleep(0.2)
    raise AssertionError(f"the Slurm job did not train within {SWEEP_SECONDS} s")


@pytest.mark.slurm
def test_a_sweep_cancelled_with_scancel_resumes(slurm, sweeps, tmp_path):
    overrides = [*SWEEP, f"trainer.epochs={EPOCHS}", "hydra/launcher=fused_submitit_slurm",
                 *ON_SLURM]  # fmt: skip
    sweep, ours = tmp_path / "slurm", tmp_path / "here"
    first = sweeps("first", sweep, *overrides, env=slurm)
    here = sweeps("here", ours, *SWEEP, f"trainer.epochs={EPOCHS}")  # uninterrupted, meanwhile
    job = wait_for_training(first, sweep, tmp_path / "first", slurm)
    subprocess.run(["scancel", job], env=slurm, check=True)
    rc, out, err = finish(first, tmp_path / "first")
    assert rc == 1, err  # the worker stopped its group and recorded it, as Ctrl-C does
    said = err.strip().splitlines()[-1]
    assert said.startswith("regexp: 2 of 2 runs did not complete: 0_"), err
    assert said.count(" interrupted") == 2 and f"resume={sweep} trains the rest" in said, err
    assert slurm_jobs(sweep, slurm)[job].startswith("CANCELLED")
    assert len(folders(sweep)) == 2
    for folder in folders(sweep):  # scancel's SIGTERM stopped training as Ctrl-C does:
        record = json.loads((folder / "metrics.json").read_text())  # the trained epochs stand
        assert record["status"] == "interrupted", record
        epochs = (folder / "history.csv").read_text().strip().splitlines()[1:]
        assert 1 <= len(epochs) < EPOCHS and record["epochs_run"] == len(epochs)

    again = sweeps("again", sweep, *overrides, f"resume={sweep}", env=slurm)
    rc, out2, err2 = finish(again, tmp_path / "again")
    assert rc == 0, err2
    assert finish(here, tmp_path / "here")[0] == 0
    states = slurm_jobs(sweep, slurm)
    assert len(states) == 2 and list(states.values()).count("COMPLETED") == 1, states
    (resumed,) = [job for job, state in states.items() if state == "COMPLETED"]
    assert {job_of(folder, states) for folder in folders(sweep)} == {resumed}  # both again
    assert_same_runs(sweep, ours, "fused", 2)
    assert_no_sacct_warning(sweep, out, err, out2, err2)


def test_a_cluster_that_cannot_start_is_a_skip_with_the_reason(tmp_path):
    """What the fixture does when cluster.sh fails, or cannot even run (no cluster needed)."""
    failing = tmp_path / "cluster.sh"
    said = "cluster.sh: apt-get install slurm-wlm failed: E: Unable to locate package slurm-wlm"
    failing.write_text(f'[ "$1" = stop ] && exit 0\necho "{said}" >&2\nexit 1\n')
    reason = "Slurm test cluster could not start: apt-get install slurm-wlm failed: E: Unable"
    with pytest.raises(pytest.skip.Exception, match=f"^{reason}"):
        start_cluster(tmp_path / "state", ["sh", str(failing)])
    with pytest.raises(pytest.skip.Exception, match="^Slurm test cluster could not start: "
                       "FileNotFoundError: "):  # fmt: skip
        start_cluster(tmp_path / "state", [str(tmp_path / "no-such-script")])
