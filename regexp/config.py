"""Validation of a composed config, without TensorFlow.

``validate(cfg)`` checks every group against its typed schema before any work starts,
asking each catalogue to check its own part (the layer plan, the optimizers, the
datasets), and raises ``ConfigError`` naming the key, the value and what is accepted.
It returns the layer plan, which is all the model builders need, and the data's shape,
which is all the memory estimate needs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from omegaconf import DictConfig, OmegaConf

from regexp import data, tasks
from regexp.checks import (
    BOOL,
    MAPPING,
    NAME,
    SEED,
    STRENGTH,
    TEXT,
    Choice,
    Integer,
    Schema,
    parse,
)
from regexp.errors import ConfigError, DataError
from regexp.optimizers import OPTIMIZERS
from regexp.plan import LayerPlan, layer_plan

# trainer.engine: ``auto`` trains a job alone with ``compiled`` and a sweep's jobs in
# fused groups; the others force one engine (``regexp.engines`` implements them).
ENGINE_CHOICES = ("auto", "compiled", "keras", "fused")
# The most sample indices a chunk of batch orders holds, all members together: training
# cuts epochs into chunks (``training.ChunkStops``) that respect it.
ORDER_BUDGET = 2**24
GROUPS = ("dataset", "model", "reg", "optimizer", "trainer", "tracking")


class Top(Schema):
    """The keys of ``conf/config.yaml`` outside the groups (each group has its own
    schema: ``data``, ``plan``, ``optimizers`` and ``Trainer`` below)."""

    seed: Annotated[int, SEED]
    experiment_name: Annotated[str | None, NAME.or_none()] = None
    published: Annotated[Any, MAPPING.or_none()] = None  # a source's figures, free-form
    resume: Annotated[str | None, TEXT.or_none()] = None


# The history series early stopping may watch: those of every task (``tasks.KINDS``),
# each with its val_ twin; a dataset's task records its own (``_check_monitor``).
MONITORS = tuple(
    f"{p}{s}"
    for p in ("", "val_")
    for s in dict.fromkeys(s for kind in tasks.KINDS.values() for s in kind.series)
)


class EarlyStopping(Schema):
    """``trainer.early_stopping`` (``trainer=early_stopping``): Keras' EarlyStopping rule
    on one history series. Absent or null: no early stopping."""

    monitor: Annotated[str, Choice(*MONITORS)] = "val_data_loss"
    patience: Annotated[int, Integer(0)] = 5
    min_delta: Annotated[float, STRENGTH] = 0.0
    restore_best: Annotated[bool, BOOL] = True

    @property
    def mode(self) -> str:
        """``max`` for accuracy and r2, ``min`` otherwise (``tasks.direction``)."""
        return tasks.direction(self.monitor)


def early_stopping(trainer) -> EarlyStopping | None:
    """The early-stopping settings of a (validated) ``trainer`` group, defaults filled in;
    None when it has none."""
    spec = trainer.get("early_stopping")
    if spec is None:
        return None
    values = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    return parse(EarlyStopping, values, "trainer.early_stopping")


class Trainer(Schema):
    """The ``trainer`` group."""

    engine: Annotated[str, Choice(*ENGINE_CHOICES)]
    epochs: Annotated[int, Integer(1)]
    batch_size: Annotated[int, Integer(1)]
    shuffle: Annotated[bool, BOOL]
    threads: Annotated[int, Integer(0)] = 1
    tensorboard: Annotated[bool, BOOL] = False
    quiet: Annotated[bool, BOOL] = False
    early_stopping: Annotated[Any, MAPPING.or_none()] = None  # its own schema: EarlyStopping


class Tracking(Schema):
    """The optional ``tracking`` group (``+tracking=mlflow``)."""

    backend: Annotated[str, Choice("mlflow")]
    uri: Annotated[str, TEXT]
    experiment: Annotated[str, TEXT] = "regexp"
    artifacts: Annotated[str | None, TEXT.or_none()] = None


@dataclass(frozen=True)
class Checked:
    """What validation learns on the way: the layer plan, which is all the model builders
    need, and the data's shape, which is all the memory estimate needs."""

    plans: list[LayerPlan]
    shape: data.Shape


def validate(cfg: DictConfig, overrides: Sequence[str] = ()) -> Checked:
    """Check the whole config against the typed schemas before TensorFlow is imported;
    ``overrides``, the command line's, are checked for knobs that change nothing."""
    top = OmegaConf.to_container(cfg, resolve=True)
    for group in GROUPS[:-1]:
        if group not in top:
            raise ConfigError(group, None, f"a {group} config (conf/{group}/)")
    rest = {k: v for k, v in top.items() if k not in (*GROUPS, "hydra")}
    parse(Top, rest, "", what="the config")
    shape = data.validate(top["dataset"])
    plans = layer_plan(cfg, top)  # model and reg as resolved above, not resolved again
    _check_knobs(cfg, top["reg"], overrides)
    tasks.check(top["dataset"].get("task"), top["reg"].get("smoothing"))
    opt = top["optimizer"]
    name = Choice(*OPTIMIZERS)("optimizer.name", opt.get("name") if isinstance(opt, dict) else opt)
    OPTIMIZERS[name].validate(opt)
    trainer = parse(Trainer, top["trainer"], "trainer")
    stopping = early_stopping(top["trainer"])
    if stopping is not None:
        _check_monitor(stopping.monitor, top["dataset"])
    if top.get("tracking") is not None:
        parse(Tracking, top["tracking"], "tracking")
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(
                "+tracking", "mlflow", "installed mlflow: pip install 'regexp[mlflow]'"
            )
    if trainer.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "trainer.tensorboard",
            True,
            "false, or install the extra: pip install 'regexp[tensorboard]'",
        )
    return Checked(plans, shape)


