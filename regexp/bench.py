"""``make bench``: how fast regexp trains and writes experiment B4, measured side by side
in one run, and whether it meets its targets. Sections (``--only``, ``--skip``):

- ``engines``: B4 trained by each engine (``model.fit``, ``compiled``, ``fused`` with 1,
  10 and 50 members), timed around the engine only (model building and folder writing
  excluded; an engine's own tracing included, and shown apart as ``trace_s``): seconds
  per member-epoch, the speed-up over ``model.fit``, and the FLOP rate of its matmuls.
- ``sweep50``: whole 50-job sweeps through the fused launcher, folders written with
  their plots, each against one of its jobs run end to end with ``model.fit``: B4's 10
  lambdas x 5 seeds, and dropout + weight decay (5 rates x 2 decays x 5 seeds), each
  side best of ``--repeats``. Each must train as one fused group.
- ``sweep1000``: B4's 10 lambdas x 100 seeds (``--seeds``) the same way, in fused groups
  of 100, and how its wall time splits by phase (``regexp.timing``): the launching
  process's (compose, prepare, trace, train, evaluate, wait, ...) and the writer
  process's (write, plot), which runs meanwhile.
- ``single``: the whole ``regexp run experiment=b4_l1_activity`` command in a fresh
  process against the same with ``trainer.engine=keras``, best of ``--repeats``, and
  where each one's time goes (``REGEXP_TIMING``).
- ``flops``: the fused K=50 training's FLOP rate (the Dense layers' matmuls, forward and
  backward) against the best rate of a TensorFlow batched matmul of the same shapes,
  timed in this process.
- ``launchers``: a 10-job sweep through each worker launcher (submitit_local, and Ray
  when installed) against its fused variant, which ships whole fused groups to workers.
- ``commands``: the wall time of two commands that must not import TensorFlow.

It ends with the targets: each sweep at least 100x one ``model.fit`` job, per job; one
``regexp run`` at least 3x one with ``trainer.engine=keras``; and how close the fused
training comes to the matmul peak (no threshold). The tables go to
``<out>/bench-<time>.csv``.

    python -m regexp.bench [--epochs N] [--seeds N] [--repeats N] [--only A,B]
                           [--skip A,B] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

SECTIONS = ("engines", "sweep50", "sweep1000", "single", "flops", "launchers", "commands")
EXPERIMENT = "experiment=b4_l1_activity"
EPOCHS = 200  # B4's own
LAMBDAS = [f"{x:.0e}" for x in (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)]
SWEEP_TARGET = 100  # each job of a sweep, at least this many times one model.fit job
SINGLE_TARGET = 3  # regexp run, at least this many times regexp run trainer.engine=keras
# regexp.timing's phases, in the order a job meets them; others print after them
PHASES = ("import", "compose", "prepare", "trace", "train", "evaluate", "write", "plot", "wait")
# forward passes over the validation split per epoch: its batches, and the diagnostics'
# one pass (regexp.diagnostics), in every engine
VAL_PASSES = 2


def training_flops(
    kernels: Sequence[tuple[int, int]],
    n_train: int,
    n_val: int,
    epochs: int,
    members: int = 1,
    val_passes: int = 1,
) -> int:
    """Floating-point operations of the Dense layers' matmuls when ``members`` networks
    of kernels ``kernels`` ([in, out] each, the first layer first) train ``epochs``
    epochs on ``n_train`` rows, with ``val_passes`` forward passes over ``n_val``
    validation rows per epoch.

    A batch of b rows costs b*in*out multiply-adds per layer forward, and backward as
    many for the kernel's gradient plus as many for the gradient of the layer's input,
    except the first layer's (the data need none); validation is forward only. The count
    is linear in b, so an epoch's batches, a short last one included, cost what its rows
    do. FLOPs = 2 x multiply-adds. Elementwise work (activations, biases, penalties, the
    loss, the optimizer) is not counted."""
    forward = sum(i * o for i, o in kernels)
    first = kernels[0][0] * kernels[0][1]
    backward = forward + (forward - first)
    per_epoch = n_train * (forward + backward) + val_passes * n_val * forward
    return 2 * members * epochs * per_epoch


def dense_kernels(job) -> list[tuple[int, int]]:
    """The [in, out] of each Dense kernel of a prepared job's Keras model, in order."""
    from regexp.model import layer_weights

    weights = job.model.weights
    return [tuple(int(d) for d in weights[slots["kernel"]].shape)
            for slots in layer_weights(job.model, job.plans)]  # fmt: skip


