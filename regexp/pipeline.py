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
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from regexp import data as datasets
from regexp import rundir, saved, tasks, timing, writer
from regexp.backend import import_keras, threads
from regexp.config import check_memory, validate
from regexp.diagnostics import is_diagnostic
from regexp.engines import ENGINES, SINGLE
from regexp.errors import UserError
from regexp.keys import GROUP, essential, run_name
from regexp.plan import LayerPlan
from regexp.training import History, Job, interrupts_deferred, outcome, truncate

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


def prepare(
    cfg: DictConfig,
    plans: list[LayerPlan] | None = None,
    members: int = 1,
    compiled: bool = True,
    networks: dict[str, Any] | None = None,
) -> Job:
    """Load the data, check that the training fits in memory (``members`` of them for a
    fused group), and build and compile the model under ``cfg.seed``. The fused engine
    trains its own stacked copy (``compiled=False``: the model only gives the initial
    weights and takes the final ones; compiling draws no random numbers), so members
    built alike (``model.network_key``) share one model, kept in ``networks`` by key
    (``model.Network``).

    The initial weights depend only on the structure and the seed, so every engine
    starts the same job from the same weights.
    """
    with timing.phase("prepare"):
        plans = validate(cfg).plans if plans is None else plans
        return _prepare(cfg, plans, members, compiled, {} if networks is None else networks)


def _prepare(cfg: DictConfig, plans: list[LayerPlan], members: int, compiled: bool,
             networks: dict[str, Any]) -> Job:  # fmt: skip
    data = datasets.load(cfg.dataset)
    check_memory(cfg, data.shape, plans, members)
    keras = import_keras(int(cfg.trainer.threads))
    from regexp.model import Network, build_model, compile_model, loss_penalties_of, network_key

    seed, mode = int(cfg.seed), str(cfg.reg.mode)
    key = None if compiled else network_key(plans, mode, seed)
    network = networks.get(key) if key is not None else None
    if network is not None:  # built alike: this job's penalties go in when it is used
        penalties = loss_penalties_of(network.keras, plans) if mode == "loss" else []
        job = Job(cfg, plans, data, network, penalties, seed)
        network.holding(job)  # its penalties checked now, as building would check them
        return job
    keras.utils.set_random_seed(seed)
    task = tasks.of(data)  # its output layer, loss and metrics, smoothed by reg.smoothing
    model, loss_penalties = build_model(
        plans, data.n_features, task.output(data.n_classes), mode, seed=seed
    )
    if compiled:
        compile_model(model, cfg.optimizer, task, loss_penalties, tasks.smoothing_of(cfg))
    network = Network(model, shared=key is not None)
    if key is not None:
        networks[key] = network
    job = Job(cfg, plans, data, network, loss_penalties, seed)
    network.holder = job
    return job


@dataclass
class Trained:
    """A group after training: each job ready to write, with its history."""

    planned: list[Planned]
    jobs: list[Job]
    histories: list[History]
    seconds: float  # training time per job
    summary: str | None = None  # the model summary: one for the group, whose members
    # share their layers' names and shapes

    @property
    def interrupted(self) -> bool:
        return any(
            outcome(h, int(p.cfg.trainer.epochs), j.stopped_epoch)[0] == "interrupted"
            for p, j, h in zip(self.planned, self.jobs, self.histories, strict=True)
        )

    def finish(self, index: int) -> Finished:
        """Job ``index``'s folder, computed (``finish``), its model files written."""
        planned = self.planned[index]
        engine = {"engine": planned.engine, "group_size": len(self.planned)}
        if len(self.planned) > 1:  # the group, in order, so that verify can train it again
            engine["group"] = [os.path.relpath(p.folder, planned.folder.parent)
                               for p in self.planned]  # fmt: skip
        job = self.jobs[index]
        if self.summary is None:
            self.summary = summary_of(job.model)
        with cannot_write(planned.folder):
            return finish(job, self.histories[index], self.seconds, planned.folder,
                          planned.overrides, engine, self.summary)  # fmt: skip

    def write(self, index: int) -> dict[str, Any]:
        """Write job ``index``'s folder here; ``metrics.json``'s content."""
        return write_folder(self.finish(index))


@contextlib.contextmanager
def cannot_write(folder: Path) -> Iterator[None]:
    """A full disk, a lost permission: one line naming the file (``metrics.json`` is then
    never written)."""
    try:
        yield
    except OSError as e:
        where = e.filename or folder
        raise UserError(f"cannot write {where}: {e.strerror or e}") from None


