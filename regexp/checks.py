"""The types of config values, and the typed schemas built from them.

A ``Rule`` is one type of value with its range, such as "an integer >= 1" or "a number
>= 0". Rules are used two ways, and state their rule once for both:

- as pydantic annotations, ``epochs: Annotated[int, Integer(1)]``, in the typed schema
  of every config group (each catalogue declares its own: the datasets, the optimizers,
  the regularizer kinds, the layer plan, the trainer);
- called directly, ``STRENGTH(key, value)``, where a value's key is only known at run time.

``parse(schema, values, key)`` checks a group's values against its schema and raises
``ConfigError`` with the full key, the value and what is accepted. Values are typed
strictly: ``trainer.shuffle=no`` is refused rather than read as true or false, an
integer key refuses ``2.5`` and ``'3'``, and unknown keys are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError, core_schema

from regexp.errors import ConfigError


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Rule:
    """A type of config value: ``accepted`` says it in errors, ``test`` checks a value."""

    def __init__(self, accepted: str, test: Callable[[Any], bool]):
        self.accepted, self.test = accepted, test

    def __call__(self, key: str, value: Any) -> Any:
        """``value``, if it is accepted; else ``ConfigError`` naming ``key``."""
        if not self.test(value):
            raise ConfigError(key, value, self.accepted)
        return value

    def or_none(self) -> Rule:
        return Rule(f"null or {self.accepted}", lambda v: v is None or self.test(v))

    def or_list(self) -> Rule:
        """One value, or a non-empty list of them (a per-layer key)."""

        def test(v: Any) -> bool:
            if isinstance(v, (list, tuple)):
                return len(v) > 0 and all(self.test(x) for x in v)
            return self.test(v)

        return Rule(f"{self.accepted}, or a list of them", test)

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        def check(value: Any) -> Any:
            if not self.test(value):
                raise PydanticCustomError("regexp", "{accepted}", {"accepted": self.accepted})
            return value

        return core_schema.no_info_plain_validator_function(check)


def Integer(minimum: int = 1, maximum: int | None = None) -> Rule:  # noqa: N802 (a type)
    said = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to "
    said += "" if maximum is None else ("2**32 - 1" if maximum == 2**32 - 1 else str(maximum))

    def test(v: Any) -> bool:
        return (
            isinstance(v, int)
            and not isinstance(v, bool)
            and v >= minimum
            and (maximum is None or v <= maximum)
        )

    return Rule(said, test)


def Choice(*accepted: str) -> Rule:  # noqa: N802 (a type)
    return Rule("one of " + ", ".join(accepted), lambda v: isinstance(v, str) and v in accepted)


def Number(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = True):  # noqa: N802
    """A finite number in an interval (NaN is never accepted)."""
    if high == math.inf:
        said = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        said = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def test(v: Any) -> bool:
        if not _number(v) or not math.isfinite(v):
            return False
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return above and below

    return Rule(said, test)


STRENGTH = Number(0)  # a penalty strength, a noise level
POSITIVE = Number(0, low_open=True)
OPEN_UNIT = Number(0, 1, low_open=True)  # (0, 1)
UNIT_INTERVAL = Number(0, 1)  # [0, 1)
BOOL = Rule("true or false", lambda v: isinstance(v, bool))
SEED = Integer(0, 2**32 - 1)  # what numpy's and Keras' seeding accept
TEXT = Rule("a non-empty text", lambda v: isinstance(v, str) and v.strip() != "")
MAPPING = Rule("a mapping", lambda v: isinstance(v, Mapping))
NAME = Rule(  # experiment_name and reg.name name run folders
    "a plain name of letters, digits and . _ + - (it names folders)",
    lambda v: (
        isinstance(v, str) and bool(re.fullmatch(r"[\w.+-]{1,100}", v)) and v not in (".", "..")
    ),
)


def integer(key: str, value: Any, minimum: int = 1) -> int:
    return Integer(minimum)(key, value)


class Schema(BaseModel):
    """A config group's typed schema: every key declared with its type; no other key."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _key(prefix: str, loc: tuple) -> str:
    key = prefix
    for part in loc:
        key = f"{key}[{part}]" if isinstance(part, int) else (f"{key}.{part}" if key else part)
    return key


def parse(schema: type[Schema], values: Any, key: str, what: str | None = None) -> Schema:
    """``values`` (a mapping) checked against ``schema``; ``key`` is where they sit in the
    config, ``what`` names them in errors (default: ``key``)."""
    if not isinstance(values, Mapping):
        raise ConfigError(key, values, f"a mapping of {', '.join(schema.model_fields)}")
    try:
        return schema.model_validate(dict(values))
    except ValidationError as e:
        errors = e.errors(include_url=False)
    # an unknown key first: it is usually a misspelt one, which is why another is missing
    error = min(errors, key=lambda err: err["type"] != "extra_forbidden")
    where, kind = _key(key, error["loc"]), error["type"]
    value = error.get("input")
    if kind == "regexp":
        accepted = error["ctx"]["accepted"]
    elif kind == "missing":
        value, accepted = None, f"a value ({what or key} needs it)"
    elif kind == "extra_forbidden":
        accepted = f"a key of {what or key}: " + ", ".join(schema.model_fields)
    else:  # a type pydantic checks itself
        accepted = error["msg"].removeprefix("Input should be ")
    raise ConfigError(where, value, accepted)
