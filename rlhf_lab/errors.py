"""Exceptions with messages written for the person at the notebook."""

from __future__ import annotations


class RLHFLabError(Exception):
    """Base class of every error the lab raises on purpose."""


class UnknownPresetError(RLHFLabError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(RLHFLabError, ValueError):
    """A headless config (YAML) or one of its settings cannot be used; the message names the key."""


class MissingPackageError(RLHFLabError, ImportError):
    """An optional offline model package is not installed; the message has the exact pip command."""


class OfflineModelError(RLHFLabError, OSError):
    """A hub id could not be loaded (no network); the message lists the offline presets."""


class StageError(RLHFLabError, RuntimeError):
    """A stage failed; the original exception is chained as __cause__."""


class CheckpointError(StageError):
    """A checkpoint (and its previous copy) is damaged or incomplete; the message names the file."""


class NonFiniteLossError(StageError):
    """A loss was NaN or infinite; the step was not applied and the stage paused."""


class StageBusyError(StageError):
    """The stage is running in its background thread; pause() it first."""
