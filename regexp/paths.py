"""Where regexp's own files are: the shipped configs, the source checkout if any, and its
lock file.

The configs are ``conf/`` at the top of the repository, installed as the package data
``regexp.conf`` (a folder of YAML files, no ``__init__.py``); this is the one place that
locates them. ``requirements.lock`` (what ``make`` installs) is beside ``pyproject.toml`` in
a source tree and in no wheel.
"""

from __future__ import annotations

from pathlib import Path


def _conf() -> Path:
    """The config folder: ``regexp/conf`` of an installed wheel, else the checkout's ``conf/``.

    ``find_spec`` locates the folder without importing anything from it, and gives a plain
    directory for a namespace package (``importlib.resources.files`` would give a
    ``MultiplexedPath``, and Hydra and ``iterdir`` need a real folder).
    """
    from importlib.util import find_spec

    try:
        spec = find_spec("regexp.conf")
    except ModuleNotFoundError:
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / "config.yaml").is_file():
            return Path(folder)
    # a source checkout or an editable install: conf/ is next to the regexp package
    return Path(__file__).resolve().parent.parent / "conf"


CONF: Path = _conf()


def source_checkout() -> Path | None:
    """The git checkout regexp runs from (an editable install or a source tree), or None
    for an installed wheel: only then does a git commit describe the code that ran."""
    top = Path(__file__).resolve().parent.parent
    return top if (top / "pyproject.toml").is_file() and (top / ".git").exists() else None


LOCK = "requirements.lock"


def lock_file() -> Path | None:
    """The lock file of the source tree regexp runs from (``requirements.lock`` beside
    ``pyproject.toml``; a git checkout or not), or None for an installed wheel or a tree
    without one."""
    top = Path(__file__).resolve().parent.parent
    lock = top / LOCK
    return lock if (top / "pyproject.toml").is_file() and lock.is_file() else None
