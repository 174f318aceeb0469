"""The regularizer catalogue: one class per kind of penalty.

A regularizer is written in a reg config as a small mapping, either a built-in kind::

    {kind: l1, lam: 0.01}                  # lam * sum(|x|)
    {kind: l1l2, l1: 0.001, l2: 0.0}       # l1 * sum(|x|) + l2 * sum(x^2)
    {kind: kl, lam: 0.1, rho: 0.05}        # lam * sum_j KL(rho || rho_hat_j)
    {kind: huber, lam: 0.01, delta: 1.0}   # lam * sum(huber_delta(x))

or any ``keras.regularizers.Regularizer`` subclass reached by import path, with its
constructor arguments beside it (this is how ``reg=l3`` brings in L3)::

    {_target_: regexp.custom_regularizers.L3, lam: 0.01}

A kind is one class, as in Keras' own ``regularizers.py``: its docstring states the
formula, ``params`` gives each parameter's type (a ``checks.Rule``; together they make
the kind's typed schema, checked without TensorFlow so that configs validate before it
loads), ``keras(**params)`` is the regularizer put on a Keras layer, and
``stacked(x, **params)`` is the same formula for the fused engine, where ``x`` holds one
tensor per member on axis 0 and each parameter one value per member. A new kind is a new
subclass; nothing else needs to know about it.

Activity penalties: Keras (>= 3.14) divides whatever an activity regularizer returns by
the batch size, so ``{kind: l1}`` as an activity penalty costs
``lam * sum(|a|) / batch_size``, i.e. ``lam`` times the per-sample L1 norm of the
layer's output, averaged over the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from regexp.checks import OPEN_UNIT, POSITIVE, STRENGTH, Rule, Schema, parse
from regexp.errors import ConfigError


def _rest(x) -> list[int]:
    """Every axis but the member axis."""
    return list(range(1, len(x.shape)))


def _member(v, x):
    """A per-member parameter of shape [K], shaped to broadcast against ``x`` [K, ...]."""
    from keras import ops

    return ops.reshape(ops.cast(v, x.dtype), [-1] + [1] * (len(x.shape) - 1))


class Kind:
    """A built-in penalty. Subclasses set ``name`` and ``params`` (parameter -> type),
    and define ``stacked``; ``keras`` defaults to ``stacked`` on a member axis of one."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Rule]]

    @classmethod
    def schema(cls) -> type[Schema]:
        """The typed schema of a spec of this kind: ``kind`` and every parameter."""
        return _schema(cls)

    @classmethod
    def validate(cls, key: str, spec: Mapping[str, Any]) -> None:
        """Every parameter present and accepted, and no other key."""
        parse(cls.schema(), spec, key, what=f"kind {cls.name}")

    @classmethod
    def keras(cls, **params: float):
        """The Keras regularizer of this kind with these parameters."""
        return _penalty_class()(cls.name, **params)

    @staticmethod
    def stacked(x, **params):
        """One penalty per member of ``x`` [K, ...]; each parameter has shape [K]."""
        raise NotImplementedError


class L1(Kind):
    """``loss = lam * sum(|x|)`` (Keras' ``L1``)."""

    name, params = "l1", {"lam": STRENGTH}

    @classmethod
    def keras(cls, lam: float):
        import keras

        return keras.regularizers.L1(l1=lam)

    @staticmethod
    def stacked(x, lam):
        from keras import ops

        return ops.cast(lam, x.dtype) * ops.sum(ops.absolute(x), axis=_rest(x))


class L2(Kind):
    """``loss = lam * sum(x^2)`` (Keras' ``L2``)."""

    name, params = "l2", {"lam": STRENGTH}

    @classmethod
    def keras(cls, lam: float):
        import keras

        return keras.regularizers.L2(l2=lam)

    @staticmethod
    def stacked(x, lam):
        from keras import ops

        return ops.cast(lam, x.dtype) * ops.sum(ops.square(x), axis=_rest(x))


class L1L2(Kind):
    """``loss = l1 * sum(|x|) + l2 * sum(x^2)`` (Keras' ``L1L2``)."""

    name, params = "l1l2", {"l1": STRENGTH, "l2": STRENGTH}

    @classmethod
    def keras(cls, l1: float, l2: float):
        import keras

        return keras.regularizers.L1L2(l1=l1, l2=l2)

    @staticmethod
    def stacked(x, l1, l2):
        return L1.stacked(x, l1) + L2.stacked(x, l2)