def group_flops(jobs: Sequence) -> int:
    """``training_flops`` of a group of prepared jobs trained together."""
    job = jobs[0]
    return training_flops(dense_kernels(job), len(job.data.x_train), len(job.data.x_val),
                          int(job.cfg.trainer.epochs), len(jobs), VAL_PASSES)  # fmt: skip


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


ENGINE_RUNS = [("model.fit", "keras", 1), ("compiled", "compiled", 1), ("fused K=1", None, 1),
               ("fused K=10", None, 10), ("fused K=50", None, 50)]  # fmt: skip


def time_engines(epochs: int, labels: Sequence[str] | None = None) -> list[dict]:
    """Each engine of ``ENGINE_RUNS`` (those named in ``labels``, or all) training B4."""
    from regexp import timing
    from regexp.engines import ENGINES

    rows = []
    for label, engine, k in ENGINE_RUNS:
        if labels is not None and label not in labels:
            continue
        jobs = _members(k, epochs)
        flops = group_flops(jobs)
        timing.take()
        start = time.perf_counter()
        ENGINES[engine or "fused"](jobs)
        seconds = time.perf_counter() - start
        trace = timing.take().get("trace")  # model.fit traces unseen: none
        rows.append({"what": label, "members": k, "seconds": seconds, "trace_s": trace,
                     "s_per_member_epoch": seconds / (k * epochs), "flops": flops,
                     "gflop_s": flops / seconds / 1e9})  # fmt: skip
        print(f"  {label}: {seconds:.2f} s", flush=True)
    if rows and rows[0]["what"] == "model.fit":
        base = rows[0]["s_per_member_epoch"]
        for r in rows:
            r["speedup_vs_fit"] = base / r["s_per_member_epoch"]
    return rows


def matmul_rate(members: int, batch: int, fan_in: int, fan_out: int, reps: int = 1000,
                tries: int = 5) -> float:  # fmt: skip
    """FLOP/s of a TensorFlow batched matmul [members, batch, fan_in] @ [members, fan_in,
    fan_out], float32, warm, best of ``tries``: ``reps`` products in one graph loop, as
    the fused engine runs its epochs, so Python's per-call cost is not in it. (Each
    product is the loop's result, so TensorFlow can neither drop it nor hoist it out of
    the loop: the time grows with ``reps``.)"""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((members, batch, fan_in)), tf.float32)
    w = tf.constant(rng.standard_normal((members, fan_in, fan_out)), tf.float32)

    @tf.function(autograph=False)
    def products(a, w):
        def body(r, _):
            return r + 1, tf.matmul(a, w)

        start = (tf.constant(0), tf.zeros([members, batch, fan_out]))
        return tf.while_loop(lambda r, _: r < reps, body, start)[1]

    products(a, w).numpy()  # traced, warm
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        products(a, w).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * members * batch * fan_in * fan_out * reps / best


def time_flops(epochs: int, engines: Sequence[dict]) -> list[dict]:
    """The fused K=50 training's matmul FLOP rate (its row of ``engines``, or trained
    now) against the best rate of a batched matmul of each of its layers' shapes."""
    from regexp.backend import import_keras

    fused = next((r for r in engines if r["what"] == "fused K=50"), None)
    if fused is None:
        fused = time_engines(epochs, ["fused K=50"])[0]
    job = _members(1, epochs)[0]
    import_keras(int(job.cfg.trainer.threads))  # as the training ran (it decided already)
    k, batch = fused["members"], int(job.cfg.trainer.batch_size)
    peaks = []
    for fan_in, fan_out in dict.fromkeys(dense_kernels(job)):
        rate = matmul_rate(k, batch, fan_in, fan_out)
        peaks.append({"what": f"matmul [{k},{batch},{fan_in}] @ [{k},{fan_in},{fan_out}]",
                      "members": k, "gflop_s": rate / 1e9})  # fmt: skip
        print(f"  {peaks[-1]['what']}: {rate / 1e9:.1f} GFLOP/s", flush=True)
    peak = max(r["gflop_s"] for r in peaks)
    achieved = {"what": "fused K=50 training, Dense matmuls", "members": k,
                "seconds": fused["seconds"], "trace_s": fused["trace_s"], "flops": fused["flops"],
                "gflop_s": fused["gflop_s"], "of_peak": fused["gflop_s"] / peak}  # fmt: skip
    return [achieved, *peaks]


