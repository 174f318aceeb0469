"""Config validation and the per-layer regularizer plan, without TensorFlow.

``validate(cfg)`` checks a composed config before any work starts and raises
``ConfigError`` naming the key, the value and what is accepted. ``layer_plan(cfg)``
turns the ``model`` and ``reg`` groups into one ``LayerPlan`` per Dense layer, which
is all the model builder needs to know.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from regexp.data import DATASETS
from regexp.engines import ENGINES
from regexp.errors import ConfigError, UserError
from regexp.paths import CONF
from regexp.regularizers import CODES, check_strength, code_to_spec, validate_spec


ACTIVATIONS = (
    "relu", "tanh", "sigmoid", "linear", "elu", "selu", "gelu", "softplus", "softsign",
    "swish", "silu", "leaky_relu", "relu6", "mish", "hard_sigmoid", "exponential",
)  # fmt: skip
OPTIMIZERS = ("adam", "sgd", "rmsprop")
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


def _int(key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, f"an integer >= {minimum}")
    return value


def _choice(key: str, value: Any, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise ConfigError(key, value, "one of " + ", ".join(accepted))
    return value


def _fraction(key: str, value: Any, low_open: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (0 < value < 1 if low_open else 0 <= value < 1)
    if not ok:
        raise ConfigError(key, value, "a number in (0, 1)" if low_open else "a number in [0, 1)")
    return float(value)


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
            _choice(f"{key}.position", spec, POSITIONS)
        else:
            validate_spec(f"{key}.{name}", spec)
    return dict(value)


def layer_plan(cfg: DictConfig) -> list[LayerPlan]:
    """Validate ``model`` and ``reg`` and return one plan per Dense layer, output last."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    reg = OmegaConf.to_container(cfg.reg, resolve=True)
    depth = _int("model.depth", model.get("depth"))
    widths = _per_layer("model.width", model.get("width"), depth, _int)
    activations = _per_layer(
        "model.activation", model.get("activation"), depth, lambda k, v: _choice(k, v, ACTIVATIONS)
    )
    check_strength("reg.lam", reg.get("lam"))
    mode = _choice("reg.mode", reg.get("mode", "layers"), MODES)

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


