"""Engines against each other: compiled vs model.fit, fused members vs compiled runs."""

import itertools
import json
import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from regexp import training
from regexp.cli import main
from regexp.engines import ENGINES
from regexp.fused import fit_members
from regexp.pipeline import group_key, plan, prepare
from regexp.progress import Epochs
from regexp.reproduce import experiments
from regexp.training import ORDER_BUDGET, BatchOrders, ChunkHistory, ChunkStops
from tests.conftest import make_cfg

SERIES = ["loss", "data_loss", "accuracy", "val_loss", "val_data_loss", "val_accuracy"]


def _history(engine, *overrides):
    """The history's series of the job's task (``SERIES`` for classification)."""
    job = prepare(make_cfg(*overrides, f"trainer.engine={engine}"))
    return pd.DataFrame(ENGINES[engine]([job])[0])[list(job.kind.columns)]


def _max_rel(a: pd.DataFrame, b: pd.DataFrame) -> float:
    return float((np.abs(a - b) / np.maximum(np.abs(b), 1e-12)).to_numpy().max())


@pytest.mark.parametrize("experiment", experiments())
def test_compiled_matches_model_fit_per_epoch(experiment):
    """Same initial weights (same seed) and the same batch order (no shuffle)."""
    overrides = [f"experiment={experiment}", "trainer.epochs=3", "trainer.shuffle=false"]
    fit = _history("keras", *overrides)
    compiled = _history("compiled", *overrides)
    assert len(fit) == 3
    assert _max_rel(compiled, fit) < 1e-4


MEMBERS = [
    ["seed=0"],
    ["seed=1", "reg.lam=0.003"],
    ["seed=2", "optimizer.lr=0.003", "dataset.split_seed=1"],
]


def _members_match_their_compiled_runs(
    base: list[str], members: list[list[str]], every_column: bool = False
) -> list:
    """Fuse ``base`` + each member's overrides in one group; each member's history (the
    series of its task, or ``every_column`` with the diagnostics) must equal its own
    compiled run to 1e-4 relative. Returns the fused histories."""
    jobs = [prepare(make_cfg(*base, *m)) for m in members]
    assert len({group_key(plan(j.cfg, "-", fused=True)) for j in jobs}) == 1
    fused = fit_members(jobs)
    for member, history in zip(members, fused, strict=True):
        job = prepare(make_cfg(*base, *member))
        alone = pd.DataFrame(ENGINES["compiled"]([job])[0])
        columns = list(alone.columns) if every_column else list(job.kind.columns)
        assert _max_rel(pd.DataFrame(history)[columns], alone[columns]) < 1e-4, member
    return fused


@pytest.mark.parametrize("experiment", experiments())
def test_each_fused_member_matches_its_own_compiled_run(experiment):
    """Members differ in seed, strength and learning rate; each keeps its own numbers."""
    fused = _members_match_their_compiled_runs([f"experiment={experiment}", "trainer.epochs=3"],
                                               MEMBERS)  # fmt: skip
    # and the members really differ from each other
    assert fused[0]["loss"] != fused[1]["loss"] != fused[2]["loss"]


def test_fused_final_weights_are_left_in_each_members_model():
    base = ["experiment=b4_l1_activity", "trainer.epochs=2"]
    jobs = [prepare(make_cfg(*base, f"seed={s}")) for s in (0, 1)]
    fit_members(jobs)
    alone = prepare(make_cfg(*base, "seed=1"))
    ENGINES["compiled"]([alone])[0]
    for w_fused, w_alone in zip(jobs[1].model.get_weights(), alone.model.get_weights(),
                                strict=True):  # fmt: skip
        np.testing.assert_allclose(w_fused, w_alone, rtol=1e-4, atol=1e-6)


def test_batch_orders_are_per_seed_permutations():
    a, b = BatchOrders(10, 0, shuffle=True).take(3), BatchOrders(10, 1, shuffle=True).take(3)
    assert a.shape == (3, 10) and all(sorted(row) == list(range(10)) for row in a)
    assert not np.array_equal(a, b) and not np.array_equal(a[0], a[1])
    np.testing.assert_array_equal(a, BatchOrders(10, 0, shuffle=True).take(3))
    np.testing.assert_array_equal(BatchOrders(4, 0, shuffle=False).take(2), [[0, 1, 2, 3]] * 2)


def test_batch_orders_taken_in_chunks_are_one_permutation_per_epoch_of_one_stream():
    """However the epochs are cut into chunks, epoch e gets the e-th permutation of
    ``default_rng(seed)``: the orders recorded runs were trained with."""
    rng = np.random.default_rng(7)
    every_epoch = np.stack([rng.permutation(13) for _ in range(20)])
    orders = BatchOrders(13, 7, shuffle=True)
    chunks = [orders.take(count) for count in (1, 6, 0, 9, 4)]
    assert all(c.dtype == np.int32 and c.shape[1:] == (13,) for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), every_epoch)