def _check_knobs(cfg: DictConfig, reg: dict, overrides: Sequence[str]) -> None:
    """A key a reg file adds of its own (``rho``, ``dropout``) is a knob its specs use: an
    interpolation names it (``${reg.rho}``), or, in a config already resolved, a spec
    carries its value. One the command line sets that nothing uses (``+reg.lamm=1``, a
    typo; ``reg=none reg.dropout=0.3``) would change nothing, silently, so it is refused.
    (A knob an experiment file sets stays: ``experiment=digits_dropout reg=none`` is its
    baseline.)"""
    import json
    import re

    from regexp.keys import flatten
    from regexp.plan import Reg

    given = {o.split("=")[0].lstrip("+~") for o in overrides}
    extra = [k for k in reg if k not in Reg.model_fields]
    if not any(f"reg.{k}" in given for k in extra):
        return
    raw = flatten(OmegaConf.to_container(cfg, resolve=False))
    texts = " ".join(v for v in raw.values() if isinstance(v, str) and "${" in v)
    specs = {k: v for k, v in flatten(reg).items() if "." in k}
    carried = {json.dumps(v) for v in specs.values()}

    def used(key: str) -> bool:
        if re.search(rf"\breg\.{re.escape(str(key))}\b", texts):
            return True
        if isinstance(reg[key], dict):  # a nested block of its own (a user's spec section)
            return any(k.startswith(f"{key}.") for k in specs)
        return json.dumps(reg[key]) in carried

    unused = [k for k in extra if f"reg.{k}" in given and not used(k)]
    if unused:
        key = unused[0]
        known = ", ".join(sorted(set(Reg.model_fields) | (set(extra) - set(unused))))
        raise ConfigError(
            f"reg.{key}", reg[key],
            f"a key of reg={reg.get('name')} ({known}) or a knob its specs use as "
            f"${{reg.{key}}}; none does, so it would change nothing",
        )  # fmt: skip


def _check_monitor(monitor: str, dataset: dict) -> None:
    """Early stopping watches a series the dataset's task records."""
    kind = tasks.kind_named(dataset.get("task"))
    if monitor not in kind.columns:
        raise ConfigError(
            "trainer.early_stopping.monitor", monitor,
            f"a series dataset.task={kind.name} records: one of {', '.join(kind.columns)}",
        )  # fmt: skip


def memory_needed(
    cfg: DictConfig, shape: data.Shape, plans: list[LayerPlan], members: int = 1
) -> dict:
    """A generous estimate of the bytes a training needs, by what needs them: weights
    with their gradients, optimizer state and each member's Keras copy; the batch order
    of one chunk of epochs (``ORDER_BUDGET`` bounds it); the history; and the
    activations of a batch and of the validation split. Keys name the config values that
    drive each part."""
    widths = [p.units for p in plans if p.units is not None]
    sizes = [shape.features, *widths, shape.outputs]
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    epochs = int(cfg.trainer.epochs)
    columns = 6 + 7 * len(sizes)
    rows = int(cfg.trainer.batch_size) + shape.val + shape.test
    return {
        f"the weights of model.width={cfg.model.width}, model.depth={cfg.model.depth}":
            params * 4 * 8 * members,
        "the batch order of a chunk of epochs":
            min(epochs * shape.train * members, ORDER_BUDGET) * 12,
        f"the history of trainer.epochs={epochs}": epochs * columns * 40 * members,
        f"the activations of model.width={cfg.model.width}": rows * sum(sizes) * 4 * 3 * members,
    }  # fmt: skip


def _available_memory() -> int:
    """Bytes this machine can still give (MemAvailable), or its whole memory."""
    import os

    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(
    cfg: DictConfig, shape: data.Shape, plans: list[LayerPlan], members: int = 1
) -> None:
    """Refuse, in one line, a training that cannot fit in memory, before it starts."""
    need = memory_needed(cfg, shape, plans, members)
    total, free = sum(need.values()), _available_memory()
    if total > 0.9 * free:
        what = max(need, key=need.get)
        group = f" for a fused group of {members}" if members > 1 else ""
        raise DataError(
            f"this training needs about {total / 2**30:.3g} GiB{group}, mostly for {what}, "
            f"but {free / 2**30:.3g} GiB is free; make it smaller"
        )
