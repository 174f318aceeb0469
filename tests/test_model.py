"""Built models carry each penalty on the intended layer; loss mode equals layers mode."""

import keras
import numpy as np
import pytest

from regexp.custom_regularizers import L3, KLSparsity
from regexp.model import build_model, compile_model
from regexp.plan import layer_plan
from regexp.tasks import TASKS
from tests.conftest import make_cfg


def _build(*overrides, n_features=2, n_classes=2, mode=None):
    cfg = make_cfg(*overrides)
    keras.utils.set_random_seed(0)
    task = TASKS["binary" if n_classes == 2 else "multiclass"]
    return build_model(layer_plan(cfg), n_features, task.output(n_classes), mode or cfg.reg.mode)


def _cfg(reg):
    """A regularizer's config, rounded: Keras keeps strengths as float32."""
    return None if reg is None else {k: round(v, 9) for k, v in reg.get_config().items()}


def test_b2_regularizers_land_on_their_layers():
    model, _ = _build("experiment=b2_keras_mixed")
    got = {
        name: (type(layer.kernel_regularizer).__name__, _cfg(layer.kernel_regularizer),
               type(layer.bias_regularizer).__name__, _cfg(layer.bias_regularizer))
        for name in ("h1", "h3", "h4", "out")
        for layer in [model.get_layer(name)]
    }  # fmt: skip
    assert got["h1"] == ("L1", {"l1": 0.001}, "L1", {"l1": 0.001})
    assert got["h3"] == ("L1L2", {"l1": 0.001, "l2": 0.0}, "L1L2", {"l1": 0.001, "l2": 0.0})
    assert got["h4"] == ("L1", {"l1": 0.001}, "L1L2", {"l1": 0.001, "l2": 0.0})
    assert got["out"] == ("L1L2", {"l1": 0.001, "l2": 0.0}, "L2", {"l2": 0.001})
    assert all(model.get_layer(f"h{i}").activity_regularizer is None for i in range(1, 6))


def test_b6_weight_penalty_equals_numpy_sum_over_every_layer():
    model, _ = _build("experiment=b6_all")
    expected = 0.001 * sum((w**2).sum() for w in model.get_weights())  # kernels and biases
    weight_losses = [float(v) for v in model.losses]  # no call yet: weights only
    assert sum(weight_losses) == pytest.approx(expected, rel=1e-5)
    acts = [type(model.get_layer(f"h{i}").activity_regularizer).__name__ for i in range(1, 6)]
    assert acts == ["L1"] * 5 and model.get_layer("out").activity_regularizer is None


def test_a2_penalises_the_first_iris_layer_only():
    model, _ = _build("experiment=a2_iris_l1_activity", n_features=4, n_classes=3)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [512, 256, 64, 32, 3]
    assert [layer.activation.__name__ for layer in dense] == [
        "tanh", "tanh", "tanh", "relu", "softmax",
    ]  # fmt: skip
    regs = [_cfg(layer.activity_regularizer) for layer in dense]
    assert regs == [{"l1": 0.001}, None, None, None, None]


def test_b5_places_the_penalty_before_the_activation():
    model, _ = _build("experiment=b5_l1_activity_preact")
    h1, act = model.get_layer("h1"), model.get_layer("h1_act")
    assert h1.activation.__name__ == "linear" and _cfg(h1.activity_regularizer) == {"l1": 0.01}
    assert act.activation.__name__ == "relu"
    x = np.random.default_rng(0).normal(size=(6, 2)).astype("float32")
    model(x)
    k, b = h1.get_weights()
    pre = x @ k + b  # the penalty sees negative values: it is before the relu
    assert float(model.losses[0]) == pytest.approx(0.01 * np.abs(pre).sum() / 6, rel=1e-5)


def test_b7_kl_on_the_last_hidden_layer_l2_on_the_others():
    model, _ = _build("experiment=b7_kl_sparsity")
    regs = [model.get_layer(f"h{i}").activity_regularizer for i in range(1, 6)]
    assert [type(r).__name__ for r in regs] == ["L2"] * 4 + ["KLSparsity"]
    assert isinstance(regs[-1], KLSparsity) and regs[-1].get_config() == {"lam": 0.1, "rho": 0.05}


