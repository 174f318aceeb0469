"""Run folders: what a run writes, and the rule that makes a folder complete.

A run folder holds ``config.yaml`` (the resolved config), ``env.json``, ``model.txt``,
``history.csv``, the PNG figures and, written last and atomically, ``metrics.json``.
A folder is a complete run when its ``metrics.json`` says ``"status": "completed"``;
a diverged or interrupted run says so there, and a killed one has no ``metrics.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

METRICS = "metrics.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see either no file or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_name(experiment: str | None, reg: str) -> str:
    """A run's short name: ``<experiment>_<reg>`` for an experiment, else the reg name.

    Registered as the ``run_name`` resolver, so folder names and titles agree.
    """
    return f"{experiment}_{reg}" if experiment else str(reg)


def status(run_dir: Path) -> str | None:
    """``completed``, ``diverged`` or ``interrupted`` from ``metrics.json``; None without one
    (never finished, or killed)."""
    try:
        return json.loads((Path(run_dir) / METRICS).read_text()).get("status")
    except (OSError, ValueError):
        return None


def is_complete(run_dir: Path) -> bool:
    return status(run_dir) == "completed"


def completed_with(run_dir: Path, cfg: DictConfig) -> bool:
    """True when ``run_dir`` holds a completed run of exactly this config (resuming)."""
    if not is_complete(run_dir):
        return False
    recorded = json.loads((Path(run_dir) / METRICS).read_text()).get("config_hash")
    return recorded == config_hash(cfg)


def config_hash(cfg: DictConfig) -> str:
    """A run's identity for resuming: its resolved config, paths and ``resume`` left out."""
    import hashlib

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("resume", None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def write_config(run_dir: Path, cfg: DictConfig) -> None:
    """``config.yaml``: the config exactly as it ran, interpolations resolved."""
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)


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


def env_record(
    seed: int, overrides: list[str] | None = None, threads: dict | None = None
) -> dict[str, Any]:
    """What is needed to re-run: versions, git commit, seed, command line, and the
    TensorFlow thread pools the run had (0 = TensorFlow's default, one per core)."""
    packages = ["regexp", "tensorflow", "keras", "numpy", "scikit-learn", "hydra-core", "pandas"]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {p: _version(p) for p in packages},
        "git": _git_commit(),
        "seed": seed,
        "argv": sys.argv,
        "overrides": overrides or [],
        "tf_threads": threads or {},
        "activity_penalty_reduction": "regularizer value / batch size (Keras >= 3.14)",
    }
