"""Composing configs with Hydra, and checking what ``regexp run`` would run before Hydra
starts: the overrides parse, the configs compose and validate, and the output folder can
be written. Hydra's multi-line reports become one line naming the key.

A user's own recipe folders join regexp's ``conf/`` as Hydra adds them: ``--config-dir DIR``
(``-cd DIR``) after ``conf/``, and ``hydra.searchpath=[DIR,...]`` after that. Hydra takes an
option from the first folder that has it, so a user's ``reg/l2_kernel.yaml`` is hidden by
the shipped one (``regexp list`` says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException

from regexp.config import check_memory, validate
from regexp.errors import ConfigError, UserError
from regexp.keys import flatten, run_name
from regexp.paths import CONF

# Flags after which Hydra prints or inspects instead of running: no precheck then.
_HYDRA_INFO = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info",
               "-sc", "--shell-completion", "-p", "--package",
               "-cp", "--config-path", "-cn", "--config-name", "--experimental-rerun")  # fmt: skip
# Hydra's flags that add a user's config folder: `--config-dir DIR`, `-cd DIR`
CONFIG_DIR = ("--config-dir", "-cd")
# who put a config source on Hydra's search path for a user (Hydra's own provider names)
USER_PROVIDERS = ("command-line", "hydra.searchpath in command-line")


def register_resolvers() -> None:
    """``run_name`` names run folders; ``first`` picks ``resume`` over a new sweep folder."""
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver(
        "first", lambda *values: next((v for v in values if v is not None), None), replace=True
    )


def compose(*overrides: str, config_dir: str | Path | None = None) -> DictConfig:
    """The config ``regexp run [--config-dir DIR] <overrides>`` would run, composed
    in-process."""
    from hydra import compose as hydra_compose

    with hydra_configs(config_dir):
        return hydra_compose("config", overrides=list(overrides))


def config_dir(args: list[str]) -> tuple[Path | None, list[str]]:
    """The user's folder of ``--config-dir DIR`` (``-cd DIR``, ``--config-dir=DIR``; the
    last one counts, as in Hydra) and the other arguments. Raises ``UserError`` when the
    folder is not there."""
    folder, rest, args = None, [], list(args)
    while args:
        arg = args.pop(0)
        flag, eq, value = arg.partition("=")
        if flag not in CONFIG_DIR:
            rest.append(arg)
            continue
        if not eq:
            if not args:
                raise UserError(f"{arg} needs a folder: {arg} DIR")
            value = args.pop(0)
        folder = Path(value)
    if folder is not None and not folder.is_dir():
        raise UserError(f"--config-dir {folder}: no such folder; expected a folder of recipes "
                        "such as DIR/reg/*.yaml and DIR/experiment/*.yaml")  # fmt: skip
    return folder, rest


@contextmanager
def hydra_configs(folder: str | Path | None = None) -> Iterator[Any]:
    """Hydra set up for regexp's configs as ``regexp run`` sets it up (``conf/``, and a
    user's ``--config-dir`` folder after it, where Hydra's ``--config-dir`` puts it);
    yields Hydra's config loader."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    register_resolvers()
    backup = get_gh_backup()
    version.setbase("1.3")
    search_path = create_config_search_path(str(CONF))
    if folder is not None:
        search_path.prepend(provider="command-line", path=f"file://{Path(folder).resolve()}",
                            anchor=SearchPathQuery(provider="schema"))  # fmt: skip
    Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)
    try:
        yield GlobalHydra.instance().config_loader()
    finally:
        restore_gh_from_backup(backup)


def sources(loader: Any, overrides: list[str]) -> list[Any]:
    """Hydra's config sources for a composition with these overrides (a ``hydra.searchpath``
    among them included), in its order: the first source that has an option provides it.
    Raises ``UserError`` for a user's folder that is not there."""
    import warnings

    from hydra.errors import HydraException

    searchpath = [o for o in overrides if o.lstrip("+").startswith("hydra.searchpath=")]
    try:  # Hydra's own reading of hydra.searchpath (it does the same when composing)
        with warnings.catch_warnings():  # a folder that is not there: said below, once
            warnings.simplefilter("ignore")
            _, repo = loader._parse_overrides_and_create_caching_repo("config", searchpath)
    except HydraException as e:
        raise UserError(f"hydra.searchpath: {str(e).splitlines()[0]}") from None
    found = repo.get_sources()
    for source in found:
        if source.provider in USER_PROVIDERS and not source.available():
            flag = "--config-dir" if source.provider == "command-line" else "hydra.searchpath"
            raise UserError(f"{flag}: {source.path} is not there; expected a folder of recipes "
                            "such as DIR/reg/*.yaml (or pkg://a.package)")  # fmt: skip
    return found