def train(group: Sequence[Planned], lead: str = "", folders: writer.Writer | None = None
          ) -> Trained:  # fmt: skip
    """Prepare and train one group (a single job, or a fused group) with its engine; the
    writer ``folders`` that will write it meanwhile draws once the kinds of figures its
    folders hold (``Writer.ahead``)."""
    compiled = group[0].engine != "fused"
    networks: dict[str, Any] = {}  # fused members built alike share one model.Network
    jobs = [prepare(p.cfg, p.plans, len(group), compiled, networks) for p in group]
    if folders is not None:
        first = jobs[0]
        layers = sum(p.units is not None and p.activity is not None for p in first.plans)
        folders.ahead(writer.figures_ahead, ("loss", *first.kind.curves), layers)
    start = time.perf_counter()
    with timing.phase("train"):  # an engine's tracing is its own phase, inside
        histories = ENGINES[group[0].engine](jobs, lead=lead)
    return Trained(list(group), jobs, histories, (time.perf_counter() - start) / len(jobs))


def train_all(todo: Sequence[tuple[DictConfig, Path]], key: str) -> None:
    """Train configs into their folders (``(cfg, folder)`` pairs) through this pipeline, in
    fused groups: plan, claim (``key`` names what chose the folders, for ``rundir.guard``'s
    refusals), group, train, write. A completed folder of the same config is skipped, so a
    killed call resumes. Ctrl-C writes nothing half-done and raises ``KeyboardInterrupt``
    once the group's finished jobs are written."""
    planned = [plan(cfg, folder, fused=True) for cfg, folder in todo]
    pending = claim(planned, key)
    todo_groups = to_train(groups(planned), pending)
    for i, group in enumerate(todo_groups, start=1):
        cfg0 = group[0].cfg
        name = run_name(cfg0.experiment_name, cfg0.reg.name)
        log.info("group %d/%d: %s, %d runs", i, len(todo_groups), name, len(group))
        trained = train(group)
        with interrupts_deferred():
            for index, job in enumerate(group):
                if job in pending:
                    trained.write(index)
        if trained.interrupted:
            raise KeyboardInterrupt


def run(cfg: DictConfig, folder: Path, overrides: Sequence[str] = (),
        key: str = "hydra.run.dir", folders: writer.Writer | None = None,
        ) -> dict[str, Any] | None:  # fmt: skip
    """One job end to end: plan, claim, train alone, write (with ``folders``, a
    ``writer.Writer``; here by default). Returns ``metrics.json``'s content, or None
    when ``resume`` found the folder complete.

    Raises KeyboardInterrupt after writing the folder of an interrupted run.
    """
    with timing.phase("compose"):
        job = plan(cfg, folder, overrides)
        if not claim([job], key):
            return None
    folders = folders or writer.Writer(processes=0)
    trained = train([job], folders=folders)
    with interrupts_deferred():
        folders.submit(write_folder, trained.finish(0))
        (result,) = folders.results(replay=True)
    if result["status"] == "interrupted":
        raise KeyboardInterrupt
    return result


