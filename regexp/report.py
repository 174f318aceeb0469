"""``regexp report PATH...``: runs aggregated into tables, plots and statistics.

Runs are grouped by recipe: the penalties each layer actually carries (the layer plan,
so ``reg.lam`` counts only where something uses it), the label smoothing, and the rest
of the resolved config, minus what only tells runs of one recipe apart (``keys.REPORT``:
the seed, the split seed and the bookkeeping of ``keys.BOOKKEEPING``). A (seed, split)
repeated within a group counts once, and the report says so (loudly when the repeats'
numbers differ).
Per group: n, and the mean with a 95 % t interval of the test numbers of its task
(``Kind.scores``: accuracy and data loss; R², MAE and data loss for regression), the
best validation data loss and the train-validation gap of the primary metric (accuracy;
R²); the mean epoch of the best validation data loss. With ``--baseline KEY=VALUE``,
every other group is compared with the baseline group of its task that agrees with it
outside KEY's section (``reg`` for ``reg.name=none``), paired by (seed, split seed)
(``comparisons``): the mean difference with its 95 % t interval, the exact paired
sign-flip test and the equivalence test (TOST) within a smallest effect of interest,
adjusted over the report's family, and a verdict (``decide``); ``--replicate`` checks
each verdict on new seeds (``replicated``).

The group table (``report.csv``, the page's first table) has, per group, its label,
one column per config key that tells groups apart (``reg.name``, ``reg.lam``, ...: the
keys of the labels; a ``reg`` knob the recipe ignores is left empty), ``n``, each number
with its interval, and with ``--baseline`` the group's paired comparison: ``baseline``,
and per compared number ``X_diff`` with its interval, ``X_p_holm`` and ``X_verdict``.

Writes ``report.md``, ``report.html`` (self-contained: images embedded), ``report.csv``,
``runs.csv`` (``regexp.runs(PATH..., status=None)``: every run folder, one row each) and
with ``--baseline`` ``comparisons.csv`` (every comparison in full) into ``--out``, or
``<PATH>/report`` for a single folder. Never imports TensorFlow, but for ``--replicate``,
which trains.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import html
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from regexp import results, rundir, stats, tasks
from regexp.errors import UserError
from regexp.keys import LATER, REPORT, covered, flatten

SETUP = ("dataset", "model", "optimizer", "trainer")  # a baseline matches these, or at least
NETWORK = ("dataset", "model")  # these


def compared(kind: tasks.Kind) -> tuple[str, ...]:
    """The numbers groups are compared on: ``test_accuracy``, ``test_data_loss``; or
    ``test_r2``, ``test_mae``, ``test_data_loss``."""
    return kind.of_split("test")


def shown(kind: tasks.Kind) -> tuple[str, ...]:
    """The numbers of a group's row, each with its 95 % interval."""
    return (*compared(kind), "best_val_data_loss", "gap")


def complete_keys(kind: tasks.Kind) -> tuple[str, ...]:
    """What a completed run's ``metrics.json`` must hold for its row."""
    return (*compared(kind), f"train_{kind.primary}", f"val_{kind.primary}")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flattened: {"reg.lam": 0.01, ...}
    metrics: dict[str, Any]
    history: pd.DataFrame
    recipe: str  # what trains: the layer plan, the smoothing and everything outside reg

    @functools.cached_property
    def activations(self) -> dict[str, np.ndarray]:
        """Each hidden layer's output on the test split ({} if the run has none)."""
        return rundir.read_activations(self.path)

    @property
    def kind(self) -> tasks.Kind:
        """Its task's kind: its config's ``dataset.task``, else the one its data summary
        records; classification when neither says."""
        data = self.metrics.get("data")
        recorded = data.get("task") if isinstance(data, dict) else None
        return tasks.kind_named(self.config.get("dataset.task") or recorded)

    @property
    def pair_key(self) -> tuple:
        return self.config.get("seed"), self.config.get("dataset.split_seed")

    def value(self, name: str) -> float:
        """A run-level number: a ``metrics.json`` key or one derived from the history."""
        if name == "best_val_data_loss":
            return float(self.history["val_data_loss"].min())
        if name == "best_epoch":
            return float(self.history.loc[self.history["val_data_loss"].idxmin(), "epoch"])
        if name == "gap":  # of the primary metric: accuracy, R²
            primary = self.kind.primary
            return float(self.metrics[f"train_{primary}"] - self.metrics[f"val_{primary}"])
        return float(self.metrics[name])


@dataclass
class Group:
    config: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    label: str = ""
    keys: dict[str, Any] = field(default_factory=dict)  # the label's keys and their values
    # (kept, repeat): runs of the same recipe, seed and split as a run of the group, which
    # count once (the first folder in path order is kept)
    repeats: list[tuple[Run, Run]] = field(default_factory=list)

    @property
    def kind(self) -> tasks.Kind:
        return self.runs[0].kind  # one dataset config, so one task

    def values(self, name: str) -> np.ndarray:
        return np.array([r.value(name) for r in self.runs])


def find_runs(paths: list[str]) -> list[Path]:
    """Run folders with a ``metrics.json`` at or under each path or glob."""
    found = rundir.find_runs(paths)
    if not found:
        raise UserError(
            f"report: no runs under {' '.join(paths)}; expected run or sweep folders "
            "containing metrics.json"
        )
    return found