def flops_line(rows: Sequence[dict]) -> str:
    achieved, peaks = rows[0], rows[1:]
    best = max(peaks, key=lambda r: r["gflop_s"])
    trace = achieved["trace_s"] or 0.0
    untraced = achieved["flops"] / (achieved["seconds"] - trace) / 1e9
    return (
        f"fused K={achieved['members']}: {achieved['flops'] / 1e9:.2f} GFLOP in "
        f"{achieved['seconds']:.2f} s = {achieved['gflop_s']:.2f} GFLOP/s ({untraced:.2f} "
        f"without its {trace:.2f} s trace); peak {best['gflop_s']:.1f} GFLOP/s ({best['what']}); "
        f"{achieved['of_peak']:.1%} of peak.\n"
        f"  Counted: the Dense layers' matmuls, forward and backward (2 FLOPs a multiply-add), "
        f"validation forward {VAL_PASSES}x an epoch (its batches, the diagnostics' pass); "
        "not the elementwise ops (activations, biases, penalties, loss, optimizer)."
    )


# the dropout + weight-decay sweep: 5 rates x 2 decays x 5 seeds on B4's data and network
DROPOUT = ("experiment=b4_l1_activity", "reg=dropout", "optimizer=adamw")
RATES = ("0.1", "0.2", "0.3", "0.4", "0.5")
DECAYS = ("0.01", "0.1")


def time_alone(epochs: int, recipe: tuple[str, ...], axes: Sequence[str]) -> float:
    """One job of a sweep (each axis at its first value) run end to end with
    ``model.fit``, in this process, its folder written. TensorFlow is imported first,
    whichever sections ran before, as the sweeps find it imported too."""
    from regexp import pipeline
    from regexp.backend import import_keras
    from regexp.compose import compose

    first = [axis.split("=")[0] + "=" + axis.split("=")[1].split(",")[0] for axis in axes]
    cfg = compose(*recipe, *first, f"trainer.epochs={epochs}", "trainer.engine=keras")
    import_keras(int(cfg.trainer.threads))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pipeline.run(cfg, Path(tmp) / "alone")
        return time.perf_counter() - start


def _sweep(epochs: int, recipe: Sequence[str], axes: Sequence[str], tmp: str) -> list[dict]:
    """``regexp run -m`` of ``recipe`` over ``axes``, in this process, through the fused
    launcher; each job's ``metrics.json`` content."""
    from regexp import rundir
    from regexp.cli import main

    code = main(["run", "-m", *recipe, f"trainer.epochs={epochs}", *axes,
                 f"hydra.sweep.dir={tmp}/sweep"])  # fmt: skip
    assert code == 0, f"the sweep exited with {code}"
    return [rundir.read_metrics(p.parent) for p in Path(tmp, "sweep").glob("*/metrics.json")]


def time_sweep(
    epochs: int, recipe: tuple[str, ...], axes: list[str], what: str, repeats: int = 1
) -> list[dict]:
    """A 50-job sweep of ``recipe`` over ``axes`` and 5 seeds through the fused launcher,
    folders written, against one job of it run end to end with ``model.fit``: each the
    best of ``repeats``, taken in turn (this machine's times vary by a tenth from one
    minute to the next). Every job must have trained in one fused group of 50, so a
    recipe that knocks its sweep out of the fused engine fails here."""
    alone, sweep = float("inf"), float("inf")
    for _ in range(repeats):
        alone = min(alone, time_alone(epochs, recipe, axes))
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            records = _sweep(epochs, recipe, ["seed=0,1,2,3,4", *axes], tmp)
            sweep = min(sweep, time.perf_counter() - start)
        fused = [r for r in records if r.get("engine") == "fused" and r.get("group_size") == 50]
        assert len(fused) == 50, f"{len(fused)} of the {what} sweep's 50 jobs trained as one group"
    return [
        {"what": f"one job, model.fit, end to end ({what})", "members": 1, "seconds": alone,
         "s_per_job": alone, "speedup_vs_fit": 1.0},
        {"what": f"50-job sweep, fused launcher, end to end ({what})", "members": 50,
         "seconds": sweep, "s_per_job": sweep / 50, "speedup_vs_fit": alone / (sweep / 50)},
    ]  # fmt: skip


