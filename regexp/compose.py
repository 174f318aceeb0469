"""Composing configs with Hydra, and checking what ``regexp run`` would run before Hydra
starts: the overrides parse, the configs compose and validate, and the output folder can
be written. Hydra's multi-line reports become one line naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from regexp.config import check_memory, validate
from regexp.errors import ConfigError, UserError
from regexp.keys import flatten, run_name
from regexp.paths import CONF

# Flags after which Hydra prints or inspects instead of running: no precheck then.
_HYDRA_INFO = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info",
               "-sc", "--shell-completion", "-p", "--package", "-cd", "--config-dir",
               "-cp", "--config-path", "-cn", "--config-name", "--experimental-rerun")  # fmt: skip


def register_resolvers() -> None:
    """``run_name`` names run folders; ``first`` picks ``resume`` over a new sweep folder."""
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver(
        "first", lambda *values: next((v for v in values if v is not None), None), replace=True
    )


def compose(*overrides: str) -> DictConfig:
    """The config ``regexp run <overrides>`` would run, composed in-process."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def hydra_error(exc: Exception, base: DictConfig | None = None) -> UserError:
    """Hydra's multi-line composition errors, as one line naming the key and what is accepted."""
    import difflib
    import re

    text = f"{exc}\n{exc.__cause__ or ''}"
    missing = re.search(r"Could not find '([\w/]+)/(\w+)'", text)
    if missing:
        group, option = missing.groups()
        options = sorted(f.stem for f in (CONF / group).glob("*.yaml"))
        return ConfigError(group, option, "one of " + ", ".join(options))
    override = re.search(r"Could not (?:override|append to) '([\w.]+)'", text)
    inner = re.search(r"Key '(\w+)' is not in struct", text)
    if override and inner and not override.group(1).endswith(inner.group(1)):
        key = override.group(1)
        return UserError(
            f"{key}: the new value has key {inner.group(1)!r}, which the old one lacks; to "
            f"replace a whole regularizer spec, clear it first: {key}=null '{key}={{...}}'"
        )
    if override or inner:
        key = (override or inner).group(1)
        known = list(flatten(OmegaConf.to_container(base))) if base is not None else []
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return UserError(
            f"{key} is not a config key{hint} (`regexp run --cfg job` lists the keys; "
            f"+{key}=... adds a new one)"
        )  # fmt: skip
    return UserError(text.strip().splitlines()[0])


@dataclass(frozen=True)
class Destination:
    """Where ``regexp run`` writes: the run folder, or a sweep's folder, decided once."""

    multirun: bool
    key: str  # hydra.run.dir or hydra.sweep.dir
    folder: Path

    def override(self) -> str:
        """The override that makes Hydra write exactly here (the folder's name holds the
        time, so composing again later would name another folder)."""
        quoted = str(self.folder).replace("\\", "\\\\").replace("'", "\\'")
        return f"{self.key}='{quoted}'"


