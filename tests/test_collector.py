"""Python's cycle collector during a sweep: no automatic pass in the launching process's
bookkeeping (``training.collector_paused``) nor in the writer process's writing; passes
run while a group trains, and when much garbage piled up."""

import gc
import threading
import time
import weakref

import pytest

from regexp import training, writer
from regexp.cli import main
from regexp.training import collector_paused, train_in_chunks


class _Cycle:
    """Garbage only the cycle collector frees: it refers to itself."""

    def __init__(self, freed: list[str]) -> None:
        self.me = self
        weakref.finalize(self, lambda: freed.append(threading.current_thread().name))


def _chunks(seconds: float, stops=(1, 2, 3)):
    """``train_in_chunks`` over ``stops``, each chunk's graph call standing in as a sleep
    (it lets go of the interpreter's lock, as TensorFlow's does)."""
    return train_in_chunks(lambda start, stop: time.sleep(seconds), list(stops),
                           lambda start, stop: None)  # fmt: skip


def test_in_a_paused_block_the_pass_runs_aside_while_training():
    freed: list[str] = []
    enabled = gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        _Cycle(freed)
        assert freed == []  # no automatic pass
        assert _chunks(training.COLLECT_AFTER + 0.05) == 3
        assert freed == ["regexp-collector"]  # freed in the thread, by the time it returns
        assert not gc.isenabled() and training._last_pass > 0
    assert gc.isenabled() == enabled


def test_when_a_pass_no_longer_fits_beside_a_chunk_the_automatic_collector_resumes(
    monkeypatch,
):
    freed: list[str] = []
    with collector_paused():
        monkeypatch.setattr(training, "_last_pass", 3 * (training.COLLECT_AFTER + 0.05))
        _Cycle(freed)
        _chunks(training.COLLECT_AFTER + 0.05)
        assert freed == [] and gc.isenabled()  # no pass aside; the collector's own again
        gc.disable()  # as another group's composing might have it: restored on leaving
    assert gc.isenabled()


def test_short_chunks_leave_the_pass_to_pressure(monkeypatch):
    freed: list[str] = []
    with collector_paused():
        _Cycle(freed)
        _chunks(0.0)
        assert freed == []  # too short to hide a pass, and little garbage
        monkeypatch.setattr(training, "PRESSURE", 0)
        _chunks(0.0)
        assert freed == [threading.main_thread().name]


def test_outside_a_paused_block_training_leaves_the_collector_alone():
    freed: list[str] = []
    gc.collect()
    gc.disable()  # as a user might have it: no pass is run for them
    try:
        _Cycle(freed)
        _chunks(training.COLLECT_AFTER + 0.05)
        assert freed == []
    finally:
        gc.enable()
        gc.collect()
    assert freed == [threading.main_thread().name]


def test_a_sweep_pauses_the_collector_and_restores_it(tmp_path, monkeypatch):
    seen = []
    train = training.train_in_chunks

    def watched(*args):
        seen.append((gc.isenabled(), training._paused))
        return train(*args)

    monkeypatch.setattr(training, "train_in_chunks", watched)
    for module in ("regexp.engines", "regexp.fused"):
        monkeypatch.setattr(f"{module}.train_in_chunks", watched)
    assert gc.isenabled()
    args = ["run", "-m", "experiment=b4_l1_activity", "reg.lam=0.1,0.2", "trainer.epochs=2",
            f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    assert main(args) == 0
    assert seen == [(False, 1)]
    assert gc.isenabled() and training._paused == 0


def _state():
    return gc.isenabled(), gc.get_freeze_count() > 0


def _make_garbage(n: int) -> None:
    for _ in range(n):
        _Cycle([])


def _pending() -> int:
    return gc.get_count()[0]


@pytest.fixture
def writing():
    folders = writer.Writer(processes=1)
    yield folders
    folders.close()


def test_the_writer_process_collects_after_its_work_ahead_not_while_it_writes(writing):
    writing.submit(_state)
    assert writing.results() == [(False, True)]  # no automatic pass; its start-up frozen
    writing.submit(_make_garbage, 5000)
    writing.submit(_pending)
    _, made = writing.results()
    assert made >= 5000  # piled up: no pass while writing
    writing.ahead(_make_garbage, 10)
    writing.submit(_pending)
    (after,) = writing.results()
    assert after < 100  # the pass after the work ahead took it all