def load_run(path: Path) -> Run:
    from dataclasses import asdict

    from regexp.plan import layer_plan

    cfg = rundir.read_config(path)
    try:
        config = flatten(OmegaConf.to_container(cfg))
        plans = [asdict(p) for p in layer_plan(cfg)]
    except Exception as e:  # a partial or hand-edited config
        raise UserError(f"{path / rundir.CONFIG}: not a whole run config ({e})") from None
    # what trains outside reg: not the bookkeeping (keys.REPORT), and not a key added to the
    # configs later (keys.LATER) at the value that means what its absence meant
    rest = {k: v for k, v in config.items()
            if not covered(k, (*REPORT, "reg")) and not (k in LATER and LATER[k] == v)}  # fmt: skip
    trains = {"rest": rest, "mode": cfg.reg.mode, "plans": plans,
              "smoothing": float(cfg.reg.get("smoothing") or 0.0)}  # fmt: skip
    recipe = json.dumps(trains, sort_keys=True)
    metrics = rundir.read_metrics(path)
    if metrics is None:
        raise UserError(f"{path / rundir.METRICS}: not a readable record (damaged or cut short)")
    run = Run(path, config, metrics, rundir.read_history(path), recipe)
    lacking = [k for k in complete_keys(run.kind) if k not in metrics]
    if metrics.get("status") == "completed" and lacking:
        raise UserError(f"{path / rundir.METRICS}: says completed but lacks {lacking[0]!r}")
    return run


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by recipe (``Run.recipe``: what trains, never the bookkeeping of
    ``keys.REPORT``). A run that repeats a group's (seed, split) counts once; it is kept
    in ``Group.repeats`` beside the run that counts."""
    groups: dict[str, Group] = {}
    for run in runs:
        group = groups.setdefault(run.recipe, Group({}))
        kept = next((r for r in group.runs if r.pair_key == run.pair_key), None)
        if kept is None:
            group.runs.append(run)
        else:
            group.repeats.append((kept, run))
    result = list(groups.values())
    for g in result:  # what every run of the group shares
        first = g.runs[0].config
        g.config = {
            k: v
            for k, v in first.items()
            if not covered(k, REPORT) and all(r.config.get(k) == v for r in g.runs)
        }
    varying = sorted(
        k
        for k in {k for g in result for k in g.config}
        if len({str(g.config.get(k)) for g in result}) > 1 and k != "reg.name"
    )
    for g in result:
        namesakes = [h for h in result if h.config.get("reg.name") == g.config.get("reg.name")]
        among = [
            k
            for k in varying
            if len({str(h.config.get(k)) for h in namesakes}) > 1 and g.config.get(k) is not None
        ]
        g.keys = {k: g.config.get(k) for k in _labelled(g, varying, among)}
        g.label = " ".join([str(g.config.get("reg.name", "?"))]
                           + [f"{k}={v}" for k, v in g.keys.items()])  # fmt: skip
    return sorted(result, key=lambda g: g.label)


# repeats of one (recipe, seed, split) agree when their test numbers agree this closely (a
# fused member equals its own run to 1e-4 relative; other engines bit for bit)
REPEAT_TOLERANCE = 1e-4


def disagreeing(kept: Run, repeat: Run) -> list[str]:
    """The test numbers in which a repeat differs from the run that counts."""
    out = []
    for name in compared(kept.kind):
        a, b = kept.metrics.get(name), repeat.metrics.get(name)
        if a is None or b is None or not math.isclose(a, b, rel_tol=REPEAT_TOLERANCE,
                                                      abs_tol=1e-12):  # fmt: skip
            out.append(f"{name} {_fmt(a)} and {_fmt(b)}")
    return out


def repeat_lines(groups: list[Group]) -> tuple[str | None, list[str]]:
    """The report's line on repeated runs (None without any), and one warning per repeat
    whose numbers disagree with the run that counts, naming both folders."""
    pairs = [pair for g in groups for pair in g.repeats]
    if not pairs:
        return None, []
    warnings = []
    for kept, repeat in pairs:
        differ = disagreeing(kept, repeat)
        if differ:
            seed, split = kept.pair_key
            warnings.append(
                f"repeats disagree: {repeat.path} repeats {kept.path} (same recipe, seed {seed}, "
                f"split {split}) but differs in {'; '.join(differ)}; only {kept.path} counts"
            )
    agree = len(pairs) - len(warnings)
    line = (
        f"{_count(len(pairs), 'run')} repeat the recipe, seed and split of another run and "
        "count once (the first folder in path order)"
        + (f": {agree} with equal numbers" if warnings else ", their numbers equal")
        + (f", {len(warnings)} with numbers that DISAGREE (named below)" if warnings else "")
        + "."
    )
    return line, warnings


def _count(n: int, noun: str) -> str:
    """``1 run``, ``3 runs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def key_columns(groups: list[Group]) -> list[str]:
    """The config keys of the group table: ``reg.name`` when it varies, then every key
    some group's label names."""
    names = ["reg.name"] if len({str(g.config.get("reg.name")) for g in groups}) > 1 else []
    return names + sorted({k for g in groups for k in g.keys})


def key_value(group: Group, key: str) -> Any:
    """The group's value of a key of the table: None for a ``reg`` knob its recipe ignores
    (``reg.lam`` of ``reg=none``), as in its label."""
    knob = key.startswith("reg.") and key.count(".") == 1 and key not in ("reg.name", *LOSS_KEYS)
    return None if knob and key not in group.keys else group.config.get(key)


# reg keys the training reads itself, not through a layer's spec
LOSS_KEYS = ("reg.mode", "reg.smoothing")


def _labelled(group: Group, varying: list[str], among: list[str]) -> list[str]:
    """The varying keys that tell this group apart from the others of its ``reg.name``
    (``among``: the keys that vary between them, where this group has a value), and the
    ``reg`` knobs its recipe uses. A knob (``reg.lam``, ``reg.dropout``, ...) is used when
    a layer's spec carries its value (``reg=none`` ignores ``reg.lam``); a key written
    into a spec directly (``reg.hidden.dropout.rate``) counts when no knob names it."""
    recipe = json.loads(group.runs[0].recipe)
    carried = {
        json.dumps(v)
        for plan in recipe["plans"]
        for slot in plan.values()
        if isinstance(slot, dict)
        for v in flatten(slot).values()
    }
    knobs = [
        k
        for k in varying
        if k.startswith("reg.")
        and k.count(".") == 1
        and (
            json.dumps(group.config.get(k)) in carried
            or (k in LOSS_KEYS and (k in among or LATER.get(k, ...) != group.config.get(k)))
        )
    ]
    nested = [
        k
        for k in varying
        if k.startswith(("reg.hidden.", "reg.output.", "reg.layers.", "reg.inputs."))
        and k in group.config
        and k in among
    ]
    outside = [k for k in among if not k.startswith("reg.")]
    return sorted(outside + knobs + ([] if knobs else nested))


def summary(groups: list[Group], comparison: pd.DataFrame | None = None) -> pd.DataFrame:
    """The group table: a row per group. With ``comparison`` (``compare``'s table), each
    group's comparison with its baseline beside it; empty for a baseline or a group
    without one."""
    keys = key_columns(groups)
    rows = []
    for g in groups:
        row: dict[str, Any] = {"group": g.label, **{k: key_value(g, k) for k in keys}}
        row["n"] = len(g.runs)
        for name in shown(g.kind):
            mean, low, high = stats.mean_ci(g.values(name))
            row.update({name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high})
        row["best_epoch"] = float(np.mean(g.values("best_epoch")))
        if comparison is not None:
            row.update(_compared(g, groups, comparison))
        rows.append(row)
    table = pd.DataFrame(rows)
    if comparison is None:
        return table
    # each compared number's comparison and verdict right after it, so that a row reads
    # "accuracy [CI], its difference from the baseline [CI], p, verdict" on one screen
    first = ["group", *keys, "n"]
    for name in dict.fromkeys(m for g in groups for m in compared(g.kind)):
        first += [name, f"{name}_ci_low", f"{name}_ci_high"]
        first += [f"{name}_{column}" for column in MERGED]
    first = [c for c in first if c in table]
    return table[first + [c for c in table if c not in first]]


def _compared(group: Group, groups: list[Group], comparison: pd.DataFrame) -> dict[str, Any]:
    """``baseline`` and, per compared number X, ``X_diff`` (group - baseline), its 95 %
    interval, ``X_p_holm`` (the sign-flip test's, adjusted) and ``X_verdict``."""
    mine = {c["metric"]: c for c in comparison.to_dict("records") if c["group"] == group.label}
    row: dict[str, Any] = {"baseline": next(iter(mine.values()), {}).get("baseline")}
    for name in dict.fromkeys(m for g in groups for m in compared(g.kind)):
        c = mine.get(name, {})
        for column, source in MERGED.items():
            blank = None if column == "verdict" else math.nan  # a number of another task
            row[f"{name}_{column}"] = c.get(source, blank)
    return row


