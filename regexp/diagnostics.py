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

from regexp.config import LayerPlan
from regexp.regularizers import stacked_penalty

SLOTS = ("kernel", "bias", "activity")


class Diagnostics:
    """Diagnostics for K members of one structure, each on its own validation split.

    ``x_val`` is [K, n_val, features]; call with the kernels and biases, stacked.
    """

    def __init__(self, plans: Sequence[Sequence[LayerPlan]], x_val):
        import keras
        import tensorflow as tf

        self.x_val = tf.convert_to_tensor(x_val, tf.float32)
        self.layers = []
        self.names: list[str] = []
        for i, plan in enumerate(plans[0]):
            pens = {slot: stacked_penalty([getattr(p[i], slot) for p in plans]) for slot in SLOTS}
            hidden = plan.units is not None
            act = keras.activations.get(plan.activation) if hidden else None
            self.layers.append((plan, pens, act))
            self.names += [f"penalty_{plan.name}_{slot}" for slot in SLOTS if pens[slot]]
            self.names += [f"l1_{plan.name}", f"l2_{plan.name}"]
            if hidden:
                self.names += [f"act_mean_{plan.name}", f"act_zero_{plan.name}"]

    def __call__(self, kernels: Sequence, biases: Sequence) -> dict:
        """One value per member for each name in ``self.names``."""
        import tensorflow as tf

        out = {}
        h = self.x_val
        size = tf.cast(tf.shape(h)[1], tf.float32)
        for (plan, pens, act), kernel, bias in zip(self.layers, kernels, biases, strict=True):
            z = tf.matmul(h, kernel) + bias[:, None, :]
            if act is not None:
                h = act(z)
            for slot, w in (("kernel", kernel), ("bias", bias)):
                if pens[slot]:
                    out[f"penalty_{plan.name}_{slot}"] = pens[slot](w)
            if pens["activity"]:
                seen = z if plan.position == "pre" else h
                out[f"penalty_{plan.name}_activity"] = pens["activity"](seen) / size
            out[f"l1_{plan.name}"] = tf.reduce_sum(tf.abs(kernel), axis=[1, 2])
            out[f"l2_{plan.name}"] = tf.sqrt(tf.reduce_sum(tf.square(kernel), axis=[1, 2]))
            if act is not None:
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
