"""Dropout, Gaussian noise, batch normalization and kernel constraints: their formulas and
statistics against NumPy and Keras' own layers, and the same numbers in every engine."""

import keras
import numpy as np
import pandas as pd
import pytest

from regexp.config import validate
from regexp.engines import ENGINES
from regexp.errors import ConfigError
from regexp.fused import fit_members
from regexp.layers import CONSTRAINTS, random_layer
from regexp.pipeline import group_key, plan, prepare
from regexp.plan import layer_plan
from tests.conftest import make_cfg
from tests.test_engines import _members_match_their_compiled_runs

TINY = ["model.depth=2", "model.width=8", "trainer.epochs=2", "trainer.shuffle=false"]


def _history(engine, *overrides) -> pd.DataFrame:
    return pd.DataFrame(ENGINES[engine]([prepare(make_cfg(*TINY, *overrides))])[0])


def _max_rel(a: pd.DataFrame, b: pd.DataFrame) -> float:
    assert list(a.columns) == list(b.columns)
    return float((np.abs(a - b) / np.maximum(np.abs(b), 1e-12)).to_numpy().max())


_plain = {}


def _without_the_feature() -> pd.DataFrame:
    if not _plain:
        _plain["history"] = _history("compiled")
    return _plain["history"]


NON_NEG_OUTPUT = ["reg.output.constraint=null", "reg.output.constraint={kind: non_neg}"]
L1_PRE = ["reg.hidden.activity={kind: l1, lam: 0.01}", "reg.hidden.position=pre"]
# (what, the overrides of member 0, of member 1): the members differ in seed and values
CASES = {
    "dropout on the inputs, every hidden layer, one layer": (
        ["reg=dropout", "reg.dropout=0.3", "reg.inputs={dropout: {rate: 0.4}}",
         "+reg.layers.2={dropout: {rate: 0.5}}"],
        ["reg=dropout", "reg.dropout=0.0", "reg.inputs={dropout: {rate: 0.1}}",
         "+reg.layers.2={dropout: {rate: 0.2}}", "seed=1"],
    ),
    "noise": (["reg=noise", "reg.stddev=0.3"], ["reg=noise", "reg.stddev=0.05", "seed=1"]),
    "batchnorm pre": (["reg=batchnorm", "reg.momentum=0.5"],
                      ["reg=batchnorm", "reg.momentum=0.9", "seed=1"]),
    "batchnorm post": (["reg.hidden.batchnorm={position: post, momentum: 0.6}"],
                       ["reg.hidden.batchnorm={position: post, momentum: 0.9, epsilon: 0.1}",
                        "seed=1"]),
    "max_norm, non_neg": (
        ["reg=max_norm", "reg.max_value=0.3", *NON_NEG_OUTPUT],
        ["reg=max_norm", "reg.max_value=0.6", *NON_NEG_OUTPUT, "seed=1"],
    ),
    # with the penalties of every slot
    "dropout, max_norm, noise, batchnorm post, penalties": (
        ["reg=max_norm_dropout", "reg.max_value=0.5", "reg.inputs={noise: {stddev: 0.2}}",
         "reg.hidden.batchnorm={position: post}", "reg.hidden.activity={kind: l1, lam: 0.01}",
         "reg.hidden.kernel={kind: l2, lam: 0.01}", "reg.output.bias={kind: l2, lam: 0.1}"],
        ["reg=max_norm_dropout", "reg.max_value=1.0", "reg.dropout=0.1",
         "reg.inputs={noise: {stddev: 0.1}}", "reg.hidden.batchnorm={position: post}",
         "reg.hidden.activity={kind: l1, lam: 0.001}",
         "reg.hidden.kernel={kind: l2, lam: 0.02}", "reg.output.bias={kind: l2, lam: 0.0}",
         "seed=1"],
    ),
    "unit_norm, batchnorm pre, noise, activity penalty pre": (
        ["reg=batchnorm", "reg.hidden.noise={stddev: 0.5}", *L1_PRE,
         "reg.hidden.constraint={kind: unit_norm}"],
        ["reg=batchnorm", "reg.hidden.noise={stddev: 0.2}", *L1_PRE, "reg.hidden.activity.lam=0.1",
         "reg.hidden.constraint={kind: unit_norm}", "seed=2", "dataset.split_seed=1"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_each_engine_gives_the_same_numbers(case):
    """model.fit == compiled to 1e-4 relative, every column (diagnostics too), and each
    fused member == its own compiled run, its values differing from the other member's;
    the feature changes the numbers far more than that tolerance."""
    first, second = CASES[case]
    fit, compiled = _history("keras", *first), _history("compiled", *first)
    assert _max_rel(compiled, fit) < 1e-4
    plain = _without_the_feature()[["loss", "val_loss"]]
    assert _max_rel(compiled[["loss", "val_loss"]], plain) > 2e-3  # the feature acts
    fused = _members_match_their_compiled_runs(TINY, [first, second], every_column=True)
    assert _max_rel(pd.DataFrame(fused[0]), pd.DataFrame(fused[1])) > 1e-2  # they differ


def test_fused_members_keep_their_own_moving_statistics():
    """The weights written back into each member's model, moving mean and variance
    included, are those of its own compiled run."""
    members = [["reg=batchnorm", "reg.momentum=0.5"], ["reg=batchnorm", "seed=1"]]
    jobs = [prepare(make_cfg(*TINY, *m)) for m in members]
    fit_members(jobs)
    for job, member in zip(jobs, members, strict=True):
        alone = prepare(make_cfg(*TINY, *member))
        ENGINES["compiled"]([alone])
        names = [w.path for w in alone.model.weights]
        assert "h1_bn/moving_variance" in names
        for w_fused, w_alone in zip(job.model.get_weights(), alone.model.get_weights(),
                                    strict=True):  # fmt: skip
            np.testing.assert_allclose(w_fused, w_alone, rtol=1e-4, atol=1e-6)


def test_what_must_match_in_a_fused_group():
    def key(*overrides):
        return group_key(plan(make_cfg(*overrides), "-", fused=True))

    dropout = key("reg=max_norm_dropout")
    for free in ("reg.dropout=0.5", "reg.max_value=1.0", "reg.dropout=0.0", "seed=2"):
        assert key("reg=max_norm_dropout", free) == dropout, free
    for bound in ("reg.hidden.dropout=null", "reg.output.constraint=null",
                  "reg.inputs={dropout: {rate: 0.2}}", "+reg.layers.1={noise: {stddev: 1}}",
                  "reg.hidden.batchnorm={}"):  # fmt: skip
        assert key("reg=max_norm_dropout", bound) != dropout, bound
    norm = key("reg=batchnorm")
    assert key("reg=batchnorm", "reg.momentum=0.5", "reg.hidden.batchnorm.epsilon=0.1") == norm
    assert key("reg=batchnorm", "reg.hidden.batchnorm.position=post") != norm


# -- the layers' statistics and formulas --------------------------------------------------

ROWS, UNITS = 4000, 50  # 200 000 numbers: a standard error of about 0.001 on a rate


def _draw(kind, value, seed=0, steps=1, layer=None):
    layer = layer or random_layer()(kind, value, seed, 6)
    x = np.ones((ROWS, UNITS), "float32")
    return [np.asarray(layer(x, training=True)) for _ in range(steps)], layer


def test_dropout_keeps_one_minus_rate_and_scales_as_keras_dropout():
    rate = 0.3
    (ours, again), layer = _draw("dropout", rate, steps=2)
    theirs = np.asarray(keras.layers.Dropout(rate, seed=0)(np.ones((ROWS, UNITS)), training=True))
    se = np.sqrt(rate * (1 - rate) / ours.size)
    for out in (ours, again, theirs):
        assert abs((out == 0).mean() - rate) < 4 * se
        np.testing.assert_allclose(out[out != 0], np.float32(1 / (1 - rate)), rtol=1e-6)
    assert abs(ours.mean() - 1) < 4 * se / (1 - rate)  # the scaling keeps the mean
    assert not np.array_equal(ours, again)  # a new mask each step
    assert 0.45 < ((ours == 0) == (again == 0)).mean() < 0.65  # and an independent one
    np.testing.assert_array_equal(layer(np.ones((3, 4)), training=False), np.ones((3, 4)))
    np.testing.assert_array_equal(layer.steps.state.numpy(), [0, 2])  # [seed, steps taken]
    (same,), _ = _draw("dropout", rate)
    (other_seed,), _ = _draw("dropout", rate, seed=1)
    np.testing.assert_array_equal(same, ours)  # a function of (seed, step, layer) only
    assert abs(((other_seed == 0) & (ours == 0)).mean() - rate**2) < 4 * se


def test_noise_has_the_mean_and_spread_of_keras_gaussian_noise():
    stddev = 0.5
    (ours,), layer = _draw("noise", stddev)
    theirs = np.asarray(keras.layers.GaussianNoise(stddev, seed=0)(np.ones((ROWS, UNITS)),
                                                                   training=True))  # fmt: skip
    for out in (ours, theirs):
        z = (out - 1) / stddev
        assert abs(z.mean()) < 4 / np.sqrt(z.size)
        assert abs(z.std() - 1) < 4 / np.sqrt(2 * z.size)
        assert abs((np.abs(z) < 1).mean() - 0.6827) < 4 * np.sqrt(0.6827 * 0.3173 / z.size)
        assert abs((np.abs(z) < 2).mean() - 0.9545) < 4 * np.sqrt(0.9545 * 0.0455 / z.size)
    np.testing.assert_array_equal(layer(np.ones((3, 4)), training=False), np.ones((3, 4)))


def test_members_draw_with_their_own_seed_what_a_single_model_draws():
    """The stacked stage with seeds [3, 5] gives member k the mask of a single layer with
    seed k, at the same step."""
    import tensorflow as tf

    from regexp.layers import Dropout

    stage = Dropout.stacked([{"rate": 0.5}, {"rate": 0.2}], 6)
    ones = tf.ones([2, 7, 9])
    stacked = stage(ones, True, tf.constant(4, tf.int64), tf.constant([3, 5], tf.int64)).numpy()
    for k, (seed, rate) in enumerate([(3, 0.5), (5, 0.2)]):
        layer = random_layer()("dropout", rate, seed, 6)
        layer.steps.state.assign([seed, 4])
        np.testing.assert_array_equal(stacked[k], layer(np.ones((7, 9), "float32"), training=True))


@pytest.mark.parametrize("kind", CONSTRAINTS)
def test_constraints_are_keras_formulas_per_member(kind):
    """Stacked constraints with one max_value per member against NumPy and Keras."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 6, 4)).astype("float32") * np.float32([[[0.1]], [[1.0]], [[3.0]]])
    specs = [{"kind": kind, "max_value": v} for v in (0.5, 1.0, 2.0)]
    params = {p: tf.constant([s[p] for s in specs], tf.float32) for p in CONSTRAINTS[kind].params}
    got = CONSTRAINTS[kind].stacked(tf.constant(w), **params).numpy()
    eps = keras.config.epsilon()
    for m, spec in enumerate(specs):
        norms = np.sqrt((w[m] ** 2).sum(axis=0, keepdims=True))
        by_hand = {
            "max_norm": w[m] * np.clip(norms, 0, spec["max_value"]) / (eps + norms),
            "unit_norm": w[m] / (eps + norms),
            "non_neg": np.maximum(w[m], 0),
        }[kind]
        params = {"max_value": spec["max_value"]} if kind == "max_norm" else {}
        theirs = np.asarray(CONSTRAINTS[kind].keras(**params)(w[m]))
        np.testing.assert_allclose(got[m], by_hand, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got[m], theirs, rtol=1e-6, atol=1e-7)
    assert not np.allclose(got, w)  # every member's kernel was changed


def test_the_keras_model_has_the_layers_in_order():
    cfg = make_cfg("model.depth=2", "model.width=3", "reg.inputs={noise: {stddev: 0.1}}",
                   "+reg.layers.1={batchnorm: {}, dropout: {rate: 0.1}}",
                   "+reg.layers.2={batchnorm: {position: post, momentum: 0.5}}",
                   "reg.output.constraint={kind: max_norm}")  # fmt: skip
    from regexp.model import build_model
    from regexp.tasks import TASKS

    model, _ = build_model(layer_plan(cfg), 2, TASKS["binary"].output(2), seed=7)
    names = [layer.name for layer in model.layers]
    assert names == ["x", "inputs_noise", "h1", "h1_bn", "h1_act", "h1_dropout", "h2", "h2_bn",
                     "out"]  # fmt: skip
    assert model.get_layer("h1").bias is None and model.get_layer("h2").bias is not None
    assert model.get_layer("h2_bn").momentum == 0.5 and model.get_layer("h1_bn").epsilon == 1e-3
    assert model.get_layer("out").kernel.constraint.get_config() == {"max_value": 2.0, "axis": 0}
    assert model.get_layer("h1_dropout").seed == 7


# -- the diagnostics ----------------------------------------------------------------------


def test_dropout_and_maxnorm_diagnostics_against_numpy():
    """``maxnorm_<layer>``: the largest unit norm of the kernel, at most max_value;
    ``dropout_<layer>``: the zeros the layer's own mask puts in the epoch's last batch."""
    job = prepare(make_cfg(*TINY, "reg=max_norm_dropout", "reg.max_value=0.4",
                           "reg.dropout=0.25", "reg.inputs={dropout: {rate: 0.5}}"))  # fmt: skip
    history = pd.DataFrame(ENGINES["compiled"]([job])[0])
    last = history.iloc[-1]
    for name in ("h1", "h2", "out"):
        kernel = job.model.get_layer(name).kernel.numpy()
        norms = np.sqrt((kernel**2).sum(axis=0))
        assert last[f"maxnorm_{name}"] == pytest.approx(norms.max(), rel=1e-6)
        assert norms.max() <= 0.4 * (1 + 1e-6)
    n, bs = len(job.data.x_train), 20
    steps = 2 * -(-n // bs)
    rows = n - (steps // 2 - 1) * bs
    for name, rate, units in (("inputs", 0.5, 2), ("h1", 0.25, 8), ("h2", 0.25, 8)):
        layer = job.model.get_layer(f"{name}_dropout")
        np.testing.assert_array_equal(layer.steps.state.numpy(), [0, steps])
        layer.steps.state.assign([0, steps - 1])  # the last batch again
        mask = np.asarray(layer(np.ones((rows, units), "float32"), training=True)) == 0
        assert last[f"dropout_{name}"] == pytest.approx(mask.mean(), abs=1e-7)
        assert abs(mask.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / mask.size)


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, key, accepted",
    [
        (["reg=dropout", "reg.dropout=1"], "reg.hidden.dropout.rate", "[0, 1)"),
        (["reg.inputs={dropout: {rate: -0.1}}"], "reg.inputs.dropout.rate", "[0, 1)"),
        (["reg.inputs={dropout: {}}"], "reg.inputs.dropout.rate", "needs it"),
        (["reg=noise", "reg.stddev=-0.5"], "reg.inputs.noise.stddev", ">= 0"),
        (["+reg.layers.1={noise: 0.1}"], "reg.layers.1.noise", "a mapping of stddev"),
        (["reg=batchnorm", "reg.momentum=1"], "reg.hidden.batchnorm.momentum", "[0, 1)"),
        (["reg=batchnorm", "reg.hidden.batchnorm.epsilon=0"], "reg.hidden.batchnorm.epsilon",
         "> 0"),
        (["reg=batchnorm", "reg.hidden.batchnorm.position=mid"], "reg.hidden.batchnorm.position",
         "pre, post"),
        (["+reg.output.batchnorm={}"], "reg.output.batchnorm", "kernel, bias, constraint"),
        (["+reg.output.dropout={rate: 0.1}"], "reg.output.dropout", "kernel, bias, constraint"),
        (["+reg.inputs.batchnorm={}"], "reg.inputs.batchnorm", "noise, dropout"),
        (["reg=max_norm", "reg.hidden.constraint.kind=maxnorm"], "reg.hidden.constraint.kind",
         "max_norm, unit_norm, non_neg"),
        (["reg=max_norm", "reg.max_value=0"], "reg.hidden.constraint.max_value", "> 0"),
        (["reg.hidden.constraint={kind: unit_norm, max_value: 2}"],
         "reg.hidden.constraint.max_value", "constraint unit_norm: kind"),
        (["reg.hidden.bias={kind: max_norm, max_value: 2}"], "reg.hidden.bias",
         "reg.hidden.constraint"),
        (["reg=batchnorm", "reg.hidden.bias={kind: l2, lam: 0.1}"], "reg.hidden.bias",
         "no bias"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_naming_the_key(overrides, key, accepted):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert err.value.key == key
    assert accepted in err.value.accepted
    assert "\n" not in str(err.value)
