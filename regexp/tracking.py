"""Where a finished run can also be sent: TensorBoard event files, an MLflow store.

``write_tensorboard`` is called by ``pipeline.write`` with the history it writes (and the
weight snapshots every engine keeps); ``send`` after ``metrics.json``, with its record. So
every engine, and every member of a fused group, is recorded the same way, and a tracking
failure never spoils a run folder (it is complete first; ``send`` only warns).

TensorBoard (``trainer.tensorboard=true``), in ``<run>/tensorboard/``:

- the history's columns as scalars per epoch, weight and activation histograms;
- an HParams session: every scalar config key as an hparam (null keys left out), trial
  id = the run folder's name; the final numbers of ``metrics.json`` as scalars
  ``final/<key>`` (``final/test_accuracy``, ...); its status (completed: success,
  diverged: failure, interrupted: unknown). A run that did not complete has no final
  numbers.
- For a sweep, ``<sweep>/events.out.tfevents.regexp-sweep`` holds the HParams experiment:
  the config keys that vary across its runs with their values, and the final metrics.
  The launching process writes it once every job has ended (``SweepCallback``, a Hydra
  callback), so workers never write one file together.

MLflow (``+tracking=mlflow``): one MLflow run per run folder, named after the folder.
A sweep's jobs are child runs of one parent run per sweep (named after the sweep folder,
tagged ``regexp.sweep=<absolute sweep folder>``), found or created under a file lock in
the sweep folder, so workers in other processes agree on one parent and a resumed sweep
reuses it. Metric names are the history's columns (``val_accuracy``; for regression
``val_mae``, ``val_r2``) and ``final_`` + ``metrics.json``'s keys.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("regexp.run")

SPLITS = ("train", "val", "test")
FINAL = "final/"  # the prefix of a final number's TensorBoard tag: final/test_accuracy
SWEEP_EVENTS = "events.out.tfevents.regexp-sweep"  # the sweep's HParams experiment
HPARAMS_SUFFIX = ".regexp-hparams"  # a run's HParams session file ends with it
MLFLOW_LOCK = ".mlflow.lock"
# regexp's status as an HParams session status (api.proto's Status) and an MLflow status
SESSION_STATUS = {"completed": 1, "diverged": 2, "interrupted": 0}  # success, failure, unknown
MLFLOW_STATUS = {"completed": "FINISHED", "diverged": "FAILED", "interrupted": "KILLED"}


# --- what a run is --------------------------------------------------------------------


def hparams_of(cfg) -> dict[str, bool | float | int | str]:
    """The run's config as HParams values: every flattened key with a number, string or
    boolean (lists as JSON text); keys that are null (unset) are left out."""
    from omegaconf import OmegaConf

    from regexp.keys import flatten

    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    plain = {k: v for k, v in plain.items() if k != "hydra"}
    return {k: v for k, v in flatten(plain).items() if isinstance(v, (bool, int, float, str))}


def final_metrics(cfg, record: dict[str, Any]) -> dict[str, float]:
    """The final numbers of ``metrics.json`` per split, for its task: ``train_``, ``val_``,
    ``test_`` + the task's scores (accuracy and data_loss; or r2, mae and data_loss),
    ``penalty`` and ``total_loss``. Empty for a run that did not complete."""
    from regexp.tasks import kind_named

    kind = kind_named(cfg.get("dataset", {}).get("task"))
    keys = [f"{s}_{m}" for s in SPLITS for m in (*kind.scores, "penalty", "total_loss")]
    return {k: float(record[k]) for k in keys if isinstance(record.get(k), (int, float))}


def sweep_folder() -> Path | None:
    """The sweep folder of the job running now (Hydra's ``hydra.sweep.dir`` in a
    multirun, set by Hydra's ``run_job`` in every launcher and worker); None otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(str(hc.sweep.dir)).resolve() if hc.mode == RunMode.MULTIRUN else None


def send(run_dir: Path, cfg, history, record: dict[str, Any]) -> None:
    """After ``metrics.json``: the run's HParams session (``trainer.tensorboard``) and its
    MLflow run (``tracking``). Either failing is a warning: the run folder is complete."""
    if cfg.trainer.get("tensorboard"):
        try:
            write_hparams(run_dir, cfg, record)
        except Exception as e:
            log.warning("TensorBoard HParams failed (%s: %s); the run folder is complete",
                        type(e).__name__, e)  # fmt: skip
    if cfg.get("tracking"):
        try:
            log_mlflow(run_dir, cfg, history, record, sweep_folder())
        except Exception as e:
            log.warning(
                "MLflow logging failed (%s: %s); the run folder is complete", type(e).__name__, e
            )


# --- TensorBoard ----------------------------------------------------------------------


def write_tensorboard(run_dir: Path, history, job) -> Path:
    """``<run>/tensorboard/``: every history column as a scalar per epoch (step = epoch);
    and at epoch 0 and after every tenth of the epochs (the last included),
    histograms of each layer's kernel and bias and of each hidden layer's activations on
    the test split, from the weights the engine snapshot there (``Job.snapshots``).

    Event files of an earlier attempt at this folder (an interrupted run trained again)
    are removed first: TensorBoard keeps the first HParams session it reads for a run."""
    import numpy as np
    import tensorflow as tf

    from regexp.model import layer_weights
    from regexp.network import StackedNetwork

    folder = run_dir / "tensorboard"
    for stale in folder.glob("events.out.tfevents.*"):
        stale.unlink()
    names = [weight.path for weight in job.model.weights]  # the order of get_weights()
    network = StackedNetwork([job.plans], [job.seed])
    slots = layer_weights(job.model, job.plans)
    x_test = tf.constant(job.data.x_test[None])
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for row in history.itertuples(index=False):
            for name, value in row._asdict().items():
                if name != "epoch" and np.isfinite(value):
                    tf.summary.scalar(name, value, step=int(row.epoch))
        for epoch, weights in job.snapshots:
            for name, values in zip(names, weights, strict=True):
                tf.summary.histogram(f"weights/{name}", values, step=epoch)
            stacked = [{name: weights[i][None] for name, i in at.items()} for at in slots]
            for s in network.walk(x_test, stacked):
                if s.layer.plan.units is not None:  # a hidden layer, after its activation
                    tf.summary.histogram(f"activations/{s.layer.plan.name}", s.a[0], step=epoch)
    writer.close()
    return folder


def _write_events(path: Path, summaries: list[tuple[int, Any]]) -> None:
    """An event file of ``(step, Summary)`` records, written whole under a temporary name
    (without ``tfevents``, so TensorBoard ignores it) and renamed: TensorBoard reads event
    files as they grow, and never sees this one half written. No TensorFlow needed."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    from regexp.rundir import _file_mode

    tmp = path.with_name(f".{path.name.replace('tfevents', 'tmp')}.{os.getpid()}")
    now = time.time()
    try:
        with open(tmp, "wb") as f:
            writer = RecordWriter(f)
            writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2")
                         .SerializeToString())  # fmt: skip
            for step, summary in summaries:
                event = event_pb2.Event(wall_time=now, step=step, summary=summary)
                writer.write(event.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _session_end(status: int):
    """The HParams summary that closes a session with ``status`` (api.proto's Status),
    as ``hparams.summary.session_end_pb`` makes it, without TensorFlow."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    )
    summary = summary_pb2.Summary()
    summary.value.add(tag=metadata.SESSION_END_INFO_TAG, tensor=metadata.NULL_TENSOR,
                      metadata=metadata.create_summary_metadata(data))  # fmt: skip
    return summary


def write_hparams(run_dir: Path, cfg, record: dict[str, Any]) -> Path:
    """The run's HParams session in ``<run>/tensorboard/``: its config keys
    (``hparams_of``), trial id = the folder's name; its final numbers as scalars
    ``final/<key>`` at the last epoch; its status. Returns the event file."""
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb

    folder = run_dir / "tensorboard"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"*{HPARAMS_SUFFIX}"):
        stale.unlink()
    step = int(record.get("epochs_run") or 0)
    summaries = [(0, hp.hparams_pb(hparams_of(cfg), trial_id=run_dir.name))]
    # float32, as every TensorBoard scalar: its data server drops float64 ones
    summaries += [(step, scalar_pb(FINAL + k, v)) for k, v in final_metrics(cfg, record).items()]
    summaries.append((step, _session_end(SESSION_STATUS.get(record.get("status"), 0))))
    path = folder / f"events.out.tfevents.{time.time():.0f}.{os.getpid()}{HPARAMS_SUFFIX}"
    _write_events(path, summaries)
    return path


def write_experiment(sweep: Path) -> Path | None:
    """``<sweep>/events.out.tfevents.regexp-sweep``: the HParams experiment of the sweep's
    runs that wrote a session. Its hparams are their config keys, each with its values as
    a discrete domain; the keys whose values differ among the runs come first and are
    marked ``differs`` (the dashboard shows the first five, the others on a click). Its
    metrics are the final numbers (``final/test_accuracy``, shown as ``test_accuracy``).
    None when no run wrote a session. Written atomically, and only when it changes:
    TensorBoard keeps the first experiment it reads."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    from regexp import rundir

    runs = [f for f in rundir.job_folders(sweep)
            if any((f / "tensorboard").glob(f"*{HPARAMS_SUFFIX}"))]  # fmt: skip
    if not runs:
        return None
    values, metrics = [], set()
    for folder in runs:
        cfg = rundir.read_config(folder)
        values.append(hparams_of(cfg))
        metrics.update(final_metrics(cfg, rundir.read_metrics(folder) or {}))
    infos = []
    for key in sorted({k for v in values for k in v}):
        differs = len({repr(v.get(key)) for v in values}) > 1
        seen = {v[key] for v in values if key in v}
        types = {type(x) if isinstance(x, (bool, str)) else float for x in seen}
        info = api_pb2.HParamInfo(name=key, differs=differs)
        if len(types) == 1:  # else no domain: a number here, a string there
            hp.Discrete(sorted(float(x) if types == {float} else x for x in seen)) \
                .update_hparam_info(info)  # fmt: skip
        infos.append(info)
    infos.sort(key=lambda info: not info.differs)  # stable: by name within each
    order = {s: i for i, s in enumerate(("test", "val", "train"))}
    names = sorted(metrics, key=lambda m: (order[m.split("_")[0]], m))
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[hp.Metric(FINAL + m, display_name=m).as_proto() for m in names],
    )
    data = plugin_data_pb2.HParamsPluginData(experiment=experiment)
    summary = summary_pb2.Summary()
    summary.value.add(tag=metadata.EXPERIMENT_TAG, tensor=metadata.NULL_TENSOR,
                      metadata=metadata.create_summary_metadata(data))  # fmt: skip
    path = sweep / SWEEP_EVENTS
    if _experiment_content(path) != summary.value[0].metadata.plugin_data.content:
        _write_events(path, [(0, summary)])
    return path


def _experiment_content(path: Path) -> bytes | None:
    """The HParams experiment that ``write_experiment`` wrote to ``path``, as bytes; None
    if there is none or it is unreadable. Reads the TFRecord framing itself (length,
    its CRC, the record, its CRC; CRCs not checked) so as not to load TensorFlow."""
    import struct

    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2

    try:
        raw = path.read_bytes()
        at = 0
        while at + 12 <= len(raw):
            (length,) = struct.unpack("<Q", raw[at : at + 8])
            event = event_pb2.Event.FromString(raw[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                return value.metadata.plugin_data.content
    except (OSError, DecodeError, struct.error):
        return None
    return None


class SweepCallback(Callback):
    """Hydra calls ``on_multirun_end`` in the launching process once every job of a
    sweep has ended, whatever the launcher: it writes the sweep's HParams experiment."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        try:
            write_experiment(sweep)
        except Exception as e:  # the run folders are complete; TensorBoard infers one
            log.warning("TensorBoard HParams experiment of %s failed (%s: %s)", sweep,
                        type(e).__name__, e)  # fmt: skip


# --- MLflow ---------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(folder: Path | None) -> Iterator[None]:
    """``flock`` on ``<folder>/.mlflow.lock`` (waiting for it): one process at a time
    finds or creates the sweep's parent run and logs its jobs. None: no lock."""
    if folder is None:
        yield
        return
    import fcntl

    fd = os.open(folder / MLFLOW_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _quoted(text: str) -> str:
    """A string literal for an MLflow search filter."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _experiment_id(client, cfg) -> str:
    """The id of ``tracking.experiment``, created (with its artifacts under
    ``tracking.artifacts``) if it does not exist; else MLflow would use ./mlruns."""
    from mlflow.exceptions import MlflowException

    name = str(cfg.tracking.experiment)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    where = Path(str(cfg.tracking.get("artifacts") or "outputs/mlflow-artifacts"))
    try:
        return client.create_experiment(name, artifact_location=where.resolve().as_uri())
    except MlflowException:  # another process created it meanwhile
        return client.get_experiment_by_name(name).experiment_id


def parent_run(client, experiment_id: str, sweep: Path) -> str:
    """The id of the sweep's parent run (tag ``regexp.sweep`` = its absolute folder),
    created, named after the folder, if there is none yet. Call it under the sweep's
    lock (``_locked``), so that processes logging one sweep agree on one parent."""
    found = client.search_runs(
        [experiment_id], f"tags.`regexp.sweep` = {_quoted(str(sweep))}", max_results=1,
        order_by=["attributes.start_time ASC"],
    )  # fmt: skip
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=sweep.name, tags={"regexp.sweep": str(sweep)})
    client.set_terminated(run.info.run_id, "FINISHED")  # a folder of runs; the children say
    return run.info.run_id


def log_mlflow(run_dir: Path, cfg, history, result: dict, sweep: Path | None = None) -> str:
    """One MLflow run per regexp run, named after its folder: the flattened config as
    params, every history column per epoch (step = epoch), the final numbers, and the run
    folder's figures, config, ``metrics.json`` and saved models as artifacts; tags
    ``status``, ``run_dir``, ``engine``; its MLflow status FINISHED, FAILED (diverged) or
    KILLED (interrupted). In a ``sweep``, a child of the sweep's parent run (``parent_run``)
    tagged ``sweep`` and ``group`` (the first job folder of its fused group, its own when
    it trained alone); logged under the sweep's lock. An earlier MLflow run of the same
    folder (a run trained again on resume) is deleted (MLflow keeps it restorable).
    Returns the MLflow run id."""
    import numpy as np
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from regexp.keys import flatten
    from regexp.tasks import KINDS

    run_dir = Path(run_dir).resolve()
    with _locked(sweep):
        # the store is made (a new database's tables) with the client: one process at once
        client = MlflowClient(str(cfg.tracking.uri))
        experiment_id = _experiment_id(client, cfg)
        group = result.get("group") or [run_dir.name]
        tags = {"status": str(result["status"]), "run_dir": str(run_dir),
                "engine": str(result.get("engine")),
                "group_size": str(result.get("group_size", 1))}  # fmt: skip
        if sweep is not None:
            tags |= {"mlflow.parentRunId": parent_run(client, experiment_id, sweep),
                     "sweep": str(sweep), "group": str(group[0])}  # fmt: skip
        for earlier in client.search_runs(
            [experiment_id], f"tags.run_dir = {_quoted(str(run_dir))}"
        ):
            client.delete_run(earlier.info.run_id)
        run_id = client.create_run(experiment_id, run_name=run_dir.name, tags=tags).info.run_id
        try:
            plain = OmegaConf.to_container(cfg, resolve=True)
            params = [Param(k, str(v)[:500]) for k, v in flatten(plain).items()]
            now = int(time.time() * 1000)
            metrics = [
                Metric(column, float(value), now, int(epoch))
                for column in history.columns
                if column != "epoch"
                for epoch, value in zip(history["epoch"], history[column], strict=True)
                if np.isfinite(value)
            ]
            metrics += [
                Metric(f"final_{k}", float(v), now, 0)
                for k, v in result.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            ]
            for start in range(0, len(params), 100):  # MLflow's limits per batch
                client.log_batch(run_id, params=params[start : start + 100])
            for start in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[start : start + 1000])
            curves = [f"{c}.png" for kind in KINDS.values() for c in kind.curves]
            for name in ("config.yaml", "metrics.json", "loss.png", *curves, "activations.png",
                         "data.png", "model.keras", "model_best.keras"):  # fmt: skip
                if (run_dir / name).is_file():
                    client.log_artifact(run_id, str(run_dir / name))
        except BaseException:  # a half-logged run is not left running
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, MLFLOW_STATUS.get(str(result["status"]), "FINISHED"))
        return run_id
