"""The fused launcher: a Hydra launcher that trains a multirun's jobs as fused groups.

``regexp run -m ...`` uses it by default (``hydra/launcher=fused``). It composes every
job's config as Hydra's basic launcher does, validates all of them before training
anything, groups the jobs that can share one vectorized model (``fused.group_key``),
trains each group with ``fused.fit_members``, and then hands every job to Hydra's own
``run_job``, which makes its folder, writes ``.hydra/`` and its log, and calls the same
``finish`` a single run uses. Each job's folder is therefore the one it would have had
alone. Jobs with ``trainer.engine=keras`` are not fused: they run one by one with
``model.fit``.

Hydra only accepts launchers defined in its ``hydra_plugins`` namespace package, so
``hydra_plugins/regexp_launcher/fused_launcher.py`` defines ``FusedLauncher`` as a
subclass of ``FusedLauncherBase`` and registers ``hydra/launcher=fused``.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.experimental.callback import Callback
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.regexp_launcher.fused_launcher.FusedLauncher"
    max_members: int = 100  # the largest group trained as one model


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
        from regexp.config import validate
        from regexp.errors import UserError
        from regexp.progress import LINE
        from regexp.rundir import completed_with, is_complete

        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs, fused where they share a network", len(job_overrides))

        jobs: list[_Job] = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = num
                sweep_config.hydra.job.num = num
            task = _task_config(sweep_config)
            try:
                plans = validate(task)
            except UserError as e:
                print(f"regexp: error: job #{num}: {e}", file=sys.stderr)
                raise SystemExit(2) from None
            jobs.append(_Job(num, sweep_config, task, plans))

        returns: dict[int, JobReturn] = {}
        pending = []
        for job in jobs:
            folder = _job_folder(job.sweep_config)
            if job.task.get("resume") and completed_with(folder, job.task):
                log.info("\t#%d : complete in %s; skipped (resume)", job.num, folder)
                returns[job.num] = _skipped(job.sweep_config, job.task)
            elif is_complete(folder):
                print(f"regexp: error: {folder} already holds a complete run; pass "
                      f"resume={folder.parent} to finish that sweep, or choose another "
                      "hydra.sweep.dir (nothing was overwritten)", file=sys.stderr)  # fmt: skip
                raise SystemExit(2)
            else:
                pending.append(job)
        for group in self._groups(pending):
            LINE.sweep = f"jobs {len(returns)}/{len(jobs)} done, {len(group)} running | "
            returns.update(self._run_group(group))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        LINE.sweep = ""
        return [returns[job.num] for job in jobs]

    def _groups(self, jobs: list[_Job]) -> list[list[_Job]]:
        """Fusable jobs together, in order of first appearance, at most max_members each."""
        from regexp.fused import group_key

        groups: dict[str, list[_Job]] = {}
        for job in jobs:
            fusable = job.task.trainer.engine != "keras"
            key = group_key(job.task, job.plans) if fusable else f"keras-{job.num}"
            groups.setdefault(key, []).append(job)
        size = self.max_members
        return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]

    def _run_group(self, group: list[_Job]) -> dict[int, JobReturn]:
        from regexp.engines import ENGINES, outcome
        from regexp.fused import fit_members
        from regexp.run import finish, prepare

        prepared = [prepare(job.task) for job in group]
        start = time.perf_counter()
        if group[0].task.trainer.engine == "keras":
            histories, engine = [ENGINES["keras"]().fit(prepared[0])], "keras"
        else:
            histories, engine = fit_members(prepared), f"fused (group of {len(prepared)})"
        seconds = (time.perf_counter() - start) / len(prepared)
        epochs = int(group[0].task.trainer.epochs)
        interrupted = any(outcome(h, epochs)[0] == "interrupted" for h in histories)

        returns = {}
        for job, ready, history in zip(group, prepared, histories, strict=True):

            def write(cfg: DictConfig, ready=ready, history=history) -> dict:
                from hydra.core.hydra_config import HydraConfig

                hc = HydraConfig.get()
                overrides = list(hc.overrides.task)
                return finish(
                    ready, history, seconds, Path(hc.runtime.output_dir), overrides, engine
                )

            returns[job.num] = run_job(
                hydra_context=self.hydra_context,
                task_function=write,
                config=job.sweep_config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        if interrupted:  # the group's folders say so; later groups never started
            raise KeyboardInterrupt
        return returns


@dataclass
class _Job:
    """One job of a sweep: its number, Hydra's config, its own config and layer plan."""

    num: int
    sweep_config: DictConfig
    task: DictConfig
    plans: list


def _job_folder(sweep_config: DictConfig) -> Path:
    """Where Hydra's run_job will put this job: sweep dir / subdir, resolved."""
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def _skipped(sweep_config: DictConfig, task: DictConfig) -> JobReturn:
    """The return of a job that resuming found complete: nothing ran."""
    return JobReturn(
        overrides=list(sweep_config.hydra.overrides.task),
        cfg=task,
        hydra_cfg=sweep_config,
        working_dir=str(_job_folder(sweep_config)),
        task_name=str(sweep_config.hydra.job.name),
        status=JobStatus.COMPLETED,
        _return_value=None,
    )


def _task_config(sweep_config: DictConfig) -> DictConfig:
    """The job's own config, as Hydra hands it to the task function (no ``hydra`` node)."""
    task = copy.deepcopy(sweep_config)
    with read_write(task), open_dict(task):
        task.pop("hydra", None)
    return task


class SweepRecorder(Callback):
    """Remembers, in the launching process, which folder the last multirun wrote.

    Whatever launcher ran the jobs (fused, basic, joblib, submitit, ...), their statuses
    are then read from the folders themselves: ``regexp run -m`` exits non-zero and names
    the jobs that did not complete.
    """

    last_sweep: Path | None = None

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        SweepRecorder.last_sweep = Path(str(config.hydra.sweep.dir))


def sweep_outcomes(sweep: Path) -> list[tuple[Path, str, int | None]]:
    """(job folder, status, diverged epoch) of every job folder of a sweep."""
    import json

    outcomes = []
    for folder in sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[:1].isdigit()):
        try:
            m = json.loads((folder / "metrics.json").read_text())
            outcomes.append((folder, m.get("status", "?"), m.get("diverged_epoch")))
        except (OSError, ValueError):
            outcomes.append((folder, "unfinished", None))
    return outcomes
