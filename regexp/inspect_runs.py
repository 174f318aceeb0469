"""Looking at runs without TensorFlow: ``regexp show``, ``regexp compare``, ``regexp ls``.

- ``show RUN``: the config keys that differ from the defaults, the final metrics, the files.
- ``compare RUN_A RUN_B``: the config keys that differ, and each metric's change.
- ``ls [FOLDER]``: runs under FOLDER (default ``outputs/``), newest first, with status and
  the test number of the task's primary metric: accuracy (``test_acc``), and for
  regression runs R² (``test_r2``, a column of its own when any run has one).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from regexp import rundir
from regexp.errors import UserError
from regexp.keys import flatten

SKIP = ("activity_mean", "diagnostics")


def _run(path: str) -> Path:
    run = Path(path)
    if not (run / "config.yaml").is_file():
        raise UserError(f"{path} is not a run folder (no config.yaml); `regexp ls` lists runs")
    return run


def _config(run: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return flatten(OmegaConf.to_container(rundir.read_config(run)))


def _metrics(run: Path) -> dict[str, Any]:
    record = rundir.read_metrics(run)
    if record is not None:
        return record
    if (run / rundir.METRICS).exists():
        return {"status": "damaged metrics.json"}
    return {"status": "no metrics.json (running, or killed)"}


def _defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """The defaults a run changed: those of its experiment when it names a shipped one,
    else the plain defaults."""
    from omegaconf import OmegaConf

    from regexp.compose import compose
    from regexp.paths import CONF

    experiment = cfg.get("experiment_name")
    shipped = isinstance(experiment, str) and (CONF / "experiment" / f"{experiment}.yaml").is_file()
    base = compose(f"experiment={experiment}") if shipped else compose()
    return flatten(OmegaConf.to_container(base, resolve=True))


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def show(path: str) -> str:
    run = _run(path)
    cfg, metrics = _config(run), _metrics(run)
    lines = [f"{run}", f"status: {metrics.get('status')}"]
    changed = [d for d in _diff(_defaults(cfg), cfg) if not d[0].startswith("published")]
    lines.append("config, changed from the defaults" + (":" if changed else ": nothing"))
    lines += [f"  {k}: {_fmt(old)} -> {_fmt(new)}" for k, old, new in changed]
    lines.append("metrics:")
    lines += [f"  {k}: {_fmt(v)}" for k, v in metrics.items() if k not in SKIP]
    files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    lines.append("files: " + ", ".join(files))
    return "\n".join(lines) + "\n"


def compare(path_a: str, path_b: str) -> str:
    a, b = _run(path_a), _run(path_b)
    lines = [f"A: {a}", f"B: {b}", "config, A -> B:"]
    diff = _diff(_config(a), _config(b))
    lines += [f"  {k}: {_fmt(x)} -> {_fmt(y)}" for k, x, y in diff] or ["  identical"]
    lines.append("metrics, A -> B (B - A):")
    ma, mb = _metrics(a), _metrics(b)
    for key in [k for k in ma if k not in SKIP] + [k for k in mb if k not in ma and k not in SKIP]:
        x, y = ma.get(key), mb.get(key)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        delta = f" ({y - x:+.6g})" if numbers else ""
        lines.append(f"  {key}: {_fmt(x)} -> {_fmt(y)}{delta}")
    return "\n".join(lines) + "\n"


def ls(folder: str = "outputs") -> str:
    root = Path(folder)
    runs = [
        p.parent
        for p in root.rglob(rundir.CONFIG)
        if rundir.is_run(p.parent)
        and ((p.parent / ".hydra").exists() or (p.parent / rundir.ENV).exists())
    ]
    if not runs:
        raise UserError(f"no runs under {folder}; expected folders made by `regexp run`")
    runs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    records = {run: _metrics(run) for run in runs}
    shown = {"test_acc": "test_accuracy"}  # column: the metrics.json key it shows
    if any("test_r2" in m for m in records.values()):
        shown["test_r2"] = "test_r2"
    rows = [("when", "status", *shown, "run")]
    for run, m in records.items():
        when = datetime.fromtimestamp(run.stat().st_mtime)
        numbers = [m.get(key) for key in shown.values()]
        rows.append(
            (
                f"{when:%Y-%m-%d %H:%M}",
                str(m.get("status", "?")).split(" ")[0],
                *("-" if v is None else f"{v:.4f}" for v in numbers),
                str(run),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  "
        + "".join(f"{v:>{w}}  " for v, w in zip(r[2:-1], widths[2:], strict=True))
        + f"{r[-1]}\n"
        for r in rows
    )


def main(command: str, args: list[str]) -> int:
    try:
        if command == "show" and len(args) == 1:
            print(show(args[0]), end="")
        elif command == "compare" and len(args) == 2:
            print(compare(*args), end="")
        elif command == "ls" and len(args) <= 1:
            print(ls(*args), end="")
        else:
            usage = {"show": "show RUN", "compare": "compare RUN_A RUN_B", "ls": "ls [FOLDER]"}
            print(f"usage: regexp {usage[command]}", file=sys.stderr)
            return 2
    except UserError as e:
        print(f"regexp: error: {e}", file=sys.stderr)
        return 2
    return 0