def summary_of(model) -> str:
    """Keras' ``model.summary()`` text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    return "\n".join(lines) + "\n"


@dataclass
class Finished:
    """A trained job's folder, computed: everything ``write_folder`` puts in it. It holds
    no TensorFlow object, so a writer process (``regexp.writer``) can write it."""

    folder: Path
    cfg: DictConfig
    record: dict[str, Any]  # metrics.json's content
    history: History  # up to the epoch it diverged at, if it did
    env: dict[str, Any]
    summary: str
    figures: list[tuple[str, str]]  # (file, series) of the history's figures
    post: dict[str, np.ndarray] = field(default_factory=dict)  # each hidden layer on test
    acts: dict[str, np.ndarray] = field(default_factory=dict)  # what each activity penalty sees
    scatter: tuple | None = None  # (x, colour, title) of a 2-D dataset
    notes: list[tuple[int, str]] = field(default_factory=list)  # log lines: (level, text)


def finish(
    job: Job,
    history: History,
    seconds: float,
    run_dir: Path,
    overrides: Sequence[str] | None,
    engine: dict[str, Any],
    summary: str | None = None,
) -> Finished:
    """Everything a trained job's folder holds that needs its model, computed where it
    trained; its saved models written. Shared by every engine.

    ``engine`` is what trained it (``{"engine": "fused", "group_size": 4}``). A diverged
    or interrupted run gets its history so far, its curves, and a ``metrics.json`` whose
    status says so; no final metrics are computed from it, and no model is saved. A
    completed run saves its model (``regexp.saved``) before ``metrics.json``. A run that
    early stopping ended is complete: ``stopped_epoch`` and ``best_epoch`` say where (1-based; null
    without early stopping, ``stopped_epoch`` null too when it ran every epoch), and its
    final metrics are those of the weights it ended with (the best epoch's with
    ``restore_best``).
    """
    from regexp.model import Probe

    cfg, data, model = job.cfg, job.data, job.model
    status, bad_epoch = outcome(history, int(cfg.trainer.epochs), job.stopped_epoch)
    if bad_epoch is not None:
        history = truncate(history, bad_epoch)
    title = run_name(cfg.get("experiment_name"), cfg.reg.name)
    record = {
        "status": status,
        "name": title,
        **engine,
        "seed": job.seed,
        "epochs_run": len(history.get("loss", [])),
        # early stopping's epochs, for a complete run (the rule's state means nothing else)
        "stopped_epoch": job.stopped_epoch if status == "completed" else None,
        "best_epoch": job.best_epoch if status == "completed" else None,
        "train_seconds": round(seconds, 3),
        "config_hash": rundir.config_hash(cfg),
    }
    env = rundir.env_record(job.seed, list(overrides or []), threads())
    summary = summary_of(model) if summary is None else summary
    done = Finished(run_dir, cfg, record, history, env, summary, [])
    if cfg.trainer.get("tensorboard"):  # a diverged or interrupted run's curves too
        from regexp.tracking import write_tensorboard

        with timing.phase("write"):
            write_tensorboard(run_dir, rundir.history_frame(history), job)
    if status != "completed":
        if record["epochs_run"]:
            done.figures = [("loss.png", "loss")]
        record["diverged_epoch"] = bad_epoch
        return done

    with timing.phase("evaluate"):
        probe = Probe(model, job.plans)  # the test split's activations, from its call
        final = saved.evaluate(model, data, job.loss_penalties, probe)  # accuracy, ...
        done.post, done.acts = probe.post, probe.acts
        try:  # model.keras, model_best.keras, preprocess.json: before metrics.json
            saved.save(job, run_dir)
        except OSError:
            raise
        except Exception as e:  # a user's regularizer Keras cannot serialize: keep the run
            done.notes.append((logging.WARNING, f"{title}: the model could not be saved "
                               f"({type(e).__name__}: {e}); the run is recorded without "
                               f"{rundir.MODEL}"))  # fmt: skip
    done.figures = [("loss.png", "loss")] + [(f"{s}.png", s) for s in job.kind.curves]
    if data.n_features == 2:  # coloured by class, or by the target's value
        colour = data.labels if job.kind is tasks.CLASSIFICATION else np.ravel
        x_all = np.concatenate([data.x_train, data.x_test])
        y_all = np.concatenate([colour(data.y_train), colour(data.y_test)])
        done.scatter = (x_all, y_all, f"{data.name} (train + test)")
    last = {k: v[-1] for k, v in history.items() if v}
    record.update({
        "val_is_test": data.val_is_test,
        "data": data.summary(),
        **{f"{split}_{k}": v for split, vals in final.items() for k, v in vals.items()},
        "activity_mean": {name: float(a.mean()) for name, a in done.acts.items()},
        "diagnostics": {k: float(v) for k, v in last.items() if is_diagnostic(k)},
    })  # fmt: skip
    if job.stopped_epoch is not None:
        done.notes.append((logging.INFO, f"{title}: early stopping ended training after "
                           f"epoch {job.stopped_epoch} (best epoch {job.best_epoch})"))  # fmt: skip
    scores = ", ".join(f"test {name.replace('_', ' ')} {record[f'test_{name}']:.4f}"
                       for name in job.kind.scores)  # fmt: skip
    done.notes.append((logging.INFO, f"{title}: {scores} ({run_dir})"))
    return done


def write_folder(done: Finished) -> dict[str, Any]:
    """Write a finished job's folder, ``metrics.json`` last; its content. Needs no
    TensorFlow: a writer process may call it (``regexp.writer``). A ``metrics.json``
    already there goes first (a folder written again, by the launching process after
    its writer process died), so the folder never looks complete while it is written."""
    from regexp import plots
    from regexp.tracking import send

    run_dir, record = done.folder, done.record
    title = record["name"]
    with cannot_write(run_dir):
        with timing.phase("write"):
            (run_dir / rundir.METRICS).unlink(missing_ok=True)
            rundir.write_env(run_dir, done.env)
            rundir.write_text(run_dir, rundir.MODEL_SUMMARY, done.summary)
            frame = rundir.write_history(run_dir, done.history)
        with timing.phase("plot"):
            status = record["status"]
            for file, series in done.figures:
                label = series if status == "completed" else f"{series} ({status})"
                plots.curves(frame, run_dir / file, series, f"{title}: {label}")
            if done.acts:
                plots.activations(done.acts, run_dir / "activations.png",
                                  f"{title}: activations on test")  # fmt: skip
            if done.scatter is not None:
                x, colour, name = done.scatter
                plots.scatter(x, colour, run_dir / "data.png", name)
        with timing.phase("write"):
            if status == "completed":
                rundir.write_activations(run_dir, done.post)
            rundir.write_metrics(run_dir, record)
    with timing.phase("write"):
        send(run_dir, done.cfg, frame, record)  # after metrics.json: it cannot spoil the folder
    for level, text in done.notes:
        log.log(level, text)
    if status != "completed":
        log.warning("%s: %s after %d epochs (%s)", title, status, len(frame), run_dir)
    return record