def _stops_before(epochs: int) -> list[int]:
    """The stops before chunks had a size limit: one per tenth of the epochs."""
    chunk = max(1, math.ceil(epochs / 10))
    return [min(epochs, start + chunk) for start in range(0, epochs, chunk)]


def test_ordinary_runs_stop_at_every_tenth_as_before():
    """Progress and TensorBoard snapshots come at the same epochs as before the limit."""
    for epochs in [*range(1, 61), 99, 200, 1001, 5000]:
        for per_epoch in (1, 150, 600 * 50):  # one run; a fused group of 50 on 600 samples
            stops = ChunkStops(epochs, per_epoch)
            assert list(stops) == _stops_before(epochs), (epochs, per_epoch)
            assert all(stops.milestone(stop) for stop in stops)
            assert stops.longest == max(b - a for a, b in itertools.pairwise([0, *stops]))


def test_chunks_over_the_order_budget_are_cut_and_still_stop_at_every_tenth():
    for epochs in range(1, 80):
        for cap in (1, 2, 3, 5):
            stops = ChunkStops(epochs, ORDER_BUDGET // cap)  # at most cap epochs a chunk
            listed = list(stops)
            assert listed == sorted(set(listed)) and listed[-1] == epochs
            sizes = [b - a for a, b in itertools.pairwise([0, *listed])]
            assert max(sizes) == stops.longest <= cap
            assert set(_stops_before(epochs)) <= set(listed)  # the milestones still stop
            assert [e for e in range(epochs + 2) if stops.milestone(e)] == _stops_before(epochs)
            assert len(stops) == len(listed)
            assert [e for e in range(-1, epochs + 3) if e in stops] == listed


def test_a_billion_epochs_cost_nothing_before_training():
    """``trainer.epochs=10**9``: chunks keep within the budget, and the stops are computed
    (len, in, the next one) without listing the thousands of them."""
    tracemalloc.start()
    stops = ChunkStops(10**9, 300)
    count, first = len(stops), list(itertools.islice(stops, 3))
    checks = (10**9 in stops, 10**8 in stops, stops.milestone(10**8), first[0] + 1 in stops)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert stops.longest * 300 <= ORDER_BUDGET < 2 * stops.longest * 300  # within, not tiny
    assert first == [stops.longest, 2 * stops.longest, 3 * stops.longest]
    assert count == 10 * math.ceil(10**8 / stops.longest) > 10_000
    assert checks == (True, True, True, False)
    assert peak < 10_000  # a list of the stops alone would take a few hundred kB


@pytest.mark.parametrize("engine", ["compiled", "fused"])
def test_a_huge_run_allocates_one_chunk_at_a_time(engine, monkeypatch):
    """With chunks of 3 epochs (a tiny budget), a run of 10**9 epochs trains its first two
    chunks with one chunk's orders and buffers, and gives the numbers of a 6-epoch run."""
    base = ["experiment=b4_l1_activity", "trainer.epochs=6"]
    members = [["seed=0"], ["seed=1", "reg.lam=0.003"]][: 2 if engine == "fused" else 1]
    fit = ENGINES[engine]
    expected = fit([prepare(make_cfg(*base, *m)) for m in members])
    jobs = [prepare(make_cfg(*base, *m)) for m in members]  # the same start
    for job in jobs:
        job.cfg.trainer.epochs = 10**9  # after prepare: its memory check counts every epoch
    n = len(jobs[0].data.x_train)
    monkeypatch.setattr(training, "ORDER_BUDGET", 3 * n * len(jobs))
    taken, made = [], []
    take, make = BatchOrders.take, ChunkHistory.__init__

    def taking(self, count):  # checked before allocating: a regression fails, not swaps
        taken.append(count)
        assert count <= 3
        return take(self, count)

    def making(self, names, rows, shape=()):
        made.append(rows)
        assert rows <= 3
        make(self, names, rows, shape)

    def interrupt_after_6(self, epoch, *numbers):
        if epoch == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(BatchOrders, "take", taking)
    monkeypatch.setattr(ChunkHistory, "__init__", making)
    monkeypatch.setattr(Epochs, "update", interrupt_after_6)
    histories = fit(jobs)
    assert taken == [3, 3] * len(jobs) and made == [3]
    assert histories == expected  # bit for bit: how epochs are chunked changes no number


def _key(*overrides):
    return group_key(plan(make_cfg(*overrides), "-", fused=True))


def test_what_can_and_cannot_be_fused():
    base = _key("reg=l1_activity")
    for free in ("seed=3", "reg.lam=0.5", "optimizer.lr=0.1", "reg.hidden.activity.lam=0.2",
                 "dataset.split_seed=4"):  # fmt: skip
        assert _key("reg=l1_activity", free) == base, free
    for bound in ("reg=l2_activity", "model.depth=3", "trainer.batch_size=10",
                  "dataset.test_size=0.3", "optimizer=sgd", "reg.hidden.position=pre"):  # fmt: skip
        assert _key("reg=l1_activity", bound) != base, bound


def test_fused_sweep_writes_the_folders_a_basic_sweep_writes(tmp_path):
    """Same files, same configs, same numbers (to 1e-4) whichever launcher ran the sweep."""
    sweep = ["reg=l1_activity", "reg.lam=0.01,0.001", "seed=0,1", "trainer.epochs=2"]
    folders = {}
    for launcher in ("fused", "basic"):
        out = tmp_path / launcher
        assert main(["run", "-m", *sweep, f"hydra/launcher={launcher}",
                     f"hydra.sweep.dir={out}"]) == 0  # fmt: skip
        folders[launcher] = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in folders["fused"]] == [p.name for p in folders["basic"]]
    for fused, basic in zip(folders["fused"], folders["basic"], strict=True):
        assert {p.name for p in fused.rglob("*")} == {p.name for p in basic.rglob("*")}
        assert OmegaConf.load(fused / "config.yaml") == OmegaConf.load(basic / "config.yaml")
        hf, hb = pd.read_csv(fused / "history.csv"), pd.read_csv(basic / "history.csv")
        assert _max_rel(hf[SERIES], hb[SERIES]) < 1e-4
        mf, mb = (json.loads((p / "metrics.json").read_text()) for p in (fused, basic))
        assert mf.keys() - {"group"} == mb.keys()  # a fused member also names its group
        assert mf["group"] == [p.name for p in folders["fused"]]
        assert (mf["engine"], mf["group_size"]) == ("fused", 4)
        assert (mb["engine"], mb["group_size"]) == ("compiled", 1)
        assert mf["test_data_loss"] == pytest.approx(mb["test_data_loss"], rel=1e-4)


