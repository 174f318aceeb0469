"""Each job's config in a sweep, composed as Hydra's ``load_sweep_config`` composes it,
once per distinct choice of config groups instead of once per job.

``ConfigLoaderImpl.load_sweep_config(master, overrides)`` recomposes a job from scratch:
it re-reads every config file, builds the defaults list and merges the files (about
90 ms), then applies the job's config overrides. Jobs that differ only in values
(``seed``, ``reg.lam``) make the same group choices, so they get the same defaults list
and the same merged config: ``SweepComposer`` builds that once per distinct choice, with
Hydra's own ``create_defaults_list`` and ``_compose_config_from_defaults_list`` on a
fresh caching repository as Hydra does, and gives every job a copy of it with the job's
own overrides applied (a few ms).

An override is a group override when Hydra's own ``Overrides`` (``defaults_list.py``)
says so (the group exists and the value is not a dict); every other override is a config
override, applied after struct mode with Hydra's ``_apply_overrides_to_config``. Only
group overrides reach the defaults list (its interpolations see group choices only), so
two jobs with the same group overrides (in the same order) and the same
``hydra.searchpath`` have the same defaults list and the same merged config.

Mirrored from hydra-core 1.3.8 (the pinned version), as short as it can be: the steps
of ``_load_configuration_impl`` around those two calls, in its order (the search path,
the sweep-override check, struct mode, the config overrides, the ``hydra.overrides``
lists in the job's order, ``runtime.choices``, ``env_copy``, the runtime's version, cwd
and config sources, ``job.name``, ``override_dirname``, ``config_name``), then
``load_sweep_config``'s ``copy_cache`` from the master config. Errors are Hydra's own,
raised for the job that has them (an unknown option by ``create_defaults_list``, an
unknown key by ``_apply_overrides_to_config``), wrapped as ``load_configuration`` wraps
them.

Done once instead of per job, with the same result:

- the merged config is copied per job by unpickling it (6x faster than ``deepcopy``),
  once a structural comparison (``same``) has shown the unpickled copy equal to it,
  node types, metadata, flags and parents included; otherwise by ``deepcopy``;
- the runtime settings that are the same for every job of one choice (``_set_runtime``:
  choices, version, cwd, config sources, job name) come with that copy, set before the
  job's config overrides instead of after, for a job none of whose config overrides can
  write or read them (``_Composed.reaches_runtime``); other jobs get them after, as in
  Hydra;
- each distinct override string is parsed once (``parse_overrides`` parses each on its
  own), and ``group_exists`` is asked once per key.

Config files are read once per distinct choice, not once per job (a file edited while
a sweep is being composed is not seen), and the warnings Hydra gives while composing
(an unavailable ``hydra.searchpath`` folder, a deprecated schema match) come once per
choice.

Falls back to Hydra's own ``load_sweep_config`` for every job when the loader is not
Hydra's ``ConfigLoaderImpl`` itself or Hydra is not the pinned version: the mirrored
steps are shown equal (``tests/test_sweep_configs.py``) for that version only.
"""

from __future__ import annotations

import copy
import os
import pickle
import sys
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, Node, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

PINNED_HYDRA = "1.3.8"  # requirements.lock; the version whose _load_configuration_impl is mirrored


# What _load_configuration_impl sets in hydra.runtime and hydra.job after the config
# overrides, the same for every job of one choice of groups (and what it reads for it)
RUNTIME = ("hydra.runtime.choices", "hydra.runtime.version", "hydra.runtime.version_base",
           "hydra.runtime.cwd", "hydra.runtime.config_sources", "hydra.job.name",
           "hydra.job.env_copy", "hydra.job.env_set")  # fmt: skip


