"""The fused launchers: Hydra launchers that train a multirun's jobs in fused groups.

``regexp run -m ...`` uses one by default (``hydra/launcher=fused``). The launcher only
adapts Hydra to the pipeline (``regexp.pipeline``): it composes every job's config as
Hydra's basic launcher does, plans each (validation, the engine: ``auto`` is ``fused``
here), claims their folders before training anything, groups them
(``pipeline.groups``, at most ``max_members`` a group), trains each group with
``pipeline.train``, and hands every trained job (``pipeline.finish``) to a writer
(``regexp.writer``), which writes its folder through Hydra's own ``run_job`` (which adds
``.hydra/`` and the job's log) while the next group trains. Each job's folder is
therefore the one it would have had alone.

Where the groups train is the one thing the fused launchers differ in (``dispatch``):

- ``fused``: one group after another, in this process;
- ``fused_submitit_local`` / ``fused_submitit_slurm``: one submitit job per group, with
  hydra-submitit-launcher's settings (partition, timeout_min, cpus_per_task, ...);
- ``fused_ray``: one Ray task per group, with hydra-ray-launcher's ``ray.init`` and
  ``ray.remote`` settings.

A worker gets the group's planned jobs and Hydra's state, trains them with
``train_group`` exactly as the in-process launcher does, and writes the folders on the
shared file system itself (its cores are its group's: no writer process). The launching
process only composes, plans, claims, groups and waits.

Hydra only accepts launchers defined in its ``hydra_plugins`` namespace package, so
``hydra_plugins/regexp_launcher/fused_launcher.py`` defines the launcher classes as thin
subclasses of the ones here and registers their configs.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write

from regexp.hydra_jobs import Ahead

log = logging.getLogger(__name__)


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.regexp_launcher.fused_launcher.FusedLauncher"
    max_members: int = 100  # the largest group trained as one model (pipeline.MAX_MEMBERS)


class FusedLauncherBase(Launcher):
    def __init__(self, max_members: int = 100) -> None:
        self.max_members = max_members
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from regexp.training import collector_paused

        with collector_paused():  # its passes while groups train, not around them
            return self._launch(job_overrides, initial_job_idx)

    def _launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from regexp import pipeline
        from regexp.errors import UserError
        from regexp.sweep_configs import SweepComposer
        from regexp.timing import phase

        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs, fused where they share a network", len(job_overrides))

        jobs: list[_Job] = []
        composer = SweepComposer(self.hydra_context.config_loader, self.config)
        # each job composed once, planned (validated), then claimed
        with phase("compose"):
            for num, overrides in enumerate(job_overrides, start=initial_job_idx):
                log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
                sweep_config = self._compose(composer, num, list(overrides))
                with open_dict(sweep_config):
                    sweep_config.hydra.job.id = num
                    sweep_config.hydra.job.num = num
                task = _task_config(sweep_config)
                try:
                    folder = _job_folder(sweep_config)
                    planned = pipeline.plan(task, folder, list(sweep_config.hydra.overrides.task),
                                            fused=True, num=num)  # fmt: skip
                except UserError as e:
                    print(f"regexp: error: job #{num}: {e}", file=sys.stderr)
                    raise SystemExit(2) from None
                jobs.append(_Job(num, sweep_config, planned))

            try:
                pending = pipeline.claim([job.planned for job in jobs], "hydra.sweep.dir")
            except UserError as e:
                print(f"regexp: error: {e}", file=sys.stderr)
                raise SystemExit(2) from None
        returns = {job.num: _skipped(job) for job in jobs if job.planned not in pending}
        for job in jobs:
            job.done = job.planned not in pending
        if pending:  # a resumed sweep may have nothing left to train
            by_planned = {id(job.planned): job for job in jobs}
            all_groups = pipeline.groups([job.planned for job in jobs], self.max_members)
            groups = [[by_planned[id(p)] for p in g]
                      for g in pipeline.to_train(all_groups, pending)]  # fmt: skip
            returns.update(self.dispatch(groups, done=len(returns), total=len(jobs)))
        return [returns[job.num] for job in jobs]

    def _compose(self, composer: Any, num: int, overrides: list[str]) -> DictConfig:
        """Job ``num``'s config, as Hydra's ``load_sweep_config`` composes it; a job that does
        not compose (an unknown key or option) is one line naming it (exit 2)."""
        from hydra.errors import HydraException
        from omegaconf import OmegaConf

        from regexp.compose import hydra_error

        try:
            return composer.compose(overrides)
        except HydraException as e:
            assert self.config is not None and self.hydra_context is not None
            base = OmegaConf.masked_copy(self.config, [k for k in self.config if k != "hydra"])
            every = composer.hydra_overrides + overrides  # a hydra.searchpath among them
            error = hydra_error(e, base, self.hydra_context.config_loader, every)
            print(f"regexp: error: job #{num}: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    def dispatch(self, groups: list[list[_Job]], done: int, total: int) -> dict[int, JobReturn]:
        """Train the groups here, one after another, while a writer process writes the
        folders of those trained (``regexp.writer``)."""
        from regexp import writer
        from regexp.errors import UserError

        assert self.config is not None
        failures = []
        folders = writer.shared()
        written = 0
        try:
            start_writing(folders, self.hydra_context)
            for group in groups:
                lead = f"jobs {done + written}/{total} done, {len(group)} running | "
                try:
                    interrupted = train_group(folders, group, lead)
                except UserError as e:  # bad input only building could find; others go on
                    failures.append((_numbers(group), str(e), ""))
                    continue
                written += len(group)
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                if interrupted:  # the group's folders say so; later groups never start
                    raise KeyboardInterrupt
                if folders.failed() is not None:  # e.g. the disk is full: stop training more
                    break
        finally:  # an interrupt too: every trained job is written first
            from regexp.pipeline import interrupts_deferred

            with interrupts_deferred():
                try:
                    returns, error = collect(folders)
                finally:  # the jobs written here set up their own logging
                    configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if error is not None:
            failures.append(error)
        _fail_if_any(failures)
        return returns


def start_writing(folders: Any, hydra_context: HydraContext) -> None:
    """Give the writer what Hydra's ``run_job`` needs there: Hydra's state, the launch
    folder and the context."""
    global _context
    _context = hydra_context  # here, where jobs the writer has not started are written too
    instances = Singleton.get_state()["instances"]  # its resolvers are registered again there
    folders.submit(_writing_for, hydra_context, instances, os.getcwd())


def _writing_for(hydra_context: HydraContext, instances: dict, cwd: str) -> None:
    global _context
    _ahead.clear()  # an earlier sweep's, never written (interrupted, or written there)
    if _context is not hydra_context:  # a writer process: Hydra's state as it was here
        from regexp.compose import register_resolvers

        Singleton._instances.update(instances)
        setup_globals()
        register_resolvers()
        os.chdir(cwd)
    _context = hydra_context


_context: HydraContext | None = None  # the writer's: set by start_writing
_ahead: dict[int, Ahead] = {}  # the writer's: jobs whose run_job is half done, by number


def jobs_ahead(jobs: list[tuple[int, DictConfig]]) -> None:
    """In the writer, while the jobs train: the part of Hydra's ``run_job`` that needs
    only their configs (``hydra_jobs.Ahead``). A job whose part fails here is done
    whole when it is written, where the error is reported."""
    assert _context is not None, "start_writing first"
    for num, sweep_config in jobs:
        try:
            _ahead[num] = Ahead(_context, sweep_config, *JOB_DIR_KEYS)
        except Exception:
            _ahead.pop(num, None)


JOB_DIR_KEYS = ("hydra.sweep.dir", "hydra.sweep.subdir")


def train_group(folders: Any, group: list[_Job], lead: str = "") -> bool:
    """Train one group with the pipeline, and hand each trained job to the writer
    ``folders``, which writes its folder through Hydra's ``run_job`` (which adds
    ``.hydra/`` and the job's log). Returns whether training was interrupted.

    Runs in the launching process (``fused``) or in a worker (submitit, Ray).
    """
    from regexp import pipeline

    folders.ahead(jobs_ahead, [(job.num, job.sweep_config) for job in group if not job.done])
    trained = pipeline.train([job.planned for job in group], lead, folders)
    with pipeline.interrupts_deferred():
        for index, job in enumerate(group):
            if job.done:  # complete before this sweep; trained again only for its group
                continue
            folders.submit(write_job, job.num, job.sweep_config, trained.finish(index))
    return trained.interrupted


def write_job(num: int, sweep_config: DictConfig, finished: Any) -> tuple[int, JobReturn]:
    """Write a finished job's folder through Hydra's ``run_job``, in the writer: its
    second step when ``jobs_ahead`` did the first here, else both."""
    from regexp.errors import UserError
    from regexp.pipeline import cannot_write, write_folder

    assert _context is not None, "start_writing first"
    try:
        with cannot_write(finished.folder):  # run_job's own writing: the folder, .hydra/
            ahead = _ahead.pop(num, None) or Ahead(_context, sweep_config, *JOB_DIR_KEYS)
            return num, ahead.run(lambda cfg: write_folder(finished))
    except UserError as e:  # the job's failure, as the task's own errors are
        return num, JobReturn(overrides=list(sweep_config.hydra.overrides.task),
                              status=JobStatus.FAILED, _return_value=e)  # fmt: skip


def collect(folders: Any) -> tuple[dict[int, JobReturn], tuple[str, str, str] | None]:
    """Wait for the writer: each written job's return by number, and, if the writing of
    any failed (e.g. the disk is full), the first one's numbers and error for
    ``_fail_if_any``; the jobs that failed are not among the returns."""
    written = dict(r for r in folders.results() if r is not None)
    failed = [num for num, r in written.items() if r.status == JobStatus.FAILED]
    returns = {num: r for num, r in written.items() if num not in failed}
    if not failed:
        return returns, None
    more = f" (and {len(failed) - 1} more jobs)" if len(failed) > 1 else ""
    return returns, (f"#{failed[0]}", f"{written[failed[0]]._return_value}{more}", "")


@dataclass
class GroupResult:
    """What a worker sends back: the jobs' returns, or the one-line error that stopped it."""

    returns: dict[int, JobReturn]
    error: str | None = None


