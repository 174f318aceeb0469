"""Validation of a composed config, without TensorFlow.

``validate(cfg)`` checks every group before any work starts, asking each catalogue to
check its own part (the layer plan, the optimizers, the datasets), and raises
``ConfigError`` naming the key, the value and what is accepted. It returns the layer
plan, which is all the model builders need.
"""

from __future__ import annotations

import importlib.util
import re

from omegaconf import DictConfig, OmegaConf

from regexp import data
from regexp.checks import choice, integer
from regexp.errors import ConfigError, DataError
from regexp.optimizers import OPTIMIZERS
from regexp.plan import LayerPlan, layer_plan

# trainer.engine: ``auto`` trains a job alone with ``compiled`` and a sweep's jobs in
# fused groups; the others force one engine (``regexp.engines`` implements them).
ENGINE_CHOICES = ("auto", "compiled", "keras", "fused")
NAME = re.compile(r"[\w.+-]{1,100}")


def validate(cfg: DictConfig) -> list[LayerPlan]:
    """Check the whole config before TensorFlow is imported; return the layer plan."""
    integer("seed", cfg.get("seed"), minimum=0)
    if cfg.seed > 2**32 - 1:
        raise ConfigError("seed", cfg.seed, "an integer from 0 to 2**32 - 1")
    for key in ("experiment_name", "reg.name"):  # they name run folders
        name = OmegaConf.select(cfg, key)
        plain = isinstance(name, str) and NAME.fullmatch(name) and name not in (".", "..")
        if name is not None and not plain:
            accepted = "a plain name of letters, digits and . _ + - (it names folders)"
            raise ConfigError(key, name, accepted)
    data.validate(cfg.dataset)
    plans = layer_plan(cfg)
    opt = cfg.optimizer
    name = choice("optimizer.name", opt.get("name"), tuple(OPTIMIZERS))
    OPTIMIZERS[name].validate(opt)
    tr = cfg.trainer
    integer("trainer.epochs", tr.get("epochs"))
    integer("trainer.batch_size", tr.get("batch_size"))
    integer("trainer.threads", tr.get("threads"), minimum=0)
    tracking = cfg.get("tracking")
    if tracking:
        choice("tracking.backend", tracking.get("backend"), ("mlflow",))
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(
                "+tracking", "mlflow", "installed mlflow: pip install 'regexp[mlflow]'"
            )
        if not tracking.get("uri"):
            raise ConfigError("tracking.uri", tracking.get("uri"), "an MLflow tracking URI")
    if tr.get("tensorboard") not in (None, True, False):
        raise ConfigError("trainer.tensorboard", tr.get("tensorboard"), "true or false")
    if tr.get("tensorboard") and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "trainer.tensorboard",
            True,
            "false, or install the extra: pip install 'regexp[tensorboard]'",
        )
    choice("trainer.engine", tr.get("engine"), ENGINE_CHOICES)
    return plans


def memory_needed(cfg: DictConfig, data, plans: list[LayerPlan], members: int = 1) -> dict:
    """A generous estimate of the bytes a training needs, by what needs them: weights
    with their gradients, optimizer state and each member's Keras copy; the batch order
    of every epoch; the history; and the activations of a batch and of the validation
    split. Keys name the config values that drive each part."""
    widths = [p.units for p in plans if p.units is not None]
    outputs = 1 if data.n_classes == 2 else data.n_classes
    sizes = [data.n_features, *widths, outputs]
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    epochs, n = int(cfg.trainer.epochs), len(data.x_train)
    columns = 6 + 7 * len(sizes)
    rows = int(cfg.trainer.batch_size) + len(data.x_val) + len(data.x_test)
    return {
        f"the weights of model.width={cfg.model.width}, model.depth={cfg.model.depth}":
            params * 4 * 8 * members,
        f"the batch order of trainer.epochs={epochs}": epochs * n * 12 * members,
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


def check_memory(cfg: DictConfig, data, plans: list[LayerPlan], members: int = 1) -> None:
    """Refuse, in one line, a training that cannot fit in memory, before it starts."""
    need = memory_needed(cfg, data, plans, members)
    total, free = sum(need.values()), _available_memory()
    if total > 0.9 * free:
        what = max(need, key=need.get)
        group = f" for a fused group of {members}" if members > 1 else ""
        raise DataError(
            f"this training needs about {total / 2**30:.3g} GiB{group}, mostly for {what}, "
            f"but {free / 2**30:.3g} GiB is free; make it smaller"
        )
