"""TensorFlow, loaded quietly and set up for reproducible numbers.

``import_keras(threads)`` is the one place TensorFlow is imported for training: op
determinism on (same seed, same numbers), thread pools sized once per process, and the
C++ side's start-up chatter hidden.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys

log = logging.getLogger("regexp.run")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide what TensorFlow's C++ side prints while it loads (it ignores TF_CPP_MIN_LOG_LEVEL).

    Python exceptions still propagate; set REGEXP_TF_LOGS=1 to see the logs.
    """
    if os.environ.get("REGEXP_TF_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_tf_threads: int | None = None


def import_keras(threads: int = 0):
    """Import Keras on TensorFlow with op determinism on (same seed, same numbers).

    ``threads`` sizes TensorFlow's thread pools (0 = TensorFlow's default). Pools can
    only be set before TensorFlow first runs, so the first run of a process decides.
    """
    global _tf_threads
    from regexp.timing import phase

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _quiet_native_stderr(), phase("import"):
        import keras
        import tensorflow as tf

        if _tf_threads is None:
            try:
                if threads:
                    tf.config.threading.set_intra_op_parallelism_threads(threads)
                    tf.config.threading.set_inter_op_parallelism_threads(threads)
                _tf_threads = threads
            except RuntimeError:  # TensorFlow already ran in this process
                _tf_threads = tf.config.threading.get_intra_op_parallelism_threads()
            tf.config.list_physical_devices()
            tf.config.experimental.enable_op_determinism()
            # TensorFlow's and Keras' millions of objects live as long as the process:
            # out of the cycle collector's sight, its full passes no longer walk them all
            # (they took a tenth of a sweep's bookkeeping)
            gc.freeze()
    if threads != _tf_threads:
        log.warning(
            "trainer.threads=%d ignored: this process already runs TensorFlow with %d",
            threads, _tf_threads,
        )  # fmt: skip
    return keras


def threads() -> dict[str, int]:
    """The sizes of this process's TensorFlow thread pools."""
    import tensorflow as tf

    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }
