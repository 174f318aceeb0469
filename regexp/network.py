"""The network of K members of one structure, weights stacked on a member axis.

A Dense layer of K members is one batched matmul on kernels [K, in, out]; each layer's
penalties give one value per member (``regularizers.stacked_penalty``); its layer
regularizers and constraint are the catalogues' stacked forms (``regexp.layers``), with
each member's own values, and each member's own seed for the random ones. The fused
engine trains through it; the diagnostics of every engine measure through it (with
K = 1 for a single Keras model); TensorBoard draws activations through it.

The weights are one mapping per Dense layer (``Weights``), each value stacked [K, ...]:
``kernel``, ``bias`` (none before batch normalization ``pre``), and with batch
normalization ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``
(``model.layer_weights`` says where each sits in a Keras model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from regexp.layers import INPUT_KINDS, LAYER_KINDS, site, stacked_constraint
from regexp.plan import PENALTY_SLOTS, LayerPlan
from regexp.regularizers import stacked_penalty

Weights = Sequence[Mapping[str, Any]]  # per Dense layer: weight name -> [K, ...]


class Layer(NamedTuple):
    """One Dense layer of the stacked network and what it carries."""

    plan: LayerPlan
    pens: dict  # slot -> stacked penalty, or None
    act: Any  # the activation function; None for the output layer
    stages: dict  # layer regularizer name -> stacked stage
    constraint: Any  # the stacked constraint of its kernel, or None


class Step(NamedTuple):
    """A layer on a batch: the Dense output ``z``, the activation's output ``a``, and the
    layer's output ``h`` (after batch normalization ``post``, noise and dropout)."""

    layer: Layer
    weights: Mapping[str, Any]
    z: Any
    a: Any
    h: Any


class StackedNetwork:
    """The network of K members of one structure, weights stacked on axis 0.

    ``seeds`` are the members' run seeds, which key their noise and dropout.
    """

    def __init__(self, plans: Sequence[Sequence[LayerPlan]], seeds: Sequence[int] | None = None):
        import keras
        import tensorflow as tf

        self.seeds = tf.constant(list(seeds) if seeds is not None else [0] * len(plans), tf.int64)
        inputs = [p[0].inputs or {} for p in plans]
        self.inputs = {
            kind: LAYER_KINDS[kind].stacked([i[kind] for i in inputs], site(0, kind))
            for kind in INPUT_KINDS
            if kind in inputs[0]
        }
        self.layers: list[Layer] = []
        for i, plan in enumerate(plans[0]):
            pens = {
                slot: stacked_penalty([getattr(p[i], slot) for p in plans])
                for slot in PENALTY_SLOTS
            }
            act = keras.activations.get(plan.activation) if plan.units is not None else None
            stages = {
                kind: LAYER_KINDS[kind].stacked(
                    [getattr(p[i], kind) for p in plans],
                    site(i + 1, kind) if LAYER_KINDS[kind].random else 0,
                )
                for kind in LAYER_KINDS
                if getattr(plan, kind) is not None
            }
            constraint = stacked_constraint([p[i].constraint for p in plans])
            self.layers.append(Layer(plan, pens, act, stages, constraint))

    def walk(self, x, weights: Weights, training: bool = False, step=None):
        """Each layer on inputs ``x`` [K, B, features], in order. ``training`` draws noise
        and dropout at training step ``step`` and normalizes by the batch (updating the
        moving statistics, as Keras' layer does); otherwise they are the identity and the
        moving statistics normalize."""
        h = x
        for stage in self.inputs.values():
            h = stage(h, training, step, self.seeds)
        for layer, w in zip(self.layers, weights, strict=True):
            s = self._layer(layer, w, h, training, step)
            yield s
            h = s.h

    def _layer(self, layer: Layer, w: Mapping[str, Any], h, training: bool, step) -> Step:
        """Dense -> [batchnorm pre] -> activation -> [batchnorm post] -> noise -> dropout."""
        import tensorflow as tf

        stages = layer.stages
        norm = stages.get("batchnorm")
        pre = norm is not None and layer.plan.batchnorm["position"] == "pre"
        z = tf.matmul(h, w["kernel"])
        if "bias" in w:  # none before batch normalization pre
            z = z + w["bias"][:, None, :]
        a = norm(z, training, step, self.seeds, w) if pre else z
        a = layer.act(a) if layer.act is not None else a
        h = a
        if norm is not None and not pre:
            h = norm(h, training, step, self.seeds, w)
        for kind in ("noise", "dropout"):
            if kind in stages:
                h = stages[kind](h, training, step, self.seeds)
        return Step(layer, w, z, a, h)

    @staticmethod
    def activity(plan: LayerPlan, pens: dict, z, a):
        """Keras' activity penalty of one layer on a batch: regularizer / batch size, on
        the Dense output ``z`` (``pre``) or the activation's output ``a``."""
        import tensorflow as tf

        seen = z if plan.position == "pre" else a
        return pens["activity"](seen) / tf.cast(tf.shape(seen)[1], tf.float32)

    def forward(self, x, weights: Weights, training: bool = False, step=None):
        """Logits [K, B, C] and the activity penalty per member [K] (see ``walk``)."""
        activity = 0.0
        for s in self.walk(x, weights, training, step):
            if s.layer.pens["activity"] is not None:
                activity = activity + self.activity(s.layer.plan, s.layer.pens, s.z, s.a)
        return s.h, activity

    def weight_penalty(self, weights: Weights):
        """The kernel and bias penalties per member [K]."""
        total = 0.0
        for layer, w in zip(self.layers, weights, strict=True):
            for slot in ("kernel", "bias"):
                if layer.pens[slot] is not None:
                    total = total + layer.pens[slot](w[slot])
        return total

    def constrain(self, weights: Weights) -> None:
        """Each constrained kernel (variables) set to its constraint's value, as Keras'
        optimizer does after every update."""
        for layer, w in zip(self.layers, weights, strict=True):
            if layer.constraint is not None:
                w["kernel"].assign(layer.constraint(w["kernel"]))
