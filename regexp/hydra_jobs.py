"""Hydra's ``run_job`` in two steps: the part that needs only the job's config, done
ahead (while the job trains), and the part around the task, once it has trained.

A fused sweep's writer process sits idle while a group trains, then writes each of the
group's folders through ``run_job``. About a third of that, 20 ms a job, needs no
result: ``HydraConfig.set_config`` twice (each a masked deep copy of the ``hydra``
node), the deep copies of the config and of the ``hydra`` node that the ``JobReturn``
holds, the job's folder, and ``.hydra/``'s three YAML files (PyYAML's pure-Python
dumper). ``Ahead(context, config, ...)`` does that part, and ``Ahead.run(task)`` the
rest: the working directory, the job's logging, ``env_set``, the callbacks
(``on_job_start`` just before the task, as in ``run_job``), the task, and the
``JobReturn``; ``HydraConfig`` and the working directory are restored after each step.

The steps are ``run_job``'s own, mirrored from hydra-core 1.3.8 (``PINNED_HYDRA``) in
its order, with Hydra's own functions for each (``set_config``, ``_save_config``,
``configure_log``, ``env_override``, ``_flush_loggers``). ``tests/test_hydra_jobs.py``
shows the two equal: the same ``.hydra/`` files byte for byte, the same ``JobReturn``,
log, callbacks and working directory. With another Hydra, nothing is done ahead and
``run`` calls Hydra's ``run_job`` itself.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from textwrap import dedent
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    _check_hydra_context,
    _flush_loggers,
    _save_config,
    configure_log,
    deprecation_warning,
    env_override,
    run_job,
)
from hydra.core.utils import version as hydra_version
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

PINNED_HYDRA = "1.3.8"  # requirements.lock; the version whose run_job is mirrored


def mirrored() -> bool:
    """Whether this Hydra is the one whose ``run_job`` the steps mirror."""
    return hydra.__version__ == PINNED_HYDRA


class Ahead:
    """One job's ``run_job``, its first step done at construction (``mirrored`` Hydra)."""

    def __init__(self, hydra_context: Any, config: DictConfig, job_dir_key: str,
                 job_subdir_key: str | None) -> None:  # fmt: skip
        self.hydra_context, self.config = hydra_context, config
        self.job_dir_key, self.job_subdir_key = job_dir_key, job_subdir_key
        self.ready = False
        if mirrored():
            self._first()
            self.ready = True

    def _first(self) -> None:
        """``run_job`` up to its callbacks: what it computes and writes from the config."""
        _check_hydra_context(self.hydra_context)
        config = self.config
        instance = HydraConfig.instance()
        orig_hydra_cfg = instance.cfg
        try:
            # init Hydra config for config evaluation
            instance.set_config(config)
            output_dir = str(OmegaConf.select(config, self.job_dir_key))
            if self.job_subdir_key is not None:
                subdir = str(OmegaConf.select(config, self.job_subdir_key))
                output_dir = os.path.join(output_dir, subdir)
            with read_write(config.hydra.runtime):
                with open_dict(config.hydra.runtime):
                    config.hydra.runtime.output_dir = os.path.abspath(output_dir)
            # update Hydra config
            instance.set_config(config)
            self.hydra_instance = instance.cfg  # what HydraConfig holds while the job runs
            task_cfg = copy.deepcopy(config)
            with read_write(task_cfg):
                with open_dict(task_cfg):
                    del task_cfg["hydra"]
            self.task_cfg = task_cfg
            self.hydra_cfg = copy.deepcopy(instance.cfg)
            overrides = OmegaConf.to_container(config.hydra.overrides.task)
            assert isinstance(overrides, list)
            self.overrides = overrides
            self.output_dir = output_dir
            Path(str(output_dir)).mkdir(parents=True, exist_ok=True)
            if config.hydra.output_subdir is not None:
                hydra_output = Path(config.hydra.runtime.output_dir) / Path(
                    config.hydra.output_subdir
                )
                _save_config(task_cfg, "config.yaml", hydra_output)
                _save_config(self.hydra_cfg, "hydra.yaml", hydra_output)
                _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
        finally:
            instance.cfg = orig_hydra_cfg

    def run(self, task_function: Callable[[DictConfig], Any]) -> JobReturn:
        """The rest of ``run_job``: the task between the callbacks; its ``JobReturn``."""
        if not self.ready:
            return run_job(task_function=task_function, config=self.config,
                           job_dir_key=self.job_dir_key, job_subdir_key=self.job_subdir_key,
                           hydra_context=self.hydra_context)  # fmt: skip
        return self._second(task_function)

    def _second(self, task_function: Callable[[DictConfig], Any]) -> JobReturn:
        callbacks = self.hydra_context.callbacks
        config, output_dir = self.config, self.output_dir
        old_cwd = os.getcwd()
        instance = HydraConfig.instance()
        orig_hydra_cfg = instance.cfg
        instance.cfg = self.hydra_instance
        _chdir = None
        try:
            ret = JobReturn()
            ret.cfg = self.task_cfg
            ret.hydra_cfg = self.hydra_cfg
            ret.overrides = self.overrides
            _chdir = self.hydra_cfg.hydra.job.chdir
            if _chdir is None:
                if hydra_version.base_at_least("1.2"):
                    _chdir = False
            if _chdir is None:
                url = "https://hydra.cc/docs/1.2/upgrades/1.1_to_1.2/changes_to_job_working_dir/"
                deprecation_warning(
                    message=dedent(
                        f"""\
                    Future Hydra versions will no longer change working directory at job runtime by default.
                    See {url} for more information."""  # noqa: E501  (Hydra's text)
                    ),
                    stacklevel=2,
                )
                _chdir = True
            if _chdir:
                os.chdir(output_dir)
                ret.working_dir = output_dir
            else:
                ret.working_dir = os.getcwd()
            configure_log(config.hydra.job_logging, config.hydra.verbose)
            with env_override(self.hydra_cfg.hydra.job.env_set):
                callbacks.on_job_start(config=config, task_function=task_function)
                try:
                    ret.return_value = task_function(self.task_cfg)
                    ret.status = JobStatus.COMPLETED
                except Exception as e:
                    ret.return_value = e
                    ret.status = JobStatus.FAILED
            ret.task_name = JobRuntime.instance().get("name")
            _flush_loggers()
            callbacks.on_job_end(config=config, job_return=ret)
            return ret
        finally:
            instance.cfg = orig_hydra_cfg
            if _chdir:
                os.chdir(old_cwd)