def precheck(args: list[str], every_job: bool = False) -> Destination | None:
    """Check what ``regexp run ARGS`` would run before Hydra starts, and say where it
    writes (None for Hydra's informational flags, which run nothing).

    A sweep's jobs are composed once per distinct choice of config groups (that finds
    unknown options and keys), or all of them with ``every_job``; the pipeline validates
    every job's values before training anyway. Raises ``UserError`` (one line) instead
    of Hydra's multi-line reports.
    """
    if any(a.split("=")[0] in _HYDRA_INFO for a in args):
        return None
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    register_resolvers()
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    groups = {p.name for p in CONF.iterdir() if p.is_dir()}
    seen: set[tuple] = set()
    destination = None
    folders: dict[str, list[int]] = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        # the config loader lets sweeps list a group's options: experiment=glob(digits/*)
        loader = GlobalHydra.instance().config_loader()
        try:
            parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
            jobs = [list(j) for batch in BasicSweeper.split_arguments(parsed, None) for j in batch]
        except HydraException as e:
            raise UserError(f"cannot read the overrides: {str(e).splitlines()[0]}") from None
        if not multirun:
            jobs = [overrides]
        if not jobs:
            empty = [
                o.input_line
                for o in parsed
                if o.is_sweep_override() and not list(o.sweep_string_iterator())
            ]
            raise UserError(
                f"the sweep has no jobs: {' '.join(empty) or ' '.join(overrides)} gives no "
                "value; expected at least one (a glob must match an option of its group)"
            )
        # one composition per distinct choice of config groups catches unknown options and keys
        base = hydra_compose("config")
        # the fused launchers check that jobs have their own folders before training; under
        # any other launcher each job runs on its own, so every job is composed here
        fused = multirun and _fused_launcher(jobs, hydra_compose)
        every_job = every_job or (multirun and not fused)
        for num, job in enumerate(jobs):
            choice = tuple(o for o in job if o.split("=")[0].lstrip("+~") in groups)
            if choice in seen and not every_job:
                continue
            seen.add(choice)
            label = f"job #{num}: " if multirun else ""
            try:
                cfg = hydra_compose("config", overrides=job, return_hydra_config=True)
            except HydraException as e:
                raise hydra_error(e, base) from None
            task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            try:
                checked = validate(task)
            except ConfigError as e:
                raise ConfigError(f"{label}{e.key}", e.value, e.accepted) from None
            except OmegaConfBaseException as e:  # e.g. an interpolation to a missing key
                key = getattr(e, "full_key", None) or "the config"
                raise UserError(f"{label}{key}: {str(e).strip().splitlines()[0]}") from None
            try:
                check_memory(task, checked.shape, checked.plans)
            except UserError as e:
                raise UserError(f"{label}{e}") from None
            if destination is None:
                _check_resume(task.get("resume"), multirun)
                key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
                destination = Destination(multirun, key, _writable(cfg, key))
            if multirun:
                with open_dict(cfg):
                    cfg.hydra.job.num = num
                folders.setdefault(str(OmegaConf.select(cfg, "hydra.sweep.subdir")), []).append(num)
    for folder, nums in folders.items():
        if len(nums) > 1:
            names = ", ".join(f"job #{n}" for n in nums[:5]) + (", ..." if len(nums) > 5 else "")
            raise UserError(
                f"{names} would all write {destination.folder / folder}; make "
                "hydra.sweep.subdir tell them apart (the default starts with ${hydra.job.num})"
            )
    return destination


def _fused_launcher(jobs: list[list[str]], hydra_compose) -> bool:
    """Whether the sweep runs on one of regexp's fused launchers (whose settings are
    checked here)."""
    from regexp.checks import integer

    cfg = hydra_compose("config", overrides=jobs[0], return_hydra_config=True)
    fused = "regexp_launcher" in str(OmegaConf.select(cfg, "hydra.launcher._target_"))
    if fused:
        integer("hydra.launcher.max_members", OmegaConf.select(cfg, "hydra.launcher.max_members"))
    return fused


def _check_resume(resume, multirun: bool) -> None:
    """``resume`` names an existing sweep folder, and comes with ``-m``."""
    if resume is None:
        return
    folder, value = Path(str(resume)), str(resume)
    if not multirun:
        raise ConfigError("resume", value, "a sweep folder, with -m (resume finishes a sweep)")
    if not folder.is_dir():
        raise ConfigError("resume", value, "an existing sweep folder")
    if (folder / "config.yaml").is_file() or (folder / "metrics.json").is_file():
        accepted = f"a sweep folder, not one run's folder (its sweep: {folder.parent})"
        raise ConfigError("resume", value, accepted)
    if not (folder / "multirun.yaml").is_file():
        raise ConfigError("resume", value, "a sweep folder (one that holds multirun.yaml)")


def _writable(cfg: DictConfig, key: str) -> Path:
    """The folder at ``key``, once its names fit the file system and its nearest existing
    parent is known to be a writable folder."""
    import os
    import tempfile

    folder = Path(str(OmegaConf.select(cfg, key)))
    limit = os.pathconf("/", "PC_NAME_MAX")
    for part in folder.parts:
        if len(part.encode()) > limit:
            accepted = f"folder names of at most {limit} bytes"
            raise ConfigError(key, f"{str(folder)[:60]}...", accepted)
    parent = folder
    try:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    except OSError as e:
        raise ConfigError(
            key, str(folder), f"a folder that can be created ({e.strerror})"
        ) from None
    if not parent.is_dir():
        raise ConfigError(key, str(folder), f"a folder that can be created ({parent} is a file)")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise ConfigError(key, str(folder), f"a writable folder ({parent}: {e.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise ConfigError(key, str(folder), f"a writable folder ({parent} is not)")
    return folder


def given(args: list[str], key: str) -> bool:
    """Whether the command line sets ``key`` itself."""
    return any(a.lstrip("+").split("=")[0] == key for a in args)