def is_users(source: Any) -> bool:
    """Whether a config source is a user's folder (``--config-dir``, ``hydra.searchpath``)."""
    return source.provider in USER_PROVIDERS


@dataclass(frozen=True)
class Option:
    """One option of a config group: where its file is, whether a user's folder holds it,
    and whether an earlier folder's option of the same name hides it."""

    name: str
    folder: str  # the source's path (a user's folder, or regexp's conf/)
    users: bool
    hidden: bool


def group_options(
    folder: str | Path | None = None, overrides: list[str] = ()
) -> dict[str, list[Option]]:
    """Every config group (Hydra's own ``hydra/`` aside) with its options from every
    folder on the search path, read through Hydra's config sources."""
    from hydra.core.object_type import ObjectType

    with hydra_configs(folder) as loader:
        found = sources(loader, list(overrides))
        groups: dict[str, list[Option]] = {}
        names = {g for s in found if s.is_group("") for g in s.list("", ObjectType.GROUP)}
        for group in sorted(names - {"hydra"}):
            seen: set[str] = set()
            options = groups.setdefault(group, [])
            for source in found:
                if not source.is_group(group):
                    continue
                for name in sorted(source.list(group, ObjectType.CONFIG)):
                    options.append(Option(name, source.path, is_users(source), name in seen))
                    seen.add(name)
        return groups


def _set_in(loader: Any, overrides: list[str], key: str) -> str | None:
    """The user's file (``DIR/reg/mine.yaml``) that sets ``key`` in this composition, if
    a user's file does and the command line does not: the last such file in Hydra's
    defaults list, as the last one wins."""
    from hydra.types import RunMode

    if given(overrides, key):
        return None
    try:
        defaults = loader.compute_defaults_list("config", overrides, RunMode.RUN).defaults
        found, where = sources(loader, overrides), None
    except Exception:  # only a hint: never worse than the error it adds to
        return None
    for default in defaults:
        if default.config_path is None or default.package is None:
            continue
        source = next((s for s in found if s.is_config(default.config_path)), None)
        if source is None or not is_users(source):
            continue
        package = default.package
        if package and not key.startswith(package + "."):
            continue
        inner = key[len(package) + 1 :] if package else key
        config = OmegaConf.to_container(source.load_config(default.config_path).config)
        flat = flatten(config) if isinstance(config, dict) else {}
        if inner in flat or any(k.startswith(inner + ".") for k in flat):
            where = f"{source.path.rstrip('/')}/{default.config_path}.yaml"
    return where


def hydra_error(exc: Exception, base: DictConfig | None = None, loader: Any = None,
                overrides: list[str] = ()) -> UserError:  # fmt: skip
    """Hydra's multi-line composition errors, as one line naming the key and what is
    accepted (a group's options from every folder the ``loader`` searches)."""
    import difflib
    import re

    text = f"{exc}\n{exc.__cause__ or ''}"
    missing = re.search(r"Could not find '([\w/]+)/(\w+)'", text)
    if missing:
        group, option = missing.groups()
        options = sorted(f.stem for f in (CONF / group).glob("*.yaml"))
        if loader is not None:
            searchpath = [o for o in overrides if o.startswith("hydra.searchpath=")]
            options = loader.get_group_options(group, config_name="config", overrides=searchpath)
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
    import yaml
    from hydra import compose as hydra_compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.object_type import ObjectType
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    folder, args = config_dir(args)
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    seen: set[tuple] = set()
    destination = None
    folders: dict[str, list[int]] = {}
    with hydra_configs(folder) as loader:
        # the config loader lets sweeps list a group's options: experiment=glob(digits/*)
        groups = {g for s in sources(loader, overrides) if s.is_group("")
                  for g in s.list("", ObjectType.GROUP)}  # fmt: skip
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
        composed: dict[int, DictConfig] = {}

        def compose_job(num: int) -> DictConfig:
            """Job ``num``'s config, with Hydra's (composed once), or its error in one line."""
            if num not in composed:
                try:
                    composed[num] = hydra_compose("config", overrides=jobs[num],
                                                  return_hydra_config=True)  # fmt: skip
                except HydraException as e:
                    label = f"job #{num}: " if multirun else ""
                    try:  # the config without overrides, to say what they got wrong
                        base = hydra_compose("config")
                    except (HydraException, yaml.YAMLError):
                        base = None
                    raise _labelled(hydra_error(e, base, loader, jobs[num]), label) from None
                except yaml.YAMLError as e:  # a user's file that is not YAML
                    raise UserError(_yaml_error(e)) from None
            return composed[num]

        # the fused launchers check that jobs have their own folders before training; under
        # any other launcher each job runs on its own, so every job is composed here
        fused = multirun and _fused_launcher(compose_job(0))
        every_job = every_job or (multirun and not fused)
        # one composition per distinct choice of config groups catches unknown options and keys
        for num, job in enumerate(jobs):
            choice = tuple(o for o in job if o.split("=")[0].lstrip("+~") in groups)
            if choice in seen and not every_job:
                continue
            seen.add(choice)
            label = f"job #{num}: " if multirun else ""
            cfg = compose_job(num)
            task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            try:
                checked = validate(task, job)
            except ConfigError as e:
                where = _set_in(loader, job, e.key)
                accepted = f"{e.accepted} ({e.key} is set in {where})" if where else e.accepted
                raise ConfigError(f"{label}{e.key}", e.value, accepted) from None
            except OmegaConfBaseException as e:  # e.g. an interpolation to a missing key
                key = getattr(e, "full_key", None) or "the config"
                raise UserError(f"{label}{key}: {str(e).strip().splitlines()[0]}") from None
            try:
                check_memory(task, checked.shape, checked.plans)
            except UserError as e:
                raise UserError(f"{label}{e}") from None
            if destination is None:
                _check_output_subdir(cfg)
                _check_resume(task.get("resume"), multirun)
                key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
                destination = Destination(multirun, key, _writable(cfg, key))
            if multirun:
                with open_dict(cfg):
                    cfg.hydra.job.num = num
                folders.setdefault(job_subdir(cfg), []).append(num)
    for folder, nums in folders.items():
        if len(nums) > 1:
            names = ", ".join(f"job #{n}" for n in nums[:5]) + (", ..." if len(nums) > 5 else "")
            raise UserError(
                f"{names} would all write {destination.folder / folder}; make "
                "hydra.sweep.subdir tell them apart (the default starts with ${hydra.job.num})"
            )
    return destination


