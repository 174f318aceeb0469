"""The network of K members of one structure, weights stacked on a member axis.

A Dense layer of K members is one batched matmul on kernels [K, in, out]; each layer's
penalties give one value per member (``regularizers.stacked_penalty``). The fused
engine trains through it; the diagnostics of every engine measure through it (with
K = 1 for a single Keras model); TensorBoard draws activations through it.
"""

from __future__ import annotations

from collections.abc import Sequence

from regexp.plan import PENALTY_SLOTS, LayerPlan
from regexp.regularizers import stacked_penalty


class StackedNetwork:
    """The network of K members of one structure, weights stacked on axis 0.

    Holds each Dense layer's plan, its penalties (one value per member) and activation;
    the fused engine trains through it and ``Diagnostics`` measures through it.
    """

    def __init__(self, plans: Sequence[Sequence[LayerPlan]]):
        import keras

        self.layers = []
        for i, plan in enumerate(plans[0]):
            pens = {
                slot: stacked_penalty([getattr(p[i], slot) for p in plans])
                for slot in PENALTY_SLOTS
            }
            act = keras.activations.get(plan.activation) if plan.units is not None else None
            self.layers.append((plan, pens, act))

    def walk(self, x, kernels: Sequence, biases: Sequence):
        """For each layer on inputs ``x`` [K, B, features]: its plan, penalties, kernel,
        bias, the Dense output ``z`` and the layer's output ``h`` (``z`` for the output)."""
        import tensorflow as tf

        h = x
        for (plan, pens, act), kernel, bias in zip(self.layers, kernels, biases, strict=True):
            z = tf.matmul(h, kernel) + bias[:, None, :]
            h = act(z) if act is not None else z
            yield plan, pens, kernel, bias, z, h

    @staticmethod
    def activity(plan: LayerPlan, pens: dict, z, h):
        """Keras' activity penalty of one layer on a batch: regularizer / batch size."""
        import tensorflow as tf

        seen = z if plan.position == "pre" else h
        return pens["activity"](seen) / tf.cast(tf.shape(seen)[1], tf.float32)

    def forward(self, x, kernels: Sequence, biases: Sequence):
        """Logits [K, B, C] and the activity penalty per member [K]."""
        activity = 0.0
        for plan, pens, _, _, z, h in self.walk(x, kernels, biases):
            if pens["activity"] is not None:
                activity = activity + self.activity(plan, pens, z, h)
        return z, activity

    def weight_penalty(self, kernels: Sequence, biases: Sequence):
        """The kernel and bias penalties per member [K]."""
        total = 0.0
        for (_, pens, _), kernel, bias in zip(self.layers, kernels, biases, strict=True):
            for slot, w in (("kernel", kernel), ("bias", bias)):
                if pens[slot] is not None:
                    total = total + pens[slot](w)
        return total
