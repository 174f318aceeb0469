"""The regularizer catalogue: each kind's name, formula, parameters and Keras class.

A regularizer is written in a reg config as a small mapping, either a built-in kind::

    {kind: l1, lam: 0.01}                  # lam * sum(|x|)
    {kind: l1l2, l1: 0.001, l2: 0.0}       # l1 * sum(|x|) + l2 * sum(x^2)
    {kind: kl, lam: 0.1, rho: 0.05}        # lam * sum_j KL(rho || rho_hat_j)

or any ``keras.regularizers.Regularizer`` subclass reached by import path, with its
constructor arguments beside it (this is how ``reg=l3`` brings in L3)::

    {_target_: regexp.custom_regularizers.L3, lam: 0.01}

This module does not import TensorFlow, so configs can be validated without it;
``to_keras`` imports Keras only when a model is being built.

Activity penalties: Keras (>= 3.14) divides whatever an activity regularizer returns by
the batch size, so ``{kind: l1}`` as an activity penalty costs
``lam * sum(|a|) / batch_size``, i.e. ``lam`` times the per-sample L1 norm of the
layer's output, averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regexp.errors import ConfigError


def _rest(x) -> list[int]:
    return list(range(1, len(x.shape)))


def _member(v, x):
    """A per-member parameter of shape [K], shaped to broadcast against ``x`` [K, ...]."""
    from keras import ops

    return ops.reshape(ops.cast(v, x.dtype), [-1] + [1] * (len(x.shape) - 1))


def _stacked_l1(x, lam):
    from keras import ops

    return ops.cast(lam, x.dtype) * ops.sum(ops.absolute(x), axis=_rest(x))


def _stacked_l2(x, lam):
    from keras import ops

    return ops.cast(lam, x.dtype) * ops.sum(ops.square(x), axis=_rest(x))


def _stacked_l1l2(x, l1, l2):
    return _stacked_l1(x, l1) + _stacked_l2(x, l2)


def _stacked_kl(x, lam, rho):
    from keras import ops

    rho_hat = ops.clip(ops.mean(x, axis=1), 1e-6, 0.99999)
    rho = _member(rho, rho_hat)
    kl = rho * ops.log(rho / rho_hat) + (1 - rho) * ops.log((1 - rho) / (1 - rho_hat))
    return ops.cast(lam, x.dtype) * ops.sum(kl, axis=_rest(kl))


@dataclass(frozen=True)
class Kind:
    """One built-in penalty: its config parameters, formula and implementations.

    ``target`` is the Keras class used on a layer. ``stacked(x, **params)`` is the same
    formula for the fused engine: ``x`` holds one tensor per member on axis 0 (for an
    activity, [members, batch, units]) and each parameter is a vector with one value per
    member; it returns one penalty per member.
    """

    name: str
    params: tuple[str, ...]
    formula: str
    target: str
    stacked: Callable


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("l1", ("lam",), "lam * sum(|x|)", "keras.regularizers.L1", _stacked_l1),
        Kind("l2", ("lam",), "lam * sum(x^2)", "keras.regularizers.L2", _stacked_l2),
        Kind(
            "l1l2",
            ("l1", "l2"),
            "l1 * sum(|x|) + l2 * sum(x^2)",
            "keras.regularizers.L1L2",
            _stacked_l1l2,
        ),
        Kind(
            "kl",
            ("lam", "rho"),
            "lam * sum_j [rho log(rho/rho_hat_j) + (1-rho) log((1-rho)/(1-rho_hat_j))],"
            " rho_hat_j = clip(mean over the batch of unit j, 1e-6, 0.99999)",
            "regexp.custom_regularizers.KLSparsity",
            _stacked_kl,
        ),
    )
}

# Which Keras constructor argument each config parameter feeds.
_KERAS_ARGS = {"l1": {"lam": "l1"}, "l2": {"lam": "l2"}}

ACCEPTED = ", ".join(KINDS) + " (or {_target_: a.Regularizer.subclass, ...})"

# B1's per-parameter codes: 1 = L1, 2 = L2, 12 = L1 + L2, -1 or 0 = none.
CODES = (-1, 0, 1, 2, 12)


def code_to_spec(code: int, lam: float) -> dict[str, Any] | None:
    """Turn one of B1's per-parameter codes into a regularizer spec of strength ``lam``."""
    if code == 1:
        return {"kind": "l1", "lam": lam}
    if code == 2:
        return {"kind": "l2", "lam": lam}
    if code == 12:
        return {"kind": "l1l2", "l1": lam, "l2": lam}
    return None