def test_b3_l3_on_every_kernel_and_bias():
    model, _ = _build("experiment=b3_l3_custom")
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert all(isinstance(d.kernel_regularizer, L3) and isinstance(d.bias_regularizer, L3)
               for d in dense)  # fmt: skip


def test_loss_mode_gives_the_same_total_loss_as_keras_regularizers():
    """B1: the penalty written into the loss equals the same penalties as Keras regularizers."""
    loss_model, penalties = _build("experiment=b1_loss_fn", mode="loss")
    layer_model, none = _build("experiment=b1_loss_fn", mode="layers")
    assert none == [] and len(penalties) == 8  # 10 codes, two of them -1
    weights = [w + np.float32(0.05) for w in loss_model.get_weights()]  # non-zero biases
    loss_model.set_weights(weights)
    layer_model.set_weights(weights)
    for m, p in ((loss_model, penalties), (layer_model, [])):
        compile_model(m, make_cfg().optimizer, TASKS["binary"], penalties=p)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 2)).astype("float32")
    y = (rng.uniform(size=(20, 1)) > 0.5).astype("float32")

    bce = float(keras.losses.BinaryCrossentropy()(y, layer_model(x)))
    via_layers = bce + sum(float(v) for v in layer_model.losses)
    via_loss = float(loss_model.loss(y, loss_model(x)))

    k = weights[0::2]
    b = weights[1::2]
    l1, l2 = (lambda w: np.abs(w).sum()), (lambda w: (w**2).sum())
    codes_by_hand = 0.001 * (
        l1(k[0]) + l2(k[1]) + l2(b[1]) + l1(k[2]) + l2(k[2]) + l2(b[2])
        + l1(k[3]) + l2(b[3]) + l2(b[4])
    )  # fmt: skip
    assert via_loss == pytest.approx(via_layers, rel=1e-6)
    assert via_loss == pytest.approx(bce + codes_by_hand, rel=1e-5)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activity", ["null", "{kind: l1, lam: 0.01}"])
@pytest.mark.parametrize("position", ["post", "pre"])
def test_layer_outputs_for_every_depth_from_one(depth, activity, position):
    """Each hidden layer's output equals a NumPy forward pass of its weights, whatever
    the depth (depth 1 once crashed after training), width and activity penalty."""
    from regexp.model import layer_outputs

    overrides = [f"model.depth={depth}", f"model.width={[3, 4, 5][:depth]}",
                 f"reg.hidden.activity={activity}", f"reg.hidden.position={position}"]  # fmt: skip
    cfg = make_cfg(*overrides)
    plans = layer_plan(cfg)
    model, _ = _build(*overrides)
    x = np.random.default_rng(0).normal(size=(6, 2)).astype("float32")
    post, seen = layer_outputs(model, plans, x)
    assert list(post) == [f"h{i}" for i in range(1, depth + 1)]
    h = x
    for i in range(1, depth + 1):
        kernel, bias = model.get_layer(f"h{i}").get_weights()
        z = h @ kernel + bias
        h = np.maximum(z, 0)
        np.testing.assert_allclose(post[f"h{i}"], h, rtol=1e-5, atol=1e-6)
        if activity != "null":
            np.testing.assert_allclose(seen[f"h{i}"], z if position == "pre" else h, atol=1e-6)
    assert bool(seen) == (activity != "null")


@pytest.mark.parametrize("activation", __import__("regexp.plan").plan.ACTIVATIONS)
def test_every_shipped_activation_is_the_same_in_keras_and_the_stacked_network(activation):
    """The fused engine and the diagnostics use the stacked network; a Keras model of the
    same weights must give the same output for every activation a config may name."""
    from regexp.network import StackedNetwork

    cfg = make_cfg("model.depth=2", "model.width=4", f"model.activation={activation}")
    plans = layer_plan(cfg)
    model, _ = _build("model.depth=2", "model.width=4", f"model.activation={activation}")
    x = np.random.default_rng(1).normal(size=(5, 2)).astype("float32")
    dense = [model.get_layer(p.name) for p in plans]
    weights = [{"kernel": d.kernel[None], "bias": d.bias[None]} for d in dense]
    logits, _ = StackedNetwork([plans]).forward(x[None], weights)
    probs = keras.activations.sigmoid(logits[0])
    np.testing.assert_allclose(np.asarray(probs), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