def train_group_in_worker(
    hydra_context: HydraContext, group: list[_Job], singleton_state: dict, cwd: str
) -> GroupResult:
    """``train_group`` in a fresh process: restore Hydra's state and the launch folder."""
    from regexp.errors import UserError

    # submitit cancels a local worker with SIGINT: it must stop even when the sweep was
    # started in the background, where SIGINT is inherited as ignored. Slurm's scancel sends
    # SIGTERM (SIGKILL only KillWait seconds later), which submitit would ignore: it stops
    # training as Ctrl-C does, so the trained epochs are recorded as interrupted.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    Singleton.set_state(singleton_state)
    setup_globals()
    os.chdir(cwd)  # relative sweep folders resolve as they did where the sweep was launched
    hydra = group[0].sweep_config.hydra  # progress lines in the worker's own log
    configure_log(hydra.hydra_logging, hydra.verbose)
    worker = _worker_id()
    for job in group:  # as Hydra's own submitit launcher records it: the scheduler's id
        with open_dict(job.sweep_config):
            job.sweep_config.hydra.job.id = f"{worker}_{job.num}"
    log.info("Training jobs %s in this worker", _numbers(group))
    from regexp.writer import Writer

    folders = Writer(processes=0)  # the worker's cores are its group's
    start_writing(folders, hydra_context)
    try:
        train_group(folders, group)
    except UserError as e:  # bad input only training could find (e.g. a non-scalar penalty)
        return GroupResult({}, str(e))
    returns, error = collect(folders)
    return GroupResult(returns, None if error is None else error[1])


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _worker_id() -> str:
    """The scheduler's id of this worker: the submitit (Slurm) job id, or the Ray task id."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_task_id()
    import submitit

    return str(submitit.JobEnvironment().job_id)


class WorkerDispatch(FusedLauncherBase):
    """A fused launcher whose groups train in workers; subclasses say how to submit."""

    def submit(self, args: list[tuple]) -> list[Any]:
        """Start ``train_group_in_worker(*a)`` for each ``a``; return handles for ``wait``."""
        raise NotImplementedError

    def wait(self, handles: list[Any]):
        """Yield (index, GroupResult or the exception that ended the worker) as each ends."""
        raise NotImplementedError

    def cancel(self, handles: list[Any]) -> None:
        """Stop these workers; what they had not written is lost (never looks complete)."""
        raise NotImplementedError

    def where(self, handle: Any) -> str:
        """Where a worker's own log is, for error messages."""
        return ""

    def dispatch(self, groups: list[list[_Job]], done: int, total: int) -> dict[int, JobReturn]:
        assert self.config is not None
        state, cwd = Singleton.get_state(), os.getcwd()
        handles = self.submit([(self.hydra_context, g, state, cwd) for g in groups])
        log.info("Submitted %d fused groups of %s jobs", len(groups), [len(g) for g in groups])
        returns: dict[int, JobReturn] = {}
        failures = []
        waiting = list(range(len(handles)))
        shown = _SweepLine(groups, total)
        try:
            for index, result in self.wait(handles):
                waiting.remove(index)
                shown.update(waiting)
                nums = _numbers(groups[index])
                if not isinstance(result, GroupResult):  # the worker crashed
                    hint = f" (worker log: {self.where(handles[index])})"
                    failures.append((nums, _last_line(result), hint))
                elif result.error is not None:
                    failures.append((nums, result.error, ""))
                else:
                    returns.update(result.returns)
                    log.info("\tjobs %s done (%d/%d)", nums, done + len(returns), total)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the workers still running stop too
            self.cancel([handles[i] for i in waiting])
            cancelled = ", ".join(_numbers(groups[i]) for i in waiting)
            sweep = self.config.hydra.sweep.dir
            print(f"regexp: interrupted; cancelled the workers of jobs {cancelled}, whose "
                  f"folders are not complete; the same sweep with resume={sweep} trains "
                  "only them", file=sys.stderr)  # fmt: skip
            raise SystemExit(130) from None
        finally:
            shown.close()
        _fail_if_any(failures)
        return returns


