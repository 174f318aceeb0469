"""The layer plan: the ``model`` and ``reg`` groups of a config as one ``LayerPlan`` per
Dense layer, which is all the model builders (Keras and stacked) need to know.

``layer_plan(cfg)`` validates both groups on the way, without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from regexp.checks import choice, integer, strength
from regexp.errors import ConfigError
from regexp.regularizers import CODES, code_to_spec, kind_label, validate_spec

ACTIVATIONS = (
    "relu", "tanh", "sigmoid", "linear", "elu", "selu", "gelu", "softplus", "softsign",
    "swish", "silu", "leaky_relu", "relu6", "mish", "hard_sigmoid", "exponential",
)  # fmt: skip
POSITIONS = ("post", "pre")
MODES = ("layers", "loss")
PENALTY_SLOTS = ("kernel", "bias", "activity")  # where a layer carries a regularizer
SLOTS = (*PENALTY_SLOTS, "position")


@dataclass(frozen=True)
class LayerPlan:
    """One Dense layer: its size, activation, and the regularizer specs it carries.

    ``position`` says where the activity penalty sits: ``post`` on the activation's
    output, ``pre`` on the Dense output before the activation (source B5).
    """

    name: str
    units: int | None  # None for the output layer: fitted to the task
    activation: str | None
    kernel: dict | None = None
    bias: dict | None = None
    activity: dict | None = None
    position: str = "post"

    @property
    def shape(self) -> tuple:
        """What fused members must share: everything but the penalties' strengths."""
        kinds = tuple(kind_label(getattr(self, slot)) for slot in PENALTY_SLOTS)
        return (self.name, self.units, self.activation, self.position, *kinds)


def _per_layer(key: str, value: Any, depth: int, check) -> list:
    """A scalar for every hidden layer, or a list with one entry per hidden layer."""
    if isinstance(value, (list, tuple, ListConfig)):
        if len(value) != depth:
            raise ConfigError(key, list(value), f"one value, or a list of model.depth={depth}")
        return [check(f"{key}[{i}]", v) for i, v in enumerate(value)]
    return [check(key, value)] * depth


def layer_index(key: str, raw: Any, depth: int) -> int:
    """A per-layer key of ``reg.layers``: 1..depth, or -depth..-1 counted from the last."""
    try:
        index = int(str(raw))
    except ValueError:
        index = 0
    if not (1 <= index <= depth or -depth <= index <= -1):
        raise ConfigError(
            f"{key}.{raw}", index or raw, f"a hidden-layer index 1..{depth} or -{depth}..-1"
        )
    return index if index > 0 else depth + 1 + index


def _slots(key: str, value: Any, allowed: tuple[str, ...]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a mapping of " + ", ".join(allowed))
    for name, spec in value.items():
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", spec, "one of the keys " + ", ".join(allowed))
        if name == "position":
            choice(f"{key}.position", spec, POSITIONS)
        else:
            validate_spec(f"{key}.{name}", spec)
    return dict(value)


def layer_plan(cfg: DictConfig) -> list[LayerPlan]:
    """Validate ``model`` and ``reg`` and return one plan per Dense layer, output last."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    reg = OmegaConf.to_container(cfg.reg, resolve=True)
    depth = integer("model.depth", model.get("depth"))
    widths = _per_layer("model.width", model.get("width"), depth, integer)
    activations = _per_layer(
        "model.activation", model.get("activation"), depth, lambda k, v: choice(k, v, ACTIVATIONS)
    )
    strength("reg.lam", reg.get("lam"))
    mode = choice("reg.mode", reg.get("mode", "layers"), MODES)

    hidden = _slots("reg.hidden", reg.get("hidden"), SLOTS)
    output = _slots("reg.output", reg.get("output"), ("kernel", "bias"))
    per_layer: dict[int, dict] = {}
    for raw, slots in (reg.get("layers") or {}).items():
        index = layer_index("reg.layers", raw, depth)
        per_layer.setdefault(index, {}).update(_slots(f"reg.layers.{raw}", slots, SLOTS))

    plans = []
    for i in range(1, depth + 1):
        slots = {**hidden, **per_layer.get(i, {})}
        plans.append(
            LayerPlan(
                name=f"h{i}",
                units=widths[i - 1],
                activation=activations[i - 1],
                kernel=slots.get("kernel"),
                bias=slots.get("bias"),
                activity=slots.get("activity"),
                position=slots.get("position") or "post",
            )
        )
    plans.append(LayerPlan("out", None, None, output.get("kernel"), output.get("bias")))

    codes = reg.get("codes")
    if codes is not None:
        plans = _apply_codes(plans, codes, reg["lam"])
    if mode == "loss":
        for p in plans:
            if p.activity is not None:
                raise ConfigError(
                    "reg.mode",
                    "loss",
                    f"mode=layers, since layer {p.name} has an activity penalty"
                    " (a loss function sees only y and y_pred)",
                )
    return plans


def _apply_codes(plans: list[LayerPlan], codes: Any, lam: float) -> list[LayerPlan]:
    """Source B1's codes, one per trainable variable: kernel 1, bias 1, kernel 2, ...

    Variables past the end of the list are not regularized.
    """
    if not isinstance(codes, (list, tuple)):
        raise ConfigError("reg.codes", codes, "a list of codes (1, 2, 12, -1)")
    if len(codes) > 2 * len(plans):
        raise ConfigError(
            "reg.codes", codes, f"at most {2 * len(plans)} codes (kernel and bias per layer)"
        )
    for i, code in enumerate(codes):
        if code not in CODES:
            raise ConfigError(f"reg.codes[{i}]", code, "one of 1 (L1), 2 (L2), 12 (L1+L2), -1")
    padded = list(codes) + [-1] * (2 * len(plans) - len(codes))
    return [
        LayerPlan(
            p.name,
            p.units,
            p.activation,
            kernel=code_to_spec(padded[2 * i], lam),
            bias=code_to_spec(padded[2 * i + 1], lam),
            activity=p.activity,
            position=p.position,
        )
        for i, p in enumerate(plans)
    ]
