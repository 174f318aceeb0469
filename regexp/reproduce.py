"""``make reproduce-all``: every source experiment and its baseline, over several seeds,
each verdict checked on as many more.

Each experiment in ``conf/experiment/`` runs at its full epochs with ``reg`` as published
and with ``reg=none``, for seeds 0..SEEDS-1, which decide the verdicts, and for seeds
SEEDS..SEEDS+REPLICATE-1, which check them (``--replicate``; as many as ``--seeds`` by
default). Seed s also draws split s (``dataset.split_seed=s``): the sources' test sets of
38 and 75 points move by several points with the split, so the split is part of the
noise a claim must beat. A regularized run and its baseline with the same seed share the
split and the initial draw, and are compared as a pair. Identical configs (B1, B4 and B5
share a baseline) train once; everything trains through the fused engine.

The report (``report.md``, ``report.html``, ``report.csv``) has one section per
experiment: the published figures, our means with 95 % intervals, the paired
comparison against the baseline (``report.comparisons``), a verdict on the claim under
the rule stated in the report, and whether it replicates.

A *study* is a set of experiment files with no published figures and one
``experiment_name`` (the digits study: ``conf/experiment/digits_*.yaml``), one file per
arm. Its arms train at the same seeds and splits, and its section gives each arm's
mean and its paired comparison with the arm without a regularizer (``reg.name=none``):
differences with intervals, verdicts as ``regexp report`` gives them, and their
replication.

    python -m regexp.reproduce [--seeds N] [--replicate N] [--out DIR] [--only a,b] [override ...]
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
from regexp.stats import ALPHA

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
MARGIN = 0.02  # two accuracy points: the size of effect the sources call a gain, and the
# smallest effect of interest of test accuracy in their comparisons

VERDICT_RULE = (
    "Verdict rule, fixed before any run. Each experiment compares the regularized variant "
    "with the baseline, paired by seed and split, on test accuracy and test data loss: a "
    "family of two comparisons, decided by the paired sign-flip test and TOST as the "
    f"report's verdicts are (better, worse, equivalent within ±{MARGIN} of accuracy, "
    "inconclusive, too few seeds). A claimed gain (published regularized > published "
    "baseline) is reproduced if the accuracy verdict is better, not reproduced if it is "
    "equivalent or worse or the one-sided sign-flip test puts the difference below the "
    "published gain (p < 0.05: a gain that large is ruled out), and inconclusive "
    "otherwise. A claim of no change (equal published figures) is reproduced if "
    "equivalent, not reproduced if better or worse, "
    "inconclusive otherwise. Where the source published no baseline, the claim is its "
    "accuracy level: reproduced if it lies inside the 95 % interval of our mean test "
    "accuracy, not reproduced otherwise. replication: the claim's verdict checked on "
    "new seeds, each with its own split (the comparison's verdict by a one-sided test in "
    "its direction or by TOST; a level inside the new seeds' interval)."
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
    folders (``pipeline.train_all``)."""
    from regexp import pipeline

    pipeline.train_all(todo, "--out")


def claim_verdict(pub: dict, row: dict, level: tuple) -> str:
    """The rule in VERDICT_RULE, applied to one experiment: ``row`` is its test-accuracy
    comparison (``report.comparisons``) with ``p_below_gain``, the one-sided sign-flip
    test that the difference lies below the published gain; ``level`` our regularized
    accuracy's ``(mean, low, high)``."""
    if pub.get("baseline_test_acc") is None:
        _, low, high = level
        if any(math.isnan(v) for v in (low, high)):
            return "inconclusive (one seed)"
        return "reproduced" if low <= pub["test_acc"] <= high else "not reproduced"
    found = str(row["verdict"]).split(",")[0]
    gain = pub["test_acc"] - pub["baseline_test_acc"]
    if gain > 0:
        if found == "better":
            return "reproduced"
        ruled_out = found in ("equivalent", "worse") or row["p_below_gain"] < ALPHA
        return "not reproduced" if ruled_out else "inconclusive"
    if found == "equivalent":
        return "reproduced"
    return "not reproduced" if found in ("better", "worse") else "inconclusive"


def claim_replication(pub: dict, row: dict, replica_level: tuple | None) -> str | None:
    """Whether the claim's verdict holds on the replication seeds: the replication of its
    comparison's verdict, or for a level, the level inside the replication's interval.
    None without a replication, or for an inconclusive comparison."""
    if replica_level is None:
        return None
    if pub.get("baseline_test_acc") is None:
        _, low, high = replica_level
        return "replicated" if low <= pub["test_acc"] <= high else "not replicated"
    replication = row.get("replication")
    return replication if isinstance(replication, str) else None


