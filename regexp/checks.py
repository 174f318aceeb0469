"""Checks of single config values, each raising ``ConfigError`` with the key, the value
and what is accepted. Every catalogue (regularizers, optimizers, datasets, the layer plan)
validates its keys with these, so a rule such as "a strength is a number >= 0" is stated
once."""

from __future__ import annotations

from typing import Any

from regexp.errors import ConfigError


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, f"an integer >= {minimum}")
    return value


def choice(key: str, value: Any, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise ConfigError(key, value, "one of " + ", ".join(accepted))
    return value


def fraction(key: str, value: Any, low_open: bool) -> float:
    """A number in (0, 1) (``low_open``) or [0, 1)."""
    ok = _number(value) and (0 < value < 1 if low_open else 0 <= value < 1)
    if not ok:
        raise ConfigError(key, value, "a number in (0, 1)" if low_open else "a number in [0, 1)")
    return float(value)


def strength(key: str, value: Any) -> float:
    """A penalty strength: a number >= 0 (NaN is not)."""
    if not _number(value) or not value >= 0:
        raise ConfigError(key, value, "a number >= 0")
    return float(value)


def positive(key: str, value: Any) -> float:
    """A number > 0 (NaN is not)."""
    if not _number(value) or not value > 0:
        raise ConfigError(key, value, "a number > 0")
    return float(value)


def open_unit(key: str, value: Any) -> float:
    """A number strictly between 0 and 1."""
    if not _number(value) or not 0 < value < 1:
        raise ConfigError(key, value, "a number in (0, 1)")
    return float(value)


def unit_interval(key: str, value: Any) -> float:
    """A number in [0, 1)."""
    if not _number(value) or not 0 <= value < 1:
        raise ConfigError(key, value, "a number in [0, 1)")
    return float(value)
