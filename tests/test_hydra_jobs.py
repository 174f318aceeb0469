"""Hydra's ``run_job`` in two steps (``regexp.hydra_jobs.Ahead``) does what ``run_job``
does: the same ``.hydra/`` files, ``JobReturn``, log, callbacks, working directory,
environment and ``HydraConfig``, with anything in between the steps."""

import logging
import os
import re
import shutil
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus, run_job
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf, open_dict

from regexp import hydra_jobs
from regexp.hydra_jobs import Ahead
from tests.test_sweep_configs import _in_a_sweep

CALLS: list[tuple] = []  # what Recorder saw, in order


class Recorder(Callback):
    """A Hydra callback (``hydra.callbacks``) recording what it is handed."""

    def on_job_start(self, config, **kwargs):
        CALLS.append(("start", config.hydra.runtime.output_dir, os.getcwd(),
                      os.environ.get("REGEXP_TEST_ENV")))  # fmt: skip

    def on_job_end(self, config, job_return, **kwargs):
        CALLS.append(("end", str(job_return.status), repr(job_return._return_value)))


def _task(cfg):
    """A task that reads what run_job set up: HydraConfig, the working directory, the
    environment and the job's log."""
    logging.getLogger("regexp.test").info("the task of seed %s", cfg.seed)
    if cfg.get("experiment_name") == "fail":
        raise ValueError("the task failed")
    return {"seed": cfg.seed, "output_dir": HydraConfig.get().runtime.output_dir,
            "num": HydraConfig.get().job.num, "cwd": os.getcwd(),
            "env": os.environ.get("REGEXP_TEST_ENV")}  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    """The files under ``folder``; a log's lines without their time."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
             if p.is_file()}  # fmt: skip
    return {name: re.sub(rb"^\[[-0-9 :,]+\]", b"[time]", data, flags=re.M)
            if name.endswith(".log") else data for name, data in files.items()}  # fmt: skip


def _outcome(ret, folder: Path) -> dict:
    value = ret._return_value
    return {
        "files": _files(folder),
        "cfg": OmegaConf.to_yaml(ret.cfg),
        "hydra_cfg": OmegaConf.to_yaml(ret.hydra_cfg),
        "overrides": ret.overrides,
        "working_dir": ret.working_dir,
        "status": ret.status,
        "value": repr(value) if isinstance(value, Exception) else value,
        "task_name": ret.task_name,
        "calls": list(CALLS),
        "cwd after": os.getcwd(),
    }


JOBS = {
    "plain": ["seed=3"],
    "chdir": ["seed=1", "hydra.job.chdir=true"],
    "no .hydra": ["seed=2", "hydra.output_subdir=null"],
    "other .hydra": ["seed=2", "hydra.output_subdir=meta"],
    "env_set": ["seed=4", "+hydra.job.env_set.REGEXP_TEST_ENV=set"],
    "logging disabled": ["seed=5", "hydra/job_logging=disabled"],
    "failing task": ["seed=6", "experiment_name=fail"],
}


@pytest.mark.parametrize("overrides", JOBS.values(), ids=JOBS.keys())
def test_two_steps_do_what_run_job_does(overrides, monkeypatch, tmp_path):
    args = ["seed=0,1", "hydra.sweep.subdir=${hydra.job.num}_${seed}",
            f"+hydra.callbacks.rec._target_={__name__}.Recorder"]  # fmt: skip

    def check(launcher, _):
        loader, master = launcher.hydra_context.config_loader, launcher.config
        sweep = Path(str(master.hydra.sweep.dir))
        outcomes = []
        for two_steps in (False, True):
            cfg = loader.load_sweep_config(master, overrides)
            with open_dict(cfg):
                cfg.hydra.job.id = cfg.hydra.job.num = 7
            CALLS.clear()
            for handler in logging.root.handlers[:]:  # no job's log left from the other
                logging.root.removeHandler(handler)
            before, cwd = HydraConfig.instance().cfg, os.getcwd()
            if two_steps:
                ahead = Ahead(launcher.hydra_context, cfg, "hydra.sweep.dir", "hydra.sweep.subdir")
                assert ahead.ready
                # in between: HydraConfig, the working directory and the logging as they were
                assert HydraConfig.instance().cfg is before and os.getcwd() == cwd
                assert CALLS == []
                ret = ahead.run(_task)
            else:
                ret = run_job(task_function=_task, config=cfg, job_dir_key="hydra.sweep.dir",
                              job_subdir_key="hydra.sweep.subdir",
                              hydra_context=launcher.hydra_context)  # fmt: skip
            assert HydraConfig.instance().cfg is before
            logging.shutdown()  # the job's log file flushed and closed
            os.chdir(cwd)
            jobs = [p for p in sweep.iterdir() if p.is_dir()]
            outcomes.append(_outcome(ret, sweep))
            for job in jobs:
                shutil.rmtree(job)
        return outcomes

    hydra_run, two_steps = _in_a_sweep(monkeypatch, tmp_path, args, check)
    assert two_steps == hydra_run
    assert [c[0] for c in hydra_run["calls"]] == ["start", "end"]
    folder = str(tmp_path / "sweep" / f"7_{overrides[0].split('=')[1]}")
    if "experiment_name=fail" in overrides:
        assert hydra_run["status"] == JobStatus.FAILED
        assert "the task failed" in hydra_run["value"]
    else:
        assert hydra_run["value"]["output_dir"] == folder
    if "hydra.output_subdir=null" in overrides:
        assert not any(name.startswith(".hydra") for name in hydra_run["files"])
    elif "hydra.output_subdir=meta" in overrides:
        assert {"7_2/meta/config.yaml", "7_2/meta/hydra.yaml"} <= set(hydra_run["files"])
    else:
        number = overrides[0].split("=")[1]
        assert {f"7_{number}/.hydra/{n}.yaml" for n in ("config", "hydra", "overrides")} <= set(
            hydra_run["files"]
        )
    logs = [name for name in hydra_run["files"] if name.endswith(".log")]
    assert logs if "hydra/job_logging=disabled" not in overrides else not logs
    if "hydra.job.chdir=true" in overrides:
        assert hydra_run["value"]["cwd"] == folder == hydra_run["working_dir"]
    if "+hydra.job.env_set.REGEXP_TEST_ENV=set" in overrides:
        assert hydra_run["value"]["env"] == "set" and hydra_run["calls"][0][3] == "set"


def test_with_another_hydra_nothing_is_done_ahead(monkeypatch, tmp_path):
    monkeypatch.setattr(hydra_jobs.hydra, "__version__", "1.4.0")

    def check(launcher, _):
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, ["seed=3"])
        with open_dict(cfg):
            cfg.hydra.job.id = cfg.hydra.job.num = 7
        ahead = Ahead(launcher.hydra_context, cfg, "hydra.sweep.dir", "hydra.sweep.subdir")
        nothing_yet = not list((tmp_path / "sweep").glob("*/.hydra"))
        ret = ahead.run(_task)
        return ahead.ready, nothing_yet, ret.status, ret._return_value["seed"]

    assert _in_a_sweep(monkeypatch, tmp_path, ["seed=0,1"], check) == (
        False, True, JobStatus.COMPLETED, 3)  # fmt: skip