class _SweepLine:
    """The launching process's live line while workers train: jobs done and running."""

    def __init__(self, groups: list[list[_Job]], total: int) -> None:
        from regexp.progress import live

        self.groups, self.total = groups, total
        self.live = live(groups[0][0].planned.cfg.trainer)
        self.update(list(range(len(groups))))

    def update(self, waiting: list[int]) -> None:
        from regexp.progress import LINE

        if self.live:
            running = sum(len(self.groups[i]) for i in waiting)
            workers = f"{len(waiting)} worker" + ("s" if len(waiting) != 1 else "")
            LINE.write(f"jobs {self.total - running}/{self.total} done, {running} running in "
                       f"{workers}")  # fmt: skip

    def close(self) -> None:
        from regexp.progress import LINE

        if self.live:
            LINE.end()


def _fail_if_any(failures: list[tuple[str, str, str]]) -> None:
    """One line per failed group: (its job numbers, the error, where its log is, if a
    worker crashed). Exit 2 when all were bad input, else 1. Every other group ran, and
    the folders they wrote are complete and kept."""
    for nums, message, hint in failures:
        print(f"regexp: error: jobs {nums}: {message}{hint}", file=sys.stderr)
    if failures:
        raise SystemExit(1 if any(hint for *_, hint in failures) else 2)


