"""``regexp verify RUN``: re-run a run from its recorded config; do the numbers match?

The run is trained again from its ``config.yaml`` with the engine it recorded (a fused
member is re-run as a group of one), on the CPU with op determinism on, into a temporary
folder. Every number of ``metrics.json`` (timings and names aside) and every cell of
``history.csv`` are compared bit for bit; what differs is listed with both values, and
then what differs between the environment the run recorded (``env.json``) and this one:
Python, platform, package versions, the lock file's sha256 and the packages that did not
match it, and the git commit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from regexp import rundir
from regexp.errors import UserError
from regexp.keys import flatten

NOT_RESULTS = ("train_seconds", "engine", "group_size", "group", "name", "config_hash")


def compare(recorded: Path, rerun: Path) -> tuple[list[str], float]:
    """What differs between two run folders' results (empty when they match bit for bit),
    and the largest relative difference over all of them."""
    a = flatten(rundir.read_metrics(recorded) or {})
    b = flatten(rundir.read_metrics(rerun) or {})
    diffs, largest = [], 0.0
    for key in sorted(set(a) | set(b)):
        if key in NOT_RESULTS or a.get(key) == b.get(key):
            continue
        x, y = a.get(key), b.get(key)
        rel = ""
        if isinstance(x, float) and isinstance(y, float) and x:
            largest = max(largest, abs(x - y) / abs(x))
            rel = f" (relative {abs(x - y) / abs(x):.1e})"
        else:
            largest = float("inf")
        diffs.append(f"metrics.json {key}: recorded {x!r}, re-run {y!r}{rel}")
    ha, hb = (rundir.read_history(p) for p in (recorded, rerun))
    if list(ha.columns) != list(hb.columns) or len(ha) != len(hb):
        diffs.append(f"history.csv: recorded {ha.shape}, re-run {hb.shape}")
    else:
        for column in ha.columns:
            x, y = ha[column].to_numpy(), hb[column].to_numpy()
            if not np.array_equal(x, y, equal_nan=True):
                first = int(np.flatnonzero(~((x == y) | (np.isnan(x) & np.isnan(y))))[0])
                rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-300)
                largest = max(largest, float(np.nanmax(rel)))
                diffs.append(
                    f"history.csv {column}: first differs at epoch {first + 1} (recorded "
                    f"{float(x[first])!r}, re-run {float(y[first])!r}; largest relative "
                    f"difference {np.nanmax(rel):.1e})"
                )
    return diffs, largest


def _short(commit: dict | None) -> str:
    if not commit:
        return "none (not a git checkout)"
    return commit["commit"][:12] + (" with uncommitted changes" if commit.get("dirty") else "")


def _lock_text(lock: dict | None) -> str:
    return "none (not installed from a lock file)" if not lock else f"sha256 {lock['sha256'][:12]}"


def _unlocked(lock: dict | None) -> dict:
    return (lock or {}).get("mismatches") or {}


def environment_changes(recorded: dict | None, current: dict) -> list[str]:
    """What differs between the environment a run recorded (its ``env.json``) and
    ``current`` (``rundir.env_record``), one line each: Python, platform, the recorded
    package versions, the lock file (its sha256; the packages whose installed version
    was not the locked one, then or now) and the git commit. Empty when they agree, or
    when the run recorded no environment."""
    if not recorded:
        return []
    lines = []
    for key in ("python", "platform"):
        if recorded.get(key) != current.get(key):
            lines.append(f"{key}: recorded {recorded.get(key)}, now {current.get(key)}")
    before, now = recorded.get("versions") or {}, current.get("versions") or {}
    for name in sorted(set(before) | set(now)):
        if before.get(name) != now.get(name):
            lines.append(f"{name}: recorded {before.get(name)}, now {now.get(name)}")
    if "lock" in recorded:  # env.json from before regexp recorded the lock says nothing
        lock, lock_now = recorded["lock"], current.get("lock")
        if (lock or {}).get("sha256") != (lock_now or {}).get("sha256"):
            lines.append(f"lock file: recorded {_lock_text(lock)}, now {_lock_text(lock_now)}")
        then, now_off = _unlocked(lock), _unlocked(lock_now)
        for when, off in (("recorded", then), ("now", now_off)):
            if off and then != now_off:
                listed = ", ".join(f"{name} {v['installed']} (locked {v['locked']})"
                                   for name, v in sorted(off.items()))  # fmt: skip
                lines.append(f"installed, not the locked versions ({when}): {listed}")
    if recorded.get("git") != current.get("git") and "git" in recorded:
        lines.append(
            f"git commit: recorded {_short(recorded['git'])}, now {_short(current.get('git'))}"
        )
    return lines


def explain(run_dir: Path) -> list[str]:
    """What to print after the numbers differ: whether this environment is the one the
    run's ``env.json`` recorded, and if not, each difference (``environment_changes``)."""
    recorded = rundir.read_env(run_dir)
    if recorded is None:
        return []
    where = Path(run_dir) / rundir.ENV
    changes = environment_changes(recorded, rundir.env_record(0))
    if not changes:
        return [f"the environment is the one {where} recorded (versions, lock file, commit)"]
    return [f"the environment is not the one {where} recorded:"] + [f"  {c}" for c in changes]


