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

from regexp.network import StackedNetwork
from regexp.plan import PENALTY_SLOTS, LayerPlan

PREFIXES = ("penalty_", "l1_", "l2_", "act_mean_", "act_zero_")


def is_diagnostic(column: str) -> bool:
    """Whether a history column is one of the diagnostics below."""
    return column.startswith(PREFIXES)


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
