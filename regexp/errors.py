"""Errors a user can act on: each names the key or file, the value, and what is accepted."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class ConfigError(UserError):
    """A config value that is not accepted."""

    def __init__(self, key: str, value: Any, accepted: str):
        self.key, self.value, self.accepted = key, value, accepted
        super().__init__(f"{key}={value!r} is not accepted; expected {accepted}")


class DataError(UserError):
    """A data file that is missing or cannot be used."""
