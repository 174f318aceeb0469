"""``make reproduce-all``: every source experiment and its baseline, over several seeds.

Each experiment in ``conf/experiment/`` runs at its full epochs with ``reg`` as published
and with ``reg=none``, for seeds 0..SEEDS-1. Seed s also draws split s
(``dataset.split_seed=s``): the sources' test sets of 38 and 75 points move by several
points with the split, so the split is part of the noise a claim must beat. A
regularized run and its baseline with the same seed share the split and the initial
draw, and are compared as a pair. Identical configs (B1, B4 and B5 share a baseline)
train once; everything trains through the fused engine.

The report (``report.md``, ``report.html``, ``report.csv``) has one section per
experiment: the published figures, our means with 95 % intervals, the paired
difference against the baseline, and a verdict under the rule stated in the report.

A *study* is a set of experiment files with no published figures and one
``experiment_name`` (the digits study: ``conf/experiment/digits_*.yaml``), one file per
arm. Its arms train at the same seeds and splits, and its section gives each arm's
mean and the paired difference from the arm without a regularizer (``reg.name=none``),
with intervals: effects, with no verdict, since there is no claim to check.

    python -m regexp.reproduce [--seeds N] [--out DIR] [--only a,b] [override ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from regexp.compose import compose
from regexp.errors import UserError
from regexp.keys import TRAINING, essential, run_name
from regexp.paths import CONF

log = logging.getLogger("regexp.reproduce")

VARIANTS = ("regularized", "baseline")
SUMMARY = [
    "experiment",
    "published_test_acc",
    "published_baseline_acc",
    "test_acc",
    "baseline_acc",
    "diff",
    "diff_lo",
    "diff_hi",
]
MARGIN = 0.02  # two accuracy points: the size of effect the sources call a gain

VERDICT_RULE = (
    "Verdict rule, fixed before any run. Let d be the paired difference in test accuracy "
    "(regularized - baseline, same seed and split) and [lo, hi] its 95 % t interval. "
    "A claimed gain (published regularized > published baseline) is *reproduced* if lo > 0, "
    "*not reproduced* if hi < the published gain (a gain that large is ruled out), and "
    "*inconclusive* otherwise. A claim of no change (equal published figures) is "
    f"*reproduced* if [lo, hi] lies within ±{MARGIN}, *not reproduced* if it lies wholly "
    f"outside ±{MARGIN}, *inconclusive* otherwise. Where the source published no baseline, "
    "the claim is its accuracy level: *reproduced* if it lies inside the 95 % interval of "
    "our mean test accuracy, *not reproduced* otherwise. Holm-adjusted p-values of the "
    "paired t-tests across the experiments are shown beside it."
)


def _files() -> list[Path]:
    return sorted((CONF / "experiment").glob("*.yaml"))


def experiments() -> list[str]:
    """The source experiments: the experiment files with published figures."""
    return [p.stem for p in _files() if OmegaConf.load(p).get("published")]


def studies() -> dict[str, list[str]]:
    """The studies: the other experiment files, by their ``experiment_name``."""
    found: dict[str, list[str]] = {}
    for name in sorted({p.stem for p in _files()} - set(experiments())):
        found.setdefault(str(compose(f"experiment={name}").experiment_name), []).append(name)
    return found


def plan_runs(names: list[str], seeds: int, overrides: list[str], out: Path, arms=()):
    """Every (experiment, variant, seed) -> run folder; the distinct configs to train.

    Each source experiment runs as published and with ``reg=none``; each study arm
    (``arms``) as it is, under the variant ``arm``."""
    where: dict[tuple[str, str, int], Path] = {}
    todo: dict[str, tuple[DictConfig, Path]] = {}
    plan = [(n, v, ["reg=none"] * (v == "baseline")) for n in names for v in VARIANTS]
    plan += [(arm, "arm", []) for arm in arms]
    for name, variant, extra in plan:
        base = compose(f"experiment={name}", *extra, *overrides)
        folder_name = name if variant == "arm" else run_name(name, base.reg.name)
        for seed in range(seeds):
            cfg = base.copy()
            with open_dict(cfg):
                cfg.seed = seed
                cfg.dataset.split_seed = seed
            key = json.dumps(essential(cfg, TRAINING), sort_keys=True)
            if key not in todo:
                todo[key] = (cfg, out / "runs" / folder_name / f"seed_{seed}")
            where[name, variant, seed] = todo[key][1]
    return where, list(todo.values())


def train_all(todo: list[tuple[DictConfig, Path]]) -> None:
    """Train the distinct configs through the pipeline, in fused groups, and write their
    folders."""
    from regexp import pipeline

    planned = [pipeline.plan(cfg, folder, fused=True) for cfg, folder in todo]
    pending = pipeline.claim(planned, "--out")
    groups = pipeline.to_train(pipeline.groups(planned), pending)
    for i, group in enumerate(groups, start=1):
        cfg0 = group[0].cfg
        name = run_name(cfg0.experiment_name, cfg0.reg.name)
        log.info("group %d/%d: %s, %d runs", i, len(groups), name, len(group))
        trained = pipeline.train(group)
        with pipeline.interrupts_deferred():
            for index, job in enumerate(group):
                if job in pending:
                    trained.write(index)
        if trained.interrupted:
            raise KeyboardInterrupt


def verdict(pub: dict, diff: tuple[float, float, float], level: tuple) -> str:
    """The rule in VERDICT_RULE, applied to one experiment."""
    mean, lo, hi = diff
    if any(math.isnan(v) for v in (lo, hi)):
        return "inconclusive (one seed)"
    if pub.get("baseline_test_acc") is None:
        _, low, high = level
        return "reproduced" if low <= pub["test_acc"] <= high else "not reproduced"
    gain = pub["test_acc"] - pub["baseline_test_acc"]
    if gain > 0:
        return "reproduced" if lo > 0 else "not reproduced" if hi < gain else "inconclusive"
    if -MARGIN < lo and hi < MARGIN:
        return "reproduced"
    return "not reproduced" if lo >= MARGIN or hi <= -MARGIN else "inconclusive"


def analyse(names: list[str], seeds: int, where: dict, out: Path, chosen: dict | None = None):
    """The report: a summary table and one section per experiment, then one per study
    (``chosen``: study name -> its arms)."""
    from regexp import plots, stats
    from regexp.report import Document, Group, load_run

    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    doc = Document(f"Reproduction of the source experiments over {seeds} seeds", out)
    if names:
        doc.text(VERDICT_RULE)
    rows, sections = [], []
    for name in names:
        cfg = compose(f"experiment={name}")
        pub = OmegaConf.to_container(cfg.published)
        runs = {v: [load_run(where[name, v, s]) for s in range(seeds)] for v in VARIANTS}
        groups = {v: Group({}, runs[v], label=v) for v in VARIANTS}
        acc = {v: groups[v].values("test_accuracy") for v in VARIANTS}
        level = stats.mean_ci(acc["regularized"])
        base_level = stats.mean_ci(acc["baseline"])
        p = stats.paired(acc["regularized"], acc["baseline"])
        loss = stats.paired(
            groups["regularized"].values("test_data_loss"),
            groups["baseline"].values("test_data_loss"),
        )
        rows.append(
            {
                "experiment": name,
                "published_test_acc": pub.get("test_acc"),
                "published_baseline_acc": pub.get("baseline_test_acc"),
                "test_acc": level[0],
                "test_acc_lo": level[1],
                "test_acc_hi": level[2],
                "baseline_acc": base_level[0],
                "baseline_lo": base_level[1],
                "baseline_hi": base_level[2],
                "diff": p.mean_diff,
                "diff_lo": p.low,
                "diff_hi": p.high,
                "p_t": p.p_t,
                "p_wilcoxon": p.p_wilcoxon,
                "d_z": p.d_z,
                "data_loss_diff": loss.mean_diff,
                "data_loss_lo": loss.low,
                "data_loss_hi": loss.high,
                "verdict": verdict(pub, (p.mean_diff, p.low, p.high), level),
            }
        )
        sections.append((name, cfg, pub, groups, runs))
    table = pd.DataFrame(rows).reindex(columns=[*SUMMARY, "p_t", "verdict"])
    table.insert(table.columns.get_loc("p_t") + 1, "p_t_holm", stats.holm(table["p_t"]))
    table.to_csv(out / "report.csv", index=False)
    if rows:
        doc.heading("Summary")
        doc.table(table[SUMMARY + ["p_t_holm", "verdict"]])

    for (name, cfg, pub, groups, runs), row in zip(sections, rows, strict=True):
        doc.heading(f"{name}: {pub.get('source', '')}")
        published = ", ".join(f"{k} {v}" for k, v in pub.items() if k != "source")
        doc.text(f"Published: {published}.")
        doc.text(
            f"Ours over {seeds} seeds and splits: regularized test accuracy "
            f"{row['test_acc']:.4f} [{row['test_acc_lo']:.4f}, {row['test_acc_hi']:.4f}], "
            f"baseline {row['baseline_acc']:.4f} [{row['baseline_lo']:.4f}, "
            f"{row['baseline_hi']:.4f}]. Paired difference {row['diff']:+.4f} "
            f"[{row['diff_lo']:+.4f}, {row['diff_hi']:+.4f}], paired t p = {row['p_t']:.3g}, "
            f"Wilcoxon p = {row['p_wilcoxon']:.3g}, d_z = {row['d_z']:.3g}; test data loss "
            f"difference {row['data_loss_diff']:+.4f} [{row['data_loss_lo']:+.4f}, "
            f"{row['data_loss_hi']:+.4f}]. Verdict: {row['verdict']}."
        )
        panels = [
            ("baseline (reg=none)", [groups["baseline"]]),
            (f"regularized (reg={cfg.reg.name})", [groups["regularized"]]),
        ]
        if name.startswith("a"):
            path = figures / f"{name}_accuracy.png"
            plots.side_by_side(panels, ("accuracy", "val_accuracy"), path, "accuracy")
            doc.image(path, "train (solid) and validation (dashed) accuracy, mean and 95 % band")
            doc.table(_gap_at(groups, 75))
        else:
            path = figures / f"{name}_loss.png"
            plots.side_by_side(panels, ("loss", "val_loss"), path, "loss (with penalty)")
            doc.image(path, "train (solid) and validation (dashed) loss, mean and 95 % band")
        if "rho" in cfg.reg:
            last = f"h{cfg.model.depth}"
            values = np.concatenate([r.activations[last].ravel() for r in runs["regularized"]])
            path = figures / f"{name}_activations.png"
            plots.pooled_histogram(
                values,
                float(cfg.reg.rho),
                path,
                f"{last} activations on test, {seeds} seeds pooled",
            )
            doc.image(
                path,
                f"the KL layer's activations; the source's mean should approach "
                f"rho = {cfg.reg.rho}",
            )
    for study, arms in (chosen or {}).items():
        study_section(doc, study, arms, seeds, where, out)
    doc.write()
    return table


STUDY = ["arm", "n", "test_accuracy", "lo", "hi", "diff", "diff_lo", "diff_hi", "p_t", "p_t_holm",
         "data_loss_diff", "data_loss_lo", "data_loss_hi"]  # fmt: skip


def study_section(doc, study: str, arms: list[str], seeds: int, where: dict, out: Path):
    """A study's section: each arm's mean test accuracy (R² for a regression study: the
    task's primary metric) and its paired difference from the arm without a
    regularizer, with 95 % intervals and Holm-adjusted p-values; no verdict. Also
    written to ``study_<name>.csv``."""
    from regexp import plots, stats
    from regexp.report import Group, load_run

    groups = {a: Group({}, [load_run(where[a, "arm", s]) for s in range(seeds)], label=a)
              for a in arms}  # fmt: skip
    bases = [a for a, g in groups.items() if g.runs[0].config.get("reg.name") == "none"]
    if len(bases) != 1:
        raise UserError(f"study {study}: needs exactly one arm with reg.name=none, has {bases}")
    base = groups[bases[0]]
    score = f"test_{base.kind.primary}"  # test_accuracy; test_r2
    rows = []
    for arm, g in groups.items():
        mean, lo, hi = stats.mean_ci(g.values(score))
        row = {"arm": arm, "n": len(g.runs), score: mean, "lo": lo, "hi": hi}
        if g is not base:
            d = stats.paired(g.values(score), base.values(score))
            loss = stats.paired(g.values("test_data_loss"), base.values("test_data_loss"))
            row.update(diff=d.mean_diff, diff_lo=d.low, diff_hi=d.high, p_t=d.p_t,
                       data_loss_diff=loss.mean_diff, data_loss_lo=loss.low,
                       data_loss_hi=loss.high)  # fmt: skip
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=[score if c == "test_accuracy" else c
                                                for c in STUDY])  # fmt: skip
    table["p_t_holm"] = stats.holm(table["p_t"])
    table.to_csv(out / f"study_{study}.csv", index=False)
    doc.heading(f"Study {study}: no published claim")
    doc.text(
        f"{len(arms)} arms over {seeds} seeds, each seed with its own split. diff = arm - "
        f"{bases[0]} in {score.replace('_', ' ')}, paired by seed, with its 95 % t interval "
        "and the "
        "Holm-adjusted paired t p-value across the arms; data_loss_diff likewise for the "
        "test data loss. Effects and intervals only: there is no claim to give a verdict on."
    )
    doc.table(table)
    path = out / "figures" / f"study_{study}_loss.png"
    plots.curve_bands(list(groups.values()), ("data_loss", "val_data_loss"), path, "data loss")
    doc.image(path, "data loss per epoch: train solid, validation dashed, mean and 95 % band")


def _gap_at(groups: dict, epoch: int) -> pd.DataFrame:
    """Source A's second claim: the train-validation accuracy gap at an epoch."""
    from regexp import stats

    rows = []
    for variant, g in groups.items():
        gaps = [
            float(r.history["accuracy"].iloc[epoch - 1] - r.history["val_accuracy"].iloc[epoch - 1])
            for r in g.runs
            if len(r.history) >= epoch
        ]
        mean, lo, hi = stats.mean_ci(gaps)
        rows.append({"variant": variant, f"gap_at_epoch_{epoch}": mean, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m regexp.reproduce", description=__doc__)
    parser.add_argument("--seeds", type=int, default=10, help="seeds (and splits) per variant")
    parser.add_argument("--out", type=Path, help="folder for the runs and the report")
    parser.add_argument("--only", help="comma-separated experiment names (default: all)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", stream=sys.stdout)
    logging.getLogger("regexp.run").setLevel(logging.WARNING)
    logging.getLogger("regexp.fused").setLevel(logging.WARNING)

    names, chosen = experiments(), studies()
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names) - set(chosen))
        if unknown:
            print(
                f"regexp: error: --only {unknown[0]!r} is not an experiment or a study; "
                "expected one of " + ", ".join([*names, *chosen]),
                file=sys.stderr,
            )
            return 2
        names = [n for n in names if n in wanted]
        chosen = {k: v for k, v in chosen.items() if k in wanted}
    if args.seeds < 1:
        print(f"regexp: error: --seeds={args.seeds}; expected an integer >= 1", file=sys.stderr)
        return 2
    out = args.out or Path("outputs/reproduce") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        arms = [arm for group in chosen.values() for arm in group]
        where, todo = plan_runs(names, args.seeds, args.overrides, out, arms)
        log.info(
            "%d experiments x 2 variants and %d study arms, x %d seeds: %d distinct runs",
            len(names),
            len(arms),
            args.seeds,
            len(todo),
        )
        train_all(todo)
        table = analyse(names, args.seeds, where, out, chosen)
    except UserError as e:
        print(f"regexp: error: {e}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        if len(table):
            print(table[SUMMARY + ["verdict"]].to_string(index=False))
        for study in chosen:
            print(f"\nstudy {study}:")
            print(pd.read_csv(out / f"study_{study}.csv").to_string(index=False))
    print(
        f"\n{len(todo)} runs in {time.perf_counter() - start:.0f} s; "
        f"report in {out}/report.md, report.html and report.csv"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