def test_keras_engine_jobs_are_not_fused(tmp_path):
    out = tmp_path / "sweep"
    assert main(["run", "-m", "seed=0,1", "trainer.epochs=1", "trainer.engine=keras",
                 f"hydra.sweep.dir={out}"]) == 0  # fmt: skip
    engines = {json.loads(p.read_text())["engine"] for p in out.glob("*/metrics.json")}
    assert engines == {"keras"}


HUBER = [
    "reg.hidden.kernel={kind: huber, lam: 0.002, delta: 0.1}",
    "reg.hidden.bias={kind: huber, lam: 0.01, delta: 0.05}",
    "reg.hidden.activity={kind: huber, lam: 0.001, delta: 0.5}",
    "reg.output.kernel={kind: l1, lam: 0.001}",
]


def test_huber_on_kernel_bias_and_activity_trains_alike_in_all_three_engines():
    base = [
        "experiment=b4_l1_activity",
        "reg=none",
        *HUBER,
        "trainer.epochs=3",
        "trainer.shuffle=false",
    ]
    fit = _history("keras", *base)
    compiled = _history("compiled", *base)
    assert _max_rel(compiled, fit) < 1e-4
    assert (fit["loss"] - fit["data_loss"] > 0).all()  # the penalties really count
    members = [
        ["seed=0"],
        ["seed=1", "reg.hidden.kernel.delta=0.3", "reg.hidden.activity.lam=0.01"],
    ]
    jobs = [prepare(make_cfg(*base, "trainer.shuffle=true", *m)) for m in members]
    assert len({group_key(plan(j.cfg, "-", fused=True)) for j in jobs}) == 1
    for member, history in zip(members, fit_members(jobs), strict=True):
        alone = _history("compiled", *base, "trainer.shuffle=true", *member)
        assert _max_rel(pd.DataFrame(history)[SERIES], alone) < 1e-4, member


@pytest.mark.parametrize(
    "optimizer, key",
    [("optimizer=adamw", "optimizer.weight_decay"), ("optimizer=sgd", "+optimizer.weight_decay")],
)
def test_weight_decay_is_keras_in_every_engine_and_may_differ_within_a_group(optimizer, key):
    """Decoupled weight decay: compiled equals model.fit, and fused members whose decays
    differ (0 among them) each equal their own compiled run."""
    base = ["experiment=b4_l1_activity", "trainer.epochs=3", optimizer]
    same_order = [*base, f"{key}=0.04", "trainer.shuffle=false"]  # fit shuffles its own way
    assert _max_rel(_history("compiled", *same_order), _history("keras", *same_order)) < 1e-4
    members = [[f"{key}=0.0", "seed=0"], [f"{key}=0.1", "seed=1"], [f"{key}=1.0", "seed=2"]]
    _members_match_their_compiled_runs(base, members)


def test_the_stacked_weight_decay_is_the_decoupled_formula():
    """With a zero gradient, plain SGD leaves each member's weights at w - w * wd * lr."""
    import tensorflow as tf

    from regexp.optimizers import Stacked

    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4, 5)).astype("float32")
    lr, wd = np.float32([0.1, 0.01, 0.5]), np.float32([0.0, 0.2, 0.04])
    v = tf.Variable(w)
    opt = Stacked({"name": "sgd", "lr": 0.1}, tf.constant(lr), [v], tf.constant(wd))
    opt.apply([tf.zeros_like(v)], [v])
    expected = w - w * wd[:, None, None] * lr[:, None, None]
    np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6)
    assert not np.allclose(v.numpy()[1:], w[1:])  # the decaying members moved