class KL(Kind):
    """KL-divergence sparsity of source B7 (Ng, CS294A), for activities:

    ``loss = lam * sum_j [rho log(rho / rho_hat_j) + (1 - rho) log((1 - rho) / (1 - rho_hat_j))]``
    with ``rho_hat_j = clip(mean over the batch of unit j, 1e-6, 0.99999)``.
    """

    name, params = "kl", {"lam": STRENGTH, "rho": OPEN_UNIT}

    @classmethod
    def keras(cls, lam: float, rho: float):
        from regexp.custom_regularizers import KLSparsity

        return KLSparsity(lam=lam, rho=rho)

    @staticmethod
    def stacked(x, lam, rho):
        from keras import ops

        rho_hat = ops.clip(ops.mean(x, axis=1), 1e-6, 0.99999)
        rho = _member(rho, rho_hat)
        kl = rho * ops.log(rho / rho_hat) + (1 - rho) * ops.log((1 - rho) / (1 - rho_hat))
        return ops.cast(lam, x.dtype) * ops.sum(kl, axis=_rest(kl))


class Huber(Kind):
    """``loss = lam * sum(huber_delta(x))``, where ``huber_delta(w) = w^2 / 2`` for
    ``|w| <= delta`` and ``delta * (|w| - delta / 2)`` beyond: quadratic near zero like L2,
    linear in the tails like L1."""

    name, params = "huber", {"lam": STRENGTH, "delta": POSITIVE}

    @staticmethod
    def stacked(x, lam, delta):
        from keras import ops

        delta = _member(delta, x)
        a = ops.absolute(x)
        quadratic = ops.minimum(a, delta)
        h = 0.5 * ops.square(quadratic) + delta * (a - quadratic)
        return ops.cast(lam, x.dtype) * ops.sum(h, axis=_rest(x))


KINDS: dict[str, type[Kind]] = {k.name: k for k in (L1, L2, L1L2, KL, Huber)}


@functools.cache
def _schema(kind: type[Kind]) -> type[Schema]:
    from typing import Annotated, Literal

    from pydantic import create_model

    fields = {p: (Annotated[float, rule], ...) for p, rule in kind.params.items()}
    return create_model(kind.name, __base__=Schema, kind=(Literal[kind.name], ...), **fields)


ACCEPTED = ", ".join(KINDS) + " (or {_target_: a.Regularizer.subclass, ...})"


@functools.cache
def _penalty_class():
    """A built-in kind as a Keras regularizer, serializable by name (defined on first use,
    so that this module does not import Keras)."""
    import keras

    @keras.saving.register_keras_serializable(package="regexp", name="Penalty")
    class Penalty(keras.regularizers.Regularizer):
        """``KINDS[kind].stacked`` on ``x`` as a member axis of one."""

        def __init__(self, kind: str, **params: float):
            self.kind, self.params = kind, {k: float(v) for k, v in params.items()}

        def __call__(self, x):
            params = {k: keras.ops.convert_to_tensor([v], x.dtype) for k, v in self.params.items()}
            return KINDS[self.kind].stacked(x[None], **params)[0]

        def get_config(self) -> dict:
            return {"kind": self.kind, **self.params}

    return Penalty


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
                STRENGTH(f"{key}.{name}", spec[name])
        return
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(f"{key}.kind", kind, ACCEPTED)
    KINDS[kind].validate(key, spec)


def kind_label(spec: Mapping[str, Any] | None) -> str | None:
    """What a spec is, without its strengths: ``l1``, or ``_target_=module.Class``.
    Members of a fused group must agree on it slot by slot."""
    if spec is None:
        return None
    return spec.get("kind") or f"_target_={spec['_target_']}"


def to_keras(spec: Mapping[str, Any] | None):
    """Build the Keras regularizer object for a validated spec (imports Keras)."""
    if spec is None:
        return None
    spec = dict(spec)
    if "_target_" in spec:
        from hydra.utils import get_class

        regularizer = get_class(spec.pop("_target_"))(**spec)
        if _lacks_get_config(regularizer):  # saved with the arguments the config gave it
            regularizer.get_config = lambda: dict(spec)
        return regularizer
    kind = KINDS[spec.pop("kind")]
    return kind.keras(**{k: float(v) for k, v in spec.items()})


def _lacks_get_config(regularizer) -> bool:
    """Whether a user's regularizer keeps Keras' ``get_config``, which raises: a model
    holding it could not be saved. Its constructor arguments are its spec's other keys."""
    import keras

    base = keras.regularizers.Regularizer.get_config
    return getattr(type(regularizer), "get_config", base) is base


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
