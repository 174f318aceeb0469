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


# --- huber: a kind added as one class -----------------------------------------------


def np_huber(x, lam, delta):
    """lam * sum(h), h = x^2 / 2 where |x| <= delta, else delta * (|x| - delta / 2)."""
    a = np.abs(x)
    return lam * np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta)).sum()


def test_huber_matches_numpy_on_both_sides_of_delta():
    assert (np.abs(X) <= 0.5).any() and (np.abs(X) > 0.5).any()
    reg = to_keras({"kind": "huber", "lam": 0.03, "delta": 0.5})
    assert float(reg(X)) == pytest.approx(np_huber(X, 0.03, 0.5), rel=1e-6)
    # far below delta it is L2 / 2; far above, delta * L1 less a constant per entry
    assert float(to_keras({"kind": "huber", "lam": 1.0, "delta": 100.0})(X)) == pytest.approx(
        0.5 * (X**2).sum(), rel=1e-6
    )
    big = to_keras({"kind": "huber", "lam": 1.0, "delta": 1e-3})(X)
    assert float(big) == pytest.approx(1e-3 * (np.abs(X) - 5e-4).sum(), rel=1e-5)


def test_huber_stacked_gives_each_member_its_own_lam_and_delta():
    from regexp.regularizers import stacked_penalty

    members = [(0.01, 0.2), (0.1, 1.0), (0.0, 0.5)]
    specs = [{"kind": "huber", "lam": lam, "delta": d} for lam, d in members]
    xs = np.stack([X, 2 * X, X[::-1]])
    got = np.asarray(stacked_penalty(specs)(xs))
    want = [np_huber(x, lam, d) for x, (lam, d) in zip(xs, members, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_huber_as_an_activity_penalty_is_divided_by_the_batch_size():
    w = rng.uniform(-0.5, 0.5, size=(5, 6)).astype("float32")
    spec = {"kind": "huber", "lam": 0.05, "delta": 0.3}
    layer = keras.layers.Dense(6, activity_regularizer=to_keras(spec))
    x = rng.uniform(-1, 1, size=(9, 5)).astype("float32")
    layer.build((None, 5))
    layer.set_weights([w, np.zeros(6, "float32")])
    layer(x)
    assert float(layer.losses[0]) == pytest.approx(np_huber(x @ w, 0.05, 0.3) / 9, rel=1e-5)


def test_huber_serializes():
    reg = to_keras({"kind": "huber", "lam": 0.02, "delta": 0.7})
    again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert again.get_config() == {"kind": "huber", "lam": 0.02, "delta": 0.7}
    assert float(again(X)) == pytest.approx(np_huber(X, 0.02, 0.7), rel=1e-6)


@pytest.mark.parametrize(
    "spec, key, accepted",
    [
        ({"kind": "huber", "lam": 0.1, "delta": 0}, "k.delta", "a number > 0"),
        ({"kind": "huber", "lam": 0.1, "delta": "wide"}, "k.delta", "a number > 0"),
        ({"kind": "huber", "lam": 0.1}, "k.delta", "kind huber needs it"),
        ({"kind": "huber", "lam": -1, "delta": 1}, "k.lam", "a number >= 0"),
        (
            {"kind": "huber", "lam": 1, "delta": 1, "rho": 0.1},
            "k.rho",
            "a key of kind huber: kind, lam, delta",
        ),
    ],
)
def test_huber_parameters_are_checked_without_tensorflow(spec, key, accepted):
    with pytest.raises(ConfigError) as err:
        validate_spec("k", spec)
    assert err.value.key == key and accepted in str(err.value)