@dataclass
class _Composed:
    """The merged config of one choice of config groups, before any config override
    (``config``, never changed), and copies of it to hand out: ``plain`` as it is,
    ``runtime`` with ``_set_runtime`` done (pickled, or None: copied by ``deepcopy``)."""

    config: DictConfig
    choices: dict[str, str | None]  # the defaults list's known choices (hydra.runtime.choices)
    sources: list[Any]  # the repository's config sources (hydra.runtime.config_sources)
    plain: bytes | None = None
    runtime: bytes | None = None
    runtime_config: DictConfig | None = None
    runtime_for: tuple = ()  # what _set_runtime read: cwd, version base, job name
    reaches: dict[tuple, bool] = field(default_factory=dict)  # reaches_runtime, memo

    def copy(self, runtime: bool) -> DictConfig:
        blob, cfg = (self.runtime, self.runtime_config) if runtime else (self.plain, self.config)
        return pickle.loads(blob) if blob is not None else copy.deepcopy(cfg)

    def reaches_runtime(self, override: Any) -> bool:
        """Whether a config override could write or read what ``_set_runtime`` sets, so
        that setting it first could change the job's config: its key overlaps one of
        ``RUNTIME``; or its value holds an interpolation (a later override may follow
        it); or its path passes an interpolation in the merged config (``OmegaConf.update``
        and ``select`` follow one) or cannot be followed here; or it reads (``~key``,
        ``+key``) or merges into (a dict or list value) a node holding an interpolation."""
        value = override.value()
        if "${" in repr(value):  # an interpolation it adds: later overrides may follow it
            return True
        reads = override.is_delete() or override.is_add()
        memo = (override.key_or_group, reads, isinstance(value, (dict, list)))
        if memo not in self.reaches:
            self.reaches[memo] = _reaches(self.config, *memo)
        return self.reaches[memo]