def analyse(names: list[str], seeds: int, where: dict, out: Path, chosen: dict | None = None,
            replicas: int = 0):  # fmt: skip
    """The report: a summary table and one section per experiment, then one per study
    (``chosen``: study name -> its arms). Seeds ``0..seeds-1`` decide the verdicts, and
    ``seeds..seeds+replicas-1`` (each with its own split) check them."""
    from regexp import plots, stats
    from regexp.report import Document, Group, MinEffect, comparisons, load_run, replicated

    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    doc = Document(f"Reproduction of the source experiments over {seeds} seeds"
                   + (f", checked on {replicas} more" if replicas else ""), out)  # fmt: skip
    if names:
        doc.text(VERDICT_RULE)
    rows, sections = [], []
    discovery, replication = range(seeds), range(seeds, seeds + replicas)
    for name in names:
        cfg = compose(f"experiment={name}")
        pub = OmegaConf.to_container(cfg.published)

        def group(variant, among, name=name):
            return Group({}, [load_run(where[name, variant, s]) for s in among], label=variant)

        groups = {v: group(v, discovery) for v in VARIANTS}
        table = comparisons([(groups["regularized"], groups["baseline"])],
                            {"test_accuracy": MinEffect(MARGIN)})  # fmt: skip
        replicas_of = {v: group(v, replication) for v in VARIANTS} if replicas else None
        if replicas_of:
            pair = (replicas_of["regularized"], replicas_of["baseline"])
            table = replicated(table, [pair] * len(table))
        acc, loss = (table[table["metric"] == m].iloc[0].to_dict()
                     for m in ("test_accuracy", "test_data_loss"))  # fmt: skip
        gain = (pub["test_acc"] - pub["baseline_test_acc"]
                if pub.get("baseline_test_acc") is not None else math.nan)  # fmt: skip
        d = groups["regularized"].values("test_accuracy") - groups["baseline"].values(
            "test_accuracy"
        )  # the same seeds, in order
        acc["p_below_gain"] = stats.sign_flip(d - gain, "less")[0] if gain > 0 else math.nan
        level = stats.mean_ci(groups["regularized"].values("test_accuracy"))
        base_level = stats.mean_ci(groups["baseline"].values("test_accuracy"))
        replica_level = (stats.mean_ci(replicas_of["regularized"].values("test_accuracy"))
                         if replicas_of else None)  # fmt: skip
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
                "diff": acc["mean_diff"],
                "diff_lo": acc["ci_low"],
                "diff_hi": acc["ci_high"],
                "p": acc["p"],
                "p_holm": acc["p_holm"],
                "p_equivalence_holm": acc["p_equivalence_holm"],
                "p_below_gain": acc["p_below_gain"],
                "accuracy_verdict": acc["verdict"],
                "data_loss_diff": loss["mean_diff"],
                "data_loss_lo": loss["ci_low"],
                "data_loss_hi": loss["ci_high"],
                "data_loss_verdict": loss["verdict"],
                "note": acc["note"],
                "verdict": claim_verdict(pub, acc, level),
                "replication": claim_replication(pub, acc, replica_level),
            }
        )
        sections.append((name, cfg, pub, groups, table))
    table = pd.DataFrame(rows).reindex(columns=[*SUMMARY, "p_holm", "accuracy_verdict",
                                                "verdict", "replication"])  # fmt: skip
    pd.DataFrame(rows).to_csv(out / "report.csv", index=False)
    if rows:
        doc.heading("Summary")
        doc.table(table)

    for (name, cfg, pub, groups, compared), row in zip(sections, rows, strict=True):
        doc.heading(f"{name}: {pub.get('source', '')}")
        published = ", ".join(f"{k} {v}" for k, v in pub.items() if k != "source")
        doc.text(f"Published: {published}.")
        doc.text(
            f"Ours over {seeds} seeds and splits: regularized test accuracy "
            f"{row['test_acc']:.4f} [{row['test_acc_lo']:.4f}, {row['test_acc_hi']:.4f}], "
            f"baseline {row['baseline_acc']:.4f} [{row['baseline_lo']:.4f}, "
            f"{row['baseline_hi']:.4f}]. Paired difference {row['diff']:+.4f} "
            f"[{row['diff_lo']:+.4f}, {row['diff_hi']:+.4f}] ({row['accuracy_verdict']}"
            f"{'; ' + row['note'] if row['note'] else ''}); test data loss difference "
            f"{row['data_loss_diff']:+.4f} [{row['data_loss_lo']:+.4f}, "
            f"{row['data_loss_hi']:+.4f}] ({row['data_loss_verdict']}). "
            f"Verdict: {row['verdict']}"
            + (f", {row['replication']} on seeds {seeds}..{seeds + replicas - 1}."
               if row["replication"] else ".")
        )  # fmt: skip
        doc.table(compared)
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
            kl_runs = groups["regularized"].runs
            values = np.concatenate([r.activations[last].ravel() for r in kl_runs])
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
        study_section(doc, study, arms, seeds, where, out, replicas)
    doc.write()
    return table


STUDY = ["arm", "n", "test_accuracy", "lo", "hi", "diff", "diff_lo", "diff_hi", "p_holm",
         "verdict", "data_loss_diff", "data_loss_lo", "data_loss_hi", "data_loss_verdict",
         "replication", "data_loss_replication"]  # fmt: skip


