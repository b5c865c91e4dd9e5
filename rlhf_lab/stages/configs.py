"""Stage configs: a dataclass of defaults plus keyword overrides, deprecated names, validation.

    >>> from rlhf_lab.stages.configs import make_config
    >>> make_config(None, SFTConfig, {"learning_rate": 1e-3})   # SFTConfig(learning_rate=0.001, ...)

Every stage builds its config with `make_config`; the Stage base calls `validate_config` on it at
construction and before `set()` changes anything (rlhf_lab.stages.base).
"""

from __future__ import annotations

import warnings
from dataclasses import fields, replace
from typing import Any


def make_config(config: Any, config_cls: type, overrides: dict[str, Any]) -> Any:
    """A private copy of `config` (or the defaults) with `overrides` applied; unknown names are an error.

        >>> make_config(None, SFTConfig, {"learning_rate": 1e-3})   # SFTConfig(learning_rate=0.001, ...)

    Stages mutate their config through `set()`, so the caller's object is never the stage's.
    The result is checked by the config's `validate()` when the Stage base is constructed.
    """
    overrides = rename_deprecated(config_cls, overrides)
    names = {f.name for f in fields(config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        kind = config_cls.__name__.removesuffix("Config")
        raise TypeError(
            f"Unknown {config_cls.__name__} field(s) {unknown}. Unknown {kind} settings cannot be applied "
            f"(unknown {kind} settings are usually typos). Known: {sorted(names)}."
        )
    base = config if config is not None else config_cls()
    return replace(base, **overrides)


def rename_deprecated(config_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with deprecated field names (a config's `deprecated_names`) mapped to the current ones.

    E.g. SFTConfig and RMConfig accept `grad_clip=` for `max_grad_norm=` for one release.
    """
    renames = getattr(config_cls, "deprecated_names", {})
    if not any(old in values for old in renames):
        return dict(values)
    for old, new in renames.items():
        if old in values:
            warnings.warn(
                f"{config_cls.__name__}: {old!r} is deprecated; use {new!r}.",
                DeprecationWarning,
                stacklevel=4,
            )
    return {renames.get(k, k): v for k, v in values.items()}


def validate_config(config: Any) -> Any:
    """Call `config.validate()` when the config has one (every stage config does); returns `config`."""
    check = getattr(config, "validate", None)
    if callable(check):
        check()
    return config
