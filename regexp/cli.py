"""The ``regexp`` command. Only the ``run`` job imports TensorFlow, and only to train."""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from regexp.errors import UserError

log = logging.getLogger("regexp")


@dataclass(frozen=True)
class Command:
    """One ``regexp`` command: ``call`` is ``"module:function"``, imported only when the
    command runs, and called with the command's arguments; it returns the exit code."""

    name: str
    call: str
    args: str  # for the usage line
    summary: str  # one line, for `regexp --help`
    completes: str = ""  # what its arguments complete to: OVERRIDES, FOLDERS or PATHS


OVERRIDES, FOLDERS, PATHS = "overrides", "folders", "paths"

COMMANDS = (
    Command("run", "regexp.cli:run", "[overrides]",
            "train one configuration; `run -m ...` sweeps (Hydra multirun)", OVERRIDES),
    Command("check", "regexp.cli:check", "[overrides]",
            "compose and validate a config without training (no TensorFlow)", OVERRIDES),
    Command("list", "regexp.cli:list_main", "[--config-dir DIR]",
            "print every config group and its options, yours included"),
    Command("report", "regexp.report:main", "PATH...",
            "tables, plots and statistics over runs", FOLDERS),
    Command("verify", "regexp.verify:main", "RUN",
            "re-run a run from its record; say whether its numbers match", FOLDERS),
    Command("show", "regexp.inspect_runs:show_main", "RUN",
            "a run's config changes from the defaults, metrics and files", FOLDERS),
    Command("compare", "regexp.inspect_runs:compare_main", "RUN_A RUN_B",
            "config differences and metric deltas of two runs", FOLDERS),
    Command("ls", "regexp.inspect_runs:ls_main", "[FOLDER]",
            "runs under FOLDER (default outputs/), newest first", FOLDERS),
    Command("predict", "regexp.saved:predict_main", "RUN --data CSV --out CSV",
            "a run's saved model on new rows of raw features", PATHS),
    Command("eval", "regexp.saved:eval_main", "RUN [dataset.KEY=VALUE...]",
            "a run's saved model's metrics, on its own data or other data", FOLDERS),
)  # fmt: skip
BY_NAME = {c.name: c for c in COMMANDS}


def _help() -> str:
    """`regexp --help`: the command list comes from ``COMMANDS``."""
    width = max(len(f"{c.name} {c.args}") for c in COMMANDS) + 2
    listed = "".join(f"  {f'{c.name} {c.args}':<{width}}{c.summary}\n" for c in COMMANDS)
    return f"""\
usage: regexp <command> [args]

commands:
{listed}
`regexp <command> --help` says more; `regexp run --help` lists the config groups and the
full config. Your own recipes: `regexp run --config-dir DIR reg=mine` takes DIR/reg/*.yaml,
DIR/experiment/*.yaml, ... (so do check and list). Tab completion: see the README.

examples:
  regexp run reg=l1_activity
  regexp run -m reg=l1_activity reg.lam=1e-4,1e-3,1e-2 seed=0,1,2
  regexp run experiment=b4_l1_activity reg=none

Runs are written to outputs/YYYY-MM-DD/HH-MM-SS-<microseconds>_<name>/.
"""


MULTIRUN = ("-m", "--multirun")