def study_section(doc, study: str, arms: list[str], seeds: int, where: dict, out: Path,
                  replicas: int = 0):  # fmt: skip
    """A study's section: each arm's mean test accuracy (R² for a regression study: the
    task's primary metric) and its paired difference from the arm without a regularizer
    in it and in the test data loss, with 95 % intervals, adjusted p-values and verdicts
    (``report.comparisons``; the family is the study's arms and both numbers), each
    checked on the replication seeds. Also written to ``study_<name>.csv``; every
    comparison in full to ``study_<name>_comparisons.csv``."""
    from regexp import plots, stats
    from regexp.report import Group, comparisons, load_run, replicated

    def arm_groups(among):
        return {a: Group({}, [load_run(where[a, "arm", s]) for s in among], label=a)
                for a in arms}  # fmt: skip

    groups = arm_groups(range(seeds))
    bases = [a for a, g in groups.items() if g.runs[0].config.get("reg.name") == "none"]
    if len(bases) != 1:
        raise UserError(f"study {study}: needs exactly one arm with reg.name=none, has {bases}")
    base = groups[bases[0]]
    score = f"test_{base.kind.primary}"  # test_accuracy; test_r2
    pairs = [(g, base) for g in groups.values() if g is not base]
    compared = comparisons(pairs)
    if replicas:
        again = arm_groups(range(seeds, seeds + replicas))
        by_label = {g.label: (again[g.label], again[bases[0]]) for g, _ in pairs}
        compared = replicated(compared, [by_label[label] for label in compared["group"]])
    compared.to_csv(out / f"study_{study}_comparisons.csv", index=False)
    found = {(c["group"], c["metric"]): c for c in compared.to_dict("records")}
    rows = []
    for arm, g in groups.items():
        mean, lo, hi = stats.mean_ci(g.values(score))
        row = {"arm": arm, "n": len(g.runs), score: mean, "lo": lo, "hi": hi}
        if g is not base:
            d, loss = found[arm, score], found[arm, "test_data_loss"]
            row.update(diff=d["mean_diff"], diff_lo=d["ci_low"], diff_hi=d["ci_high"],
                       p_holm=d["p_holm"], verdict=d["verdict"],
                       data_loss_diff=loss["mean_diff"], data_loss_lo=loss["ci_low"],
                       data_loss_hi=loss["ci_high"], data_loss_verdict=loss["verdict"],
                       replication=d.get("replication"),
                       data_loss_replication=loss.get("replication"))  # fmt: skip
        rows.append(row)
    columns = [score if c == "test_accuracy" else c for c in STUDY]
    columns = [c for c in columns if replicas or "replication" not in c]
    table = pd.DataFrame(rows).reindex(columns=columns)
    table.to_csv(out / f"study_{study}.csv", index=False)
    doc.heading(f"Study {study}: no published claim")
    doc.text(
        f"{len(arms)} arms over {seeds} seeds, each seed with its own split"
        + (f", and {replicas} more seeds to check each verdict" if replicas else "")
        + f". diff = arm - {bases[0]} in {score.replace('_', ' ')}, paired by seed, with its "
        "95 % t interval; data_loss_diff likewise for the test data loss. "
        + verdict_rule_of(base, f"the study's {len(compared)} comparisons (its arms and "
                                "both test numbers)")
    )  # fmt: skip
    doc.table(table)
    doc.table(compared, title=f"Study {study}: every comparison")
    path = out / "figures" / f"study_{study}_loss.png"
    plots.curve_bands(list(groups.values()), ("data_loss", "val_data_loss"), path, "data loss")
    doc.image(path, "data loss per epoch: train solid, validation dashed, mean and 95 % band")


def verdict_rule_of(group, family: str) -> str:
    from regexp.report import verdict_rule

    return verdict_rule([group.kind], family)


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
    parser.add_argument("--replicate", type=int, metavar="SEEDS",
                        help="more seeds (and splits) that check every verdict (default: as "
                        "many as --seeds; 0: none)")  # fmt: skip
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
    replicas = args.seeds if args.replicate is None else args.replicate
    if replicas < 0:
        print(f"regexp: error: --replicate={replicas}; expected an integer >= 0",
              file=sys.stderr)  # fmt: skip
        return 2
    out = args.out or Path("outputs/reproduce") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        arms = [arm for group in chosen.values() for arm in group]
        where, todo = plan_runs(names, args.seeds + replicas, args.overrides, out, arms)
        log.info(
            "%d experiments x 2 variants and %d study arms, x %d + %d seeds: %d distinct runs",
            len(names),
            len(arms),
            args.seeds,
            replicas,
            len(todo),
        )
        train_all(todo)
        table = analyse(names, args.seeds, where, out, chosen, replicas)
    except UserError as e:
        print(f"regexp: error: {e}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        if len(table):
            print(table[SUMMARY + ["verdict", "replication"]].to_string(index=False))
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
