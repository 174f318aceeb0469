"""Two catalogues: the layer regularizers (dropout, Gaussian noise, batch normalization)
and the kernel constraints (max-norm, unit-norm, non-negative).

A reg config puts them on the inputs, on every hidden layer, or on one hidden layer by
index (see ``regexp.plan``)::

    inputs: {dropout: {rate: 0.1}, noise: {stddev: 0.1}}
    hidden:
      dropout: {rate: 0.2}        # keep with probability 1 - rate, scaled by 1 / (1 - rate)
      noise: {stddev: 0.1}        # add N(0, stddev^2)
      batchnorm: {momentum: 0.99, epsilon: 0.001, position: pre}
      constraint: {kind: max_norm, max_value: 3.0}
    output: {constraint: {kind: non_neg}}

Each entry is one class, like a penalty kind in ``regexp.regularizers``: ``params`` gives
each parameter's type (a ``checks.Rule``) and ``defaults`` those that may be left out;
together they make its typed schema, checked without TensorFlow. ``keras(...)`` is the
Keras layer or constraint of a single model, ``stacked(...)`` the same arithmetic on K
members whose values sit on axis 0, as the fused engine and the diagnostics need it.

**Random numbers.** Dropout masks and noise are drawn by regexp's own Keras layer
(``random_layer``), which ``model.fit`` and the compiled engine both train through, from
a counter-based generator: every number is a hash of (the run's ``seed``, the training
step, the layer's site, the element's position in the batch). The layer counts its steps
itself (a ``keras.random.SeedGenerator`` whose state is ``[seed, step]``, which is not a
model weight), and the fused engine passes its own step count, with one seed per member:
so a fused member draws exactly the numbers its own compiled run draws. In inference
(``training=False``) both layers are the identity, as Keras' ``Dropout`` and
``GaussianNoise`` are; the numbers differ from Keras' own generator, not the semantics.

**Constraints** act as Keras applies them: after each optimizer update,
``kernel = constraint(kernel)``, with norms over the kernel's input axis (axis 0 of a
Dense kernel [in, out]: one norm per unit) and Keras' epsilon.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from regexp.checks import POSITIVE, STRENGTH, UNIT_INTERVAL, Choice, Rule, Schema, parse
from regexp.errors import ConfigError

BATCHNORM_POSITIONS = ("pre", "post")


class Catalogued:
    """A catalogue entry: ``name``, ``params`` (parameter -> type) and ``defaults``."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Rule]] = {}
    defaults: ClassVar[dict[str, Any]] = {}
    tagged: ClassVar[bool] = False  # whether a spec names its entry: {kind: max_norm, ...}

    @classmethod
    def schema(cls) -> type[Schema]:
        return _schema(cls)

    @classmethod
    def validate(cls, key: str, spec: Any) -> dict[str, Any]:
        """The spec's parameters, defaults filled in; ``ConfigError`` naming ``key``."""
        what = f"{'constraint ' if cls.tagged else ''}{cls.name}"
        checked = parse(cls.schema(), {} if spec is None else spec, key, what=what)
        return checked.model_dump()


@functools.cache
def _schema(entry: type[Catalogued]) -> type[Schema]:
    from typing import Annotated, Literal

    from pydantic import create_model

    fields: dict[str, Any] = {
        p: (Annotated[Any, rule], entry.defaults.get(p, ...)) for p, rule in entry.params.items()
    }
    if entry.tagged:
        fields["kind"] = (Literal[entry.name], ...)
    return create_model(entry.name, __base__=Schema, **fields)


# -- the counter-based generator ----------------------------------------------------------


def _mix(x):
    """A bijection of uint32 with full avalanche (C. Wellons' ``lowbias32``):
    ``x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16``."""
    import tensorflow as tf

    def shift_xor(v, bits):
        return tf.bitwise.bitwise_xor(v, tf.bitwise.right_shift(v, tf.constant(bits, tf.uint32)))

    x = shift_xor(x, 16) * tf.constant(0x7FEB352D, tf.uint32)
    x = shift_xor(x, 15) * tf.constant(0x846CA68B, tf.uint32)
    return shift_xor(x, 16)