def job_subdir(sweep_config: DictConfig) -> str:
    """A sweep job's ``hydra.sweep.subdir``, resolved as Hydra's ``run_job`` resolves it:
    with the job's own config as ``HydraConfig`` (so ``${hydra:job.num}`` is its number);
    an interpolation that fails is one line."""
    from hydra.core.hydra_config import HydraConfig

    raw = OmegaConf.to_container(sweep_config.hydra.sweep, resolve=False).get("subdir")
    try:
        if "hydra:" not in str(raw):  # the usual case, without a set_config (a deep copy)
            with suppress(InterpolationResolutionError):  # ${x}: ${hydra:...}
                return str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
        instance = HydraConfig.instance()
        before = instance.cfg
        try:
            instance.set_config(sweep_config)
            return str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
        finally:
            instance.cfg = before
    except OmegaConfBaseException as e:
        said = str(e).strip().splitlines()[0]
        raise UserError(f"hydra.sweep.subdir: {said}") from None


def _labelled(error: UserError, label: str) -> UserError:
    """The error with the job it is about in front (``job #3: ``), for a sweep."""
    if not label:
        return error
    if isinstance(error, ConfigError):
        return ConfigError(f"{label}{error.key}", error.value, error.accepted)
    return UserError(f"{label}{error}")


def _yaml_error(e: Exception) -> str:
    """A YAML file that does not parse, as one line naming the file and the line."""
    mark = getattr(e, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}" if mark else "a config file"
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{where}: not valid YAML ({problem})"


def _fused_launcher(cfg: DictConfig) -> bool:
    """Whether the sweep whose first job's config (with Hydra's) is ``cfg`` runs on one of
    regexp's fused launchers (whose settings are checked here)."""
    from regexp.checks import integer

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


def _check_output_subdir(cfg: DictConfig) -> None:
    """``hydra.output_subdir``, where Hydra records a run's configs (``config.yaml``,
    ``hydra.yaml``, ``overrides.yaml``): null, or a folder inside the run folder that is
    none of the run's own files. ``.``, an absolute path, or ``..`` would put Hydra's
    ``config.yaml`` over the run's own, or every job's in one place; a name like a file
    (``config.yaml``, ``loss.png``) clashes with the file of that name."""
    value = OmegaConf.select(cfg, "hydra.output_subdir")
    if value is None:
        return
    parts = Path(str(value)).parts
    first = parts[0] if parts else ""
    if (not parts or Path(str(value)).is_absolute() or ".." in parts
            or "." in first.lstrip(".")):  # fmt: skip
        accepted = ("null, or a folder inside the run folder named like no file of the "
                    "run's (no extension), e.g. .hydra (the default) or meta")  # fmt: skip
        raise ConfigError("hydra.output_subdir", str(value), accepted)


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
