"""Deprecated: kept for one release; import from `rlhf_lab.bundled` (the bundled tasks' data loaders).

The new name says what the module holds and no longer shadows the `datasets` package.
"""

import warnings

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

warnings.warn(
    "rlhf_lab.datasets is deprecated and will be removed; import from rlhf_lab.bundled.",
    DeprecationWarning,
    stacklevel=2,  # the importer's line (warnings skips importlib's frames)
)

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
