"""One warning for a module that moved: the old name keeps working for one release and says where to go.

# rlhf_lab/pairs.py, the old home:
from rlhf_lab.reward.pairs import PairRecord, ...   # re-export the new objects
warn_moved(__name__, "rlhf_lab.reward.pairs")
"""

from __future__ import annotations

import warnings


def warn_moved(old: str, new: str) -> None:
    """A DeprecationWarning that points at the line importing `old` (call it from `old`'s body)."""
    warnings.warn(
        f"{old} is deprecated and will be removed; import from {new}.",
        DeprecationWarning,
        # 1 is this function, 2 the old module's body, 3 its importer (warnings skips importlib's frames)
        stacklevel=3,
    )
