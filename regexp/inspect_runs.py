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


def _defaults(run: Path, cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The defaults a run changed, and what they are. A run made from an experiment file
    is compared with that experiment's defaults: a shipped one, or a user's, from the
    folders its ``.hydra/hydra.yaml`` records (``--config-dir``, ``hydra.searchpath``) if
    they are still there; else with the plain defaults, and the text says why."""
    from omegaconf import OmegaConf

    from regexp.compose import USER_PROVIDERS, compose
    from regexp.paths import CONF

    recorded = run / ".hydra" / "hydra.yaml"
    hydra = OmegaConf.load(recorded) if recorded.is_file() else OmegaConf.create()
    experiment = OmegaConf.select(hydra, "hydra.runtime.choices.experiment", default=None)
    experiment = experiment or cfg.get("experiment_name")  # a folder without .hydra/
    config_dir, searchpath = None, []
    for source in OmegaConf.select(hydra, "hydra.runtime.config_sources", default=None) or []:
        if source.get("provider") == "command-line":
            config_dir = source.get("path")
        elif source.get("provider") in USER_PROVIDERS:
            path = source.get("path")
            searchpath.append(path if source.get("schema") == "file" else f"pkg://{path}")
    folders = [f for f in [config_dir, *searchpath] if f]
    mine = [f for f in folders if (Path(f) / "experiment" / f"{experiment}.yaml").is_file()]
    shipped = isinstance(experiment, str) and (CONF / "experiment" / f"{experiment}.yaml").is_file()
    if not isinstance(experiment, str) or not (shipped or mine):
        plain = "the defaults"
        if isinstance(experiment, str) and folders and recorded.is_file():
            plain = (f"the plain defaults (experiment {experiment}'s file is no longer in "
                     f"{', '.join(folders)})")  # fmt: skip
        return flatten(OmegaConf.to_container(compose(), resolve=True)), plain
    extra = [f"hydra.searchpath=[{','.join(searchpath)}]"] if searchpath else []
    if config_dir and not Path(config_dir).is_dir():
        config_dir = None
    try:
        base = compose(f"experiment={experiment}", *extra, config_dir=config_dir)
    except Exception as e:  # noqa: BLE001 - a user's file that no longer composes
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        note = f"the plain defaults (experiment {experiment} does not compose now: {first})"
        return flatten(OmegaConf.to_container(compose(), resolve=True)), note
    where = "" if shipped else f" in {mine[0]}"
    basis = f"the defaults of experiment {experiment}{where}"
    return flatten(OmegaConf.to_container(base, resolve=True)), basis


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def show(path: str) -> str:
    run = _run(path)
    cfg, metrics = _config(run), _metrics(run)
    lines = [f"{run}", f"status: {metrics.get('status')}"]
    defaults, basis = _defaults(run, cfg)
    changed = [d for d in _diff(defaults, cfg) if not d[0].startswith("published")]
    lines.append(f"config, changed from {basis}" + (":" if changed else ": nothing"))
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
    runs = [  # found as every reader finds them (a replication only when named)
        run
        for run in rundir.find_runs([str(root)], unfinished=True)
        if (run / ".hydra").exists() or (run / rundir.ENV).exists()
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


def _parser(command: str, description: str):
    import argparse

    return argparse.ArgumentParser(prog=f"regexp {command}", description=description)


def _answer(text) -> int:
    """Print what a command made of its arguments; a ``UserError`` is one line, exit 2."""
    try:
        print(text(), end="")
    except UserError as e:
        print(f"regexp: error: {e}", file=sys.stderr)
        return 2
    return 0


def show_main(argv: list[str]) -> int:
    """``regexp show RUN``."""
    parser = _parser("show", "A run's config changes from the defaults (of its experiment, "
                     "if it names one), its final metrics and its files.")  # fmt: skip
    parser.add_argument("run", metavar="RUN", help="a run folder")
    args = parser.parse_args(argv)
    return _answer(lambda: show(args.run))


def compare_main(argv: list[str]) -> int:
    """``regexp compare RUN_A RUN_B``."""
    parser = _parser("compare", "The config keys two runs differ in, and each metric's "
                     "change (B - A).")  # fmt: skip
    parser.add_argument("run_a", metavar="RUN_A", help="a run folder")
    parser.add_argument("run_b", metavar="RUN_B", help="another run folder")
    args = parser.parse_args(argv)
    return _answer(lambda: compare(args.run_a, args.run_b))


def ls_main(argv: list[str]) -> int:
    """``regexp ls [FOLDER]``."""
    parser = _parser("ls", "Runs under FOLDER, newest first, with their status and test "
                     "accuracy (and R² for regression).")  # fmt: skip
    parser.add_argument("folder", metavar="FOLDER", nargs="?", default="outputs",
                        help="where to look (default: outputs)")  # fmt: skip
    args = parser.parse_args(argv)
    return _answer(lambda: ls(args.folder))


def main(command: str, args: list[str]) -> int:
    """``regexp show|compare|ls ARGS``."""
    return {"show": show_main, "compare": compare_main, "ls": ls_main}[command](args)