def _numbers(group: list[_Job]) -> str:
    nums = [job.num for job in group]
    return f"#{nums[0]}" if len(nums) == 1 else f"#{nums[0]}-#{nums[-1]}"


def _last_line(error: BaseException) -> str:
    """The exception a worker ended with, as one line: the last ``SomeError: ...`` line of
    the traceback that submitit or Ray wrapped in it, else its own last line."""
    import re

    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Exit)\b", line)]
    return (raised or lines or [type(error).__name__])[-1]


class SubmititDispatch(WorkerDispatch):
    """One submitit job per fused group, on Slurm (``slurm``) or as local processes.

    Takes hydra-submitit-launcher's settings, so a ``submitit_slurm`` config carries over.
    """

    cluster = "abstract"

    def __init__(self, max_members: int = 100, **params: Any) -> None:
        from omegaconf import OmegaConf

        super().__init__(max_members)
        self.params = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in params.items()
        }

    def submit(self, args: list[tuple]) -> list[Any]:
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        # As hydra-submitit-launcher builds its executor: shared keys as they are, the
        # others prefixed with the cluster's name.
        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self.cluster}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self.cluster, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in shared else f"{self.cluster}_{k}": v for k, v in params.items()}
        )
        return executor.map_array(train_group_in_worker, *zip(*args, strict=True))

    def wait(self, handles: list[Any]):
        import submitit

        index = {id(job): i for i, job in enumerate(handles)}
        # done() is cheap locally, and submitit caches Slurm's answer
        for job in submitit.helpers.as_completed(handles, poll_frequency=1):
            try:
                yield index[id(job)], job.result()
            except Exception as e:  # the worker crashed, was killed or timed out
                yield index[id(job)], e

    def cancel(self, handles: list[Any]) -> None:
        for job in handles:  # a local job: SIGINT then SIGKILL; on Slurm: scancel
            job.cancel(check=False)

    def where(self, handle: Any) -> str:
        return str(handle.paths.stderr)


