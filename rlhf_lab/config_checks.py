"""The checks every part of a headless config shares, each raising a ConfigError that names the field.

>>> optional_section({"evaluate": True}, "evaluate", {"samples": 4})
{'samples': 4}
>>> whole_number_setting(0, "flywheel.rounds", least=2)
ConfigError: flywheel.rounds must be a whole number of at least 2, got 0.
"""

from __future__ import annotations

from typing import Any

from rlhf_lab.errors import ConfigError


def optional_section(config: dict[str, Any], key: str, defaults: dict[str, Any]) -> dict[str, Any] | None:
    """The settings of an optional section (`evaluate:`, `flywheel:`) with `defaults` filled in; None when
    the config leaves it out or sets it to false, the defaults alone when it says `true`. A section that
    is neither a mapping nor true, or names a setting not in `defaults`, is a ConfigError."""
    value = config.get(key)
    if value is None or value is False:
        return None
    if value is True:
        return dict(defaults)
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping of settings (or true), got {value!r}.")
    unknown = set(value) - set(defaults)
    if unknown:
        raise ConfigError(f"{key}: unknown setting(s) {sorted(unknown)}; known: {sorted(defaults)}.")
    return {**defaults, **value}


def whole_number_setting(value: Any, where: str, *, least: int, most: int | None = None) -> int:
    """`value` if it is a plain int from `least` to `most` (no upper bound when None), else a ConfigError
    naming `where`. Stricter than hparams.whole_number (any Integral): these numbers go into summary.json."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < least
        or (most is not None and value > most)
    ):
        bounds = f"of at least {least}" if most is None else f"from {least} to {most}"
        raise ConfigError(f"{where} must be a whole number {bounds}, got {value!r}.")
    return value
