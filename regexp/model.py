"""Build and compile the Keras model described by a layer plan.

Input -> [noise, dropout on the inputs] -> hidden layers -> output Dense fitted to the
task (``regexp.tasks``): one sigmoid unit with binary cross-entropy for two classes,
softmax with categorical cross-entropy for more, one linear unit with mean squared error
for regression. A hidden layer is Dense -> [BatchNormalization
``pre``] -> activation -> [BatchNormalization ``post``] -> [noise] -> [dropout], named
``h1``, ``h1_bn``, ``h1_act`` (when the activation is a layer of its own), ``h1_noise``,
``h1_dropout``; the inputs' are ``inputs_noise`` and ``inputs_dropout``. Noise and
dropout are regexp's own layer (``layers.random_layer``), drawing under the run's seed.

Penalties reach the loss in one of two ways (``reg.mode``):

- ``layers``: Keras regularizers on each Dense layer (kernel, bias, activity); Keras adds
  ``model.losses`` to the data loss.
- ``loss``: source B1's route. Kernel and bias penalties are not attached to the layers;
  the loss function itself returns ``data_loss + sum(penalty(v) for v in variables)``.
  Activity penalties cannot be expressed this way and are rejected by validation.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence

import keras
import numpy as np

from regexp.errors import UserError
from regexp.layers import INPUT_KINDS, LAYER_KINDS, constraint_to_keras, site
from regexp.optimizers import OPTIMIZERS
from regexp.plan import PENALTY_SLOTS, LayerPlan
from regexp.regularizers import to_keras
from regexp.tasks import Task

Penalties = list[tuple[keras.Variable, keras.regularizers.Regularizer]]


class PenalizedLoss(keras.losses.Loss):
    """``loss = data_loss(y, p) + sum_i R_i(v_i)`` over (variable, regularizer) pairs."""

    def __init__(self, data_loss, penalties: Penalties, name: str = "penalized_loss"):
        super().__init__(name=name)
        self.data_loss = data_loss
        self.penalties = penalties

    def call(self, y_true, y_pred):
        return self.data_loss(y_true, y_pred) + penalty_of(self.penalties)


def penalty_of(penalties: Penalties):
    total = 0.0
    for variable, regularizer in penalties:
        total = total + regularizer(variable)
    return total


def build_model(
    plans: Sequence[LayerPlan],
    n_features: int,
    output: tuple[int, str],
    mode: str = "layers",
    seed: int = 0,
) -> tuple[keras.Model, Penalties]:
    """Return the model and, in ``loss`` mode, the penalties the loss function must add.

    ``output`` is the output layer's units and activation (``Task.output``); ``seed``
    keys the random numbers of the noise and dropout layers."""
    inputs = keras.Input(shape=(n_features,), name="x")
    h = inputs
    for kind in INPUT_KINDS:
        spec = (plans[0].inputs or {}).get(kind)
        if spec is not None:
            h = LAYER_KINDS[kind].keras(spec, f"inputs_{kind}", seed, site(0, kind))(h)
    for number, plan in enumerate(plans, start=1):
        is_output = plan.units is None
        units, activation = output if is_output else (plan.units, plan.activation)
        regs = {slot: _checked(plan, slot, units, h.shape[-1]) for slot in PENALTY_SLOTS}
        # the activity penalty goes on the Dense layer, unless it is on the activation's
        # output and that is a layer of its own
        on_dense = not plan.split or plan.position == "pre"
        layer = keras.layers.Dense(
            units,
            activation=None if plan.split else activation,
            use_bias=plan.biased,
            kernel_regularizer=regs["kernel"] if mode == "layers" else None,
            bias_regularizer=regs["bias"] if mode == "layers" else None,
            activity_regularizer=regs["activity"] if on_dense else None,
            kernel_constraint=constraint_to_keras(plan.constraint),
            name=plan.name,
        )
        h = layer(h)
        norm = plan.batchnorm
        if norm is not None and norm["position"] == "pre":
            h = LAYER_KINDS["batchnorm"].keras(norm, f"{plan.name}_bn", seed, 0)(h)
        if plan.split:
            h = keras.layers.Activation(
                activation,
                activity_regularizer=None if on_dense else regs["activity"],
                name=f"{plan.name}_act",
            )(h)
        if norm is not None and norm["position"] == "post":
            h = LAYER_KINDS["batchnorm"].keras(norm, f"{plan.name}_bn", seed, 0)(h)
        for kind in ("noise", "dropout"):
            spec = getattr(plan, kind)
            if spec is not None:
                where = site(number, kind)
                h = LAYER_KINDS[kind].keras(spec, f"{plan.name}_{kind}", seed, where)(h)
    model = keras.Model(inputs, h, name="mlp")
    return model, loss_penalties_of(model, plans) if mode == "loss" else []


class Network:
    """A Keras model and the job whose penalties and weights it holds now (``Job.model``).

    A job trained alone has its own. The members of a fused group built alike
    (``network_key``: the same layers and seed, penalties aside) share one: the fused
    engine only reads its initial weights, which they share, and leaves each member's
    final ones in ``Job.weights``; ``holding`` puts a member's penalties and weights in
    it when another member had it. Building one model per member cost more than training
    it."""

    def __init__(self, model: keras.Model, shared: bool = False) -> None:
        self.keras = model
        self.initial = model.get_weights() if shared else None  # shared: as built
        self.holder = None  # the job whose penalties and weights it holds

    def holding(self, job) -> keras.Model:
        """The model with ``job``'s penalties and weights (``job.weights``, or, before
        training, the initial ones)."""
        if self.holder is not job:
            set_penalties(self.keras, job.plans, str(job.cfg.reg.mode))
            self.keras.set_weights(self.initial if job.weights is None else job.weights)
            self.holder = job
        return self.keras

    def release(self, job) -> None:
        """``job``'s weights have changed: put them in at its next use."""
        if self.holder is job:
            self.holder = None


