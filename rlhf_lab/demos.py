"""Deprecated: kept for one release; import from `rlhf_lab.demonstrations` (SFT demonstrations)."""

import warnings

from rlhf_lab.demonstrations import MAX_CHARS, Demo, DemoError, load_demos, save_demos

warnings.warn(
    "rlhf_lab.demos is deprecated and will be removed; import from rlhf_lab.demonstrations.",
    DeprecationWarning,
    stacklevel=2,  # the importer's line (warnings skips importlib's frames)
)

__all__ = ["MAX_CHARS", "Demo", "DemoError", "load_demos", "save_demos"]