def uniform(seeds, step, site: int, position, stream: int = 0):
    """Uniform numbers in [0, 1), [K, *position.shape]: a hash of member k's seed, the
    training step (int64, broadcast against ``position``), the site (which random layer,
    see ``site``), ``stream`` (0, 1: two independent draws per element) and the element's
    ``position`` in its batch (int32, row * units + unit). Nothing else enters, so every
    engine that asks for the same numbers gets them."""
    import tensorflow as tf

    def u32(v):
        return tf.cast(v, tf.uint32)  # int64 -> its low 32 bits

    seeds = tf.reshape(tf.cast(seeds, tf.int64), [-1] + [1] * len(position.shape))
    step = tf.cast(step, tf.int64)[None]
    key = _mix(u32(seeds) + tf.constant(0x9E3779B9, tf.uint32))
    key = _mix(tf.bitwise.bitwise_xor(key, u32(4 * site + stream)))
    key = _mix(tf.bitwise.bitwise_xor(key, u32(step)))
    key = _mix(tf.bitwise.bitwise_xor(key, u32(tf.bitwise.right_shift(step, 32))))
    bits = _mix(tf.bitwise.bitwise_xor(u32(position)[None], key))
    bits = _mix(bits + _mix(key + tf.constant(0x85EBCA6B, tf.uint32)))
    top24 = tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32))
    return tf.cast(top24, tf.float32) * (1.0 / 2**24)


def positions(rows, units):
    """Each element's position in a batch of ``rows`` x ``units``: row * units + unit."""
    import tensorflow as tf

    return tf.range(rows)[:, None] * units + tf.range(units)[None, :]


def site(layer: int, kind: str) -> int:
    """Where a random layer sits: ``layer`` 0 for the inputs, i for hidden layer i; four
    sites per layer, so that a layer's noise and its dropout draw apart."""
    return 4 * layer + {"noise": 1, "dropout": 2}[kind]


def _member(v, rank: int):
    """A per-member value [K], shaped to broadcast against a tensor of ``rank``."""
    import tensorflow as tf

    return tf.reshape(v, [-1] + [1] * (rank - 1))


# -- the layer regularizers ---------------------------------------------------------------

# A stacked layer regularizer: ``f(h, training, step, seeds, weights)`` on h [K, B, units];
# ``weights`` is the layer's dict of stacked weights (batch normalization's live there).
Stage = Callable[..., Any]


class LayerKind(Catalogued):
    """A layer regularizer on a layer's output (or the inputs)."""

    random: ClassVar[bool] = False

    @classmethod
    def keras(cls, params: Mapping[str, Any], name: str, seed: int, where: int):
        """The Keras layer of one model (``where`` is its site, for random layers)."""
        raise NotImplementedError

    @classmethod
    def stacked(cls, specs: Sequence[Mapping[str, Any]], where: int) -> Stage:
        """The same layer for K members, one spec each (their values may differ)."""
        raise NotImplementedError


class Dropout(LayerKind):
    """In training, each unit is kept with probability ``1 - rate`` and scaled by
    ``1 / (1 - rate)``, else set to 0 (Keras' ``Dropout``): kept where ``u >= rate`` for
    u uniform in [0, 1). The identity in inference."""

    name, params, random = "dropout", {"rate": UNIT_INTERVAL}, True

    @classmethod
    def keras(cls, params, name, seed, where):
        return random_layer()(cls.name, float(params["rate"]), seed, where, name=name)

    @classmethod
    def stacked(cls, specs, where):
        import tensorflow as tf

        rate = tf.constant([float(s["rate"]) for s in specs], tf.float32)
        scale = tf.constant([1.0 / (1.0 - float(s["rate"])) for s in specs], tf.float32)

        def stage(h, training, step, seeds, weights=None):
            if not training:
                return h
            u = uniform(seeds, step, where, positions(tf.shape(h)[1], tf.shape(h)[2]))
            return tf.where(u >= _member(rate, 3), h * _member(scale, 3), 0.0)

        return stage


