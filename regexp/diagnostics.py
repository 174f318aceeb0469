"""What a regularizer did inside the network, recorded after every epoch by every engine.

For each Dense layer (``h1`` .. ``hN``, ``out``):

- ``penalty_<layer>_<kernel|bias|activity>``: the penalty it adds, for each slot that
  carries one. Weight penalties are as in the loss; an activity penalty is the Keras
  value (regularizer / batch size) with the whole validation split as one batch;
- ``l1_<layer>`` = sum |W| and ``l2_<layer>`` = sqrt(sum W^2) of the layer's kernel.

For each hidden layer, on the validation split, after the activation:

- ``act_mean_<layer>``: the mean activation;
- ``act_zero_<layer>``: the fraction of activations exactly 0 (dead or sparse units).

One implementation serves all engines: it works on weights stacked on a member axis
([K, in, out]); the single-model engines pass their model's variables with K = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from regexp.config import PENALTY_SLOTS, LayerPlan
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


class Diagnostics(StackedNetwork):
    """Diagnostics for K members of one structure, each on its own validation split.

    ``x_val`` is [K, n_val, features]; call with the kernels and biases, stacked.
    """

    def __init__(self, plans: Sequence[Sequence[LayerPlan]], x_val):
        import tensorflow as tf

        super().__init__(plans)
        self.x_val = tf.convert_to_tensor(x_val, tf.float32)
        self.names: list[str] = []
        for plan, pens, act in self.layers:
            self.names += [f"penalty_{plan.name}_{slot}" for slot in PENALTY_SLOTS if pens[slot]]
            self.names += [f"l1_{plan.name}", f"l2_{plan.name}"]
            if act is not None:
                self.names += [f"act_mean_{plan.name}", f"act_zero_{plan.name}"]

    def __call__(self, kernels: Sequence, biases: Sequence) -> dict:
        """One value per member for each name in ``self.names``."""
        import tensorflow as tf

        out = {}
        for plan, pens, kernel, bias, z, h in self.walk(self.x_val, kernels, biases):
            for slot, w in (("kernel", kernel), ("bias", bias)):
                if pens[slot]:
                    out[f"penalty_{plan.name}_{slot}"] = pens[slot](w)
            if pens["activity"]:
                out[f"penalty_{plan.name}_activity"] = self.activity(plan, pens, z, h)
            out[f"l1_{plan.name}"] = tf.reduce_sum(tf.abs(kernel), axis=[1, 2])
            out[f"l2_{plan.name}"] = tf.sqrt(tf.reduce_sum(tf.square(kernel), axis=[1, 2]))
            if plan.units is not None:
                out[f"act_mean_{plan.name}"] = tf.reduce_mean(h, axis=[1, 2])
                zero = tf.cast(tf.equal(h, 0.0), tf.float32)
                out[f"act_zero_{plan.name}"] = tf.reduce_mean(zero, axis=[1, 2])
        return {name: out[name] for name in self.names}


def for_model(job) -> tuple[Diagnostics, callable]:
    """Diagnostics of one job's Keras model: the object and a function of no arguments
    that reads the model's current weights (usable inside a ``tf.function``)."""
    import tensorflow as tf

    diag = Diagnostics([job.plans], job.data.x_val[None])
    dense = [job.model.get_layer(p.name) for p in job.plans]

    def current() -> dict:
        values = diag([d.kernel[None] for d in dense], [d.bias[None] for d in dense])
        return {k: tf.reshape(v, []) for k, v in values.items()}

    return diag, current