class SweepComposer:
    """``compose(overrides)`` returns what ``loader.load_sweep_config(master, overrides)``
    returns, composing from the config files once per distinct choice of config groups.
    One composer serves one sweep (one master config)."""

    def __init__(self, loader: Any, master_config: DictConfig) -> None:
        import hydra
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        self.loader, self.master = loader, master_config
        self.exact = type(loader) is ConfigLoaderImpl and hydra.__version__ == PINNED_HYDRA
        self.config_name = master_config.hydra.job.config_name
        overrides = OmegaConf.to_container(master_config.hydra.overrides.hydra)
        assert isinstance(overrides, list)
        self.hydra_overrides: list[str] = overrides
        self.repos: dict[str, _Groups] = {}  # hydra.searchpath's value -> its repository
        self.parsed: dict[str, Any] = {}  # an override as typed -> Hydra's parse of it
        self.composed: dict[tuple, _Composed] = {}  # (searchpath, group overrides) -> config
        self.compositions = 0  # how many times the config files were composed

    def compose(self, overrides: list[str]) -> DictConfig:
        """The job's config, as ``load_sweep_config(master, overrides)`` returns it."""
        if not self.exact:
            return self.loader.load_sweep_config(self.master, list(overrides))
        from hydra.errors import ConfigCompositionException

        try:  # as load_configuration wraps _load_configuration_impl
            cfg = self._load(self.hydra_overrides + list(overrides))
        except OmegaConfBaseException as e:
            raise ConfigCompositionException().with_traceback(sys.exc_info()[2]) from e
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        return cfg

    def _load(self, overrides: list[str]) -> DictConfig:
        """``ConfigLoaderImpl._load_configuration_impl`` in RUN mode, with the merged
        config of the job's group choices composed once."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from hydra._internal.defaults_list import Overrides
        from hydra.types import RunMode

        loader = self.loader
        loader.ensure_main_config_source_available()
        parsed = self._parse(overrides)
        searchpath = repr(next((o.value() for o in parsed
                                if o.get_key_element() == "hydra.searchpath"), None))  # fmt: skip
        repo = self.repos.get(searchpath)
        if repo is None:  # Hydra's own reading of hydra.searchpath, once per value
            _, caching_repo = loader._parse_overrides_and_create_caching_repo(
                self.config_name, overrides
            )
            repo = self.repos[searchpath] = _Groups(caching_repo)
        loader.validate_sweep_overrides_legal(
            overrides=parsed, run_mode=RunMode.RUN, from_shell=True
        )
        config_overrides = Overrides(repo, parsed).config_overrides  # Hydra's classification
        is_config = {id(o) for o in config_overrides}
        groups = tuple(o.input_line for o in parsed if id(o) not in is_config)
        choice = (searchpath, groups)
        if choice not in self.composed:
            self.composed[choice] = self._compose(overrides)
        composed = self.composed[choice]

        # from here on, _load_configuration_impl after composing, line for line; what
        # _set_runtime sets comes with the copy when no config override can reach it
        runtime = composed.runtime_for == _runtime_for() and not any(
            composed.reaches_runtime(o) for o in config_overrides
        )
        cfg = composed.copy(runtime)
        ConfigLoaderImpl._apply_overrides_to_config(config_overrides, cfg)
        app_overrides = []
        for override in parsed:
            if override.is_hydra_override():
                cfg.hydra.overrides.hydra.append(override.input_line)
            else:
                cfg.hydra.overrides.task.append(override.input_line)
                app_overrides.append(override)
        if not runtime:
            _set_runtime(cfg, composed)
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=app_overrides,
            kv_sep=cfg.hydra.job.config.override_dirname.kv_sep,
            item_sep=cfg.hydra.job.config.override_dirname.item_sep,
            exclude_keys=cfg.hydra.job.config.override_dirname.exclude_keys,
        )
        cfg.hydra.job.config_name = self.config_name
        return cfg

    def _parse(self, overrides: list[str]) -> list[Any]:
        """Hydra's parse of the overrides (``parse_overrides`` parses each on its own), each
        distinct one parsed once; every job gets its own copies of the ``Override``s."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        new = [o for o in dict.fromkeys(overrides) if o not in self.parsed]
        if new:
            parsed = OverridesParser.create().parse_overrides(overrides=new)
            self.parsed.update(zip(new, parsed, strict=True))
        return [copy.copy(self.parsed[o]) for o in overrides]

    def _compose(self, overrides: list[str]) -> _Composed:
        """Hydra's composition of these overrides' group choices, up to struct mode, on a
        fresh caching repository (composing shares nodes with the files it loaded)."""
        from hydra._internal.defaults_list import create_defaults_list

        loader = self.loader
        parsed, repo = loader._parse_overrides_and_create_caching_repo(self.config_name, overrides)
        defaults_list = create_defaults_list(
            repo=repo,
            config_name=self.config_name,
            overrides_list=parsed,
            prepend_hydra=True,
            skip_missing=False,  # RunMode.RUN, as load_sweep_config
        )
        cfg = loader._compose_config_from_defaults_list(defaults=defaults_list.defaults, repo=repo)
        OmegaConf.set_struct(cfg, True)
        OmegaConf.set_readonly(cfg.hydra, False)
        self.compositions += 1
        sources = [(x.path, x.scheme(), x.provider) for x in repo.get_sources()]
        composed = _Composed(cfg, dict(defaults_list.overrides.known_choices), sources)
        composed.plain = _pickled(cfg)
        if len(cfg.hydra.job.env_copy) == 0:  # else env_set is read from os.environ per job
            try:
                runtime_for, with_runtime = _runtime_for(), composed.copy(runtime=False)
                _set_runtime(with_runtime, composed)
            except Exception:  # Hydra raises it for the job, after the job's overrides
                return composed
            composed.runtime_config, composed.runtime_for = with_runtime, runtime_for
            composed.runtime = _pickled(with_runtime)
        return composed


def _set_runtime(cfg: DictConfig, composed: _Composed) -> None:
    """What ``_load_configuration_impl`` sets after the config overrides and the
    ``hydra.overrides`` lists, the same for every job of one choice of groups."""
    from hydra import __version__, version
    from hydra.conf import ConfigSourceInfo
    from hydra.core.utils import JobRuntime

    with open_dict(cfg.hydra):
        cfg.hydra.runtime.choices.update(composed.choices)
        for key in cfg.hydra.job.env_copy:
            cfg.hydra.job.env_set[key] = os.environ[key]
    cfg.hydra.runtime.version = __version__
    cfg.hydra.runtime.version_base = version.getbase()
    cfg.hydra.runtime.cwd = os.getcwd()
    cfg.hydra.runtime.config_sources = [
        ConfigSourceInfo(path=path, schema=schema, provider=provider)
        for path, schema, provider in composed.sources
    ]
    if "name" not in cfg.hydra.job:
        cfg.hydra.job.name = JobRuntime().get("name")


