"""``make reproduce-all``: every source experiment and its ``reg=none`` baseline, once.

Each experiment in ``conf/experiment/`` is run at its full epochs with ``seed=0``, then
again with ``reg=none``. Baselines whose resolved configs are identical (B1, B4 and B5
share one) are trained once. The table of published against measured figures is
printed and written as ``reproduce.csv`` and ``reproduce.md`` beside the run folders.

    python -m regexp.reproduce [--out DIR] [--only a,b] [override ...]

Extra overrides apply to every run, e.g. ``trainer.epochs=2`` for a quick smoke test.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from regexp.config import CONF, compose
from regexp.errors import UserError
from regexp.rundir import run_name

log = logging.getLogger("regexp.reproduce")

COLUMNS = [
    "experiment", "variant", "published_test_acc", "measured_test_acc",
    "published_train_acc", "measured_train_acc", "test_data_loss", "run",
]  # fmt: skip


def experiments() -> list[str]:
    return sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _identity(cfg: DictConfig) -> str:
    """What makes two runs the same training: the config minus names and citations."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("experiment_name", None)
    plain.pop("published", None)
    return OmegaConf.to_yaml(OmegaConf.create(plain))


def reproduce(names: list[str], out: Path, overrides: list[str]) -> list[dict]:
    """Run each experiment and its baseline; return the table rows."""
    from regexp.run import train

    done: dict[str, tuple[Path, dict]] = {}
    rows = []
    for name in names:
        for variant in ("regularized", "baseline"):
            extra = ["reg=none"] if variant == "baseline" else []
            cfg = compose(f"experiment={name}", *extra, *overrides)
            key = _identity(cfg)
            if key not in done:
                run_dir = out / run_name(cfg.experiment_name, cfg.reg.name)
                log.info("running %s (%s) -> %s", name, variant, run_dir)
                done[key] = (run_dir, train(cfg, run_dir, [f"experiment={name}", *extra]))
            run_dir, m = done[key]
            pub = cfg.published
            prefix = "" if variant == "regularized" else "baseline_"
            rows.append(
                {
                    "experiment": name,
                    "variant": f"{variant} (reg={cfg.reg.name})",
                    "published_test_acc": pub.get(f"{prefix}test_acc"),
                    "measured_test_acc": round(m["test_accuracy"], 4),
                    "published_train_acc": pub.get(f"{prefix}train_acc"),
                    "measured_train_acc": round(m["train_accuracy"], 4),
                    "test_data_loss": round(m["test_data_loss"], 4),
                    "run": run_dir.name,
                }
            )
    return rows


def write_table(rows: list[dict], out: Path) -> str:
    import pandas as pd

    table = pd.DataFrame(rows, columns=COLUMNS)
    table.to_csv(out / "reproduce.csv", index=False)
    shown = table.astype(object).where(table.notna(), "-")
    header = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in shown.values)
    markdown = (
        "# Reproduction of the source experiments (one run each, seed 0)\n\n"
        "Accuracies are fractions; test data loss is the cross-entropy without penalties.\n"
        "A dash means the source published no figure for that row.\n\n" + header + body
    )
    (out / "reproduce.md").write_text(markdown)
    return header + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m regexp.reproduce", description=__doc__)
    parser.add_argument("--out", type=Path, help="folder for the runs and the table")
    parser.add_argument("--only", help="comma-separated experiment names (default: all)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", stream=sys.stdout)

    names = experiments()
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            print(f"regexp: error: --only {unknown[0]!r} is not an experiment; expected one of "
                  + ", ".join(names), file=sys.stderr)  # fmt: skip
            return 2
        names = [n for n in names if n in wanted]
    out = args.out or Path("outputs/reproduce") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    out.mkdir(parents=True, exist_ok=True)
    try:
        rows = reproduce(names, out, args.overrides)
    except UserError as e:
        print(f"regexp: error: {e}", file=sys.stderr)
        return 2
    print(write_table(rows, out), end="")
    print(f"\nwritten to {out}/reproduce.csv and reproduce.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