class RayDispatch(WorkerDispatch):
    """One Ray task per fused group, with hydra-ray-launcher's ``ray.init`` and
    ``ray.remote`` settings (a local Ray instance unless ``ray.init.address`` is set)."""

    def __init__(self, ray: DictConfig, max_members: int = 100) -> None:
        super().__init__(max_members)
        self.ray_cfg = ray

    def submit(self, args: list[tuple]) -> list[Any]:
        import ray
        from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray
        from omegaconf import OmegaConf

        with open_dict(self.ray_cfg):  # as hydra-ray-launcher does, for small machines
            self.ray_cfg.init.setdefault("object_store_memory", 78643200)
        on_sigterm = signal.getsignal(signal.SIGTERM)
        start_ray(self.ray_cfg.init)
        signal.signal(signal.SIGTERM, on_sigterm)  # ray.init replaces it with an exit
        options = OmegaConf.to_container(self.ray_cfg.remote, resolve=True) or {}
        remote = ray.remote(**options) if options else ray.remote  # ray.remote() needs options
        task = remote(train_group_in_worker)
        return [task.remote(*a) for a in args]

    def wait(self, handles: list[Any]):
        import ray

        index = {ref: i for i, ref in enumerate(handles)}
        left = list(handles)
        while left:
            (ref,), left = ray.wait(left, num_returns=1)
            try:
                yield index[ref], ray.get(ref)
            except Exception as e:  # the task raised, or its worker died
                yield index[ref], e

    def cancel(self, handles: list[Any]) -> None:
        import ray

        for ref in handles:
            ray.cancel(ref, force=True)

    def where(self, handle: Any) -> str:
        return "the Ray session's logs (/tmp/ray/session_latest/logs)"


@dataclass
class _Job:
    """One job of a sweep: its number, Hydra's config for it, and the pipeline's plan."""

    num: int
    sweep_config: DictConfig
    planned: Any  # pipeline.Planned
    done: bool = False  # complete before this sweep started (resume)


def _job_folder(sweep_config: DictConfig) -> Path:
    """Where Hydra's run_job will put this job: sweep dir / subdir, resolved."""
    from regexp.compose import job_subdir

    return Path(str(sweep_config.hydra.sweep.dir)) / job_subdir(sweep_config)


def _skipped(job: _Job) -> JobReturn:
    """The return of a job that resuming found complete: nothing ran."""
    return JobReturn(
        overrides=list(job.sweep_config.hydra.overrides.task),
        cfg=job.planned.cfg,
        hydra_cfg=job.sweep_config,
        working_dir=str(job.planned.folder),
        task_name=str(job.sweep_config.hydra.job.name),
        status=JobStatus.COMPLETED,
        _return_value=None,
    )


def _task_config(sweep_config: DictConfig) -> DictConfig:
    """The job's own config, as Hydra hands it to the task function (no ``hydra`` node):
    a deep copy, but for the ``hydra`` node, which copying would take most of the time
    for, only to be dropped (deepcopy's memo stands an empty node in for it)."""
    hydra = sweep_config.get("hydra")
    task = copy.deepcopy(sweep_config, {id(hydra): DictConfig({})} if hydra is not None else {})
    with read_write(task), open_dict(task):
        task.pop("hydra", None)
    return task