def compose(*overrides: str) -> DictConfig:
    """The config ``regexp run <overrides>`` would run, composed in-process."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def validate(cfg: DictConfig) -> list[LayerPlan]:
    """Check the whole config before TensorFlow is imported; return the layer plan."""
    _int("seed", cfg.get("seed"), minimum=0)
    validate_dataset(cfg.dataset)
    plans = layer_plan(cfg)
    opt = cfg.optimizer
    _choice("optimizer.name", opt.get("name"), OPTIMIZERS)
    lr = opt.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError("optimizer.lr", lr, "a number > 0")
    tr = cfg.trainer
    _int("trainer.epochs", tr.get("epochs"))
    _int("trainer.batch_size", tr.get("batch_size"))
    _int("trainer.threads", tr.get("threads"), minimum=0)
    tracking = cfg.get("tracking")
    if tracking:
        _choice("tracking.backend", tracking.get("backend"), ("mlflow",))
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError("+tracking", "mlflow", "installed mlflow: pip install -e '.[mlflow]'")
        if not tracking.get("uri"):
            raise ConfigError("tracking.uri", tracking.get("uri"), "an MLflow tracking URI")
    if tr.get("tensorboard") not in (None, True, False):
        raise ConfigError("trainer.tensorboard", tr.get("tensorboard"), "true or false")
    if tr.get("tensorboard") and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "trainer.tensorboard",
            True,
            "false, or install the extra: pip install -e '.[tensorboard]'",
        )
    _choice("trainer.engine", tr.get("engine"), tuple(ENGINES))
    return plans


def validate_dataset(ds: DictConfig) -> None:
    name = _choice("dataset.name", ds.get("name"), tuple(DATASETS))
    _fraction("dataset.test_size", ds.get("test_size"), low_open=True)
    _fraction("dataset.val_size", ds.get("val_size"), low_open=False)
    _choice("dataset.scaler_fit", ds.get("scaler_fit"), ("train", "all", "none"))
    _int("dataset.split_seed", ds.get("split_seed"), minimum=0)
    if name == "csv":
        path = ds.get("path")
        if not path or not Path(str(path)).is_file():
            raise ConfigError("dataset.path", path, "an existing CSV file")
        if not ds.get("label"):
            raise ConfigError("dataset.label", ds.get("label"), "the name of the label column")


# --- before Hydra runs anything: resolvers, and input errors as one line -------------

# Flags after which Hydra prints or inspects instead of running: no precheck then.
_HYDRA_INFO = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info",
               "-sc", "--shell-completion", "-p", "--package", "-cd", "--config-dir",
               "-cp", "--config-path", "-cn", "--config-name", "--experimental-rerun")  # fmt: skip


def register_resolvers() -> None:
    """``run_name`` names run folders; ``first`` picks ``resume`` over a new sweep folder."""
    from regexp.rundir import run_name

    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver(
        "first", lambda *values: next((v for v in values if v is not None), None), replace=True
    )


def hydra_error(exc: Exception, base: DictConfig | None = None) -> UserError:
    """Hydra's multi-line composition errors, as one line naming the key and what is accepted."""
    import difflib
    import re

    text = f"{exc}\n{exc.__cause__ or ''}"
    missing = re.search(r"Could not find '([\w/]+)/(\w+)'", text)
    if missing:
        group, option = missing.groups()
        options = sorted(f.stem for f in (CONF / group).glob("*.yaml"))
        return ConfigError(group, option, "one of " + ", ".join(options))
    override = re.search(r"Could not (?:override|append to) '([\w.]+)'", text)
    inner = re.search(r"Key '(\w+)' is not in struct", text)
    if override and inner and not override.group(1).endswith(inner.group(1)):
        key = override.group(1)
        return UserError(
            f"{key}: the new value has key {inner.group(1)!r}, which the old one lacks; to "
            f"replace a whole regularizer spec, clear it first: {key}=null '{key}={{...}}'"
        )
    if override or inner:
        key = (override or inner).group(1)
        known = _flat_keys(OmegaConf.to_container(base)) if base is not None else []
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return UserError(
            f"{key} is not a config key{hint} (`regexp run --cfg job` lists the keys; "
            f"+{key}=... adds a new one)"
        )  # fmt: skip
    return UserError(text.strip().splitlines()[0])


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for key, v in node.items() for k in _flat_keys(v, f"{prefix}{key}.")] or [
            prefix[:-1]
        ]
    return [prefix[:-1]]


def precheck(args: list[str], every_job: bool = False) -> None:
    """Check what ``regexp run ARGS`` would run before Hydra starts: the overrides parse,
    the configs compose and validate, and the output folder can be written.

    A sweep's jobs are composed once per distinct choice of config groups (that finds
    unknown options and keys), or all of them with ``every_job``; the fused launcher
    validates every job's values before training anyway. Raises ``UserError`` (one line)
    instead of Hydra's multi-line reports.
    """
    if any(a.split("=")[0] in _HYDRA_INFO for a in args):
        return
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UserError(f"cannot read the overrides: {str(e).splitlines()[0]}") from None
    jobs = [list(j) for batch in BasicSweeper.split_arguments(parsed, None) for j in batch]
    if not multirun:
        jobs = [overrides]
    # one composition per distinct choice of config groups catches unknown options and keys
    groups = {p.name for p in CONF.iterdir() if p.is_dir()}
    seen: set[tuple] = set()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        base = hydra_compose("config")
        for num, job in enumerate(jobs):
            choice = tuple(o for o in job if o.split("=")[0].lstrip("+~") in groups)
            if choice in seen and not every_job:
                continue
            seen.add(choice)
            label = f"job #{num}: " if multirun else ""
            try:
                cfg = hydra_compose("config", overrides=job, return_hydra_config=True)
            except HydraException as e:
                raise hydra_error(e, base) from None
            task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            try:
                validate(task)
            except ConfigError as e:
                raise ConfigError(f"{label}{e.key}", e.value, e.accepted) from None
            _check_writable(cfg, multirun)


def _check_writable(cfg: DictConfig, multirun: bool) -> None:
    """The run (or sweep) folder's nearest existing parent must be a writable folder."""
    import os
    import tempfile

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = Path(str(OmegaConf.select(cfg, key)))
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(key, str(folder), f"a folder that can be created ({parent} is a file)")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise ConfigError(key, str(folder), f"a writable folder ({parent}: {e.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise ConfigError(key, str(folder), f"a writable folder ({parent} is not)")
