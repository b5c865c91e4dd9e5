"""Deprecated: kept for one release; import from `rlhf_lab.demonstrations` (SFT demonstrations)."""

from rlhf_lab.demonstrations import MAX_CHARS, Demo, DemoError, load_demos, save_demos

__all__ = ["MAX_CHARS", "Demo", "DemoError", "load_demos", "save_demos"]
