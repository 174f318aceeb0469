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
from regexp.errors import ConfigError
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