# the group table's comparison columns (X_diff, ...) and the comparisons' columns they hold
MERGED = {"diff": "mean_diff", "diff_ci_low": "ci_low", "diff_ci_high": "ci_high",
          "p_holm": "p_holm", "verdict": "verdict"}  # fmt: skip


def per_run(every: pd.DataFrame, loaded: list[Run], groups: list[Group]) -> pd.DataFrame:
    """The page's table of runs (every folder of ``runs.csv``): its folder, status and
    group, the keys of the group table, seed and split, the test numbers and epochs."""
    by_recipe = {r.recipe: g for g in groups for r in g.runs}
    group_of = {str(r.path): by_recipe.get(r.recipe) for r in loaded}
    folders = [Path(p) for p in every["run"]]
    try:
        root = Path(os.path.commonpath([p.resolve() for p in folders]))
    except ValueError:  # no folders, or on different drives
        root = None
    names = [p.name if root is None or p.resolve() == root else
             p.resolve().relative_to(root).as_posix() for p in folders]  # fmt: skip
    owners = [group_of.get(p) for p in every["run"]]
    frame = pd.DataFrame({"run": names, "status": every["status"],
                          "group": [g.label if g else None for g in owners]})  # fmt: skip
    tests = dict.fromkeys(m for g in groups for m in compared(g.kind))
    keys = key_columns(groups)
    wanted = [*keys, "seed", "dataset.split_seed", *tests, "epochs_run"]
    if "diverged_epoch" in every and every["diverged_epoch"].notna().any():
        wanted.append("diverged_epoch")
    for column in dict.fromkeys(wanted):
        if column in every:
            values = every[column].to_numpy(dtype=object)
            if column in keys:  # a knob the run's recipe ignores is empty, as in its group's row
                values = [v if g is None else key_value(g, column)
                          for v, g in zip(values, owners, strict=True)]  # fmt: skip
            frame[column] = values
    return frame


def parse_baseline(text: str) -> list[tuple[str, str]]:
    """``--baseline``'s ``KEY=VALUE`` pairs: one, or several separated by spaces
    (``'reg.name=l1_activity reg.lam=0.01'``), all of which a baseline group must match."""
    pairs = [word.partition("=") for word in text.split()]
    if not pairs or any(not key or not sep or not value for key, sep, value in pairs):
        raise UserError(
            f"report: --baseline={text!r}; expected KEY=VALUE (or several, separated by "
            "spaces), e.g. reg.name=none or 'reg.name=l1_activity reg.lam=0.01'"
        )
    return [(key, value) for key, _, value in pairs]


def same_value(recorded: Any, typed: str) -> bool:
    """Whether a config value equals what was typed: numbers as numbers (``1e-3`` is
    ``0.001``), booleans and null by name, anything else as text."""
    if recorded is None:
        return typed.lower() in ("null", "none", "~")
    if isinstance(recorded, bool):
        return typed.lower() == str(recorded).lower()
    if isinstance(recorded, (int, float)):
        try:
            return math.isclose(float(recorded), float(typed), rel_tol=1e-12, abs_tol=0.0)
        except ValueError:
            return False
    return str(recorded) == typed


def find_baseline(group: Group, baselines: list[Group], key: str) -> list[Group]:
    """The baselines ``group`` may be compared with, of its own task: those that agree with
    it outside KEY's section; else those with the same data, network and training; else
    those with the same data and network (a weight-decay or early-stopping arm differs
    from ``reg.name=none`` in its optimizer or trainer: that is its treatment). Never one
    whose data or network differ. More than one is ambiguous (``compare`` refuses it)."""
    section = key.split(".")[0] + "."
    baselines = [b for b in baselines if b.kind == group.kind]  # like with like

    def outside(g: Group) -> dict:
        return {k: v for k, v in g.config.items() if not k.startswith(section)}

    def shared(g: Group, sections: tuple[str, ...]) -> dict:
        return {k: v for k, v in g.config.items() if k.split(".")[0] in sections and k != key}

    matching = [b for b in baselines if outside(b) == outside(group)]
    if matching:
        return matching
    for sections in (SETUP, NETWORK):
        same = [b for b in baselines if shared(b, sections) == shared(group, sections)]
        if same:
            return same
    return []


def compare(groups: list[Group], baseline: str, min_effects: dict | None = None) -> pd.DataFrame:
    """Each group against its baseline, paired by (seed, split seed): ``comparisons``.
    A baseline that matches no group, or a group that could take several baselines, is
    refused in one line naming the candidates."""
    wanted = parse_baseline(baseline)
    bases = [g for g in groups if all(same_value(g.config.get(k), v) for k, v in wanted)]
    if not bases:
        key, value = wanted[0]
        labels = ", ".join(sorted({str(g.config.get(key)) for g in groups}))
        raise UserError(f"report: --baseline {baseline} matches no group; {key} is one of {labels}")
    pairs = []
    for g in groups:
        if g in bases:
            continue
        found = find_baseline(g, bases, wanted[0][0])
        if len(found) > 1:
            names = ", ".join(repr(b.label) for b in found)
            raise UserError(
                f"report: --baseline {baseline} matches {len(found)} groups that {g.label!r} "
                f"could be compared with: {names}; name one with more KEY=VALUE pairs, e.g. "
                f"--baseline '{_pairs_of(found[0], wanted)}'"
            )
        if found:
            pairs.append((g, found[0]))
    return comparisons(pairs, min_effects)


def _pairs_of(group: Group, wanted: list[tuple[str, str]]) -> str:
    """``--baseline``'s text that names this group alone: the pairs given and its label's keys."""
    pairs = dict(wanted) | {k: v for k, v in group.keys.items() if v is not None}
    return " ".join(f"{k}={v}" for k, v in pairs.items())


# --- verdicts ----------------------------------------------------------------------

ALPHA = stats.ALPHA
# The smallest effect of interest of each test number, by default: accuracy, the larger of
# one test example and half a point; R², one point; losses and MAE, this share of the
# baseline's mean. ``--min-effect METRIC=VALUE`` (or ``=VALUE%`` of the baseline's mean).
MIN_ACCURACY = 0.005
MIN_R2 = 0.01
MIN_RELATIVE = 0.05


@dataclass(frozen=True)
class MinEffect:
    value: float
    relative: bool = False  # a share of the baseline's mean

    def of(self, baseline_mean: float) -> float:
        return self.value * abs(baseline_mean) if self.relative else self.value


def parse_min_effects(given: list[str] | None) -> dict[str, MinEffect]:
    """``--min-effect`` values, ``METRIC=VALUE`` or ``METRIC=VALUE%``, by metric."""
    metrics = sorted({m for kind in tasks.KINDS.values() for m in compared(kind)})
    out = {}
    for text in given or []:
        metric, _, value = text.partition("=")
        relative = value.endswith("%")
        try:
            number = float(value.removesuffix("%"))
        except ValueError:
            number = math.nan
        if metric not in metrics or not (number > 0 and math.isfinite(number)):
            raise UserError(
                f"report: --min-effect {text!r}; expected METRIC=VALUE with METRIC one of "
                f"{', '.join(metrics)} and VALUE a positive number, or a percentage of the "
                "baseline's mean (test_data_loss=5%)"
            )
        out[metric] = MinEffect(number / 100 if relative else number, relative)
    return out


