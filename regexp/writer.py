"""Writing run folders in another process while this one trains.

Once a job has trained, the launching process computes everything its folder holds
that needs the trained model (``pipeline.finish``: final metrics, activations, saved
models) and hands the rest to a ``Writer``: files, ``.hydra/``, figures and tracking
(``pipeline.write_folder``), none of which needs TensorFlow. With ``processes=1`` the
writer is one spawned process on another core, so a sweep's folders are written while
its next group trains; with ``processes=0`` it writes here, in order, as it is handed
the jobs. Waiting for the writer process (``results``), this process writes the jobs it
has not started, from the last back: the folders of a sweep's last group, which nothing
else overlaps, are written on two cores. (A second writer process did worse: its
start-up and the three processes on two cores cost more than it saved.)

The folder contract holds either way: ``metrics.json`` is written last and atomically,
so a folder whose writer was stopped never looks complete. The writer process ignores
Ctrl-C and SIGTERM: the launching process decides. It waits for every job it handed
over before it stops (``results`` under ``training.interrupts_deferred``), so an
interrupt finishes every trained job; a killed launching process ends its writer too
(within a second: ``_orphaned``), and a folder being written then stays unfinished. A
writer process that dies (killed, or out of memory) loses nothing either: this process
says so once and writes here every job it had not finished, the one it was writing
included (``pipeline.write_folder`` takes a folder's ``metrics.json`` away before
writing it again), and every job handed over after.

Work that needs no trained job is handed over ahead (``ahead``), while the jobs train:
drawing each kind of figure once, and the config-only half of each job's ``run_job``
(``launcher.jobs_ahead``). The writer process makes no automatic pass of Python's cycle
collector: what it imported at start-up is frozen out of the collector's sight, and a
pass follows each piece of work ahead, or a job when ``training.PRESSURE`` objects
have been made since the last pass, so its passes fall while the jobs train.

Log records a job's writing emits in the writer process come back with its result, to
be handled here (``results(replay=True)``) as if they had been emitted here. The
writer's time per phase (``regexp.timing``) comes back too, added to this process's.

Importing this module does not import TensorFlow, and neither does the writer process.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NoReturn

from regexp import timing
from regexp.training import collect_when_pressed

PROCESSES = 1  # one writer process; 0 writes in the process that trained (tests, debugging)
_shared: Writer | None = None
# what a writer process imports as it starts: the modules of the functions it is handed
# (pipeline.write_folder, launcher.write_job), named, as they sit above this one
PRELOAD = ("regexp.pipeline", "regexp.launcher")


def shared() -> Writer:
    """This process's writer, started on first use (``PROCESSES``) and kept for every run
    and sweep after, so its start-up is paid once."""
    global _shared
    if _shared is None or _shared.processes != PROCESSES or _shared.broken():
        if _shared is not None:
            _shared.close()
        _shared = Writer(PROCESSES)
    return _shared


IN_FLIGHT = 2  # jobs the writer process holds at once: the one it writes, the next one


class Writer:
    """Calls ``fn(*args)`` for each ``submit``, in order: in a writer process or here.

    A writer process holds at most ``IN_FLIGHT`` jobs; the others wait in this process's
    backlog, handed over one by one as it finishes one (a callback of its future, so it
    goes on while this process trains). Waiting for them (``results``), this process
    writes the backlog's jobs itself, last first, while the writer process is busy.
    Nothing handed over is taken back: a cancelled future of a process pool whose process
    then dies breaks the pool's clean-up (Python 3.11), and the exit hangs."""

    def __init__(
        self, processes: int = 1, initializer: Callable | None = None, initargs: tuple = ()
    ) -> None:
        self.processes = processes
        self.pending: list[_Job] = []  # every job since the last ``results``, in order
        self.backlog: deque[_Job] = deque()  # not yet handed to the writer process
        self.held: set[Future] = set()  # the writer process's, unfinished
        self.preparing: list[Future] = []  # what ``ahead`` handed it
        self.took_over = False  # whether its process died, and this one writes instead
        self.lock = threading.Condition(threading.RLock())  # futures call back meanwhile
        self.pool = None
        if processes > 0:
            import multiprocessing

            # spawn, never fork: this process holds TensorFlow's threads
            self.pool = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=(
                    os.getpid(),
                    logging.getLogger().getEffectiveLevel(),
                    initializer,
                    initargs,
                ),
            )
            # start it now, so that its imports overlap this process's; without the
            # caller's __main__, which spawn would run again in it (a user's script
            # without an `if __name__ == "__main__"` guard would run twice)
            caller = sys.modules["__main__"]
            sys.modules["__main__"] = types.ModuleType("__main__")
            try:
                self.pool.submit(_ready)  # starts the process, here and now
            finally:
                sys.modules["__main__"] = caller
        elif initializer is not None:
            initializer(*initargs)

    def submit(self, fn: Callable, *args: Any) -> None:
        job = _Job(fn, args)
        self.pending.append(job)
        if self.pool is None or self.broken():
            self._write_here(job)
            return
        with self.lock:
            self.backlog.append(job)
        self._feed()

    def _feed(self, finished: Future | None = None) -> None:
        """Hand the writer process the backlog's jobs, in order, until it holds
        ``IN_FLIGHT``: at ``submit``, and as each job it holds finishes."""
        with self.lock:
            self.held.discard(finished)
            while len(self.held) < IN_FLIGHT and self.backlog and self.pool is not None:
                job = self.backlog[0]
                try:
                    future = self.pool.submit(_call, job.fn, *job.args)
                except (BrokenProcessPool, RuntimeError):  # it died, or was shut down
                    break
                self.backlog.popleft()
                job.future = future
                self.held.add(future)
                future.add_done_callback(self._feed)
            self.lock.notify_all()

    def _help(self) -> None:
        """Write here, last first, the backlog's jobs while the writer process is busy
        with others (an idle one, its figures drawn before, takes the next one sooner);
        their log records are emitted here, as they are made. Not before the writer
        process has done what ``ahead`` gave it, which may touch the same folders."""
        for future in self.preparing:
            with contextlib.suppress(Exception):
                future.result()
        self.preparing = []
        while True:
            with self.lock:
                if not self.backlog or not self.held:
                    return
                job = self.backlog.pop()
            job.run_here()

    def ahead(self, fn: Callable, *args: Any) -> None:
        """Have the writer process call ``fn(*args)`` now, while it waits for the jobs:
        work that makes them quicker to write (``figures_ahead``, ``launcher.jobs_ahead``).
        Its result and errors are dropped; nothing when writing here."""
        if self.pool is not None and not self.broken():
            with contextlib.suppress(BrokenProcessPool, RuntimeError):  # it died meanwhile
                self.preparing.append(self.pool.submit(_ahead, fn, *args))

    def _write_here(self, job: _Job) -> None:
        """Write ``job`` here: writing here, or in place of a writer process that died
        (said once)."""
        if self.pool is not None and not self.took_over:
            self.took_over = True
            print(f"regexp: {DIED}", file=sys.stderr, flush=True)
        job.run_here()

    def broken(self) -> bool:
        """Whether its process has died (the next use starts another)."""
        return self.pool is not None and getattr(self.pool, "_broken", False) is not False

    def failed(self) -> BaseException | None:
        """The error of a job already written, if one failed (without waiting)."""
        for job in self.pending:
            item = job.outcome
            if item is not None and item.done() and not _lost(item):
                if item.exception() is not None:
                    return item.exception()
        return None

    def results(self, replay: bool = False) -> list[Any]:
        """Wait for every job handed over; their results in order (raises the first
        error). ``replay``: handle here the log records the writer process emitted.

        Meanwhile this process writes the backlog's jobs (``_help``), having nothing
        else to do: the folders of a sweep's last group are written on two cores."""
        self._help()
        pending, self.pending = self.pending, []
        results, error = [], None
        for job in pending:
            with self.lock:  # a backlog's job is handed over as the writer frees up
                while job.outcome is None and not self.broken():
                    self.lock.wait(0.5)
            item = job.outcome
            if item is None or _lost(item):  # never handed over, or lost with the process
                self._write_here(job)
                item = job.outcome
            try:
                value = item.result()
            except BaseException as e:  # the others are still waited for
                error = error or e
                continue
            if isinstance(item, Future):
                value, records, spent = value
                timing.add(spent)
                if replay:
                    for record in records:  # as if logged here: its levels, logging.disable
                        logger = logging.getLogger(record.name)
                        if logger.isEnabledFor(record.levelno):
                            logger.handle(record)
            results.append(value)
        with self.lock:
            self.backlog.clear()  # only when its process died: written here, above
        if error is not None:
            raise error
        return results

    def close(self) -> None:
        if self.pool is not None:
            with timing.phase("wait"):
                self.pool.shutdown(wait=True, cancel_futures=False)
            self.pool = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Job:
    """A job handed to a ``Writer``, and where it went: to the writer process
    (``future``), or written here (``done``)."""

    def __init__(self, fn: Callable, args: tuple) -> None:
        self.fn, self.args = fn, args
        self.future: Future | None = None
        self.done: _Done | None = None

    @property
    def outcome(self) -> Future | _Done | None:
        return self.done if self.done is not None else self.future

    def run_here(self) -> None:
        try:
            self.done = _Done(self.fn(*self.args), None)
        except Exception as e:
            self.done = _Done(None, e)


