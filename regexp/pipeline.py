"""The one pipeline every job runs, whoever starts it:

    compose -> plan (validate once, choose the engine) -> claim the folder
            -> group -> prepare -> train -> write the folder

``regexp run`` (one job, or a sweep through any Hydra launcher), the fused launchers
(in-process, submitit, Ray), ``make reproduce-all``, ``regexp verify`` and ``make bench``
all call these functions, so every job follows the same rules.

Which engine trains a job is decided once, in ``plan``: ``trainer.engine=auto`` means
``compiled`` for a job trained alone and ``fused`` where a launcher fuses jobs into
groups; any other value is used as it is. ``compiled`` and ``keras`` jobs are never
fused. ``metrics.json`` records the decision as data: ``"engine": "fused",
"group_size": 4``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from regexp import data as datasets
from regexp import plots, rundir, saved, tasks
from regexp.backend import import_keras, threads
from regexp.config import check_memory, validate
from regexp.diagnostics import is_diagnostic
from regexp.engines import ENGINES, SINGLE
from regexp.errors import UserError
from regexp.keys import GROUP, essential, run_name
from regexp.plan import LayerPlan
from regexp.training import History, Job, outcome, truncate

log = logging.getLogger("regexp.run")

SPLITS = saved.SPLITS
MAX_MEMBERS = 100  # the largest fused group, unless a launcher says otherwise


@dataclass(eq=False)  # a job is itself: two jobs with equal configs are still two
class Planned:
    """A validated job, its engine decided, and where it writes."""

    cfg: DictConfig
    plans: list[LayerPlan]
    engine: str
    folder: Path
    overrides: list[str] = field(default_factory=list)
    num: int | None = None  # its number in a sweep

    @property
    def label(self) -> str:
        return f"job #{self.num}" if self.num is not None else str(self.folder)


def choose_engine(setting: str, fused: bool) -> str:
    """``auto`` is ``fused`` where jobs are fused into groups, else ``compiled``."""
    if setting == "auto":
        return "fused" if fused else "compiled"
    return setting


def plan(
    cfg: DictConfig,
    folder: Path,
    overrides: Sequence[str] = (),
    *,
    fused: bool = False,
    num: int | None = None,
) -> Planned:
    """Validate ``cfg`` (the one validation of a job) and decide its engine; ``fused``
    says whether the caller trains jobs in fused groups."""
    plans = validate(cfg, overrides).plans
    engine = choose_engine(str(cfg.trainer.engine), fused)
    return Planned(cfg, plans, engine, Path(folder), list(overrides), num)


def claim(jobs: Sequence[Planned], key: str) -> list[Planned]:
    """The jobs that must train, after ``rundir.guard`` has passed every one of them (a
    refused folder raises before anything is written); each one's folder is then created
    with its ``config.yaml``, so a job that never gets to run shows as unfinished."""
    shared: dict[Path, list[Planned]] = {}
    for job in jobs:
        shared.setdefault(job.folder.resolve(), []).append(job)
    for folder, same in shared.items():
        if len(same) > 1:
            names = ", ".join(job.label for job in same[:5]) + (", ..." if len(same) > 5 else "")
            raise UserError(
                f"{names} would all write {folder}; make hydra.sweep.subdir tell them apart "
                "(the default starts with ${hydra.job.num})"
            )
    pending = [job for job in jobs if rundir.guard(job.folder, job.cfg, key)]
    for job in (job for job in jobs if job not in pending):
        log.info("resume: %s is complete for this config; skipped", job.folder)
    for job in pending:
        rundir.write_config(job.folder, job.cfg)
    return pending


def group_key(job: Planned) -> str:
    """Jobs with equal keys train as one fused model: the same config outside
    ``keys.GROUP`` (dataset, network, optimizer, schedule) and penalties of the same
    kinds in the same places. ``compiled`` and ``keras`` jobs each train alone."""
    if job.engine in SINGLE:
        return f"{job.engine}:{id(job)}"
    shape = [list(p.shape) for p in job.plans]
    return json.dumps({"config": essential(job.cfg, GROUP), "plans": shape}, sort_keys=True)


def groups(jobs: Sequence[Planned], max_members: int = MAX_MEMBERS) -> list[list[Planned]]:
    """Fusable jobs together, in order of first appearance, at most ``max_members`` each.

    Form them from every job of a sweep, complete or not: a resumed sweep then trains the
    same groups as an uninterrupted one (a group with any job left trains whole, and only
    its unfinished jobs are written), so its numbers are the same to the last bit."""
    by_key: dict[str, list[Planned]] = {}
    for job in jobs:
        by_key.setdefault(group_key(job), []).append(job)
    return [g[i : i + max_members] for g in by_key.values() for i in range(0, len(g), max_members)]


def to_train(
    all_groups: Sequence[list[Planned]], pending: Sequence[Planned]
) -> list[list[Planned]]:
    """The groups that hold at least one job still to train."""
    return [g for g in all_groups if any(job in pending for job in g)]


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C or SIGTERM while trained runs are written takes effect after the last one
    (as KeyboardInterrupt): a trained run is never lost to an interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum))
             for s in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise KeyboardInterrupt


def prepare(cfg: DictConfig, plans: list[LayerPlan] | None = None, members: int = 1) -> Job:
    """Load the data, check that the training fits in memory (``members`` of them for a
    fused group), and build and compile the model under ``cfg.seed``.

    The initial weights depend only on the structure and the seed, so every engine
    starts the same job from the same weights.
    """
    plans = validate(cfg).plans if plans is None else plans
    data = datasets.load(cfg.dataset)
    check_memory(cfg, data.shape, plans, members)
    keras = import_keras(int(cfg.trainer.threads))
    from regexp.model import build_model, compile_model

    seed = int(cfg.seed)
    keras.utils.set_random_seed(seed)
    task = tasks.of(data)  # its output layer, loss and metrics, smoothed by reg.smoothing
    model, loss_penalties = build_model(
        plans, data.n_features, task.output(data.n_classes), cfg.reg.mode, seed=seed
    )
    compile_model(model, cfg.optimizer, task, loss_penalties, tasks.smoothing_of(cfg))
    return Job(cfg, plans, data, model, loss_penalties, seed)


@dataclass
class Trained:
    """A group after training: each job ready to write, with its history."""

    planned: list[Planned]
    jobs: list[Job]
    histories: list[History]
    seconds: float  # training time per job

    @property
    def interrupted(self) -> bool:
        return any(
            outcome(h, int(p.cfg.trainer.epochs), j.stopped_epoch)[0] == "interrupted"
            for p, j, h in zip(self.planned, self.jobs, self.histories, strict=True)
        )

    def write(self, index: int) -> dict[str, Any]:
        """Write job ``index``'s folder; ``metrics.json``'s content."""
        planned = self.planned[index]
        engine = {"engine": planned.engine, "group_size": len(self.planned)}
        if len(self.planned) > 1:  # the group, in order, so that verify can train it again
            engine["group"] = [os.path.relpath(p.folder, planned.folder.parent)
                               for p in self.planned]  # fmt: skip
        try:
            return write(self.jobs[index], self.histories[index], self.seconds, planned.folder,
                         planned.overrides, engine)  # fmt: skip
        except OSError as e:  # a full disk, a lost permission: metrics.json is never written
            where = e.filename or planned.folder
            raise UserError(f"cannot write {where}: {e.strerror or e}") from None


def train(group: Sequence[Planned], lead: str = "") -> Trained:
    """Prepare and train one group (a single job, or a fused group) with its engine."""
    jobs = [prepare(p.cfg, p.plans, members=len(group)) for p in group]
    start = time.perf_counter()
    histories = ENGINES[group[0].engine](jobs, lead=lead)
    return Trained(list(group), jobs, histories, (time.perf_counter() - start) / len(jobs))


def run(cfg: DictConfig, folder: Path, overrides: Sequence[str] = (),
        key: str = "hydra.run.dir") -> dict[str, Any] | None:  # fmt: skip
    """One job end to end: plan, claim, train alone, write. Returns ``metrics.json``'s
    content, or None when ``resume`` found the folder complete.

    Raises KeyboardInterrupt after writing the folder of an interrupted run.
    """
    job = plan(cfg, folder, overrides)
    if not claim([job], key):
        return None
    trained = train([job])
    with interrupts_deferred():
        result = trained.write(0)
    if result["status"] == "interrupted":
        raise KeyboardInterrupt
    return result


def write(
    job: Job,
    history: History,
    seconds: float,
    run_dir: Path,
    overrides: Sequence[str] | None,
    engine: dict[str, Any],
) -> dict[str, Any]:
    """Write the run folder of a trained job; ``metrics.json`` last. Shared by every engine.

    ``engine`` is what trained it (``{"engine": "fused", "group_size": 4}``). A diverged
    or interrupted run gets its history so far, its curves, and a ``metrics.json`` whose
    status says so; no final metrics are computed from it, and no model is saved. A
    completed run saves its model (``regexp.saved``) before ``metrics.json``. A run that
    early stopping ended is complete: ``stopped_epoch`` and ``best_epoch`` say where (1-based; null
    without early stopping, ``stopped_epoch`` null too when it ran every epoch), and its
    final metrics are those of the weights it ended with (the best epoch's with
    ``restore_best``).
    """
    from regexp.model import layer_outputs
    from regexp.tracking import send

    cfg, data, model = job.cfg, job.data, job.model
    status, bad_epoch = outcome(history, int(cfg.trainer.epochs), job.stopped_epoch)
    if bad_epoch is not None:
        history = truncate(history, bad_epoch)
    rundir.write_env(run_dir, rundir.env_record(job.seed, list(overrides or []), threads()))
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    rundir.write_text(run_dir, rundir.MODEL_SUMMARY, "\n".join(lines) + "\n")
    frame = rundir.write_history(run_dir, history)
    title = run_name(cfg.get("experiment_name"), cfg.reg.name)
    record = {
        "status": status,
        "name": title,
        **engine,
        "seed": job.seed,
        "epochs_run": len(frame),
        # early stopping's epochs, for a complete run (the rule's state means nothing else)
        "stopped_epoch": job.stopped_epoch if status == "completed" else None,
        "best_epoch": job.best_epoch if status == "completed" else None,
        "train_seconds": round(seconds, 3),
        "config_hash": rundir.config_hash(cfg),
    }
    if cfg.trainer.get("tensorboard"):  # a diverged or interrupted run's curves too
        from regexp.tracking import write_tensorboard

        write_tensorboard(run_dir, frame, job)
    if status != "completed":
        if len(frame):
            plots.curves(frame, run_dir / "loss.png", "loss", f"{title}: loss ({status})")
        record["diverged_epoch"] = bad_epoch
        rundir.write_metrics(run_dir, record)
        send(run_dir, cfg, frame, record)  # after metrics.json: it cannot spoil the folder
        log.warning("%s: %s after %d epochs (%s)", title, status, len(frame), run_dir)
        return record

    final = saved.evaluate(model, data, job.loss_penalties)  # accuracy, data_loss, penalty...

    plots.curves(frame, run_dir / "loss.png", "loss", f"{title}: loss")
    for series in job.kind.curves:  # accuracy.png; mae.png and r2.png
        plots.curves(frame, run_dir / f"{series}.png", series, f"{title}: {series}")
    post, acts = layer_outputs(model, job.plans, data.x_test)
    rundir.write_activations(run_dir, post)
    if acts:
        plots.activations(acts, run_dir / "activations.png", f"{title}: activations on test")
    if data.n_features == 2:  # coloured by class, or by the target's value
        colour = data.labels if job.kind is tasks.CLASSIFICATION else np.ravel
        x_all = np.concatenate([data.x_train, data.x_test])
        y_all = np.concatenate([colour(data.y_train), colour(data.y_test)])
        plots.scatter(x_all, y_all, run_dir / "data.png", f"{data.name} (train + test)")

    result = {
        **record,
        "val_is_test": data.val_is_test,
        "data": data.summary(),
        **{f"{split}_{k}": v for split, vals in final.items() for k, v in vals.items()},
        "activity_mean": {name: float(a.mean()) for name, a in acts.items()},
        "diagnostics": {k: float(v) for k, v in frame.iloc[-1].items() if is_diagnostic(k)},
    }
    try:  # model.keras, model_best.keras, preprocess.json: before metrics.json
        saved.save(job, run_dir)
    except OSError:
        raise
    except Exception as e:  # a user's regularizer Keras cannot serialize: keep the run
        log.warning("%s: the model could not be saved (%s: %s); the run is recorded "
                    "without %s", title, type(e).__name__, e, rundir.MODEL)  # fmt: skip
    rundir.write_metrics(run_dir, result)
    send(run_dir, cfg, frame, result)  # HParams, MLflow; a failure only warns
    if job.stopped_epoch is not None:
        log.info("%s: early stopping ended training after epoch %d (best epoch %d)",
                 title, job.stopped_epoch, job.best_epoch)  # fmt: skip
    scores = ", ".join(f"test {name.replace('_', ' ')} {result[f'test_{name}']:.4f}"
                       for name in job.kind.scores)  # fmt: skip
    log.info("%s: %s (%s)", title, scores, run_dir)
    return result