@contextmanager
def writer_sums() -> Iterator[dict[str, float]]:
    """What writer processes add to ``regexp.timing``'s sums meanwhile, kept apart as
    well: their phases run alongside the launching process's."""
    from regexp import timing

    kept: defaultdict[str, float] = defaultdict(float)
    add = timing.add

    def recording(spent: Mapping[str, float]) -> None:
        for name, seconds in spent.items():
            kept[name] += seconds
        add(spent)

    timing.add = recording
    try:
        yield kept
    finally:
        timing.add = add


def group_sizes(jobs: int, largest: int) -> Counter:
    """How many jobs train in a group of each size when ``jobs`` jobs that all fuse are
    cut into groups of at most ``largest``."""
    sizes = Counter({largest: jobs // largest * largest})
    if jobs % largest:
        sizes[jobs % largest] += jobs % largest
    return +sizes


def time_big_sweep(epochs: int, seeds: int, alone: float) -> tuple[list[dict], dict]:
    """B4's 10 lambdas x ``seeds`` seeds through the fused launcher, in this process,
    folders written, against ``alone`` (one model.fit job end to end); every job must
    have trained in a fused group of the launcher's largest size (the last one smaller
    when the jobs do not divide). Its rows, and its wall time split by phase: the
    launching process's, ``other`` (the rest of its wall time), and the writer's."""
    from regexp import pipeline, timing

    jobs = len(LAMBDAS) * seeds
    what = f"B4 lambdas x {seeds} seeds"
    with tempfile.TemporaryDirectory() as tmp, writer_sums() as writer:
        timing.take()
        start = time.perf_counter()
        axes = [f"seed=range(0,{seeds})", "reg.lam=" + ",".join(LAMBDAS)]
        records = _sweep(epochs, (EXPERIMENT,), axes, tmp)
        wall = time.perf_counter() - start
        spent = timing.take()
        writer = dict(writer)
    assert len(records) == jobs, f"{len(records)} of the {what} sweep's {jobs} jobs completed"
    sizes = Counter(r.get("group_size") for r in records if r.get("engine") == "fused")
    expected = group_sizes(jobs, pipeline.MAX_MEMBERS)
    assert sizes == expected, (
        f"the {what} sweep trained in groups {dict(sizes)}, not {dict(expected)}"
    )
    launching = {name: seconds - writer.get(name, 0.0) for name, seconds in spent.items()}
    launching = {name: s for name, s in launching.items() if abs(s) >= 0.0005 or name not in writer}
    split = {"launching": launching, "other": wall - sum(launching.values()), "writer": writer}
    rows = [{"what": f"{jobs}-job sweep, fused launcher, end to end ({what})", "members": jobs,
             "seconds": wall, "s_per_job": wall / jobs,
             "speedup_vs_fit": alone / (wall / jobs)}]  # fmt: skip
    for process, phases in (("launching", launching), ("writer", writer)):
        rows += [{"what": f"{jobs}-job sweep: {name} ({process} process)", "seconds": s,
                  "share": s / wall} for name, s in ordered(phases)]  # fmt: skip
    rows.append({"what": f"{jobs}-job sweep: other (launching process)",
                 "seconds": split["other"], "share": split["other"] / wall})  # fmt: skip
    return rows, split


def ordered(spent: Mapping[str, float]) -> list[tuple[str, float]]:
    """``spent``'s phases, those of ``PHASES`` first in its order, the others after."""
    names = [p for p in PHASES if p in spent] + sorted(set(spent) - set(PHASES))
    return [(name, spent[name]) for name in names]


def shares(spent: Mapping[str, float], wall: float) -> str:
    """``train 12.3 s (45%), write 1.2 s (4%)``: each phase and its share of ``wall``."""
    return ", ".join(f"{name} {s:.1f} s ({s / wall:.0%})" for name, s in ordered(spent))


def big_sweep_lines(row: dict, split: dict, alone: float) -> list[str]:
    wall = row["seconds"]
    return [
        f"{row['what']}: {wall:.1f} s, {row['s_per_job']:.3f} s a job, "
        f"{row['speedup_vs_fit']:.0f}x one model.fit job ({alone:.1f} s)",
        f"  launching process: {shares(split['launching'], wall)}; "
        f"in no phase (Hydra, waiting, ...) {split['other']:.1f} s ({split['other'] / wall:.0%})",
        f"  writer process, alongside (so the phases may add up to more than the wall "
        f"time): {shares(split['writer'], wall) or 'nothing reported'}",
    ]


def time_single(epochs: int, repeats: int = 1) -> list[dict]:
    """``regexp run experiment=b4_l1_activity`` in a fresh process, against the same with
    ``trainer.engine=keras``: wall time, best of ``repeats``, and the seconds per phase
    the run wrote to ``REGEXP_TIMING`` (``phases``: None if it wrote none)."""
    from regexp import timing

    extra = [] if epochs == EPOCHS else [f"trainer.epochs={epochs}"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, engine in (("regexp", []), ("keras", ["trainer.engine=keras"])):
            args = ["run", EXPERIMENT, *extra, *engine]
            best = None
            for i in range(repeats):
                folder, record = Path(tmp, f"{name}-{i}"), Path(tmp, f"{name}-{i}.json")
                wall = _wall([sys.executable, "-m", "regexp", *args, f"hydra.run.dir={folder}"],
                             env={**os.environ, timing.ENV: str(record)})  # fmt: skip
                assert (folder / "metrics.json").exists(), f"regexp {' '.join(args)} wrote no run"
                phases = json.loads(record.read_text()) if record.exists() else None
                if best is None or wall < best["seconds"]:
                    best = {"what": "regexp " + " ".join(args), "members": 1, "seconds": wall,
                            "phases": phases}  # fmt: skip
                print(f"  {best['what']}: {wall:.1f} s", flush=True)
            rows.append(best)
    rows[0]["speedup_vs_keras"] = rows[1]["seconds"] / rows[0]["seconds"]
    rows[1]["speedup_vs_keras"] = 1.0
    return rows


def single_lines(rows: Sequence[dict]) -> list[str]:
    ours, keras = rows
    lines = [f"{ours['what']}: {ours['seconds']:.1f} s; {keras['what']}: "
             f"{keras['seconds']:.1f} s; {ours['speedup_vs_keras']:.1f}x"]  # fmt: skip
    for row in rows:
        wall, phases = row["seconds"], row["phases"]
        if phases is None:
            lines.append(f"  {row['what']}: no seconds per phase (REGEXP_TIMING wrote nothing)")
            continue
        # the launching process waits while its writer writes: the wait is not counted
        rest = wall - sum(s for name, s in phases.items() if name != "wait")
        lines.append(f"  {row['what']}, {wall:.1f} s: {shares(phases, wall)}; the rest "
                     f"(interpreter start, Hydra, in no phase) {rest:.1f} s "
                     f"({rest / wall:.0%})")  # fmt: skip
    return lines


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


def _wall(cmd: list[str], env: Mapping[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def targets(results: Mapping[str, list[dict]], seeds: int) -> list[dict]:
    """Each target, its measured figure, and whether it is met (None: not measured, or
    no threshold)."""

    def row(name: str, section: str, pick, threshold: float | None, unit: str) -> dict:
        rows = results.get(section)
        figure = pick(rows) if rows else None
        met = None if figure is None or threshold is None else figure >= threshold
        return {"what": f"target: {name}", "measured": figure, "threshold": threshold,
                "unit": unit, "met": met}  # fmt: skip

    jobs = len(LAMBDAS) * seeds
    return [
        row("50-job sweep (B4, 10 lambdas x 5 seeds), per job, over one model.fit job",
            "sweep50", lambda rows: rows[1]["speedup_vs_fit"], SWEEP_TARGET, "x"),
        row(f"{jobs}-job sweep (B4, 10 lambdas x {seeds} seeds), per job, over one "
            "model.fit job", "sweep1000", lambda rows: rows[0]["speedup_vs_fit"],
            SWEEP_TARGET, "x"),
        row("regexp run experiment=b4_l1_activity, over the same with trainer.engine=keras",
            "single", lambda rows: rows[0]["speedup_vs_keras"], SINGLE_TARGET, "x"),
        row("fused K=50 training's matmul FLOP rate, of the peak (no threshold)", "flops",
            lambda rows: rows[0]["of_peak"], None, "of peak"),
    ]  # fmt: skip


def target_lines(rows: Sequence[dict], epochs: int) -> list[str]:
    lines = ["targets"]
    if epochs != EPOCHS:
        lines[0] += f" (measured at {epochs} epochs; they are set for B4's {EPOCHS})"
    for r in rows:
        name = r["what"].removeprefix("target: ")
        if r["measured"] is None:
            lines.append(f"  {name}: not measured")
            continue
        if r["unit"] == "x":
            figure = f"{r['measured']:.1f}x"
        else:
            figure = f"{r['measured']:.1%} {r['unit']}"
        verdict = (
            ""
            if r["met"] is None
            else (f" (target {r['threshold']:g}x): " + ("met" if r["met"] else "NOT met"))
        )
        lines.append(f"  {name}: {figure}{verdict}")
    return lines


def _sections(only: str | None, skip: str | None) -> list[str]:
    def names(text: str) -> list[str]:
        given = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [s for s in given if s not in SECTIONS]
        if unknown:
            raise SystemExit(f"python -m regexp.bench: unknown section {', '.join(unknown)} "
                             f"(sections: {', '.join(SECTIONS)})")  # fmt: skip
        return given

    chosen = names(only) if only else list(SECTIONS)
    dropped = names(skip) if skip else []
    return [s for s in SECTIONS if s in chosen and s not in dropped]


def main(argv: list[str] | None = None) -> int:
    import logging

    import pandas as pd

    parser = argparse.ArgumentParser(
        prog="python -m regexp.bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="B4 trains 200 epochs")
    parser.add_argument("--seeds", type=int, default=100,
                        help="seeds of the large sweep (10 lambdas each; default 100)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3,
                        help="the single-run commands and the 50-job sweeps, and the "
                             "model.fit job each is compared with: best of this many, "
                             "taken in turn (default 3)")  # fmt: skip
    parser.add_argument("--only", metavar="A,B", help=f"run only these: {', '.join(SECTIONS)}")
    parser.add_argument("--skip", metavar="A,B", help="run all but these")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args(argv)
    sections = _sections(args.only, args.skip)
    logging.disable(logging.INFO)

    results: dict[str, list[dict]] = {}
    printed: list[str] = []
    b4_alone = None
    if "engines" in sections:
        print(f"Training B4 for {args.epochs} epochs with each engine...", flush=True)
        results["engines"] = time_engines(args.epochs)
    if "sweep50" in sections:
        print("A 50-job sweep through the fused launcher, and one model.fit job...", flush=True)
        lambdas = ["reg.lam=" + ",".join(LAMBDAS)]
        sweep = time_sweep(args.epochs, (EXPERIMENT,), lambdas, "B4 lambdas", args.repeats)
        b4_alone = sweep[0]["seconds"]
        print("A 50-job dropout + weight-decay sweep, and one model.fit job of it...", flush=True)
        axes = ["reg.dropout=" + ",".join(RATES), "optimizer.weight_decay=" + ",".join(DECAYS)]
        results["sweep50"] = sweep + time_sweep(
            args.epochs, DROPOUT, axes, "dropout + weight decay", args.repeats
        )
    if "sweep1000" in sections:
        jobs = len(LAMBDAS) * args.seeds
        print(f"A {jobs}-job sweep (B4, 10 lambdas x {args.seeds} seeds)...", flush=True)
        if b4_alone is None:
            b4_alone = time_alone(args.epochs, (EXPERIMENT,), [f"reg.lam={LAMBDAS[0]}"])
        rows, split = time_big_sweep(args.epochs, args.seeds, b4_alone)
        results["sweep1000"] = rows
        printed += big_sweep_lines(rows[0], split, b4_alone) + [""]
    if "single" in sections:
        print("One regexp run, and one with trainer.engine=keras, each a fresh process...")
        results["single"] = time_single(args.epochs, args.repeats)
        printed += single_lines(results["single"]) + [""]
    if "flops" in sections:
        print("The fused K=50 training's FLOP rate, and a matmul's of the same shapes...")
        results["flops"] = time_flops(args.epochs, results.get("engines", []))
        printed += [flops_line(results["flops"]), ""]
    if "launchers" in sections:
        print("Worker launchers, one job per worker against one fused group per worker...")
        results["launchers"] = time_launchers(args.epochs)
    if "commands" in sections:
        results["commands"] = time_commands()
    goals = targets(results, args.seeds)

    rows = [{"section": name, **{k: v for k, v in r.items() if k != "phases"},
             **{f"{k}_s": v for k, v in (r.get("phases") or {}).items()}}
            for name, section in results.items() for r in section]  # fmt: skip
    table = pd.DataFrame(rows + [{"section": "targets", **g} for g in goals])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{datetime.now():%Y-%m-%d-%H-%M-%S}.csv"
    table.to_csv(path, index=False)
    with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
        for name in ("engines", "sweep50", "launchers", "commands"):
            if name in results:
                print()
                print(pd.DataFrame(results[name]).to_string(index=False))
    print()
    print("\n".join([*printed, *target_lines(goals, args.epochs)]))
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