DIED = (
    "the writer process ended abruptly (killed, or out of memory); the folders it had "
    "not written are written here"
)


def _lost(item: Future | _Done) -> bool:
    """Whether a job handed to the writer process was lost with it (waits for it)."""
    return isinstance(item, Future) and isinstance(item.exception(), BrokenProcessPool)


class _Done:
    """A job written here: its result, or its error, as a Future would hold them."""

    def __init__(self, value: Any, error: BaseException | None) -> None:
        self.value, self.error = value, error

    def done(self) -> bool:
        return True

    def exception(self) -> BaseException | None:
        return self.error

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


# --- in the writer process --------------------------------------------------------


class _Records(logging.Handler):
    """Keeps the records emitted while one job is written, to send them back."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None  # picklable, and final
        record.exc_info = record.exc_text = None
        self.records.append(record)


def _start(parent: int, level: int, initializer: Callable | None, initargs: tuple) -> None:
    # the launching process decides when to stop, and waits for its writer; one killed
    # before this process has started up ends it too
    threading.Thread(target=_orphaned, args=(parent,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.getLogger().setLevel(level)  # records the launching process would handle
    import importlib

    from regexp.plots import warm_up

    # while the launching process imports TensorFlow: the modules of the functions it
    # hands over (unpickling the first job would import them), and its first figure
    for name in PRELOAD:
        importlib.import_module(name)
    warm_up()
    if initializer is not None:
        initializer(*initargs)
    atexit.register(_leave)
    # what it imported and drew stays: out of the collector's sight; and no automatic
    # pass while it writes (``_ahead`` and ``_call`` run them, see there)
    gc.freeze()
    gc.disable()


def _orphaned(parent: int) -> None:
    """End this writer process within a second of the launching process's end: a killed
    one closes nothing this process would notice (it holds both ends of the queue it
    reads), so it would wait for jobs for ever. A folder it was writing stays
    unfinished (no ``metrics.json``)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def leave(code: int) -> NoReturn:
    """End this process now with ``code``, its standard streams flushed, without the
    interpreter's teardown (freeing every module: over a second once TensorFlow is
    loaded, a quarter of one with matplotlib and pandas). For a process whose files are
    all written and closed, after its exit handlers (``cli.entry``, ``_leave``)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)


def _leave() -> None:
    """The writer process's last exit handler to be registered, so the first to run:
    multiprocessing has finished its own exit by then (``BaseProcess._bootstrap``), and
    the handlers registered before this one are logging's, run here."""
    logging.shutdown()
    leave(0)


def figures_ahead(metrics: tuple[str, ...], layers: int) -> None:
    """Draw once the kinds of figures a job will need (``plots.warm_up``): for
    ``Writer.ahead``, while the job trains."""
    from regexp.plots import warm_up

    warm_up(metrics, layers)


def _ready() -> None:
    return None


def _ahead(fn: Callable, *args: Any) -> None:
    """``Writer.ahead``'s work in the writer process, then a pass of the cycle collector:
    while the jobs train, so not while it writes them."""
    try:
        fn(*args)
    finally:
        gc.collect()


def _call(fn: Callable, *args: Any) -> tuple[Any, list[logging.LogRecord], dict[str, float]]:
    """``fn(*args)``, with the log records it emitted and the time it spent by phase."""
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        value = fn(*args)
    finally:
        root.removeHandler(handler)
        collect_when_pressed()  # the passes between ``_ahead``'s, for a long backlog
    return value, handler.records, timing.take()
