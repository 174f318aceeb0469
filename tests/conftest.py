"""Shared helpers: compose the real configs in-process, as `regexp run` would."""

import signal
import sys

from absl import logging as absl_logging

from regexp.compose import compose as make_cfg

# absl (loaded with TensorFlow) keeps the sys.stderr of the moment it loads, and closes it
# when Hydra reconfigures logging if sys.stderr has changed since: under pytest, that is
# pytest's capture file, and every later test then fails. The real stderr it never closes.
absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__

# A suite started in the background (`make test &`) inherits SIGINT as ignored, and so would
# every regexp the tests start: the tests that interrupt a run with SIGINT, and submitit's
# cancel (SIGINT to a worker), would then wait for training to end. Handled here, SIGINT
# reaches the children as the default they would have in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)

__all__ = ["make_cfg"]
