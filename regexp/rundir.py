"""Run folders: the one module that reads and writes them.

A run folder holds ``config.yaml`` (the resolved config), ``env.json``, ``model.txt``,
``history.csv``, the PNG figures, for a completed run its saved model (``model.keras``,
``model_best.keras`` with early stopping, and ``preprocess.json``: ``regexp.saved``) and,
written last and atomically, ``metrics.json``.
A folder is a complete run when its ``metrics.json`` says ``"status": "completed"``;
a diverged or interrupted run says so there, and a killed one has no ``metrics.json``.

``guard`` is the one check every entry point passes before training into a folder: it
skips a folder that ``resume`` finds complete for the same config and refuses one that
holds another complete run.

Reports, ``ls``, ``show``, ``compare``, ``verify``, resuming and the launchers read
folders through ``read_metrics``, ``read_config`` and ``read_history``: a missing or
damaged file reads as "no record" rather than an error.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from regexp.errors import UserError
from regexp.keys import HASH, fingerprint
from regexp.tasks import KINDS

METRICS = "metrics.json"
CONFIG = "config.yaml"
HISTORY = "history.csv"
ENV = "env.json"
ACTIVATIONS = "activations.npz"
CONFIG_GROUPS = ("dataset", "model", "reg", "optimizer", "trainer")  # every run config has them
MODEL_SUMMARY = "model.txt"
MODEL = "model.keras"  # the final model (regexp.saved)
MODEL_BEST = "model_best.keras"  # early stopping: the best epoch's weights
PREPROCESS = "preprocess.json"  # raw feature columns -> the model's inputs
# a report's replication runs (``regexp report --replicate``) live under a folder with this
# record: they are found only when a path names that folder or one inside it, so that the
# seeds that confirm a verdict never join the runs that found it
REPLICATION = "replication.json"


def _file_mode() -> int:
    """The mode a plain ``open`` would give a new file: 0o666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see either no file or the whole file, with the usual
    permissions (a temporary file alone would be 0600, unreadable to a shared group)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` writes a temporary file beside ``path`` (its name ends as ``path``'s
    does), which then replaces ``path``: readers see no file or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    try:
        os.fchmod(fd, _file_mode())
        os.close(fd)
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- writing -------------------------------------------------------------------------


def write_config(run_dir: Path, cfg: DictConfig) -> None:
    """``config.yaml``: the config exactly as it runs, interpolations resolved."""
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / CONFIG, resolve=True)


def write_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """``metrics.json``, atomically: the last file a run writes."""
    write_json_atomic(run_dir / METRICS, record)


def history_frame(history: dict[str, list[float]]):
    """``history.csv``'s table: one row per epoch, the engine's series plus ``penalty``
    (the mean total loss minus the mean data loss) and ``val_penalty``."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    frame["penalty"] = frame["loss"] - frame["data_loss"]
    frame["val_penalty"] = frame["val_loss"] - frame["val_data_loss"]
    return frame


def write_history(run_dir: Path, history: dict[str, list[float]]):
    """``history.csv`` (``history_frame``). Returns the table."""
    frame = history_frame(history)
    frame.to_csv(run_dir / HISTORY, index=False)
    return frame


def write_env(run_dir: Path, record: dict[str, Any]) -> None:
    write_json_atomic(run_dir / ENV, record)


def write_text(run_dir: Path, name: str, text: str) -> None:
    (run_dir / name).write_text(text)


def write_activations(run_dir: Path, arrays: dict) -> None:
    """``activations.npz``: each hidden layer's output on the test split."""
    import numpy as np

    np.savez_compressed(run_dir / ACTIVATIONS, **arrays)


def guard(run_dir: Path, cfg: DictConfig, key: str) -> bool:
    """The one guard before training into ``run_dir``: False when ``resume`` is set and
    the folder holds a completed run of exactly this config (nothing to do); a
    ``UserError`` when it holds any other complete run (nothing is overwritten); else
    True. Writes nothing.

    ``key`` names the setting that chose the folder (``hydra.run.dir`` or
    ``hydra.sweep.dir``), for the message.
    """
    run_dir = Path(run_dir)
    if cfg.get("resume") and completed_with(run_dir, cfg):
        return False
    if is_complete(run_dir):
        hint = (f"pass resume={run_dir.parent} to finish that sweep, or choose another {key}"
                if key == "hydra.sweep.dir" else f"set {key} to a new folder")  # fmt: skip
        raise UserError(f"{run_dir} already holds a complete run; {hint} (nothing was overwritten)")
    return True


class Lock:
    """An exclusive lock on a run or sweep folder for as long as one regexp writes it.

    ``flock`` on ``<folder>/.regexp.lock``: the kernel releases it when the process ends,
    however it ends, so a killed regexp never leaves a folder locked. A second regexp
    pointed at a locked folder is refused with one line naming the holder.
    """

    NAME = ".regexp.lock"

    def __init__(self, folder: Path, key: str):
        self.folder, self.key, self.fd = Path(folder), key, None

    def __enter__(self) -> Lock:
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / self.NAME, os.O_RDWR | os.O_CREAT, _file_mode())
        except OSError as e:
            raise UserError(f"{self.key}={self.folder}: cannot create it ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{self.key}={self.folder} is being written by another regexp ({holder}); "
                f"wait for it to end, or choose another {self.key}"
            ) from None
        os.ftruncate(fd, 0)
        from datetime import datetime

        os.write(fd, f"pid {os.getpid()}, since {datetime.now():%Y-%m-%d %H:%M:%S}".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None


# --- reading -------------------------------------------------------------------------


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """``metrics.json`` as a dict, or None if there is none or it is damaged.

    Folders written before the engine was recorded as data (``"fused (group of 4)"``)
    read as ``"engine": "fused", "group_size": 4``.
    """
    try:
        record = json.loads((Path(run_dir) / METRICS).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    engine = str(record.get("engine", ""))
    if engine.startswith("fused (group of "):
        record["engine"], record["group_size"] = "fused", int(engine.split()[-1].rstrip(")"))
    return record


def read_config(run_dir: Path) -> DictConfig:
    """``config.yaml``; a ``UserError`` naming the file if it is missing or unreadable."""
    path = Path(run_dir) / CONFIG
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # missing, unreadable, or not YAML
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot read the run's config ({first})") from None
    if not isinstance(cfg, DictConfig):
        raise UserError(f"{path}: not a config (a mapping of keys) but {type(cfg).__name__}")
    missing = [k for k in CONFIG_GROUPS if not isinstance(cfg.get(k), DictConfig)]
    if missing:
        raise UserError(f"{path}: a partial config, without its {missing[0]!r} group")
    return cfg


def read_history(run_dir: Path):
    """``history.csv`` as a table; a ``UserError`` naming the file if it is missing, not
    CSV, or lacks one of the columns every engine writes for a task (``epoch`` and
    ``Kind.columns``: accuracy for classification, mae and r2 for regression)."""
    import pandas as pd

    path = Path(run_dir) / HISTORY
    try:
        frame = pd.read_csv(path)
    except Exception as e:  # missing, empty or not CSV
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot read the run's history ({first})") from None
    lacking = [[c for c in ("epoch", *kind.columns) if c not in frame.columns]
               for kind in KINDS.values()]  # fmt: skip
    if all(lacking):  # not a whole history of any task: name what the closest one lacks
        raise UserError(f"{path}: the history lacks the column {min(lacking, key=len)[0]!r}")
    return frame


def read_env(run_dir: Path) -> dict[str, Any] | None:
    """``env.json`` as a dict, or None if there is none or it is damaged."""
    try:
        record = json.loads((Path(run_dir) / ENV).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_activations(run_dir: Path) -> dict:
    """``activations.npz`` by layer; {} if there is none or it is damaged."""
    import zipfile

    import numpy as np

    try:
        with np.load(Path(run_dir) / ACTIVATIONS, allow_pickle=False) as npz:
            return dict(npz)
    except (OSError, ValueError, zipfile.BadZipFile):
        return {}


def status(run_dir: Path) -> str | None:
    """``completed``, ``diverged`` or ``interrupted`` from ``metrics.json``; None without one
    (never finished, or killed)."""
    record = read_metrics(run_dir)
    return None if record is None else record.get("status")


def is_complete(run_dir: Path) -> bool:
    return status(run_dir) == "completed"


def completed_with(run_dir: Path, cfg: DictConfig) -> bool:
    """True when ``run_dir`` holds a completed run of exactly this config (resuming)."""
    record = read_metrics(run_dir) or {}
    return record.get("status") == "completed" and record.get("config_hash") == config_hash(cfg)


def config_hash(cfg: DictConfig) -> str:
    """A run's identity for resuming: its resolved config without ``keys.HASH``."""
    return fingerprint(cfg, HASH)


def is_run(folder: Path) -> bool:
    """A folder made by regexp for one run (finished or not). Not Hydra's record of a
    run inside it (``hydra.output_subdir``: ``.hydra``, or another name), which holds a
    ``config.yaml`` too, beside its ``hydra.yaml``."""
    folder = Path(folder)
    hydras = folder.name == ".hydra" or (
        (folder / "hydra.yaml").is_file() and (folder.parent / CONFIG).is_file()
    )
    return not hydras and (folder / CONFIG).is_file()


def is_copy(folder: Path) -> bool:
    """MLflow's copy of a run's artifacts (``<run id>/artifacts/``), not a run: a folder
    named ``artifacts`` with none of the files only a run writes (``env.json``,
    ``history.csv``, Hydra's ``.hydra``). A job folder holding only its ``config.yaml``
    (not yet trained, or never started) is a run: unfinished."""
    folder = Path(folder)
    return folder.name == "artifacts" and not any(
        (folder / name).exists() for name in (ENV, HISTORY, ".hydra")
    )


def find_runs(paths: list[str], unfinished: bool = False) -> list[Path]:
    """Run folders with a ``metrics.json``, at or under each path or glob; with
    ``unfinished``, also run folders without one (running, or killed). MLflow's copies
    of a run's files (``is_copy``) are no run folders, and a report's replication runs
    (``REPLICATION``) are found only through a path at or inside their folder."""
    found: list[Path] = []
    for pattern in paths:
        matches = [Path(p) for p in sorted(glob.glob(pattern))] or [Path(pattern)]
        for p in matches:
            a_config = unfinished and p.name == CONFIG and is_run(p.parent)
            if p.is_file() and (p.name == METRICS or a_config):
                found.append(p.parent)
            elif p.is_dir():
                folders = {m.parent for m in p.rglob(METRICS)}
                if unfinished:
                    folders |= {c.parent for c in p.rglob(CONFIG) if is_run(c.parent)}
                found += sorted(f for f in folders if not is_copy(f) and not _replicating(f, p))
    return list(dict.fromkeys(found))


def _replicating(folder: Path, root: Path) -> bool:
    """Whether ``folder`` lies in a replication folder (``REPLICATION``) below ``root``."""
    below = [parent for parent in folder.parents if parent != root and root in parent.parents]
    return any((parent / REPLICATION).is_file() for parent in below)


def job_folders(sweep: Path) -> list[Path]:
    """The run folders of a sweep, whatever ``hydra.sweep.subdir`` named them."""
    return sorted(p.parent for p in Path(sweep).rglob(CONFIG) if is_run(p.parent))


def sweep_outcomes(sweep: Path) -> list[tuple[Path, str, int | None]]:
    """(job folder, status, diverged epoch) of every job folder of a sweep; a folder
    without a record is ``unfinished``."""
    outcomes = []
    for folder in job_folders(sweep):
        record = read_metrics(folder)
        if record is None:
            outcomes.append((folder, "unfinished", None))
        else:
            outcomes.append((folder, record.get("status", "?"), record.get("diverged_epoch")))
    return outcomes


# --- the environment record ----------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> dict[str, Any] | None:
    from regexp.paths import source_checkout

    repo = source_checkout()
    if repo is None:  # an installed wheel: its version says what ran
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


# a pinned line of a requirements-format lock: name[extras]==version, an optional marker
_PIN = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;\\]+)\s*(?:;([^\\]*))?"
)


def normalize(name: str) -> str:
    """A distribution name as the package index compares them (PEP 503): ``PyYAML`` and
    ``pyyaml``, ``typing_extensions`` and ``typing-extensions`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