def min_effect(metric: str, base: Group, given: dict[str, MinEffect] | None = None) -> float:
    """The smallest effect of interest of ``metric`` against the baseline group ``base``:
    ``given`` (``--min-effect``), else the default of ``MIN_ACCURACY``, ``MIN_R2``,
    ``MIN_RELATIVE``."""
    mean = float(np.nanmean(base.values(metric)))
    if given and metric in given:
        return given[metric].of(mean)
    name = metric.removeprefix("test_")
    if name == "accuracy":
        rows = [((r.metrics.get("data") or {}).get("rows") or {}).get("test") for r in base.runs]
        rows = [n for n in rows if isinstance(n, int) and n > 0]
        return max(1 / min(rows), MIN_ACCURACY) if rows else MIN_ACCURACY
    if name == "r2":
        return MIN_R2
    return MIN_RELATIVE * abs(mean)


def pairs_of(group: Group, base: Group, metric: str) -> tuple[list[float], list[float]]:
    """``metric`` of the runs of ``group`` and ``base`` that share a (seed, split), in the
    same order."""
    mine = {r.pair_key: r for r in group.runs}
    theirs = {r.pair_key: r for r in base.runs}
    common = sorted(set(mine) & set(theirs), key=str)
    return [mine[k].value(metric) for k in common], [theirs[k].value(metric) for k in common]


def comparisons(pairs: list[tuple[Group, Group]], min_effects: dict | None = None) -> pd.DataFrame:
    """Each (group, baseline) pair on each test number of its task, run by run for the same
    seed and split: the mean difference with its t interval, the sign-flip test of no
    difference (``p``) and the equivalence test (``p_equivalence``, TOST within ±
    ``min_effect``), each adjusted over the family of every row given (``stats.shaffer``),
    the verdict, and for a comparison without one, what the design could detect."""
    rows = []
    for g, base in pairs:
        for name in compared(g.kind):
            a, b = pairs_of(g, base, name)
            p = stats.paired(a, b, min_effect(name, base, min_effects))
            rows.append({
                "group": g.label, "baseline": base.label, "metric": name, "pairs": p.n,
                "mean_diff": p.mean_diff, "ci_low": p.low, "ci_high": p.high, "sd": p.sd,
                "min_effect": p.min_effect,
                "test": "sign-flip, exact" if p.exact else f"sign-flip, {stats.SAMPLES} samples",
                "p": p.p, "p_equivalence": p.p_equivalence, "p_t": p.p_t, "d_z": p.d_z,
            })  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    m = len(table)
    adjusted = stats.shaffer([*table["p"], *table["p_equivalence"]], [*range(m), *range(m)])
    table["p_holm"], table["p_equivalence_holm"] = adjusted[:m], adjusted[m:]
    decided = [decide(r, m) for r in table.to_dict("records")]
    table["verdict"] = [v for v, _ in decided]
    table["note"] = [note for _, note in decided]
    return table


def decide(row: dict, family: int) -> tuple[str, str]:
    """A comparison's verdict under ``verdict_rule``, and its note: for *too few seeds*
    how many are needed; for *inconclusive* the effect its design detects at 80 % power
    and the seeds it would take to detect the smallest effect of interest."""
    n, delta = int(row["pairs"]), float(row["min_effect"])
    if row["p_equivalence_holm"] < ALPHA:
        return "equivalent", f"within ±{delta:.3g}"
    if row["p_holm"] < ALPHA and row["mean_diff"] != 0:
        higher = tasks.direction(row["metric"]) == "max"
        good = row["mean_diff"] > 0 if higher else row["mean_diff"] < 0
        return ("better" if good else "worse"), ""
    needed = stats.seeds_for(ALPHA, family)
    if n < needed:
        alone = stats.seeds_for(ALPHA, 1)
        among = f" (Holm over {family} comparisons; {alone} for one alone)" if family > 1 else ""
        return "too few seeds", (
            f"n={n}: too few seeds for a verdict at {ALPHA}{among}; at least {needed} are needed"
        )
    power = stats.power(row["sd"], n, delta, ALPHA / family)
    if math.isnan(power.detectable):
        return "inconclusive", "the differences do not vary: no power estimate"
    seeds = "never" if math.isinf(power.seeds) else f"{max(int(power.seeds), needed)} seeds"
    return "inconclusive", (
        f"detects ±{power.detectable:.3g} at 80 % power; ±{delta:.3g} needs {seeds}"
    )


def replicated(table: pd.DataFrame, pairs: list[tuple[Group, Group] | None]) -> pd.DataFrame:
    """``table`` (``comparisons``) with each verdict checked on a second, disjoint set of
    seeds: ``pairs`` holds, row by row, the replication's (group, baseline), or None. A
    better or worse is confirmed by the one-sided sign-flip test in its direction, an
    equivalent by TOST at the same smallest effect, Holm-adjusted over the verdicts
    checked; ``replication`` is *replicated* or *not replicated* (empty for an
    inconclusive row), and the verdict says so."""
    table = table.copy()
    checked, rows = [], table.to_dict("records")
    for i, (row, pair) in enumerate(zip(rows, pairs, strict=True)):
        if row["verdict"] not in ("better", "worse", "equivalent"):
            continue
        d = np.array([])
        if pair is not None:
            g, base = pair
            a, b = pairs_of(g, base, row["metric"])
            d = np.subtract(a, b)
        if row["verdict"] == "equivalent":
            p = stats.equivalence(d, row["min_effect"]) if len(d) else 1.0
        else:
            p = stats.sign_flip(d, "greater" if row["mean_diff"] > 0 else "less")[0]
        checked.append(i)
        table.loc[i, "replication_pairs"] = len(d)
        table.loc[i, "replication_mean_diff"] = float(d.mean()) if len(d) else math.nan
        table.loc[i, "replication_p"] = p
    table["replication"] = None
    if checked:
        adjusted = stats.holm(table.loc[checked, "replication_p"])
        for i, p in zip(checked, adjusted, strict=True):
            table.loc[i, "replication_p_holm"] = p
            table.loc[i, "replication"] = "replicated" if p < ALPHA else "not replicated"
            table.loc[i, "verdict"] = f"{rows[i]['verdict']}, {table.loc[i, 'replication']}"
    return table