def _runtime_for() -> tuple:
    """What ``_set_runtime`` reads besides the config: the cwd, Hydra's version base and
    the job's name."""
    from hydra import version
    from hydra.core.utils import JobRuntime

    return os.getcwd(), version.getbase(), OmegaConf.select(JobRuntime().conf, "name")


def _pickled(cfg: DictConfig) -> bytes | None:
    """The config pickled, if unpickling gives the same config (``same``), else None."""
    try:
        blob = pickle.dumps(cfg)
        return blob if same(pickle.loads(blob), cfg) else None
    except Exception:  # e.g. a structured config's class that pickle cannot name
        return None


def _reaches(cfg: DictConfig, key: str, reads: bool, merges: bool) -> bool:
    """``_Composed.reaches_runtime`` for an override at ``key`` in the merged config."""
    if any(key == t or key.startswith(f"{t}.") or t.startswith(f"{key}.") for t in RUNTIME):
        return True
    node: Any = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts, start=1):
        if not isinstance(node, (DictConfig, ListConfig)):
            return False  # update replaces a value on the way with a new dict
        try:
            index = int(part) if isinstance(node, ListConfig) else part
            node = node._get_node(index, validate_access=False)
        except Exception:
            return True
        if node is None:
            return False  # a new key
        if depth < len(parts) and node._is_interpolation():
            return True  # update and select follow it
    # ~key and +key read the node (select, and ~key=value compares); merging a dict or a
    # list into a container dereferences interpolations in it; an assignment reads nothing
    container = isinstance(node, (DictConfig, ListConfig))
    return (reads or (merges and container)) and _interpolates(node)


def _interpolates(node: Node) -> bool:
    """Whether the node is or holds an interpolation, without resolving any."""
    if node._is_interpolation():
        return True
    content = node.__dict__.get("_content")  # a container's; None or "???" hold nothing
    children = list(content.values()) if isinstance(content, dict) else content
    return isinstance(children, list) and any(map(_interpolates, children))


class _Groups:
    """A caching repository whose ``group_exists`` answers are kept: it is all Hydra's
    ``Overrides`` asks of it."""

    def __init__(self, repo: Any) -> None:
        self.repo, self.groups = repo, {}

    def group_exists(self, config_path: str) -> bool:
        if config_path not in self.groups:
            self.groups[config_path] = self.repo.group_exists(config_path)
        return self.groups[config_path]


def same(a: Node, b: Node) -> bool:
    """Whether two configs are the same tree: node types, metadata (reference and object
    types, keys, flags, resolver caches), key order, parents and values, with nothing
    resolved. (What ``deepcopy`` keeps; only the flags' cache is left out.)"""
    if type(a) is not type(b) or a._metadata != b._metadata:
        return False
    if isinstance(a, (DictConfig, ListConfig)):
        ca, cb = a.__dict__["_content"], b.__dict__["_content"]
        if not isinstance(ca, (dict, list)) or not isinstance(cb, (dict, list)):
            return type(ca) is type(cb) and ca == cb  # None, "???" or an interpolation
        if isinstance(ca, dict):
            if list(ca) != list(cb):
                return False
            pairs = [(ca[k], cb[k]) for k in ca]
        else:
            if len(ca) != len(cb):
                return False
            pairs = list(zip(ca, cb, strict=True))
        return all(x._get_parent() is a and y._get_parent() is b and same(x, y) for x, y in pairs)
    va, vb = a._val, b._val
    return type(va) is type(vb) and (va == vb or (va != va and vb != vb))  # NaN is NaN
