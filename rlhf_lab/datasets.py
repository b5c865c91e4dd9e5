"""Deprecated: kept for one release; import from `rlhf_lab.bundled` (the bundled tasks' data loaders).

The new name says what the module holds and no longer shadows the `datasets` package.
"""

from rlhf_lab.bundled import (
    SPLITS,
    TASKS,
    load_demos,
    load_preferences,
    load_prompts,
    load_rankings,
    load_samples,
    preference_pairs,
)
from rlhf_lab.moved import warn_moved

warn_moved(__name__, "rlhf_lab.bundled")

__all__ = [
    "SPLITS",
    "TASKS",
    "load_demos",
    "load_preferences",
    "load_prompts",
    "load_rankings",
    "load_samples",
    "preference_pairs",
]