def verdict_rule(kinds, family: str = "every comparison of this report") -> str:
    """The verdict rule, naming the good side of the metrics of these task kinds (higher
    accuracy and R², lower loss and MAE) and the family the p-values are adjusted over."""
    metrics = [m for kind in kinds for m in kind.scores if m != "data_loss"]
    higher = " and ".join(dict.fromkeys(m for m in metrics if tasks.direction(m) == "max"))
    lower = " and ".join(dict.fromkeys(m for m in metrics if tasks.direction(m) == "min"))
    return (
        "Verdicts come from the paired sign-flip permutation test (exact: every sign "
        f"pattern, up to {stats.EXACT} pairs; sampled beyond), never from the t interval, "
        "which shows the size of the effect. better or worse: the test of no difference "
        f"gives an adjusted p < {ALPHA}, and the mean difference lies on the metric's good "
        f"or bad side (higher {higher}, lower {lower + ' and ' if lower else ''}loss). "
        "equivalent: both one-sided tests (TOST) put the difference within plus or minus "
        f"the smallest effect of interest (min_effect), adjusted p < {ALPHA}. inconclusive: "
        "neither; the note gives the effect the design detects at 80 % power and the "
        "seeds it would take to detect min_effect. too few seeds: no outcome of so few "
        f"pairs could reach {ALPHA}. The family adjusted over is {family}, its tests of "
        "no difference and of equivalence together: step-down Holm, counting at most one "
        "true hypothesis per comparison (Shaffer). min_effect by default: for accuracy the "
        f"larger of one test example and {MIN_ACCURACY}, for R² {MIN_R2}, for losses and "
        f"MAE {MIN_RELATIVE:.0%} of the baseline's mean (--min-effect sets it)."
    )


VERDICT_RULE = verdict_rule([tasks.CLASSIFICATION])


# --- documents -----------------------------------------------------------------


class Document:
    """Headings, paragraphs, tables and images, rendered as Markdown and as HTML.

    The HTML page is one self-contained file: images embedded, one inline style sheet
    and one small inline script (``SCRIPT``), nothing fetched (its Content-Security-Policy
    forbids it). Every table scrolls inside its own box when wider or longer than the
    screen, its header and first column staying in view. Each header is a button (click,
    or Tab then Enter or Space) that sorts by its column: numbers as numbers, words
    naturally (``2_none`` before ``10_none``), blanks last. The box above a table keeps
    the rows that match every word typed, matched against the words of the label, name,
    status and config-key cells only (never a result's number or an interval): a typed
    number equals a word as a number (``0.01`` is ``0.010`` and ``1e-2``, not ``0.001``),
    another word starts a word (``l1``, ``l1_activity``), ``key=value`` matches in the
    column ``key`` or one ending in ``.key`` (``SCRIPT``'s comment has the details).
    A column ``X`` with ``X_ci_low`` and ``X_ci_high`` beside it is one cell
    ``0.836 [0.816, 0.855]`` (``ci_cells``). On the page the verdict columns come right
    after the label (``verdicts_first``); a verdict is a word with its colour
    (``verdict_class``). ``table(..., links=)`` links each row's first cell to a folder.
    """

    def __init__(self, title: str, out: Path):
        self.title, self.out, self.blocks = title, out, []
        self.comparison: pd.DataFrame | None = None  # a report's comparisons, for the terminal

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, frame: pd.DataFrame, title: str | None = None,
              links: list[str | None] | None = None) -> None:  # fmt: skip
        """A table; ``links``: per row, the folder its first cell links to on the page."""
        if title:
            self.heading(title)
        self.blocks.append(("table", frame, links))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", path, caption))

    def write(self) -> None:
        md, body = [f"# {self.title}\n"], [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                md.append(f"{'#' * block[1]} {block[2]}\n")
                body.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "p":
                md.append(block[1] + "\n")
                body.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "table":
                md.append(markdown_table(block[1], block[2]))
                body.append(html_table(block[1], block[2], self.out))
            else:
                path, caption = block[1], block[2]
                md.append(f"![{caption}]({path.relative_to(self.out)})\n")
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
                    "</figcaption></figure>"
                )
        (self.out / "report.md").write_text("\n".join(md))
        (self.out / "report.html").write_text(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            "<link rel='icon' href='data:,'>"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body)
            + f"<script>{SCRIPT}</script></body></html>"
        )


# nothing leaves the page: images are data: URLs, style and script inline
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

CSS = (
    "body{font-family:sans-serif;max-width:1500px;margin:1em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.5em}p{max-width:60em}"
    ".table{margin:1em 0}"
    ".filter{font-size:13px;padding:2px 6px;width:22em;max-width:100%}"
    ".shown{font-size:12px;color:#555;margin-left:.6em}"
    ".scroll{overflow:auto;max-height:75vh;width:fit-content;max-width:100%;"
    "border:1px solid #ccc;margin-top:.3em}"
    "table{border-collapse:separate;border-spacing:0;font-size:13px}"
    "td,th{border-right:1px solid #ddd;border-bottom:1px solid #ddd;padding:3px 6px;"
    "text-align:right;white-space:nowrap;background:#fff}"
    "th{position:sticky;top:0;z-index:1;background:#f2f2f2;user-select:none}"
    "th button{font:inherit;font-weight:bold;border:0;background:none;padding:0;"
    "cursor:pointer;color:inherit;text-align:inherit}"
    "th button:focus-visible{outline:2px solid #1a5fb4}"
    "a.file{font-size:11px;color:#555;margin-left:.3em}"
    "th:first-child,td:first-child{position:sticky;left:0;text-align:left;z-index:1}"
    "th:first-child{z-index:2}.text,td[class^=verdict]{text-align:left}"
    "tr:hover td{background:#f6f9ff}"
    "th[aria-sort=ascending]::after{content:' \\25B2'}"
    "th[aria-sort=descending]::after{content:' \\25BC'}"
    "td.ci{font-variant-numeric:tabular-nums}"
    "td.verdict-better{background:#d9f2d9;color:#0a5c0a;font-weight:bold}"
    "td.verdict-worse{background:#f9dcdc;color:#8a1010;font-weight:bold}"
    "td.verdict-equivalent{background:#dde8f8;color:#17407a;font-weight:bold}"
    "td.verdict-inconclusive{color:#666}"
    "td.verdict-unreplicated{background:#fbeccd;color:#7a4b00;font-style:italic}"
    "td.verdict-unreplicated s{text-decoration:line-through}"
    "figure{margin:1em 0}img{max-width:100%;height:auto}"
    "figcaption{font-size:12px;color:#555}"
)