_HEADER = re.compile(r"^(Name|Version):[ \t]*(.*?)\s*$", re.MULTILINE)


def installed_versions() -> dict[str, str]:
    """Every installed distribution's version by normalised name, the first on ``sys.path``
    winning as for imports. Reads only the header of each ``METADATA`` file (the
    email parser that ``metadata.version`` uses costs ~3 ms a package over the long
    descriptions: half a second for this environment)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        header = dict(_HEADER.findall(text.split("\n\n", 1)[0]))
        if "Name" in header and "Version" in header:
            found.setdefault(normalize(header["Name"]), header["Version"])
    return found


def locked_versions(text: str) -> dict[str, str]:
    """The pins of a lock file in requirements format (``name==version``, hashes and
    comments on other lines) that apply to this Python and platform: a pin whose
    environment marker is false here (``; sys_platform == 'win32'``) is left out.
    Names are normalised (``normalize``)."""
    pins = {}
    for line in text.splitlines():
        match = _PIN.match(line)  # continuation lines (hashes, comments) start with a space
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker and marker.strip():
            from packaging.markers import Marker

            if not Marker(marker.strip()).evaluate():
                continue
        pins[normalize(name)] = version
    return pins


def _same_version(a: str | None, b: str) -> bool:
    """``1.0`` and ``1.0.0``, ``2.1-post1`` and ``2.1.post1`` are one version (PEP 440)."""
    from packaging.version import InvalidVersion, Version

    try:
        return a is not None and Version(a) == Version(b)
    except InvalidVersion:
        return False


def lock_record() -> dict[str, Any] | None:
    """``env.json``'s ``lock``: the lock file of the source tree regexp runs from, its
    sha256, and whether the installed versions are the locked ones. ``mismatches`` maps
    each package whose installed version is not the locked one to both (installed None:
    not installed); ``matches`` is true when there is none. None without a lock file (an
    installed wheel). Reads files only (package metadata): no subprocess, and of the
    packages only ``packaging`` is imported (for environment markers)."""
    from regexp.paths import LOCK, lock_file

    path = lock_file()
    if path is None:
        return None
    data = path.read_bytes()
    installed_now, mismatches = installed_versions(), {}
    for name, locked in locked_versions(data.decode("utf-8", errors="replace")).items():
        installed = installed_now.get(name)
        if installed != locked and not _same_version(installed, locked):
            mismatches[name] = {"locked": locked, "installed": installed}
    return {
        "file": LOCK,
        "sha256": hashlib.sha256(data).hexdigest(),
        "matches": not mismatches,
        "mismatches": mismatches,
    }


@functools.lru_cache(maxsize=2)
def _installation(lock: Path | None) -> dict[str, Any]:
    """What this process runs on: read once per process (and lock file), as it is the
    code and packages the process imported that run, for every run of a sweep."""
    packages = ["regexp", "tensorflow", "keras", "numpy", "scikit-learn", "hydra-core", "pandas"]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {p: _version(p) for p in packages},
        "lock": lock_record(),
        "git": _git_commit(),
    }


def env_record(
    seed: int, overrides: list[str] | None = None, threads: dict | None = None
) -> dict[str, Any]:
    """What is needed to re-run: versions, the lock file and whether the installed
    versions are its own (``lock_record``), git commit, seed, command line, and the
    TensorFlow thread pools the run had (0 = TensorFlow's default, one per core)."""
    from regexp.paths import lock_file

    return {
        **_installation(lock_file()),
        "seed": seed,
        "argv": sys.argv,
        "overrides": overrides or [],
        "tf_threads": threads or {},
        "activity_penalty_reduction": "regularizer value / batch size (Keras >= 3.14)",
    }
