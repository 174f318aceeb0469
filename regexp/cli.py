"""The ``regexp`` command. Only the ``run`` job imports TensorFlow, and only to train."""

from __future__ import annotations

import sys
from pathlib import Path

HELP = """\
usage: regexp <command> [args]

commands:
  run [overrides]     train one configuration; `run -m ...` sweeps (Hydra multirun).
                      `regexp run --help` lists the config groups and the full config.
  check [overrides]   compose and validate a config without training (no TensorFlow).
  list                print every config group and its options.
  report PATH...      tables, plots and statistics over runs (`report --help`).

examples:
  regexp run reg=l1_activity
  regexp run -m reg=l1_activity reg.lam=1e-4,1e-3,1e-2 seed=0,1,2
  regexp run experiment=b4_l1_activity reg=none

Runs are written to outputs/YYYY-MM-DD/HH-MM-SS-<microseconds>_<name>/.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run(rest)
    if command == "list":
        print(list_groups(), end="")
        return 0
    if command == "check":
        return check(rest)
    if command == "report":
        from regexp.report import main as report

        return report(rest)
    if command in ("-V", "--version"):
        from regexp import __version__

        print(f"regexp {__version__}")
        return 0
    print(f"regexp: error: unknown command {command!r}; expected run, check, list or report",
              file=sys.stderr)  # fmt: skip
    return 2


def list_groups() -> str:
    """Each config group with its options, the default marked with ``*``."""
    from omegaconf import OmegaConf

    from regexp.config import CONF as conf

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
    from hydra.errors import HydraException

    from regexp.config import compose, validate
    from regexp.errors import UserError

    try:
        plans = validate(compose(*overrides))
    except UserError as e:
        print(f"regexp: error: {e}", file=sys.stderr)
        return 2
    except HydraException as e:
        print(f"regexp: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"ok: {len(plans) - 1} hidden layers, config valid")
    return 0


def run(args: list[str]) -> int:
    """Hand the arguments to Hydra, which composes the config and calls the job."""
    import hydra
    from omegaconf import OmegaConf

    from regexp.config import CONF
    from regexp.rundir import run_name

    OmegaConf.register_new_resolver("run_name", run_name, replace=True)

    @hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
    def job(cfg) -> None:
        from hydra.core.hydra_config import HydraConfig

        from regexp.errors import UserError
        from regexp.run import train

        hc = HydraConfig.get()
        try:
            train(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
        except UserError as e:
            print(f"regexp: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    saved = sys.argv
    sys.argv = ["regexp run", *args]
    try:
        job()
    finally:
        sys.argv = saved
    return 0
