"""What a regularizer did inside the network, recorded after every epoch by every engine.

For each Dense layer (``h1`` .. ``hN``, ``out``):

- ``penalty_<layer>_<kernel|bias|activity>``: the penalty it adds, for each slot that
  carries one. Weight penalties are as in the loss; an activity penalty is the Keras
  value (regularizer / batch size) with the whole validation split as one batch;
- ``l1_<layer>`` = sum |W| and ``l2_<layer>`` = sqrt(sum W^2) of the layer's kernel;
- ``maxnorm_<layer>``, for a kernel under a constraint: its largest unit norm,
  ``max_j sqrt(sum_i W_ij^2)`` (what ``max_norm`` caps and ``unit_norm`` sets to 1).

For each hidden layer, on the validation split, after the activation (before a
``post`` batch normalization, noise and dropout, which inference skips anyway):

- ``act_mean_<layer>``: the mean activation;
- ``act_zero_<layer>``: the fraction of activations exactly 0 (dead or sparse units).

For each dropout layer (``inputs`` or a hidden layer):

- ``dropout_<layer>``: its effective rate, the fraction of the layer's units (rows x
  units) its mask zeroed in the epoch's last training batch. The masks are a function
  of (seed, step, layer) only (``regexp.layers.uniform``), so this is recomputed after
  the epoch rather than recorded during it, and is the same in every engine; it
  estimates ``rate`` with a standard error of ``sqrt(rate (1 - rate) / (rows x units))``.

One implementation serves all engines: it works on weights stacked on a member axis
([K, in, out]); the single-model engines pass their model's variables with K = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from regexp.network import StackedNetwork, Weights
from regexp.plan import PENALTY_SLOTS, LayerPlan

PREFIXES = ("penalty_", "l1_", "l2_", "act_mean_", "act_zero_", "maxnorm_", "dropout_")


def is_diagnostic(column: str) -> bool:
    """Whether a history column is one of the diagnostics below."""
    return column.startswith(PREFIXES)


class Diagnostics(StackedNetwork):
    """Diagnostics for K members of one structure, each on its own validation split.

    ``x_val`` is [K, n_val, features]; ``seeds`` the members' run seeds and ``batches``
    (training rows, batch size) place the last training batch, for dropout. Call with
    the stacked weights and the number of training steps taken so far.
    """

    def __init__(
        self,
        plans: Sequence[Sequence[LayerPlan]],
        x_val,
        seeds: Sequence[int] | None = None,
        batches: tuple[int, int] = (1, 1),
    ):
        import tensorflow as tf

        super().__init__(plans, seeds)
        self.x_val = tf.convert_to_tensor(x_val, tf.float32)
        n, bs = batches
        self.last_rows = n - (-(-n // bs) - 1) * bs  # the rows of an epoch's last batch
        self.names: list[str] = []
        if "dropout" in self.inputs:
            self.names.append("dropout_inputs")
        for layer in self.layers:
            plan = layer.plan
            pens = layer.pens
            self.names += [f"penalty_{plan.name}_{slot}" for slot in PENALTY_SLOTS if pens[slot]]
            self.names += [f"l1_{plan.name}", f"l2_{plan.name}"]
            if layer.constraint is not None:
                self.names.append(f"maxnorm_{plan.name}")
            if layer.act is not None:
                self.names += [f"act_mean_{plan.name}", f"act_zero_{plan.name}"]
            if "dropout" in layer.stages:
                self.names.append(f"dropout_{plan.name}")

    def __call__(self, weights: Weights, step=0) -> dict:
        """One value per member for each name in ``self.names``; ``step``: the training
        steps taken so far (the last batch was step ``step - 1``)."""
        import tensorflow as tf

        out = {}
        if "dropout" in self.inputs:
            units = self.x_val.shape[-1]
            out["dropout_inputs"] = self._dropped(self.inputs["dropout"], step, units)
        for s in self.walk(self.x_val, weights):
            plan, pens, kernel = s.layer.plan, s.layer.pens, s.weights["kernel"]
            for slot in ("kernel", "bias"):
                if pens[slot]:
                    out[f"penalty_{plan.name}_{slot}"] = pens[slot](s.weights[slot])
            if pens["activity"]:
                out[f"penalty_{plan.name}_activity"] = self.activity(plan, pens, s.z, s.a)
            out[f"l1_{plan.name}"] = tf.reduce_sum(tf.abs(kernel), axis=[1, 2])
            out[f"l2_{plan.name}"] = tf.sqrt(tf.reduce_sum(tf.square(kernel), axis=[1, 2]))
            if s.layer.constraint is not None:
                norms = tf.sqrt(tf.reduce_sum(tf.square(kernel), axis=1))
                out[f"maxnorm_{plan.name}"] = tf.reduce_max(norms, axis=1)
            if plan.units is not None:
                out[f"act_mean_{plan.name}"] = tf.reduce_mean(s.a, axis=[1, 2])
                zero = tf.cast(tf.equal(s.a, 0.0), tf.float32)
                out[f"act_zero_{plan.name}"] = tf.reduce_mean(zero, axis=[1, 2])
            if "dropout" in s.layer.stages:
                out[f"dropout_{plan.name}"] = self._dropped(
                    s.layer.stages["dropout"], step, plan.units
                )
        return {name: out[name] for name in self.names}

    def _dropped(self, dropout, step, units: int):
        """The fraction of a [last_rows, units] batch that ``dropout`` zeroes at
        ``step - 1``, per member: it drops exactly the zeros of its output on ones."""
        import tensorflow as tf

        ones = tf.ones([len(self.seeds), self.last_rows, units])
        kept = dropout(ones, True, tf.cast(step, tf.int64) - 1, self.seeds)
        return tf.reduce_mean(tf.cast(tf.equal(kept, 0.0), tf.float32), axis=[1, 2])


def for_model(job) -> tuple[Diagnostics, callable]:
    """Diagnostics of one job's Keras model: the object and a function of no arguments
    that reads the model's current weights and step count (usable inside a
    ``tf.function``)."""
    import tensorflow as tf

    from regexp.model import layer_weights

    model, trainer = job.model, job.cfg.trainer
    batches = (len(job.data.x_train), int(trainer.batch_size))
    diag = Diagnostics([job.plans], job.data.x_val[None], [job.seed], batches)
    slots = layer_weights(model, job.plans)

    def current() -> dict:
        weights = [{name: model.weights[i][None] for name, i in s.items()} for s in slots]
        values = diag(weights, model.optimizer.iterations)
        return {k: tf.reshape(v, []) for k, v in values.items()}

    return diag, current
