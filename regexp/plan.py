"""The layer plan: the ``model`` and ``reg`` groups of a config as one ``LayerPlan`` per
Dense layer, which is all the model builders (Keras and stacked) need to know.

``layer_plan(cfg)`` validates both groups on the way, without TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from omegaconf import DictConfig, OmegaConf
from pydantic import ConfigDict

from regexp.checks import MAPPING, NAME, STRENGTH, Choice, Integer, Schema, parse
from regexp.errors import ConfigError
from regexp.regularizers import CODES, code_to_spec, kind_label, validate_spec

ACTIVATIONS = (
    "relu", "tanh", "sigmoid", "linear", "elu", "selu", "gelu", "softplus", "softsign",
    "swish", "silu", "leaky_relu", "relu6", "mish", "hard_sigmoid", "exponential",
)  # fmt: skip
POSITIONS = ("post", "pre")
MODES = ("layers", "loss")
PENALTY_SLOTS = ("kernel", "bias", "activity")  # where a layer carries a regularizer


class Model(Schema):
    """The ``model`` group: ``depth`` hidden layers, with one width and activation for
    all of them, or a list of ``depth``."""

    depth: Annotated[int, Integer(1)]
    width: Annotated[Any, Integer(1).or_list()]
    activation: Annotated[Any, Choice(*ACTIVATIONS).or_list()]


class Slots(Schema):
    """What a hidden layer carries: a regularizer spec per slot (null for none; checked by
    the regularizer catalogue), and where its activity penalty sits."""

    kernel: Any = None
    bias: Any = None
    activity: Any = None
    position: Annotated[str, Choice(*POSITIONS)] = "post"


class OutputSlots(Schema):
    """What the output layer carries: kernel and bias specs."""

    kernel: Any = None
    bias: Any = None


class Reg(Schema):
    """The ``reg`` group. A reg file may add keys of its own (B7's ``rho``) for its specs
    to interpolate; those are checked where the specs use them."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, NAME]
    lam: Annotated[float, STRENGTH]
    mode: Annotated[str, Choice(*MODES)] = "layers"
    codes: Any = None  # checked with the plan (B1's codes)
    hidden: Annotated[Any, MAPPING.or_none()] = None
    output: Annotated[Any, MAPPING.or_none()] = None
    layers: Annotated[Any, MAPPING.or_none()] = None


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


def _per_layer(key: str, value: Any, depth: int) -> list:
    """A scalar for every hidden layer, or a list with one entry per hidden layer."""
    if isinstance(value, (list, tuple)):
        if len(value) != depth:
            raise ConfigError(key, list(value), f"one value, or a list of model.depth={depth}")
        return list(value)
    return [value] * depth


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


def _slots(key: str, value: Any, schema: type[Schema]) -> dict:
    if value is None:
        return {}
    slots = parse(schema, value, key)
    for name in PENALTY_SLOTS:
        if name in slots.model_fields_set:
            validate_spec(f"{key}.{name}", getattr(slots, name))
    return {name: getattr(slots, name) for name in slots.model_fields_set}


def layer_plan(cfg: DictConfig) -> list[LayerPlan]:
    """Validate ``model`` and ``reg`` and return one plan per Dense layer, output last."""
    model = parse(Model, OmegaConf.to_container(cfg.model, resolve=True), "model")
    reg = OmegaConf.to_container(cfg.reg, resolve=True)
    checked = parse(Reg, reg, "reg")
    depth = model.depth
    widths = _per_layer("model.width", model.width, depth)
    activations = _per_layer("model.activation", model.activation, depth)
    mode = checked.mode

    hidden = _slots("reg.hidden", checked.hidden, Slots)
    output = _slots("reg.output", checked.output, OutputSlots)
    per_layer: dict[int, dict] = {}
    for raw, slots in (checked.layers or {}).items():
        index = layer_index("reg.layers", raw, depth)
        per_layer.setdefault(index, {}).update(_slots(f"reg.layers.{raw}", slots, Slots))

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

    if checked.codes is not None:
        plans = _apply_codes(plans, checked.codes, checked.lam)
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
