"""The ``regexp`` command. Only the ``run`` job imports TensorFlow, and only to train."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("regexp")

HELP = """\
usage: regexp <command> [args]

commands:
  run [overrides]     train one configuration; `run -m ...` sweeps (Hydra multirun).
                      `regexp run --help` lists the config groups and the full config.
  check [overrides]   compose and validate a config without training (no TensorFlow).
  list                print every config group and its options.
  report PATH...      tables, plots and statistics over runs (`report --help`).
  verify RUN          re-run a run from its record; say whether its numbers match.
  show RUN            a run's config changes from the defaults, metrics and files.
  compare RUN_A RUN_B config differences and metric deltas of two runs.
  ls [FOLDER]         runs under FOLDER (default outputs/), newest first.

examples:
  regexp run reg=l1_activity
  regexp run -m reg=l1_activity reg.lam=1e-4,1e-3,1e-2 seed=0,1,2
  regexp run experiment=b4_l1_activity reg=none

Runs are written to outputs/YYYY-MM-DD/HH-MM-SS-<microseconds>_<name>/.
"""


MULTIRUN = ("-m", "--multirun")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run(rest)
    if command in ("-sc", "--shell-completion"):  # Hydra's completion calls `regexp -sc ...`
        import os

        line = os.environ.get("COMP_LINE", "").split(" ")
        if len(line) > 1 and line[1] == "run":
            os.environ["COMP_LINE"] = " ".join(line[:1] + line[2:])
            os.environ["COMP_POINT"] = str(max(0, int(os.environ.get("COMP_POINT", 0)) - 4))
        return run(argv)
    if command == "list":
        print(list_groups(), end="")
        return 0
    if command == "check":
        return check(rest)
    if command in ("show", "compare", "ls"):
        from regexp.inspect_runs import main as inspect

        return inspect(command, rest)
    if command == "verify":
        from regexp.verify import main as verify

        return verify(rest)
    if command == "report":
        from regexp.report import main as report

        return report(rest)
    if command in ("-V", "--version"):
        from regexp import __version__

        print(f"regexp {__version__}")
        return 0
    accepted = "run, check, list, report, verify, show, compare or ls"
    print(f"regexp: error: unknown command {command!r}; expected {accepted}", file=sys.stderr)
    return 2


def list_groups() -> str:
    """Each config group with its options, the default marked with ``*``."""
    from omegaconf import OmegaConf

    from regexp.paths import CONF as conf

    defaults = {}
    for entry in OmegaConf.load(conf / "config.yaml").get("defaults", []):
        if hasattr(entry, "items"):
            defaults.update({str(k): v for k, v in entry.items()})
    lines = []
    for group in sorted(p for p in conf.iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        marked = [f"{o}*" if o == defaults.get(group.name) else o for o in options]
        lines.append(f"{group.name}: {' '.join(marked)}")
    return "\n".join(lines) + "\n(* = default)\n"


def check(overrides: list[str]) -> int:
    """Validate the config ``regexp run <overrides>`` would train, then stop."""
    from regexp.compose import precheck
    from regexp.errors import UserError

    try:
        precheck(overrides, every_job=True)
    except UserError as e:
        return _fail(e)
    print("ok: the config composes and validates")
    return 0


def _fail(error: Exception) -> int:
    """One line and exit code 2; the traceback too with HYDRA_FULL_ERROR=1."""
    import os

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"regexp: error: {error}", file=sys.stderr)
    return 2


def run(args: list[str]) -> int:
    """Decide where the run (or sweep) writes, hand the arguments to Hydra, which composes
    each job and calls ``pipeline.run`` (or the fused launcher, which calls the pipeline
    for whole groups); then read the outcome from the folders written.

    Exit codes: 0 all runs completed; 1 a run diverged (a sweep goes on with its other
    jobs, then says which failed); 2 bad input; 130 interrupted (Ctrl-C or SIGTERM).
    """
    import signal
    from contextlib import nullcontext

    import hydra

    from regexp import rundir
    from regexp.compose import given, precheck
    from regexp.errors import UserError
    from regexp.paths import CONF

    # -m may stand anywhere; Hydra's parser takes it only before the overrides
    args = [a for a in args if a in MULTIRUN] + [a for a in args if a not in MULTIRUN]
    try:
        destination = precheck(args)
    except UserError as e:
        return _fail(e)
    if destination is not None:  # the folder resolved once (a ${now:...} in it included)
        args = [a for a in args if not given([a], destination.key)] + [destination.override()]

    @hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
    def job(cfg) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from regexp import pipeline

        hc = HydraConfig.get()
        key = "hydra.sweep.dir" if hc.mode == RunMode.MULTIRUN else "hydra.run.dir"
        try:
            return pipeline.run(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), key)
        except UserError as e:
            raise SystemExit(_fail(e)) from None

    def terminate(signum, frame):
        raise KeyboardInterrupt

    saved, saved_term = sys.argv, signal.getsignal(signal.SIGTERM)
    sys.argv = ["regexp", *args]
    signal.signal(signal.SIGTERM, terminate)
    lock = rundir.Lock(destination.folder, destination.key) if destination else nullcontext()
    try:
        with lock:  # one regexp at a time writes a run or sweep folder
            job()
    except UserError as e:  # the folder is locked by another regexp
        return _fail(e)
    except KeyboardInterrupt:
        print(f"regexp: interrupted; {_interrupted(destination)}", file=sys.stderr)
        return 130
    except SystemExit as e:  # an error found inside Hydra's job or launcher, already printed
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = saved
        signal.signal(signal.SIGTERM, saved_term)
    outcomes = _outcomes(destination)
    failed = [(d, s, e) for d, s, e in outcomes if s != "completed"]
    if failed:
        listed = "; ".join(
            f"{d.name} {s}" + (f" at epoch {e}" if e else "") for d, s, e in failed[:5]
        )
        more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
        statuses = {s for _, s, _ in failed}
        hints = []
        if "diverged" in statuses:
            hints.append("diverged: the loss was not finite; try a smaller optimizer.lr")
        if statuses - {"diverged"} and destination is not None and destination.multirun:
            hints.append(f"the same command with resume={destination.folder} trains the rest")
        hint = f" ({'; '.join(hints)})" if hints else ""
        print(
            f"regexp: {len(failed)} of {len(outcomes)} runs did not complete: {listed}{more}"
            + hint,
            file=sys.stderr,
        )
        return 1
    return 0


def _interrupted(destination) -> str:
    """What an interrupt left behind, and how to finish the work."""
    outcomes = _outcomes(destination)
    stopped = [str(d) for d, s, _ in outcomes if s == "interrupted"]
    left = [d for d, s, _ in outcomes if s == "unfinished"]
    said = []
    if stopped:
        said.append(
            f"the history so far is recorded as status 'interrupted' in {', '.join(stopped)}"
        )
    if left:
        said.append(f"{len(left)} job{'s' if len(left) != 1 else ''} did not train")
    if not said:
        said.append("every run that had trained was written first")
    if destination is not None and destination.multirun and (stopped or left):
        said.append(f"the same command with resume={destination.folder} trains only what is left")
    return "; ".join(said)


def _outcomes(destination) -> list[tuple[Path, str, int | None]]:
    """(folder, status, diverged epoch) of what the command wrote, read from the folders."""
    from regexp import rundir

    if destination is None:  # Hydra only printed something
        return []
    if destination.multirun:
        return rundir.sweep_outcomes(destination.folder)
    record = rundir.read_metrics(destination.folder)
    if record is None:
        return [(destination.folder, "unfinished", None)] if destination.folder.exists() else []
    return [(destination.folder, record.get("status", "?"), record.get("diverged_epoch"))]
