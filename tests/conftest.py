"""Shared helpers: compose the real configs in-process, as `regexp run` would."""

from regexp.config import compose as make_cfg

__all__ = ["make_cfg"]
