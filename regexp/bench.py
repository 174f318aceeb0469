"""``make bench``: the engines side by side on experiment B4, in one process, one run.

Training time is timed around ``engine.fit`` only (model building and folder writing
excluded; each engine's own tracing included), and reported as seconds per
member-epoch and as a speed-up over ``model.fit``. A second table times whole 50-job
sweeps through the fused launcher, folders written, each against one of its jobs run
end to end with ``model.fit``: B4's 10 lambdas x 5 seeds, and dropout + weight decay
(5 rates x 2 decays x 5 seeds), which must train as one fused group. A third compares,
on a 10-job sweep, each worker launcher (submitit_local, and Ray when installed) with
its fused variant, which ships whole fused groups to the workers. Last, the wall time of
two commands that must not import TensorFlow.

    python -m regexp.bench [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

EXPERIMENT = "experiment=b4_l1_activity"
LAMBDAS = [f"{x:.0e}" for x in (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)]


def _members(k: int, epochs: int) -> list:
    from regexp.compose import compose
    from regexp.pipeline import prepare

    return [
        prepare(
            compose(
                EXPERIMENT,
                f"trainer.epochs={epochs}",
                f"seed={i % 5}",
                f"reg.lam={LAMBDAS[i // 5 % 10]}",
            )
        )  # fmt: skip
        for i in range(k)
    ]


def time_engines(epochs: int) -> list[dict]:
    from regexp.engines import ENGINES

    rows = []
    for label, engine, k in [("model.fit", "keras", 1), ("compiled", "compiled", 1),
                             ("fused K=1", None, 1), ("fused K=10", None, 10),
                             ("fused K=50", None, 50)]:  # fmt: skip
        jobs = _members(k, epochs)
        start = time.perf_counter()
        ENGINES[engine or "fused"](jobs)
        seconds = time.perf_counter() - start
        rows.append({"what": label, "members": k, "seconds": seconds,
                     "s_per_member_epoch": seconds / (k * epochs)})  # fmt: skip
        print(f"  {label}: {seconds:.2f} s", flush=True)
    base = rows[0]["s_per_member_epoch"]
    for r in rows:
        r["speedup_vs_fit"] = base / r["s_per_member_epoch"]
    return rows


# the dropout + weight-decay sweep: 5 rates x 2 decays x 5 seeds on B4's data and network
DROPOUT = ("experiment=b4_l1_activity", "reg=dropout", "optimizer=adamw")
RATES = ("0.1", "0.2", "0.3", "0.4", "0.5")
DECAYS = ("0.01", "0.1")


def time_sweep(epochs: int, recipe: tuple[str, ...], axes: list[str], what: str) -> list[dict]:
    """A 50-job sweep of ``recipe`` over ``axes`` and 5 seeds through the fused launcher,
    folders written, against one job of it run end to end with ``model.fit``. Every job
    must have trained in one fused group of 50, so a recipe that knocks its sweep out of
    the fused engine fails here."""
    from regexp import pipeline, rundir
    from regexp.cli import main
    from regexp.compose import compose

    first = [axis.split("=")[0] + "=" + axis.split("=")[1].split(",")[0] for axis in axes]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pipeline.run(compose(*recipe, *first, f"trainer.epochs={epochs}", "trainer.engine=keras"),
                     Path(tmp) / "alone")  # fmt: skip
        alone = time.perf_counter() - start
        start = time.perf_counter()
        main(["run", "-m", *recipe, f"trainer.epochs={epochs}", "seed=0,1,2,3,4", *axes,
              f"hydra.sweep.dir={tmp}/sweep"])  # fmt: skip
        sweep = time.perf_counter() - start
        records = [rundir.read_metrics(p.parent) for p in Path(tmp, "sweep").glob("*/metrics.json")]
    fused = [r for r in records if r.get("engine") == "fused" and r.get("group_size") == 50]
    assert len(fused) == 50, f"{len(fused)} of the {what} sweep's 50 jobs trained as one group"
    return [
        {"what": f"one job, model.fit, end to end ({what})", "members": 1, "seconds": alone,
         "s_per_job": alone, "speedup_vs_fit": 1.0},
        {"what": f"50-job sweep, fused launcher, end to end ({what})", "members": 50,
         "seconds": sweep, "s_per_job": sweep / 50, "speedup_vs_fit": alone / (sweep / 50)},
    ]  # fmt: skip


def time_launchers(epochs: int) -> list[dict]:
    """A 10-job sweep (2 lambdas x 5 seeds) through each worker launcher, one job per
    worker, against the fused variant of the same launcher, one group per worker; wall
    time of ``regexp run -m`` in a fresh process, folders written."""
    import importlib.util

    pairs = [("submitit_local", "fused_submitit_local")]
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher"):
        pairs.append(("ray", "fused_ray"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for plain, fused in pairs:
            times = {}
            for launcher in (plain, fused):
                extra = (
                    ["+hydra.launcher.ray.init.include_dashboard=false"]
                    if "ray" in launcher
                    else []
                )
                sweep = Path(tmp, launcher)
                times[launcher] = _wall([sys.executable, "-m", "regexp", "run", "-m", EXPERIMENT,
                                         f"trainer.epochs={epochs}", "seed=0,1,2,3,4",
                                         f"reg.lam={LAMBDAS[0]},{LAMBDAS[-1]}",
                                         f"hydra/launcher={launcher}", *extra,
                                         f"hydra.sweep.dir={sweep}"])  # fmt: skip
                done = len(list(sweep.glob("*/metrics.json")))
                assert done == 10, f"{launcher} completed {done} of 10 jobs"
                print(f"  {launcher}: {times[launcher]:.1f} s", flush=True)
            for launcher in (plain, fused):
                rows.append({"what": f"10-job sweep, hydra/launcher={launcher}", "members": 10,
                             "seconds": times[launcher], "s_per_job": times[launcher] / 10,
                             "speedup_vs_plain": times[plain] / times[launcher]})  # fmt: skip
    return rows


def time_commands() -> list[dict]:
    """Commands that must answer without TensorFlow: best of three, in fresh processes."""
    rows = []
    for label, args in [("regexp --help", ["--help"]),
                        ("regexp check (validate a config)", ["check", EXPERIMENT])]:  # fmt: skip
        best = min(_wall([sys.executable, "-m", "regexp", *args]) for _ in range(3))
        rows.append({"what": label, "members": 0, "seconds": best})
    return rows


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    import logging

    import pandas as pd

    parser = argparse.ArgumentParser(prog="python -m regexp.bench", description=__doc__)
    parser.add_argument("--epochs", type=int, default=200, help="B4 trains 200 epochs")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)

    print(f"Training B4 for {args.epochs} epochs with each engine...", flush=True)
    engines = time_engines(args.epochs)
    print("A 50-job sweep through the fused launcher, and one model.fit job...", flush=True)
    sweep = time_sweep(args.epochs, (EXPERIMENT,), ["reg.lam=" + ",".join(LAMBDAS)], "B4 lambdas")
    print("A 50-job dropout + weight-decay sweep, and one model.fit job of it...", flush=True)
    axes = ["reg.dropout=" + ",".join(RATES), "optimizer.weight_decay=" + ",".join(DECAYS)]
    sweep += time_sweep(args.epochs, DROPOUT, axes, "dropout + weight decay")
    print("Worker launchers, one job per worker against one fused group per worker...")
    launchers = time_launchers(args.epochs)
    commands = time_commands()

    table = pd.DataFrame(engines + sweep + launchers + commands)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{datetime.now():%Y-%m-%d-%H-%M-%S}.csv"
    table.to_csv(path, index=False)
    with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
        print()
        print(pd.DataFrame(engines).to_string(index=False))
        print()
        print(pd.DataFrame(sweep).to_string(index=False))
        print()
        print(pd.DataFrame(launchers).to_string(index=False))
        print()
        print(pd.DataFrame(commands).to_string(index=False))
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
