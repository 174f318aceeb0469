"""A sweep in the tools people already have, read back through their own clients: the
HParams dashboard of a real TensorBoard server (its HTTP API), and MLflow's parent and
child runs through ``MlflowClient``."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from regexp import rundir
from regexp.cli import main
from regexp.keys import flatten

SWEEP = ["experiment=b4_l1_activity", "seed=0,1", "reg.lam=0.01,0.001", "trainer.epochs=2",
         "trainer.tensorboard=true"]  # fmt: skip
FINALS = {f"{s}_{m}" for s in ("train", "val", "test")
          for m in ("accuracy", "data_loss", "penalty", "total_loss")}  # fmt: skip


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A 4-job sweep (2 lambdas x 2 seeds), and a second sweep whose one job diverges,
    both with TensorBoard on and logged to one MLflow store."""
    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow = ["+tracking=mlflow", f"tracking.uri={uri}", "tracking.experiment=tests",
              f"tracking.artifacts={root}/artifacts"]  # fmt: skip
    assert main(["run", "-m", *SWEEP, *mlflow, f"hydra.sweep.dir={root}/sweep"]) == 0
    diverging = ["experiment=b4_l1_activity", "optimizer.lr=1e4", "trainer.epochs=3",
                 "trainer.tensorboard=true"]  # fmt: skip
    assert main(["run", "-m", *diverging, *mlflow, f"hydra.sweep.dir={root}/diverged"]) == 1
    return root, uri


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, route: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/data/plugin/hparams/{route}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _session_groups(port: int, experiment: dict) -> list[dict]:
    """The request the HParams dashboard sends for its table: every hparam and metric."""
    columns = [{"hparam": h["name"], "includeInResult": True} for h in experiment["hparamInfos"]]
    columns += [{"metric": m["name"], "includeInResult": True} for m in experiment["metricInfos"]]
    body = {"experimentName": "", "colParams": columns, "startIndex": 0, "sliceSize": 100,
            "allowedStatuses": ["STATUS_FAILURE", "STATUS_RUNNING", "STATUS_SUCCESS",
                                "STATUS_UNKNOWN"]}  # fmt: skip
    return _post(port, "session_groups", body).get("sessionGroups", [])


def test_tensorboard_hparams_dashboard_lists_the_sweep(tracked, tmp_path):
    exe = Path(sys.executable).parent / "tensorboard"
    if not exe.is_file():
        pytest.skip(f"TensorBoard is not installed ({exe}): pip install 'regexp[tensorboard]'")
    sweep = tracked[0] / "sweep"
    folders = rundir.job_folders(sweep)
    port = _free_port()
    server = subprocess.Popen(
        [str(exe), "--logdir", str(sweep), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "tensorboard.log", "w"),
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline, groups, experiment = time.monotonic() + 180, [], {}
        while time.monotonic() < deadline:  # until it answers and has read every file
            try:
                experiment = _post(port, "experiment", {"experimentName": "", "hparamsLimit": 1000})
                groups = _session_groups(port, experiment)
            except OSError:
                assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()
            if len(groups) == 4 and all(len(g["metricValues"]) == 12 for g in groups):
                break
            time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    # the experiment: the keys that vary first (the dashboard shows those), with their values
    infos = experiment["hparamInfos"]
    assert [h["name"] for h in infos if h["differs"]] == ["reg.hidden.activity.lam", "reg.lam",
                                                          "seed"]  # fmt: skip
    assert [h["name"] for h in infos[:3]] == ["reg.hidden.activity.lam", "reg.lam", "seed"]
    assert {h["name"]: h["domainDiscrete"] for h in infos[:3]}["reg.lam"] == [0.001, 0.01]
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} == {f"final/{k}" for k in FINALS}
    assert experiment["metricInfos"][0]["displayName"] == "test_accuracy"

    assert sorted(g["name"] for g in groups) == [f.name for f in folders]  # trial id = folder
    for group in groups:
        folder = sweep / group["name"]
        config = flatten(OmegaConf.to_container(OmegaConf.load(folder / "config.yaml")))
        record = json.loads((folder / "metrics.json").read_text())
        given = {k: v for k, v in config.items() if v is not None}
        assert set(group["hparams"]) == set(given)
        for key, value in group["hparams"].items():
            assert value == given[key], key  # numbers come back as floats: 0 == 0.0
        (session,) = group["sessions"]
        assert session["status"] == "STATUS_SUCCESS"
        assert session["name"] == f"{group['name']}/tensorboard"  # beside its curves
        values = {m["name"]["tag"].removeprefix("final/"): m["value"]
                  for m in group["metricValues"]}  # fmt: skip
        assert set(values) == FINALS
        for key, value in values.items():  # a TensorBoard scalar is a float32
            assert value == float(np.float32(record[key])), key
        assert values["test_accuracy"] != values["train_accuracy"]


def test_a_diverged_run_is_a_failed_session_without_final_numbers(tracked):
    import tensorflow as tf
    from tensorboard.plugins.hparams import metadata

    (folder,) = rundir.job_folders(tracked[0] / "diverged")
    assert rundir.read_metrics(folder)["status"] == "diverged"
    (path,) = (folder / "tensorboard").glob("*.regexp-hparams")
    tags = {}
    for event in tf.compat.v1.train.summary_iterator(str(path)):
        for value in event.summary.value:
            tags[value.tag] = value
    assert not [t for t in tags if t.startswith("final/")]
    end = metadata.parse_session_end_info_plugin_data(
        tags[metadata.SESSION_END_INFO_TAG].metadata.plugin_data.content
    )
    assert end.status == 2  # STATUS_FAILURE
    start = metadata.parse_session_start_info_plugin_data(
        tags[metadata.SESSION_START_INFO_TAG].metadata.plugin_data.content
    )
    assert start.group_name == folder.name and start.hparams["optimizer.lr"].number_value == 1e4