class Noise(LayerKind):
    """In training, adds Gaussian noise N(0, stddev^2) to each unit (Keras'
    ``GaussianNoise``), drawn by Box-Muller from two uniforms:
    ``sqrt(-2 ln(1 - u1)) cos(2 pi u2)``. The identity in inference."""

    name, params, random = "noise", {"stddev": STRENGTH}, True

    @classmethod
    def keras(cls, params, name, seed, where):
        return random_layer()(cls.name, float(params["stddev"]), seed, where, name=name)

    @classmethod
    def stacked(cls, specs, where):
        import math

        import tensorflow as tf

        stddev = tf.constant([float(s["stddev"]) for s in specs], tf.float32)

        def stage(h, training, step, seeds, weights=None):
            if not training:
                return h
            at = positions(tf.shape(h)[1], tf.shape(h)[2])
            u1, u2 = (uniform(seeds, step, where, at, stream) for stream in (0, 1))
            z = tf.sqrt(-2.0 * tf.math.log(1.0 - u1)) * tf.cos((2 * math.pi) * u2)
            return h + _member(stddev, 3) * z

        return stage


class BatchNorm(LayerKind):
    """Keras' ``BatchNormalization`` over the batch, per unit:
    ``gamma (x - mean) / sqrt(var + epsilon) + beta``, with the batch's mean and biased
    variance in training, when also ``moving = moving * momentum + batch * (1 - momentum)``,
    and the moving statistics in inference. ``position``: ``pre`` normalizes the Dense
    output before the activation, ``post`` the activation's output."""

    name = "batchnorm"
    params = {"momentum": UNIT_INTERVAL, "epsilon": POSITIVE,
              "position": Choice(*BATCHNORM_POSITIONS)}  # fmt: skip
    defaults = {"momentum": 0.99, "epsilon": 0.001, "position": "pre"}  # Keras' own
    weights = ("gamma", "beta", "moving_mean", "moving_variance")  # its Keras layer's order

    @classmethod
    def keras(cls, params, name, seed, where):
        import keras

        return keras.layers.BatchNormalization(
            momentum=float(params["momentum"]), epsilon=float(params["epsilon"]), name=name
        )

    @classmethod
    def stacked(cls, specs, where):
        import tensorflow as tf

        def per_member(values):
            return tf.constant([[float(v)] for v in values], tf.float32)  # [K, 1]

        momentum = per_member(s["momentum"] for s in specs)
        rest = per_member(1.0 - float(s["momentum"]) for s in specs)  # as Keras: in double
        epsilon = per_member(s["epsilon"] for s in specs)[:, :, None]

        def stage(h, training, step, seeds, weights):
            if training:
                mean, variance = tf.nn.moments(h, axes=[1])  # [K, units]
                for name, batch in (("moving_mean", mean), ("moving_variance", variance)):
                    moving = weights[name]
                    moving.assign(moving * momentum + batch * rest)
            else:
                mean, variance = weights["moving_mean"], weights["moving_variance"]
            return tf.nn.batch_normalization(
                h, mean[:, None], variance[:, None], weights["beta"][:, None],
                weights["gamma"][:, None], epsilon,
            )  # fmt: skip

        return stage


LAYER_KINDS: dict[str, type[LayerKind]] = {k.name: k for k in (BatchNorm, Noise, Dropout)}
INPUT_KINDS = ("noise", "dropout")  # what the inputs may carry, in the order applied


@functools.cache
def random_layer():
    """regexp's dropout and noise as a Keras layer (defined on first use, so that this
    module does not import Keras): the catalogue's stacked arithmetic on a member axis
    of one, with the model's seed and the layer's own step count."""
    import keras

    @keras.saving.register_keras_serializable(package="regexp", name="RandomLayer")
    class RandomLayer(keras.layers.Layer):
        """``LAYER_KINDS[kind]`` with parameter ``value``; identity unless training."""

        def __init__(self, kind: str, value: float, seed: int, where: int, **kwargs):
            super().__init__(**kwargs)
            self.kind, self.value, self.seed, self.where = kind, float(value), int(seed), where
            (param,) = LAYER_KINDS[kind].params
            self.stage = LAYER_KINDS[kind].stacked([{param: self.value}], where)
            self.steps = keras.random.SeedGenerator(self.seed)  # state: [seed, step]
            self.supports_masking = True

        def call(self, inputs, training=False):
            if not training:
                return inputs
            state = self.steps.next()  # [seed, step]; the step then counts one more
            return self.stage(inputs[None], True, state[1], state[:1])[0]

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self) -> dict:
            return {**super().get_config(), "kind": self.kind, "value": self.value,
                    "seed": self.seed, "where": self.where}  # fmt: skip

    return RandomLayer


