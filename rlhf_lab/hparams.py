"""Typed, ranged checks of hyper-parameters: the one validation path of every stage config.

Each stage config's `validate()` starts with `check_fields(self, RANGES)`; the Stage base calls
`validate()` on construction and on a copy of the config before `set()` changes anything, so a bad
value raises a `ValueError` naming the field and what is allowed, and nothing has changed.

    >>> check_fields(SFTConfig(learning_rate=float("nan")), {})
    ValueError: SFTConfig.learning_rate must be a finite number, got nan.
    >>> check_fields(SFTConfig(batch_size=0), {"batch_size": at_least(1)})
    ValueError: SFTConfig.batch_size must be in [1, inf), got 0.

Types come from the dataclass annotations: a `float` field takes an int or a float (not a bool, not
a string), an `int` field an integer (not a bool), a `bool` field True/False, `X | None` also None.
Every real number must be finite (NaN slips through `<` and `>` comparisons, so it is refused first).
"""

from __future__ import annotations

import functools
import math
import numbers
import types
import typing
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Range:
    """An interval of allowed values; `None` ends are unbounded. Printed as "[0, inf)", "(0, 1]"."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def __str__(self) -> str:
        left = "(" if self.low is None or self.low_open else "["
        right = ")" if self.high is None or self.high_open else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"


def at_least(low: float) -> Range:
    return Range(low=low)


def above(low: float) -> Range:
    return Range(low=low, low_open=True)


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Range:
    return Range(low=low, high=high, low_open=low_open, high_open=high_open)


def check_fields(config: Any, ranges: dict[str, Range]) -> None:
    """ValueError for the first field of `config` with a wrong type, a non-finite number or a value
    outside its range in `ranges` (None values are only type-checked)."""
    owner = type(config).__name__
    hints = _hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        expected = hints.get(f.name)
        if expected is not None and not _accepts(expected, value):
            raise ValueError(
                f"{owner}.{f.name} must be {_describe(expected)}, got {value!r} ({type(value).__name__})."
            )
        if _is_real(value) and not isinstance(value, numbers.Integral) and not math.isfinite(float(value)):
            raise ValueError(f"{owner}.{f.name} must be a finite number, got {value}.")
    for name, allowed in ranges.items():
        value = getattr(config, name)
        if value is not None and _is_real(value) and value not in allowed:
            raise ValueError(f"{owner}.{name} must be in {allowed}, got {value}.")


def whole_number(value: Any, name: str, *, minimum: int = 0) -> int:
    """`value` as an int, or an error naming `name`: TypeError for 1.5, "2" or True, ValueError below
    `minimum`. For the counts a user passes to a method (`stage.step(n)`, `rm.fit(epochs=...)`), where
    Python's own "'float' object cannot be interpreted as an integer" would not say which argument.

        >>> whole_number(-1, "step(n)")
        ValueError: step(n) must be at least 0, got -1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be resolved is not type-checked
        return {}


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _accepts(expected: Any, value: Any) -> bool:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if expected is float:
        return _is_real(value)
    if expected is str:
        return isinstance(value, str)
    if expected in (list, tuple) or origin in (list, tuple):
        return isinstance(value, (list, tuple))
    return True  # other annotations (Any, ClassVar, custom types) are the config's own business


def _describe(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(expected))
    names = {type(None): "None", bool: "True or False", int: "an integer", float: "a number", str: "a string"}
    if expected in names:
        return names[expected]
    if expected in (list, tuple) or origin in (list, tuple):
        return "a list"
    return str(expected)