def network_key(plans: Sequence[LayerPlan], mode: str, seed: int) -> str | None:
    """Models that ``build_model`` builds alike, initial weights and all, under ``seed``:
    the plans but for their penalties' values (which draw no random numbers: the layers
    are the same whichever they are), the mode and the seed. Fused members with equal
    keys share one Keras model (``Network``), given each member's penalties in
    turn by ``set_penalties``. None when a penalty is a user's class (``_target_``),
    whose check may draw random numbers: such a model is its job's own."""
    plain = []
    for plan in plans:
        specs = [getattr(plan, slot) for slot in PENALTY_SLOTS]
        if any(spec is not None and "kind" not in spec for spec in specs):
            return None
        fields = {k: v for k, v in vars(plan).items() if k not in PENALTY_SLOTS}
        plain.append({**fields, "penalties": [spec is not None for spec in specs]})
    return json.dumps([plain, mode, seed], sort_keys=True, default=str)


def set_penalties(model: keras.Model, plans: Sequence[LayerPlan], mode: str) -> None:
    """Give ``model`` (built by ``build_model`` from plans of the same ``network_key``)
    the penalties of ``plans``, where ``build_model`` puts them: the layers' regularizer
    attributes (which its config saves) and its weights' (which ``model.losses`` calls),
    each checked as ``build_model`` checks it."""
    for plan in plans:
        dense = model.get_layer(plan.name)
        fan_in, units = dense.kernel.shape
        regs = {slot: _checked(plan, slot, units, fan_in) for slot in PENALTY_SLOTS}
        weights = mode == "layers"
        dense.kernel_regularizer = dense.kernel.regularizer = regs["kernel"] if weights else None
        dense.bias_regularizer = regs["bias"] if weights else None
        if dense.bias is not None:
            dense.bias.regularizer = dense.bias_regularizer
        on_dense = not plan.split or plan.position == "pre"
        dense.activity_regularizer = regs["activity"] if on_dense else None
        if plan.split:
            activation = model.get_layer(f"{plan.name}_act")
            activation.activity_regularizer = None if on_dense else regs["activity"]


def loss_penalties_of(model: keras.Model, plans: Sequence[LayerPlan]) -> Penalties:
    """``reg.mode=loss``: the (variable, regularizer) pairs the loss function adds, the
    kernel and bias penalties of each Dense layer of ``model`` (built from ``plans``, or
    reloaded from a run's ``model.keras``)."""
    penalties: Penalties = []
    for plan in plans:
        layer = model.get_layer(plan.name)
        for variable, spec in ((layer.kernel, plan.kernel), (layer.bias, plan.bias)):
            if spec is not None:
                penalties.append((variable, to_keras(spec)))
    return penalties


def layer_weights(model: keras.Model, plans: Sequence[LayerPlan]) -> list[dict[str, int]]:
    """For each Dense layer of ``plans``, where its weights sit in ``model.weights`` (the
    order of ``get_weights``), by name: ``kernel``, ``bias`` (unless ``plan.biased`` is
    false), and with batch normalization
    ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``. Every weight of the model
    is in exactly one of them."""
    index = {id(w): i for i, w in enumerate(model.weights)}
    out = []
    for plan in plans:
        dense = model.get_layer(plan.name)
        slots = {"kernel": index[id(dense.kernel)]}
        if dense.bias is not None:
            slots["bias"] = index[id(dense.bias)]
        if plan.batchnorm is not None:
            norm = model.get_layer(f"{plan.name}_bn")
            slots.update({name: index[id(getattr(norm, name))]
                          for name in LAYER_KINDS["batchnorm"].weights})  # fmt: skip
        out.append(slots)
    assert sorted(i for slots in out for i in slots.values()) == list(range(len(index)))
    return out