# Sorting: a header is a button: a click, Enter or Space sorts by its column, again
# reverses; numbers (a cell's data-sort, the mean of a CI cell) sort as numbers, words
# naturally (Intl.Collator's numeric order, its digit runs read with their decimals:
# 0_none, 1_none, 2_none, 10_none; reg.lam=0.001 before 0.01 before 0.1), blanks last.
# Filtering: the words typed in the box above a table are matched against the words of
# its text cells and config keys' cells only (labels, run names, statuses, seed and
# dotted keys such as reg.lam; never a verdict, a result's number such as n, or a number
# with its interval): a cell's text is cut into words at spaces and = _ , [ ] ( )
# /, keeping . and - inside numbers; a typed number matches a word equal to it as a
# number (0.01 matches 0.010 and 1e-2, never 0.001), other words match the start of a
# word, case aside (l1 matches l1_activity, drop matches dropout), and key=value matches
# a cell of the column key (or of a dotted column ending in .key: lam=0.1 is
# reg.lam=0.1) whose value matches. A row stays when every typed word matches.
SCRIPT = """
(function () {
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});
  function text(td) {  // a cell's own words: a run's name, not the names of its file links
    var a = td.querySelector('a:not(.file)');
    return (a || td).textContent.trim();
  }
  function key(td) {
    var v = td.getAttribute('data-sort');
    return v === null ? text(td) : v;
  }
  // words in turn, their digit runs (with decimals: 0.001 < 0.01 < 0.1) as numbers
  function natural(x, y) {
    var a = x.split(/(\\d+(?:\\.\\d+)?)/), b = y.split(/(\\d+(?:\\.\\d+)?)/);
    for (var i = 0; i < Math.min(a.length, b.length); i++) {
      var c = i % 2 ? Number(a[i]) - Number(b[i]) : collator.compare(a[i], b[i]);
      if (c) { return c; }
    }
    return a.length - b.length || collator.compare(x, y) || (x < y ? -1 : x > y ? 1 : 0);
  }
  function words(text) {
    return text.toLowerCase().split(/[\\s=_,\\[\\]()\\/]+/).filter(Boolean);
  }
  function isNumber(w) { return /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?$/i.test(w); }
  function matches(typed, word) {
    if (isNumber(typed)) { return isNumber(word) && Number(typed) === Number(word); }
    return word.indexOf(typed) === 0;
  }
  function named(column, key) {  // lam names reg.lam
    return column === key || column.slice(-key.length - 1) === '.' + key;
  }
  document.querySelectorAll('div.table').forEach(function (box) {
    var table = box.querySelector('table'), body = table.tBodies[0];
    var input = box.querySelector('input.filter'), shown = box.querySelector('.shown');
    var total = body.rows.length;
    var heads = Array.from(table.querySelectorAll('thead th'));
    var names = heads.map(function (th) { return th.textContent.trim().toLowerCase(); });
    function count() {
      var n = 0;
      for (var r of body.rows) { if (!r.hidden) { n++; } }
      shown.textContent = n + ' of ' + total + ' rows';
    }
    heads.forEach(function (th, col) {
      th.querySelector('button').title = 'sort by this column';
      th.addEventListener('click', function () {  // the button's click (Enter, Space) too
        var down = th.getAttribute('aria-sort') === 'ascending';
        heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', down ? 'descending' : 'ascending');
        var rows = Array.from(body.rows);
        var keys = rows.map(function (r) { return key(r.cells[col]); });
        var numeric = keys.every(function (k) { return k === '' || !isNaN(Number(k)); });
        var order = rows.map(function (r, i) { return i; });
        order.sort(function (a, b) {
          var x = keys[a], y = keys[b];
          if (x === '' || y === '') { return (x === '') - (y === '') || a - b; }
          var c = numeric ? Number(x) - Number(y) : natural(x, y);
          return (down ? -c : c) || a - b;
        });
        order.forEach(function (i) { body.appendChild(rows[i]); });
      });
    });
    input.addEventListener('input', function () {
      var typed = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
      for (var r of body.rows) {
        var cells = Array.from(r.cells).map(function (td, i) {
          return {name: names[i], words: td.classList.contains('text') ||
                  td.classList.contains('key') ? words(text(td)) : []};
        });
        r.hidden = !typed.every(function (t) {
          var eq = t.indexOf('=');
          var column = eq > 0 ? t.slice(0, eq) : null, value = eq > 0 ? t.slice(eq + 1) : t;
          if (column !== null && !names.some(function (n) { return named(n, column); })) {
            column = null; value = t;
          }
          return cells.some(function (c) {
            if (column !== null && !named(c.name, column)) { return false; }
            var parts = words(value);
            return parts.every(function (p) {
              return c.words.some(function (w) { return matches(p, w); });
            });
          });
        });
      }
      count();
    });
    count();
  });
})();
"""

LEFT = " class='text'"  # a column of words, aligned left
VERDICT_CLASS = {"better": "verdict-better", "worse": "verdict-worse",
                 "equivalent": "verdict-equivalent", "inconclusive": "verdict-inconclusive",
                 "too": "verdict-inconclusive"}  # fmt: skip


def verdict_class(text: str) -> str:
    """A verdict cell's class: a verdict that did not replicate is never shown as a plain
    better or worse; else by its first word."""
    if "not replicated" in text:
        return "verdict-unreplicated"
    return VERDICT_CLASS.get(text.split(",")[0].split()[0], "") if text != "-" else ""


