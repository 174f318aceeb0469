"""Diagnostics against values computed by hand on a tiny fixed network, in every engine."""

import numpy as np
import pandas as pd
import pytest

from regexp.diagnostics import Diagnostics
from regexp.engines import ENGINES
from regexp.fused import fit_members
from regexp.pipeline import prepare
from regexp.plan import LayerPlan
from tests.conftest import make_cfg


def test_values_on_a_tiny_network_match_a_hand_computation():
    plans = [
        LayerPlan("h1", 2, "relu", kernel={"kind": "l1", "lam": 0.1},
                  activity={"kind": "l2", "lam": 0.5}),
        LayerPlan("out", None, None, bias={"kind": "l2", "lam": 0.2}),
    ]  # fmt: skip
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, -3.0]], "float32")
    k1 = np.array([[1.0, -2.0], [0.5, 1.0]], "float32")
    b1 = np.array([0.0, 0.5], "float32")
    k2 = np.array([[1.0], [-1.0]], "float32")
    b2 = np.array([0.3], "float32")
    weights = [{"kernel": k1[None], "bias": b1[None]}, {"kernel": k2[None], "bias": b2[None]}]
    got = Diagnostics([plans], x[None])(weights)
    got = {name: float(v[0]) for name, v in got.items()}

    # by hand: h = relu(x @ k1 + b1)
    # row 1: [1 + 1, -2 + 2 + .5] = [2, .5]; row 2: [-1 + .25, 2 + .5 + .5] -> [0, 3];
    # row 3: [-1.5, -3 + .5] -> [0, 0]
    h = np.array([[2.0, 0.5], [0.0, 3.0], [0.0, 0.0]])
    assert got["penalty_h1_kernel"] == pytest.approx(0.1 * 4.5)
    assert got["penalty_h1_activity"] == pytest.approx(0.5 * (4 + 0.25 + 9) / 3)
    assert got["penalty_out_bias"] == pytest.approx(0.2 * 0.09)
    assert got["l1_h1"] == pytest.approx(4.5) and got["l2_h1"] == pytest.approx(np.sqrt(6.25))
    assert got["l1_out"] == pytest.approx(2.0) and got["l2_out"] == pytest.approx(np.sqrt(2))
    assert got["act_mean_h1"] == pytest.approx(h.mean())
    assert got["act_zero_h1"] == pytest.approx(3 / 6)
    assert set(got) == {
        "penalty_h1_kernel", "penalty_h1_activity", "l1_h1", "l2_h1", "act_mean_h1",
        "act_zero_h1", "penalty_out_bias", "l1_out", "l2_out",
    }  # fmt: skip


def test_diagnostics_agree_with_the_models_own_penalties():
    """penalty_* summed equals Keras' model.losses on the validation split."""
    job = prepare(make_cfg("experiment=b6_all", "trainer.epochs=2"))
    history = pd.DataFrame(ENGINES["compiled"]([job])[0])
    from regexp.model import total_penalty

    expected = total_penalty(job.model, job.data.x_val, job.loss_penalties)
    last = history.iloc[-1]
    assert last.filter(like="penalty_").sum() == pytest.approx(expected, rel=1e-5)
    h = np.asarray(_hidden_output(job, "h3"))
    assert last["act_mean_h3"] == pytest.approx(h.mean(), rel=1e-5)
    assert last["act_zero_h3"] == pytest.approx((h == 0).mean())
    kernel = job.model.get_layer("h2").kernel.numpy()
    assert last["l1_h2"] == pytest.approx(np.abs(kernel).sum(), rel=1e-5)


def _hidden_output(job, name):
    import keras

    probe = keras.Model(job.model.input, job.model.get_layer(name).output)
    return probe(job.data.x_val)


def test_every_engine_records_the_same_diagnostics():
    overrides = ["experiment=b7_kl_sparsity", "trainer.epochs=2", "trainer.shuffle=false"]
    runs = {}
    for engine in ("keras", "compiled"):
        runs[engine] = pd.DataFrame(ENGINES[engine]([prepare(make_cfg(*overrides))])[0])
    runs["fused"] = pd.DataFrame(fit_members([prepare(make_cfg(*overrides))])[0])
    columns = [c for c in runs["keras"].columns if c.startswith(("penalty_", "l1_", "act_"))]
    assert "penalty_h5_activity" in columns and "act_zero_h5" in columns
    for engine in ("compiled", "fused"):
        assert set(runs[engine].columns) == set(runs["keras"].columns)
        np.testing.assert_allclose(runs[engine][columns], runs["keras"][columns], rtol=1e-4,
                                   atol=1e-7)  # fmt: skip
