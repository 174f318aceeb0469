"""Config keys: one ``flatten``, a run's name, and the config without the keys that do
not matter for a purpose.

Each purpose is a named set of dotted keys (a key also covers everything under it):

- ``HASH``: a run's identity when resuming. Only ``resume`` itself is left out.
- ``TRAINING``: what makes two runs the same training: names and citations left out too
  (``make reproduce-all`` trains B1, B4 and B5's shared baseline once).
- ``GROUP``: what members of one fused group may differ in: the seed and split, the
  learning rate, the weight decay, every strength of ``reg`` (the kinds and places of
  the penalties are compared separately, from the layer plan), the early-stopping
  patience and min_delta, and the engine choice.
- ``BOOKKEEPING``: what cannot change what is trained: resuming, progress, TensorBoard
  files, tracking, names and citations, the engine and the thread count.
- ``REPORT``: what only tells runs of one recipe apart in a report: the seed and split, and
  the bookkeeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

HASH = ("resume",)
TRAINING = (*HASH, "experiment_name", "published")
GROUP = (*TRAINING, "seed", "dataset.split_seed", "optimizer.lr", "optimizer.weight_decay", "reg",
         "trainer.early_stopping.patience", "trainer.early_stopping.min_delta",
         "trainer.engine")  # fmt: skip
# Keys that cannot change what is trained or its numbers: bookkeeping (resuming, progress,
# TensorBoard files, tracking), names and citations, and the engine and thread count (the
# engines agree, bit for bit or to 1e-4 for a fused member). They never split a group.
BOOKKEEPING = ("resume", "experiment_name", "published", "trainer.engine", "trainer.threads",
               "trainer.quiet", "trainer.tensorboard", "tracking")  # fmt: skip
REPORT = ("seed", "dataset.split_seed", *BOOKKEEPING)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"reg.hidden.activity.lam": 0.01, ...}``.

    Lists become JSON text and an empty mapping ``"{}"``, so every value is a scalar that
    fits a table cell.
    """
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: "{}"}
    if isinstance(node, list):
        return {prefix[:-1]: json.dumps(node)}
    return {prefix[:-1]: node}


def covered(key: str, keys: Iterable[str]) -> bool:
    """Whether a dotted ``key`` is one of ``keys`` or lies under one of them."""
    return any(key == k or key.startswith(f"{k}.") for k in keys)


def without(plain: dict, keys: Iterable[str]) -> dict:
    """A copy of the nested mapping ``plain`` without ``keys`` (dotted paths)."""
    out = json.loads(json.dumps(plain))
    for key in keys:
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


# Keys added to shipped configs after runs were already written, each with the value that
# means what a config without it always meant. ``essential`` leaves such a key out at that
# value, so a config hashes the same with or without it and old sweeps still resume.
LATER = {
    "dataset.task": "classification",
    "dataset.subsample": None,
    "dataset.stratify": False,
    "reg.smoothing": 0.0,
    **{
        f"reg.{place}.{kind}": None
        for place in ("inputs", "hidden")
        for kind in ("noise", "dropout")
    },
    "reg.hidden.batchnorm": None,
    "reg.hidden.constraint": None,
    "reg.output.constraint": None,
}


def essential(cfg, keys: Iterable[str]) -> dict:
    """The resolved config (a DictConfig or a plain mapping) without ``keys``, and without
    the ``LATER`` keys that hold their neutral value."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    flat = flatten(plain)
    neutral = [k for k, v in LATER.items() if k in flat and flat[k] == v]
    out = without(plain, [*keys, *neutral])
    for key in neutral:  # a section that held only such keys (reg.inputs) goes too
        *parents, _ = key.split(".")
        parent = ".".join(parents)
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if node == {} and not any(covered(k, [parent]) for k in flat if k not in neutral):
            out = without(out, [parent])
    return out


def fingerprint(cfg, keys: Iterable[str]) -> str:
    """``essential(cfg, keys)`` as a short stable hash."""
    import hashlib

    text = json.dumps(essential(cfg, keys), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_name(experiment: str | None, reg: str) -> str:
    """A run's short name: ``<experiment>_<reg>`` for an experiment, else the reg name.

    Registered as the ``run_name`` resolver, so folder names and titles agree.
    """
    return f"{experiment}_{reg}" if experiment else str(reg)