def _fmt(v: Any) -> str:
    """A cell's text: floats to 4 significant digits, blanks (None, NaN) as ``-``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def ci_decimals(mean: float, low: float, high: float) -> int | None:
    """Decimals that show an interval's width to two significant digits (at least two
    decimals) and its mean to at most four: 0.836 [0.816, 0.855]. None for an interval
    of no width (one run, or all runs equal)."""
    width = high - low
    if not (width > 0 and math.isfinite(width)):
        return None
    most = 3 - math.floor(math.log10(abs(mean))) if mean else 4
    return max(0, min(most, max(1 - math.floor(math.log10(width)), 2), 6))


def ci_text(mean: Any, low: Any, high: Any, decimals: int | None = None) -> str:
    """``0.836 [0.816, 0.855]`` with ``decimals`` (by default ``ci_decimals``'); the
    mean alone when the interval is blank (one run)."""
    if _blank(mean):
        return "-"
    if _blank(low) or _blank(high):
        return _fmt(float(mean))
    d = decimals if decimals is not None else ci_decimals(mean, low, high)
    if d is None:
        return f"{_fmt(float(mean))} [{_fmt(float(low))}, {_fmt(float(high))}]"
    return f"{mean:.{d}f} [{low:.{d}f}, {high:.{d}f}]"


def ci_cells(columns: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The shown columns: (name, the frame's columns it is made of). A column ``X``
    followed by ``X_ci_low`` and ``X_ci_high`` (or by ``ci_low`` and ``ci_high``, as
    ``mean_diff`` is) makes one cell; every other column is itself."""
    shown, i = [], 0
    while i < len(columns):
        name = columns[i]
        ends = [f"{name}_ci_low", f"{name}_ci_high"], ["ci_low", "ci_high"]
        if any(columns[i + 1 : i + 3] == pair for pair in ends):
            shown.append((name, (name, *columns[i + 1 : i + 3])))
            i += 3
        else:
            shown.append((name, (name,)))
            i += 1
    return shown


def _cells(frame: pd.DataFrame) -> tuple[list[str], list[list[tuple[str, Any, str]]]]:
    """Header names, and per row (text, sort key or None, kind: ci, number, verdict,
    text) for each shown column."""
    layout = ci_cells([str(c) for c in frame.columns])
    records = frame.astype(object).to_dict("records")
    decimals = {}  # one per CI column, so that its numbers line up: its widest need
    for name, parts in layout:
        if len(parts) == 3:
            found = [ci_decimals(*(float(r[p]) for p in parts)) for r in records]
            decimals[name] = max((d for d in found if d is not None), default=None)
    rows = []
    for record in records:
        row = []
        for name, parts in layout:
            values = [record[p] for p in parts]
            v = values[0]
            if len(parts) == 3:
                key = None if _blank(v) else repr(float(v))
                row.append((ci_text(*values, decimals[name]), key, "ci"))
            elif name == "verdict" or name.endswith("_verdict"):
                row.append((_fmt(v), None, "verdict"))
            elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                row.append((_fmt(v), "" if _blank(v) else repr(float(v)), "number"))
            else:
                row.append((_fmt(v), "" if _blank(v) else None, "text"))
        rows.append(row)
    return [name for name, _ in layout], rows


def verdicts_first(frame: pd.DataFrame) -> pd.DataFrame:
    """The page's order of a table's columns: its first column (the label), then its
    verdict columns, then the rest, so that a row reads through to its verdicts on a
    laptop's screen (1366 px); the CSV files keep their own order."""
    columns = [str(c) for c in frame.columns]
    verdicts = [c for c in columns[1:] if c == "verdict" or c.endswith("_verdict")]
    if not verdicts:
        return frame
    return frame[[columns[0], *verdicts, *(c for c in columns[1:] if c not in verdicts)]]


RUN_FILES = ("metrics.json", "config.yaml", "history.csv")  # linked beside a run's folder


def config_key(name: str) -> bool:
    """Whether a column names a config key (``seed``, ``reg.lam``, ``dataset.split_seed``),
    whose numbers the filter box searches, unlike a result's (``n``, ``test_accuracy``)."""
    return name == "seed" or "." in name


def html_table(frame: pd.DataFrame, links: list[str | None] | None = None,
               out: Path | None = None) -> str:  # fmt: skip
    """A table in its box: a filter box, the count of rows shown, and the table in a box
    that scrolls when it is wider or longer than the window. ``links``: per row, the
    folder its first cell links to (relative to the page), with its ``RUN_FILES`` beside
    it (those found under ``out``, the page's folder, when given)."""
    from urllib.parse import quote

    names, rows = _cells(verdicts_first(frame))
    texts = [all(row[i][2] in ("text", "verdict") for row in rows) for i in range(len(names))]
    head = "".join(
        f"<th scope='col'{LEFT if text else ''}><button type='button'>{html.escape(n)}"
        "</button></th>"
        for n, text in zip(names, texts, strict=True)
    )
    lines = []
    for i, row in enumerate(rows):
        cells = []
        for j, (text, key, kind) in enumerate(row):
            attrs = "" if key is None else f' data-sort="{html.escape(key)}"'
            if kind == "verdict":
                cls = verdict_class(text)
            else:
                cls = {"ci": "ci", "text": "text", "number": "num"}.get(kind, "")
                cls += " key" if kind == "number" and config_key(names[j]) else ""
            attrs += f' class="{cls}"' if cls else ""
            inner = html.escape(text)
            claim, sep, rest = text.partition(", not replicated")
            if kind == "verdict" and sep:  # the claim struck through, the reason plain
                inner = f"<s>{html.escape(claim)}</s>{html.escape(sep + rest)}"
            href = links[i] if links and j == 0 else None
            if href:
                url = html.escape(quote(href))
                files = " ".join(
                    f'<a class="file" href="{url}/{name}" title="{name}">{name.split(".")[0]}</a>'
                    for name in RUN_FILES
                    if out is None or (out / href / name).is_file()
                )
                inner = f'<a href="{url}/">{inner}</a> {files}'
            cells.append(f"<td{attrs}>{inner}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="table"><input class="filter" type="search" placeholder="filter rows: '
        'type words" aria-label="filter the rows"><span class="shown"></span>'
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
        + "\n".join(lines)
        + "</tbody></table></div></div>"
    )


def markdown_table(frame: pd.DataFrame, links: list[str | None] | None = None) -> str:
    """A Markdown table; a CI triple is one cell ``0.836 [0.816, 0.855]``; with ``links``
    (``html_table``'s), a row's first cell is a link to its folder."""
    from urllib.parse import quote

    names, rows = _cells(frame)
    head = "| " + " | ".join(names) + " |\n"
    rule = "|" + "---|" * len(names) + "\n"
    lines = []
    for i, row in enumerate(rows):
        texts = [text.replace("|", "\\|") for text, _, _ in row]
        if links and links[i] and texts:
            texts[0] = f"[{texts[0]}]({quote(links[i])}/)"
        lines.append("| " + " | ".join(texts) + " |\n")
    return head + rule + "".join(lines)


# --- the report ------------------------------------------------------------------


def build(paths: list[str], out: Path, baseline: str | None = None,
          min_effects: dict[str, MinEffect] | None = None, replicate: int | None = None,
          ) -> Document:  # fmt: skip
    """The report of the runs under ``paths``, written into ``out``. ``replicate``
    (``--replicate``; 0: as many seeds as the largest group has) trains each compared
    group and its baseline again on that many new seeds, each with its own split, into
    ``out/replication``, and checks every verdict on them (``replicated``)."""
    from regexp import plots

    loaded = []
    for path in find_runs(paths):  # a damaged folder is named and left out, never fatal
        try:
            loaded.append(load_run(path))
        except UserError as e:
            print(f"regexp: skipped {path}: {e}", file=sys.stderr)
    runs = [r for r in loaded if r.metrics.get("status") == "completed"]
    if not loaded:
        raise UserError(f"report: no readable run under {' '.join(paths)}: every run folder "
                        "is damaged (named above)")  # fmt: skip
    if not runs:
        raise UserError(
            f"report: none of the {_count(len(loaded), 'run')} under {' '.join(paths)} completed"
        )
    if replicate is not None and not baseline:
        raise UserError("report: --replicate checks verdicts, so it needs --baseline KEY=VALUE")
    groups = group_runs(runs)
    repeats, disagreements = repeat_lines(groups)
    for warning in disagreements:
        print(f"regexp: warning: {warning}", file=sys.stderr)
    comparison = compare(groups, baseline, min_effects) if baseline else None
    if replicate is not None and comparison is not None and not comparison.empty:
        comparison = replicated(comparison, replication_pairs(groups, comparison, replicate,
                                                               out, paths))  # fmt: skip
    table = summary(groups, comparison)
    every = results.table(paths, status=None, warn=False)  # the lines above named the damaged
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "report.csv", index=False)
    every.to_csv(out / "runs.csv", index=False)
    if comparison is not None:
        comparison.to_csv(out / "comparisons.csv", index=False)
    counted = sum(len(g.runs) for g in groups)
    doc = Document(f"regexp report: {_count(counted, 'run')} in {_count(len(groups), 'group')}",
                   out)  # fmt: skip
    gaps = "; ".join(f"final train {p} - validation {p}"
                     for p in dict.fromkeys(g.kind.primary for g in groups))  # fmt: skip
    doc.text(
        "Mean and 95 % t interval across the runs of each group (seeds and splits). "
        f"gap = {gaps}. best_epoch = mean epoch of the lowest validation data loss."
        + (
            f" Against {baseline}: X_diff = group - baseline, paired by seed and split, "
            "with its 95 % t interval; X_p_holm = the sign-flip test's p, adjusted over the "
            "report's family; X_verdict as below."
            if baseline
            else ""
        )
    )
    if repeats:
        doc.text(repeats)
    for warning in disagreements:
        doc.text(f"WARNING: {warning}.")
    doc.table(table)
    links = [os.path.relpath(Path(p).resolve(), out.resolve()) for p in every["run"]]
    doc.table(per_run(every, loaded, groups), title="Runs: every run folder, as in runs.csv",
              links=[Path(link).as_posix() for link in links])  # fmt: skip
    left_out = int((every["status"] != "completed").sum())
    if left_out:
        doc.text(f"The {_count(left_out, 'run')} whose status is not completed are left out of "
                 "the groups.")  # fmt: skip
    if comparison is not None:
        doc.heading(f"Paired comparisons against {baseline}")
        doc.text(
            "mean_diff = group - baseline over runs with the same seed and split, with its "
            "95 % t interval; sd = the sd of the differences; p = the two-sided paired "
            "sign-flip test of no difference (test: exact or sampled); p_equivalence = TOST "
            "within ±min_effect; _holm = adjusted over the family; p_t = the paired t-test, "
            "for reference only; d_z = mean_diff / sd. " + verdict_rule(
                dict.fromkeys(g.kind for g in groups),
                f"every comparison of this report ({_count(len(comparison), 'comparison')}: "
                "its arms and test numbers together)")
            + (" replication: each verdict checked on new seeds (one-sided sign-flip test in "
               "its direction, or TOST), Holm-adjusted over the verdicts checked."
               if "replication" in comparison else "")
        )  # fmt: skip
        doc.table(comparison)
    doc.heading("Figures")
    for name, caption, draw in plots.report_figures(groups, out):
        draw()
        doc.image(out / name, caption)
    doc.comparison = comparison
    doc.write()
    return doc


