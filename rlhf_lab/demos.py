"""Deprecated: kept for one release; import from `rlhf_lab.demonstrations` (SFT demonstrations)."""

from rlhf_lab.demonstrations import MAX_CHARS, Demo, DemoError, load_demos, save_demos
from rlhf_lab.moved import warn_moved

warn_moved(__name__, "rlhf_lab.demonstrations")

__all__ = ["MAX_CHARS", "Demo", "DemoError", "load_demos", "save_demos"]
