"""The layer plan: the ``model`` and ``reg`` groups of a config as one ``LayerPlan`` per
Dense layer, which is all the model builders (Keras and stacked) need to know.

``layer_plan(cfg)`` validates both groups on the way, without TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Any

from omegaconf import DictConfig, OmegaConf
from pydantic import ConfigDict

from regexp.checks import (
    MAPPING,
    NAME,
    STRENGTH,
    UNIT_INTERVAL,
    Choice,
    Integer,
    Schema,
    parse,
)
from regexp.errors import ConfigError
from regexp.layers import CONSTRAINTS, INPUT_KINDS, LAYER_KINDS, validate_constraint
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
    the regularizer catalogue), where its activity penalty sits, its layer regularizers
    and its kernel's constraint (checked by ``regexp.layers``' catalogues)."""

    kernel: Any = None
    bias: Any = None
    activity: Any = None
    position: Annotated[str, Choice(*POSITIONS)] = "post"
    batchnorm: Any = None
    noise: Any = None
    dropout: Any = None
    constraint: Any = None


class OutputSlots(Schema):
    """What the output layer carries: kernel and bias specs, its kernel's constraint."""

    kernel: Any = None
    bias: Any = None
    constraint: Any = None


class Inputs(Schema):
    """What the input features carry: noise, then dropout."""

    noise: Any = None
    dropout: Any = None


class Reg(Schema):
    """The ``reg`` group. A reg file may add keys of its own (B7's ``rho``) for its specs
    to interpolate; those are checked where the specs use them."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, NAME]
    lam: Annotated[float, STRENGTH]
    mode: Annotated[str, Choice(*MODES)] = "layers"
    codes: Any = None  # checked with the plan (B1's codes)
    inputs: Annotated[Any, MAPPING.or_none()] = None
    hidden: Annotated[Any, MAPPING.or_none()] = None
    output: Annotated[Any, MAPPING.or_none()] = None
    layers: Annotated[Any, MAPPING.or_none()] = None
    # label smoothing of the cross-entropy, as Keras' label_smoothing (regexp.tasks)
    smoothing: Annotated[float, UNIT_INTERVAL] = 0.0


@dataclass(frozen=True)
class LayerPlan:
    """One Dense layer: its size, activation, and the regularizer specs it carries.

    ``position`` says where the activity penalty sits: ``post`` on the activation's
    output, ``pre`` on the Dense output before the activation (source B5).

    The layer regularizers of ``regexp.layers`` (``batchnorm``, ``noise``, ``dropout``)
    and the kernel's ``constraint`` are their validated parameters, or None. A hidden
    layer is: Dense -> [batchnorm pre] -> activation -> [batchnorm post] -> noise ->
    dropout. ``inputs`` (the first layer's only) holds what the input features carry
    before it: ``{"noise": {...}, "dropout": {...}}``.
    """

    name: str
    units: int | None  # None for the output layer: fitted to the task
    activation: str | None
    kernel: dict | None = None
    bias: dict | None = None
    activity: dict | None = None
    position: str = "post"
    batchnorm: dict | None = None
    noise: dict | None = None
    dropout: dict | None = None
    constraint: dict | None = None
    inputs: dict | None = None

    @property
    def shape(self) -> tuple:
        """What fused members must share: everything but the penalties' strengths and the
        layer regularizers' and constraints' values."""
        kinds = tuple(kind_label(getattr(self, slot)) for slot in PENALTY_SLOTS)
        extras = tuple(k for k in LAYER_KINDS if getattr(self, k) is not None)
        norm = self.batchnorm["position"] if self.batchnorm else None
        constraint = self.constraint["kind"] if self.constraint else None
        inputs = tuple(k for k in INPUT_KINDS if k in (self.inputs or {}))
        return (self.name, self.units, self.activation, self.position, *kinds, extras, norm,
                constraint, inputs)  # fmt: skip

    @property
    def biased(self) -> bool:
        """Whether the Dense layer has a bias: not before a ``pre`` batch normalization,
        which subtracts it again (its ``beta`` takes the bias's place). Kept, the bias's
        gradient would be rounding noise, which Adam scales up to full steps."""
        return self.batchnorm is None or self.batchnorm["position"] != "pre"

    @property
    def split(self) -> bool:
        """Whether the activation is a layer of its own (``<name>_act``) after the Dense
        layer: when the activity penalty or batch normalization comes before it."""
        pre_norm = self.batchnorm is not None and self.batchnorm["position"] == "pre"
        return pre_norm or (self.activity is not None and self.position == "pre")


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
    """The slots a mapping sets, each checked by its catalogue (layer regularizers and
    constraints come back with their defaults filled in)."""
    if value is None:
        return {}
    slots = parse(schema, value, key)
    out = {}
    for name in slots.model_fields_set:
        spec, where = getattr(slots, name), f"{key}.{name}"
        if name in PENALTY_SLOTS:
            if isinstance(spec, dict) and str(spec.get("kind")) in CONSTRAINTS:
                raise ConfigError(
                    where, spec, f"a regularizer spec; a constraint goes in {key}.constraint "
                    "and constrains the kernel"
                )  # fmt: skip
            validate_spec(where, spec)
        elif name in LAYER_KINDS:
            spec = None if spec is None else LAYER_KINDS[name].validate(where, spec)
        elif name == "constraint":
            spec = validate_constraint(where, spec)
        out[name] = spec
    return out


def layer_plan(cfg: DictConfig, resolved: dict | None = None) -> list[LayerPlan]:
    """Validate ``model`` and ``reg`` and return one plan per Dense layer, output last.

    ``resolved`` is the whole config already resolved to plain containers, when the
    caller has it (``config.validate``): its ``model`` and ``reg`` mappings are used as
    they are, not resolved again."""

    def group(name: str) -> Any:
        if resolved is not None and isinstance(resolved.get(name), dict):
            return resolved[name]
        return OmegaConf.to_container(getattr(cfg, name), resolve=True)

    model = parse(Model, group("model"), "model")
    reg = group("reg")
    checked = parse(Reg, reg, "reg")
    depth = model.depth
    widths = _per_layer("model.width", model.width, depth)
    activations = _per_layer("model.activation", model.activation, depth)
    mode = checked.mode

    inputs = {k: v for k, v in _slots("reg.inputs", checked.inputs, Inputs).items() if v}
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
                **{k: slots.get(k) for k in (*LAYER_KINDS, "constraint")},
                inputs=(inputs or None) if i == 1 else None,
            )
        )
    plans.append(
        LayerPlan("out", None, None, **{k: output.get(k) for k in OutputSlots.model_fields})
    )

    if checked.codes is not None:
        plans = _apply_codes(plans, checked.codes, checked.lam)
    for i, p in enumerate(plans[:-1], start=1):
        if p.bias is not None and not p.biased:
            where = "reg.codes" if checked.codes is not None else (
                f"reg.layers.{i}.bias" if "bias" in per_layer.get(i, {}) else "reg.hidden.bias"
            )  # fmt: skip
            raise ConfigError(
                where, p.bias, f"null on layer {p.name}: before batchnorm position=pre a Dense "
                "layer has no bias (the batch normalization's beta takes its place)"
            )  # fmt: skip
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
        replace(
            p, kernel=code_to_spec(padded[2 * i], lam), bias=code_to_spec(padded[2 * i + 1], lam)
        )
        for i, p in enumerate(plans)
    ]