def check_strength(key: str, value: Any) -> None:
    """A penalty strength: a number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, value, "a number >= 0")
    if not value >= 0:  # also catches NaN
        raise ConfigError(key, value, "a number >= 0")


def module_exists(dotted: str) -> bool:
    """Whether ``dotted`` names an importable module. Looks for its file package by
    package without running the packages (so ``keras.regularizers`` does not load
    TensorFlow); only a module no file holds (a lazy alias) is really imported."""
    import importlib.machinery
    import importlib.util

    top, *rest = dotted.split(".")
    try:
        spec = importlib.util.find_spec(top)
        for part in rest:
            if spec is None or not spec.submodule_search_locations:
                break
            locations = list(spec.submodule_search_locations)
            spec = importlib.machinery.PathFinder.find_spec(part, locations)
        else:
            if spec is not None:
                return True
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


def validate_spec(key: str, spec: Any) -> None:
    """Check one regularizer spec without importing TensorFlow.

    ``key`` is the config path of the spec, used in the error message.
    """
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        raise ConfigError(key, spec, "null or a mapping {kind: ..., lam: ...}")
    if "_target_" in spec:
        target = spec["_target_"]
        module, _, attr = str(target).rpartition(".")
        found = bool(module) and module_exists(module)
        if not found or not attr:
            raise ConfigError(f"{key}._target_", target, "an importable 'module.Class' path")
        for name in ("lam", "l1", "l2"):
            if name in spec:
                check_strength(f"{key}.{name}", spec[name])
        return
    kind_name = spec.get("kind")
    if kind_name not in KINDS:
        raise ConfigError(f"{key}.kind", kind_name, ACCEPTED)
    kind = KINDS[kind_name]
    extra = sorted(set(spec) - {"kind", *kind.params})
    if extra:
        raise ConfigError(
            f"{key}.{extra[0]}",
            spec[extra[0]],
            f"only {', '.join(kind.params)} for kind {kind_name}",
        )
    for name in kind.params:
        if name not in spec:
            raise ConfigError(f"{key}.{name}", None, f"a value (kind {kind_name} needs it)")
        if name == "rho":
            rho = spec[name]
            if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 < rho < 1:
                raise ConfigError(f"{key}.rho", rho, "a number in (0, 1)")
        else:
            check_strength(f"{key}.{name}", spec[name])


def to_keras(spec: Mapping[str, Any] | None):
    """Build the Keras regularizer object for a validated spec (imports Keras)."""
    if spec is None:
        return None
    from hydra.utils import get_class

    spec = dict(spec)
    if "_target_" in spec:
        cls = get_class(spec.pop("_target_"))
        return cls(**spec)
    kind = KINDS[spec.pop("kind")]
    rename = _KERAS_ARGS.get(kind.name, {})
    return get_class(kind.target)(**{rename.get(k, k): float(v) for k, v in spec.items()})


def stacked_penalty(specs: Sequence[Mapping[str, Any] | None]) -> Callable | None:
    """The penalties of K members on one slot, as a function [K, ...] -> [K].

    All specs are of one kind (or all None, which gives None). Built-in kinds use their
    vectorized formula with one strength per member; a ``_target_`` regularizer is
    applied to each member's slice in turn.
    """
    import tensorflow as tf

    if all(s is None for s in specs):
        return None
    first = specs[0]
    if "kind" in first:
        kind = KINDS[first["kind"]]
        params = {p: tf.constant([float(s[p]) for s in specs], tf.float32) for p in kind.params}
        return lambda x: kind.stacked(x, **params)
    regs = [to_keras(s) for s in specs]
    return lambda x: tf.stack([tf.cast(r(x[k]), tf.float32) for k, r in enumerate(regs)])