def _runs(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tests").experiment_id
    return client, experiment, client.search_runs([experiment], max_results=1000)


def test_mlflow_sweeps_are_parent_runs_of_their_jobs(tracked):
    root, uri = tracked
    client, _, runs = _runs(uri)
    parents = {r.info.run_name: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert sorted(parents) == ["diverged", "sweep"]  # one per sweep, named after its folder
    for name, parent in parents.items():
        sweep = (root / name).resolve()
        assert parent.data.tags["regexp.sweep"] == str(sweep)
        children = {r.info.run_name: r for r in runs
                    if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}  # fmt: skip
        folders = rundir.job_folders(sweep)
        assert sorted(children) == [f.name for f in folders]
        for folder in folders:
            child, record = children[folder.name], rundir.read_metrics(folder)
            tags = child.data.tags
            assert tags["sweep"] == str(sweep) and tags["run_dir"] == str(folder)
            assert tags["status"] == record["status"]
            assert tags["group"] == (record.get("group") or [folder.name])[0]
            if record["status"] == "completed":
                assert child.info.status == "FINISHED"
                for key in FINALS:
                    assert child.data.metrics[f"final_{key}"] == record[key], key
            else:
                assert child.info.status == "FAILED"
                assert "final_test_accuracy" not in child.data.metrics
                assert child.data.metrics["final_diverged_epoch"] == record["diverged_epoch"]
    sweep_children = [r for r in runs if r.data.tags.get("sweep", "").endswith("/sweep")]
    assert {r.data.tags["group"] for r in sweep_children} == {"0_b4_l1_activity_l1_activity"}
    assert len(runs) == 2 + 4 + 1


def test_logging_a_job_again_reuses_its_parent_and_replaces_its_run(tracked):
    """What resuming a sweep does to a job trained again."""
    from regexp.tracking import log_mlflow

    root, uri = tracked
    sweep = (root / "sweep").resolve()
    folder = rundir.job_folders(sweep)[3]
    client, _, before = _runs(uri)
    (old,) = [r for r in before if r.info.run_name == folder.name]
    cfg = OmegaConf.load(folder / "config.yaml")
    run_id = log_mlflow(folder, cfg, pd.read_csv(folder / "history.csv"),
                        rundir.read_metrics(folder), sweep)  # fmt: skip
    _, _, after = _runs(uri)
    assert [r.info.run_id for r in after if r.info.run_name == folder.name] == [run_id]
    assert client.get_run(old.info.run_id).info.lifecycle_stage == "deleted"
    (parent,) = [r for r in after if r.data.tags.get("regexp.sweep") == str(sweep)]
    assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.info.run_id == old.data.tags["mlflow.parentRunId"]


# Each process waits for the go file, then finds or creates the parent of one sweep.
_RACER = """
import sys, time
from pathlib import Path
from mlflow.tracking import MlflowClient
from regexp.tracking import _locked, parent_run
uri, sweep, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
client = MlflowClient(uri)
experiment = client.get_experiment_by_name("race").experiment_id
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
with _locked(sweep):
    print(parent_run(client, experiment, sweep))
"""


def test_processes_logging_one_sweep_agree_on_one_parent(tmp_path):
    from mlflow.tracking import MlflowClient

    uri, sweep, go = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "sweep", tmp_path / "go"
    sweep.mkdir()
    MlflowClient(uri).create_experiment("race", artifact_location=(tmp_path / "a").as_uri())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, uri, str(sweep), str(go)],
                               stdout=subprocess.PIPE, text=True, env=env)
              for _ in range(3)]  # fmt: skip
    for racer in racers:  # each has imported MLflow and waits
        assert racer.stdout.readline().strip() == "ready"
    go.touch()
    ids = [racer.communicate(timeout=120)[0].strip() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert [r.info.run_id for r in runs] == [ids[0]] and set(ids) == {ids[0]}
    assert runs[0].info.run_name == "sweep" and runs[0].data.tags["regexp.sweep"] == str(sweep)


# Each process waits for the go file, then logs one job of a sweep to a store not made yet.
_FIRST = """
import sys, time
from pathlib import Path
import pandas as pd
from omegaconf import OmegaConf
from regexp.tracking import log_mlflow
uri, sweep, go, name = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
cfg = OmegaConf.create({"seed": 0, "tracking": {"uri": uri, "experiment": "first",
                        "artifacts": str(sweep.parent / "artifacts")}})
run = sweep / name
run.mkdir()
history = pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.4]})
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
print(log_mlflow(run, cfg, history, {"status": "completed", "engine": "fused"}, sweep))
"""


def test_processes_logging_a_sweeps_first_jobs_make_the_store_once(tmp_path):
    """Two processes write a sweep's folders at once (the writer, and the launching
    process at the end): the first jobs logged to a new MLflow database must not race
    to make its tables (``table ... already exists``: that job missing from MLflow)."""
    from mlflow.tracking import MlflowClient

    uri, sweep, go = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "sweep", tmp_path / "go"
    sweep.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    racers = [subprocess.Popen([sys.executable, "-c", _FIRST, uri, str(sweep), str(go),
                                f"job{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
              for i in range(4)]  # fmt: skip
    for racer in racers:
        assert racer.stdout.readline().strip() == "ready"
    go.touch()
    done = [racer.communicate(timeout=180) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err[-800:] for _, err in done]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("first").experiment_id])
    children = {r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert children == {f"job{i}" for i in range(4)}