def _checked(plan: LayerPlan, slot: str, units: int, fan_in: int):
    """The slot's Keras regularizer, after checking it returns one number."""
    spec = getattr(plan, slot)
    if spec is None:
        return None
    shape = {"kernel": (fan_in, units), "bias": (units,), "activity": (2, units)}[slot]
    # a built-in kind's check, passed once, passes again (a sweep builds a model per
    # job); a user's class is checked every time, as it may draw random numbers
    key = (json.dumps(dict(spec), sort_keys=True, default=str), shape) if "kind" in spec else None
    if key is not None and key in _CHECKED:
        return to_keras(spec)
    try:
        regularizer = to_keras(spec)
        value = regularizer(keras.ops.ones(shape))
    except Exception as e:  # a user's class: any failure is theirs to read
        raise UserError(f"layer {plan.name} {slot} regularizer {spec}: fails ({e})") from None
    if tuple(getattr(value, "shape", ())) != ():
        raise UserError(
            f"layer {plan.name} {slot} regularizer {spec}: returns shape "
            f"{tuple(value.shape)}; a regularizer must return a scalar"
        )
    if key is not None:
        _CHECKED.add(key)
    return regularizer


_CHECKED: set[tuple] = set()  # the built-in regularizers _checked has passed


def compile_model(
    model: keras.Model, optimizer_cfg, task: Task, penalties: Penalties, smoothing: float = 0.0
) -> None:
    """Compile with the task's loss (label-smoothed by ``smoothing``) and its metrics:
    ``data_loss`` (no penalty, no smoothing), and ``accuracy`` or ``mae`` and ``r2``."""
    data_loss = task.keras_loss(smoothing)
    loss = PenalizedLoss(data_loss, penalties) if penalties else data_loss
    optimizer = OPTIMIZERS[optimizer_cfg.name].keras(optimizer_cfg)
    model.compile(optimizer=optimizer, loss=loss, metrics=task.keras_metrics())


def total_penalty(model: keras.Model, x: np.ndarray, penalties: Penalties) -> float:
    """The penalty the loss adds on the inputs ``x`` taken as one batch.

    Weight penalties do not depend on ``x``; activity penalties are Keras' per-batch
    value (the regularizer's value divided by the batch size) with the whole of ``x``
    as the batch.
    """
    model(x, training=False)
    return penalty_after_call(model, penalties)


def penalty_after_call(model: keras.Model, penalties: Penalties) -> float:
    """``total_penalty`` on the inputs of the model's last call (``model.losses`` holds
    the activity penalties of that call), without calling it again."""
    return float(sum(float(v) for v in model.losses) + float(penalty_of(penalties)))


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # by model: its probes


class Probe:
    """The model called through its own layers with each hidden layer's output kept:
    ``probe(x)`` returns what ``model(x, training=False)`` returns, the same numbers
    from the same layers in the same order, and leaves in ``post`` each hidden layer's
    output after its activation (before a ``post`` batch normalization, noise and
    dropout), and in ``acts`` the tensor each activity penalty saw (the Dense output,
    before the activation for ``pre``), as NumPy arrays. The layers' activity
    penalties (``model.losses``) are those of that call, as after ``model(x)``.

    So the final metrics and the activations of the test split come from one call
    (``saved.evaluate``'s ``probe``)."""

    def __init__(self, model: keras.Model, plans: Sequence[LayerPlan]) -> None:
        self.hidden = [p for p in plans if p.units is not None]
        after = [f"{p.name}_act" if p.split else p.name for p in self.hidden]
        seen = [p.name if p.position == "pre" else a
                for p, a in zip(self.hidden, after, strict=True)
                if p.activity is not None]  # fmt: skip
        self.watched = [p.name for p in self.hidden if p.activity is not None]
        probes = _PROBES.setdefault(model, {})  # a model shared by fused members: built once
        names = tuple(after + seen)
        if names not in probes:
            outputs = [model.output] + [model.get_layer(n).output for n in names]
            probes[names] = keras.Model(model.input, outputs)
        self.model = probes[names]
        self.post: dict[str, np.ndarray] = {}
        self.acts: dict[str, np.ndarray] = {}

    def __call__(self, x: np.ndarray, training: bool = False):
        output, *values = self.model(x, training=training)
        values = [np.asarray(v) for v in values]
        count = len(self.hidden)
        self.post = {p.name: v for p, v in zip(self.hidden, values[:count], strict=True)}
        self.acts = dict(zip(self.watched, values[count:], strict=True))
        return output


def layer_outputs(
    model: keras.Model, plans: Sequence[LayerPlan], x: np.ndarray
) -> tuple[dict, dict]:
    """On inputs ``x``: ``Probe``'s ``post`` and ``acts``."""
    probe = Probe(model, plans)
    probe(x)
    return probe.post, probe.acts
