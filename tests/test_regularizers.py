"""Every penalty against a NumPy formula written out here, independently of the package."""

import keras
import numpy as np
import pytest

from regexp.custom_regularizers import L3, KLSparsity
from regexp.errors import ConfigError
from regexp.regularizers import to_keras, validate_spec

rng = np.random.default_rng(0)
X = rng.normal(size=(7, 5)).astype("float32")
A = rng.uniform(0, 0.3, size=(8, 6)).astype("float32")  # non-negative "activations"


def np_kl(a, lam, rho):
    rho_hat = np.clip(a.mean(axis=0), 1e-6, 0.99999)
    kl = rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))
    return lam * kl.sum()


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"kind": "l1", "lam": 0.01}, 0.01 * np.abs(X).sum()),
        ({"kind": "l2", "lam": 0.02}, 0.02 * (X**2).sum()),
        (
            {"kind": "l1l2", "l1": 0.001, "l2": 0.003},
            0.001 * np.abs(X).sum() + 0.003 * (X**2).sum(),
        ),
        ({"kind": "l1l2", "l1": 0.001, "l2": 0.0}, 0.001 * np.abs(X).sum()),
        ({"_target_": "regexp.custom_regularizers.L3", "lam": 0.01}, 0.01 * (np.abs(X) ** 3).sum()),
    ],
)
def test_weight_penalties_match_numpy(spec, expected):
    assert float(to_keras(spec)(X)) == pytest.approx(expected, rel=1e-5)


def test_kl_sparsity_matches_numpy_including_the_clip():
    a = A.copy()
    a[:, 0] = 0.0  # a dead unit: rho_hat is clipped to 1e-6
    reg = to_keras({"kind": "kl", "lam": 0.1, "rho": 0.05})
    assert isinstance(reg, KLSparsity)
    assert float(reg(a)) == pytest.approx(np_kl(a, 0.1, 0.05), rel=1e-5)
    assert float(reg(np.full((4, 3), 0.05, "float32"))) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "spec, per_batch",
    [
        ({"kind": "l1", "lam": 0.01}, lambda a: 0.01 * np.abs(a).sum()),
        ({"kind": "l2", "lam": 0.01}, lambda a: 0.01 * (a**2).sum()),
        ({"kind": "kl", "lam": 0.1, "rho": 0.05}, lambda a: np_kl(a, 0.1, 0.05)),
    ],
)
def test_activity_penalties_are_divided_by_the_batch_size(spec, per_batch):
    """Keras >= 3.14: an activity penalty costs regularizer(output) / batch size."""
    w = rng.uniform(0, 0.2, size=(5, 6)).astype("float32")
    layer = keras.layers.Dense(6, activation="relu", activity_regularizer=to_keras(spec))
    x = rng.uniform(0, 1, size=(9, 5)).astype("float32")
    layer.build((None, 5))
    layer.set_weights([w, np.zeros(6, "float32")])
    out = np.maximum(x @ w, 0)
    layer(x)
    assert len(layer.losses) == 1
    assert float(layer.losses[0]) == pytest.approx(per_batch(out) / 9, rel=1e-5)


@pytest.mark.parametrize("reg", [L3(0.02), KLSparsity(0.2, 0.1)])
def test_custom_regularizers_serialize(reg):
    again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert type(again) is type(reg) and again.get_config() == reg.get_config()
    assert float(again(A)) == pytest.approx(float(reg(A)), rel=1e-6)


def test_any_keras_regularizer_subclass_by_target():
    reg = to_keras({"_target_": "keras.regularizers.OrthogonalRegularizer", "factor": 0.1})
    assert isinstance(reg, keras.regularizers.OrthogonalRegularizer)


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"kind": "l1", "lam": -1}, "k.lam"),
        ({"kind": "l1", "lam": "big"}, "k.lam"),
        ({"kind": "l1", "l2": 0.1}, "k.l2"),
        ({"kind": "lasso", "lam": 0.1}, "k.kind"),
        ({"kind": "kl", "lam": 0.1, "rho": 1.0}, "k.rho"),
        ({"kind": "kl", "lam": 0.1}, "k.rho"),
        ({"_target_": "regexp.custom_regularizers.L3", "lam": -0.5}, "k.lam"),
        ({"_target_": "no_such_module.L3"}, "k._target_"),
        ("l1", "k"),
    ],
)
def test_bad_specs_are_rejected_with_their_key(spec, key):
    with pytest.raises(ConfigError) as err:
        validate_spec("k", spec)
    assert err.value.key == key


@pytest.mark.parametrize("make", [lambda: L3(-1), lambda: KLSparsity(0.1, 0.0)])
def test_custom_regularizers_validate_their_arguments(make):
    with pytest.raises(ValueError):
        make()