def entry() -> None:
    """The ``regexp`` command (and ``python -m regexp``): ``main``, then the exit.

    Once TensorFlow is loaded, the interpreter's own teardown (freeing every module, then
    TensorFlow's C++ destructors) takes over a second, after everything is written. So
    the exit does what a normal one does that can matter (join the threads that are not
    daemons, as ``threading`` does at exit; run the ``atexit`` handlers: logging's
    flush, a writer process's join, tracking's end) and then leaves (``writer.leave``:
    the standard streams flushed, ``os._exit``), skipping only the teardown. An
    exception still takes the usual way out, traceback and all.
    """
    code = main()
    shutdown = getattr(threading, "_shutdown", None)  # what Python runs first at exit
    if "tensorflow" not in sys.modules or shutdown is None:
        raise SystemExit(code)
    import atexit

    from regexp.writer import leave

    shutdown()
    atexit._run_exitfuncs()
    leave(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_help(), end="")
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("-sc", "--shell-completion"):  # Hydra's completion calls `regexp -sc ...`
        if rest and rest[0].startswith("query="):
            return complete(rest[0].partition("=")[2])
        return run(argv)  # install=bash, uninstall=bash: Hydra's scripts
    if command in ("-V", "--version"):
        from regexp import __version__

        print(f"regexp {__version__}")
        return 0
    if command not in BY_NAME:
        import difflib

        close = difflib.get_close_matches(command, BY_NAME, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        accepted = ", ".join(BY_NAME)
        print(f"regexp: error: unknown command {command!r}{hint} (expected one of {accepted})",
              file=sys.stderr)  # fmt: skip
        return 2
    from importlib import import_module

    module, _, function = BY_NAME[command].call.partition(":")
    try:
        return getattr(import_module(module), function)(rest)
    except SystemExit as e:  # argparse's --help (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else int(e.code is not None)


def list_main(argv: list[str]) -> int:
    """``regexp list``: every config group's options, a user's folders' included."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="regexp list",
        description="Print every config group and its options (* = the default). Options "
        "from your own folders are listed after regexp's, with the folder.",
        epilog="The folders are the ones `regexp run` would search with the same flags: "
        "`regexp list --config-dir my_recipes` or `regexp list hydra.searchpath=[file://my_recipes]`.",
    )  # fmt: skip
    parser.add_argument("-cd", "--config-dir", metavar="DIR",
                        help="your own recipes: DIR/reg/*.yaml, DIR/experiment/*.yaml")  # fmt: skip
    parser.add_argument("searchpath", nargs="*", metavar="hydra.searchpath=[DIR,...]",
                        help="more recipe folders, as Hydra's override")  # fmt: skip
    args = parser.parse_args(argv)
    other = [a for a in args.searchpath if not a.lstrip("+").startswith("hydra.searchpath=")]
    if other:
        return _fail(UserError(f"list takes --config-dir DIR and hydra.searchpath=[DIR,...]; "
                               f"got {' '.join(other)}"))  # fmt: skip
    try:
        print(list_groups(args.config_dir, args.searchpath), end="")
    except UserError as e:
        return _fail(e)
    return 0


def list_groups(config_dir: str | Path | None = None, searchpath: list[str] = ()) -> str:
    """Each config group with its options, the default marked with ``*``; a user's options
    on a line of their own under their group, with their folder."""
    from omegaconf import OmegaConf

    from regexp import compose
    from regexp.paths import CONF as conf

    folder, _ = compose.config_dir(
        ["--config-dir", str(config_dir)] if config_dir is not None else []
    )
    defaults = {}
    for entry in OmegaConf.load(conf / "config.yaml").get("defaults", []):
        if hasattr(entry, "items"):
            defaults.update({str(k): v for k, v in entry.items()})
    lines = []
    for group, options in compose.group_options(folder, list(searchpath)).items():
        ours = [o.name for o in options if not o.users]
        marked = [f"{o}*" if o == defaults.get(group) else o for o in ours]
        lines.append(f"{group}: {' '.join(marked)}".rstrip())
        folders = dict.fromkeys(o.folder for o in options if o.users)
        for where in folders:
            shown = [o.name for o in options if o.users and o.folder == where and not o.hidden]
            hidden = [o.name for o in options if o.users and o.folder == where and o.hidden]
            if shown:
                lines.append(f"  yours, from {where}: {' '.join(shown)}")
            if hidden:
                lines.append(f"  hidden, from {where} (an earlier folder has the same name; "
                             f"rename yours): {' '.join(hidden)}")  # fmt: skip
    return "\n".join(lines) + "\n(* = default)\n"


CHECK_HELP = """\
usage: regexp check [--config-dir DIR] [-m] [overrides]

Compose and validate the config that `regexp run [overrides]` would train, then stop: no
training and no TensorFlow. With -m, every job of the sweep. --config-dir DIR and
hydra.searchpath=[DIR] add your own recipe folders, as for `regexp run`.

examples:
  regexp check experiment=b7_kl_sparsity reg.rho=0.1
  regexp check -m reg=l1_activity reg.lam=1e-4,1e-3
  regexp check --config-dir my_recipes reg=mine
"""


def check(overrides: list[str]) -> int:
    """Validate the config ``regexp run <overrides>`` would train, then stop."""
    from regexp.compose import precheck

    if any(a in ("-h", "--help") for a in overrides):
        print(CHECK_HELP, end="")
        return 0
    try:
        precheck(overrides, every_job=True)
    except UserError as e:
        return _fail(e)
    print("ok: the config composes and validates")
    return 0


def complete(shell: str) -> int:
    """Candidates for the word at the cursor, for Hydra's completion scripts (which call
    ``regexp -sc query=bash`` with the line in ``COMP_LINE``). The command name completes
    to commands; ``run`` and ``check`` to Hydra's config groups, options and keys, from
    the user's ``--config-dir`` and ``hydra.searchpath`` folders too; ``report``, ``show``,
    ``compare``, ``verify``, ``ls`` to folders. Never prints an error (the shell would
    show it in the middle of the line); ``HYDRA_COMP_DEBUG=1`` lets them through."""
    import os

    line = os.environ.get("COMP_LINE", "")
    try:
        line = line[: int(os.environ.get("COMP_POINT", len(line)))]
    except ValueError:
        pass
    words = line.split()
    current = "" if not line or line[-1].isspace() else words.pop()
    before = words[1:]  # after the program's name
    candidates: list[str] = []
    if not before:
        candidates = [c.name for c in COMMANDS if c.name.startswith(current)]
        if current.startswith("-"):
            candidates = [f for f in ("--help", "--version") if f.startswith(current)]
    elif before[0] in BY_NAME:
        command, given = BY_NAME[before[0]], before[1:]
        flag, eq, value = current.partition("=")
        if given and given[-1] in ("--config-dir", "-cd"):
            candidates = _paths(current, folders_only=True)
        elif eq and flag in ("--config-dir", "-cd", "--out", "--data"):
            candidates = [f"{flag}={p}" for p in _paths(value, folders_only=flag != "--data")]
        elif command.completes == OVERRIDES:
            return _complete_overrides(shell, words[0], given, current)
        elif command.completes in (FOLDERS, PATHS) and not current.startswith("-"):
            candidates = _paths(current, folders_only=command.completes == FOLDERS)
    print(("\n" if shell == "fish" else " ").join(candidates))
    return 0


def _complete_overrides(shell: str, program: str, given: list[str], current: str) -> int:
    """Hydra's own completion of config groups, options and keys, for the line without
    the command's name, searching the user's ``--config-dir`` folder too (Hydra reads
    ``hydra.searchpath`` from the line itself)."""
    import contextlib
    import io
    import os

    from regexp.compose import config_dir

    try:
        folder, _ = config_dir(given)
    except UserError:  # a folder still being typed, or gone: complete without it
        folder = None
    os.environ["COMP_LINE"] = " ".join([program, *given, current])
    os.environ.pop("COMP_POINT", None)
    extra = ["--config-dir", str(folder)] if folder is not None else []
    debug = os.environ.get("HYDRA_COMP_DEBUG") == "1"
    with contextlib.redirect_stderr(sys.stderr if debug else io.StringIO()):
        try:
            run(["-sc", f"query={shell}", *extra])
        except Exception:  # noqa: BLE001 - a half-typed line; nothing to offer
            if debug:
                raise
    return 0


def _paths(word: str, folders_only: bool) -> list[str]:
    """The files and folders (folders only, with ``folders_only``) whose path starts with
    ``word``; folders end with ``/``. Hidden ones only when ``word`` names them."""
    import os

    head, tail = os.path.split(word)
    try:
        entries = list(os.scandir(head or "."))
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.name.startswith(tail) or (entry.name[0] == "." and not tail[:1] == "."):
            continue
        try:
            folder = entry.is_dir()
        except OSError:
            continue
        if folder or not folders_only:
            found.append(os.path.join(head, entry.name) + ("/" if folder else ""))
    return sorted(found)


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

    from regexp import rundir, timing
    from regexp.compose import given, precheck
    from regexp.paths import CONF

    # -m may stand anywhere; Hydra's parser takes it only before the overrides
    args = [a for a in args if a in MULTIRUN] + [a for a in args if a not in MULTIRUN]
    try:
        with timing.phase("compose"):
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
        from regexp import writer

        # one run: its folder is written by a writer process, started now so that its
        # imports overlap TensorFlow's; a job of another launcher's sweep writes its own
        folders = writer.shared() if hc.mode == RunMode.RUN else None
        try:
            return pipeline.run(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), key,
                                folders)  # fmt: skip
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
        timing.dump()  # REGEXP_TIMING=FILE: the seconds per phase, for make bench
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
