"""Shared helpers: compose the real configs in-process, as `regexp run` would."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from regexp.cli import CONF


def make_cfg(*overrides: str):
    """The composed config for these overrides (no Hydra run, no TensorFlow)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture
def cfg():
    return make_cfg