def verdict_lines(comparison: pd.DataFrame | None) -> list[str]:
    """One line per comparison for the terminal: group, number, difference with its
    interval, verdict and its note."""
    if comparison is None or comparison.empty:
        return []
    width = max(len(g) for g in comparison["group"])
    lines = []
    for c in comparison.to_dict("records"):
        diff = ci_text(c["mean_diff"], c["ci_low"], c["ci_high"])
        note = f" ({c['note']})" if isinstance(c.get("note"), str) and c["note"] else ""
        lines.append(f"  {c['group']:<{width}}  {c['metric']:<15} {diff:<28} {c['verdict']}{note}")
    return [f"against {comparison['baseline'].iloc[0]}:" if comparison["baseline"].nunique() == 1
            else "against their baselines:", *lines]  # fmt: skip


def replication_pairs(groups: list[Group], comparison: pd.DataFrame, seeds: int, out: Path,
                      paths: list[str]) -> list[tuple[Group, Group] | None]:  # fmt: skip
    """Train every group of a verdict (and its baseline) again on ``seeds`` new seeds (0:
    as many as the largest group has), seed s with split s, both beyond every seed and
    split the report holds, into ``out/replication`` (resumable: a completed folder is
    kept); the replication's (group, baseline) of each row of ``comparison``."""
    from omegaconf import open_dict

    from regexp import pipeline

    by_label = {g.label: g for g in groups}
    claimed = comparison["verdict"].isin(["better", "worse", "equivalent"])
    labels = dict.fromkeys(label for row in comparison[claimed].to_dict("records")
                           for label in (row["group"], row["baseline"]))  # fmt: skip
    needed = [by_label[label] for label in labels]
    if not needed:
        return [None] * len(comparison)
    used = [int(v) for g in groups for r in g.runs for v in r.pair_key if isinstance(v, int)]
    start = max(used, default=-1) + 1
    new = list(range(start, start + (seeds or max(len(g.runs) for g in needed))))
    folder = out / "replication"
    todo, where = [], {}
    for g in needed:
        cfg0 = rundir.read_config(g.runs[0].path)
        tag = hashlib.sha256(g.runs[0].recipe.encode()).hexdigest()[:8]
        for s in new:
            cfg = cfg0.copy()
            with open_dict(cfg):
                # resume: a completed folder of this very config is kept (rundir.guard)
                cfg.seed, cfg.dataset.split_seed, cfg.resume = s, s, str(folder)
            todo.append((cfg, folder / f"{cfg.reg.name}_{tag}" / f"seed_{s}"))
            where.setdefault(g.label, []).append(todo[-1][1])
    folder.mkdir(parents=True, exist_ok=True)
    rundir.write_json_atomic(folder / rundir.REPLICATION, {
        "replicates": [str(p) for p in paths], "seeds": new, "splits": new,
        "groups": {label: [str(f) for f in fs] for label, fs in where.items()}})  # fmt: skip
    print(f"regexp: replicating {_count(len(needed), 'group')} on seeds {new[0]}..{new[-1]} "
          f"into {folder}", file=sys.stderr)  # fmt: skip
    pipeline.train_all(todo, "--replicate")
    replicas = {label: Group({}, [load_run(f) for f in fs], label=label)
                for label, fs in where.items()}  # fmt: skip
    return [
        (replicas[row["group"]], replicas[row["baseline"]])
        if row["group"] in replicas and row["baseline"] in replicas
        else None
        for row in comparison.to_dict("records")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regexp report", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="run folders, sweep folders or globs")
    parser.add_argument("--baseline", help="compare every group with this one, e.g. "
                        "reg.name=none; several KEY=VALUE pairs separated by spaces name "
                        "one group among several")  # fmt: skip
    parser.add_argument("--min-effect", action="append", metavar="METRIC=VALUE",
                        help="the smallest effect of interest of a test number, e.g. "
                        "test_accuracy=0.01 or test_data_loss=5%% (of the baseline's mean); "
                        "repeatable")  # fmt: skip
    parser.add_argument("--replicate", type=int, nargs="?", const=0, metavar="SEEDS",
                        help="train the compared groups again on SEEDS new seeds and splits "
                        "(none or 0: as many as they have) and check every verdict on "
                        "them")  # fmt: skip
    parser.add_argument("--out", type=Path, help="where to write (default: <PATH>/report)")
    args = parser.parse_args(argv)
    single = len(args.paths) == 1 and Path(args.paths[0]).is_dir()
    out = args.out or (Path(args.paths[0]) / "report" if single else Path("outputs/report"))
    try:
        if args.replicate is not None and args.replicate < 0:
            raise UserError(f"report: --replicate {args.replicate}; expected a count of seeds "
                            ">= 1 (or none: as many as the groups have)")  # fmt: skip
        doc = build(args.paths, out, args.baseline, parse_min_effects(args.min_effect),
                    args.replicate)  # fmt: skip
    except UserError as e:
        print(f"regexp: error: {e}", file=sys.stderr)
        return 2
    files = ["report.md", "report.html", "report.csv", "runs.csv"]
    files += ["comparisons.csv"] if args.baseline else []
    print(doc.title)
    for line in verdict_lines(doc.comparison):
        print(line)
    print(f"written to {out}/{', '.join(files[:-1])} and {files[-1]}")
    return 0