# -- the kernel constraints ---------------------------------------------------------------


class Constraint(Catalogued):
    """A constraint on a Dense kernel, applied after every optimizer update."""

    tagged = True

    @classmethod
    def keras(cls, **params: float):
        raise NotImplementedError

    @staticmethod
    def stacked(w, **params):
        """The constrained kernels of K members, w [K, in, out]; params [K] each."""
        raise NotImplementedError


def _column_norms(w):
    """Each unit's incoming-weight norm of kernels [K, in, out]: [K, 1, out]."""
    import tensorflow as tf

    return tf.sqrt(tf.reduce_sum(tf.square(w), axis=1, keepdims=True))


def _epsilon() -> float:
    import keras

    return keras.config.epsilon()


class MaxNorm(Constraint):
    """``w * clip(norm, 0, max_value) / (epsilon + norm)`` per unit, ``norm`` its
    incoming weights' L2 norm (Keras' ``MaxNorm``, axis 0)."""

    name, params, defaults = "max_norm", {"max_value": POSITIVE}, {"max_value": 2.0}

    @classmethod
    def keras(cls, max_value: float):
        import keras

        return keras.constraints.MaxNorm(max_value=max_value, axis=0)

    @staticmethod
    def stacked(w, max_value):
        import tensorflow as tf

        norms = _column_norms(w)
        desired = tf.clip_by_value(norms, 0.0, _member(max_value, 3))
        return w * (desired / (_epsilon() + norms))


class UnitNorm(Constraint):
    """``w / (epsilon + norm)`` per unit (Keras' ``UnitNorm``, axis 0)."""

    name = "unit_norm"

    @classmethod
    def keras(cls):
        import keras

        return keras.constraints.UnitNorm(axis=0)

    @staticmethod
    def stacked(w):
        return w / (_epsilon() + _column_norms(w))


class NonNeg(Constraint):
    """``max(w, 0)`` (Keras' ``NonNeg``)."""

    name = "non_neg"

    @classmethod
    def keras(cls):
        import keras

        return keras.constraints.NonNeg()

    @staticmethod
    def stacked(w):
        import tensorflow as tf

        return tf.maximum(w, 0.0)


CONSTRAINTS: dict[str, type[Constraint]] = {c.name: c for c in (MaxNorm, UnitNorm, NonNeg)}


def validate_constraint(key: str, spec: Any) -> dict[str, Any] | None:
    """A constraint spec checked (null for none), its defaults filled in."""
    if spec is None:
        return None
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    if not isinstance(kind, str) or kind not in CONSTRAINTS:
        where, value = (f"{key}.kind", kind) if isinstance(spec, Mapping) else (key, spec)
        raise ConfigError(where, value, "one of " + ", ".join(CONSTRAINTS))
    return CONSTRAINTS[kind].validate(key, spec)


def constraint_to_keras(spec: Mapping[str, Any] | None):
    """The Keras constraint of a validated spec, or None."""
    if spec is None:
        return None
    params = {k: float(v) for k, v in spec.items() if k != "kind"}
    return CONSTRAINTS[spec["kind"]].keras(**params)


def stacked_constraint(specs: Sequence[Mapping[str, Any] | None]) -> Callable | None:
    """The constraints of K members on one kernel (all of one kind, or all None), as a
    function [K, in, out] -> [K, in, out] with each member's own values."""
    import tensorflow as tf

    if specs[0] is None:
        return None
    kind = CONSTRAINTS[specs[0]["kind"]]
    params = {p: tf.constant([float(s[p]) for s in specs], tf.float32) for p in kind.params}
    return lambda w: kind.stacked(w, **params)
