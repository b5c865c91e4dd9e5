"""rlhf-lab: the whole RLHF loop, step by step, in a notebook.

    >>> from rlhf_lab import Lab
    >>> lab = Lab.from_preset("tiny")

`Lab` and `PRESETS` are imported lazily, so `import rlhf_lab.store` (a workshop writer, the
facilitator view, the CLI) does not pay for torch and transformers.
"""

from typing import Any

__all__ = ["Lab", "PRESETS"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Lab":
        from rlhf_lab.lab import Lab

        return Lab
    if name == "PRESETS":
        from rlhf_lab.models.presets import PRESETS

        return PRESETS
    raise AttributeError(f"module 'rlhf_lab' has no attribute {name!r}")
