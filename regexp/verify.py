"""``regexp verify RUN``: re-run a run from its recorded config; do the numbers match?

The run is trained again from its ``config.yaml`` with the engine it recorded (a fused
member is re-run as a group of one), on the CPU with op determinism on, into a temporary
folder. Every number of ``metrics.json`` (timings and names aside) and every cell of
``history.csv`` are compared bit for bit; what differs is listed with both values.
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
    return 1