def verify(run_dir: Path) -> tuple[list[str], float]:
    """Train the run again from its record and compare. A fused member is trained again
    in its whole group (the folders ``metrics.json`` lists, in order), so that it must
    match bit for bit; if they are not all there, alone, which agrees only to within
    training noise (see the README)."""
    from omegaconf import open_dict

    from regexp import pipeline

    run_dir = Path(run_dir)
    recorded = rundir.read_metrics(run_dir)
    if recorded is None or not (run_dir / rundir.CONFIG).is_file():
        raise UserError(f"verify: {run_dir} is not a run folder (no metrics.json or config.yaml)")
    if recorded.get("status") != "completed":
        raise UserError(f"verify: {run_dir} did not complete (status {recorded.get('status')!r})")
    rundir.read_history(run_dir)  # a missing or damaged history is one line, before training
    members = [run_dir.parent / name for name in recorded.get("group", [])]
    if not members or not all((m / rundir.CONFIG).is_file() for m in members):
        members = [run_dir]
    with tempfile.TemporaryDirectory(prefix="regexp-verify-") as tmp:
        group = []
        for i, member in enumerate(members):
            cfg = rundir.read_config(member)
            with open_dict(cfg):  # the engine it recorded
                cfg.trainer.engine = recorded.get("engine", cfg.trainer.engine)
            group.append(pipeline.plan(cfg, Path(tmp) / f"member{i}", fused=True))
        pipeline.claim(group, "verify")
        mine = members.index(run_dir) if run_dir in members else 0
        pipeline.train(group).write(mine)
        return compare(run_dir, group[mine].folder)


def main(argv: list[str]) -> int:
    """``regexp verify RUN``: exit 0 when the numbers match, 1 when they differ."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="regexp verify",
        description="Train a run again from its recorded config.yaml (its engine, on the "
        "CPU, op determinism on) in a temporary folder, and compare every number of "
        "metrics.json and history.csv bit for bit. Exit 0 if identical, 1 if not.",
    )
    parser.add_argument("run", metavar="RUN", help="a completed run folder")
    run = parser.parse_args(argv).run
    try:
        diffs, largest = verify(Path(run))
    except UserError as e:
        print(f"regexp: error: {e}", file=sys.stderr)
        return 2
    if not diffs:
        print(f"identical: {run} re-runs to the same metrics and history, bit for bit")
        return 0
    print(
        f"differs: {len(diffs)} results of {run} changed on re-running; the largest "
        f"relative difference is {largest:.1e}:"
    )
    for line in diffs:
        print(f"  {line}")
    for line in explain(Path(argv[0])):
        print(line)
    return 1
