"""Deprecated: kept for one release; import from `rlhf_lab.active` (item sources, active learning)."""

import warnings

from rlhf_lab.active import (
    STRATEGIES,
    ActiveLearningSource,
    Item,
    QueueSource,
    Scorer,
    StageSource,
    as_items,
    items_from_file,
    normalise_item,
    pairs_from_samples,
)

warnings.warn(
    "rlhf_lab.ui.queue is deprecated and will be removed; import from rlhf_lab.active.",
    DeprecationWarning,
    stacklevel=2,  # the importer's line (warnings skips importlib's frames)
)

__all__ = [
    "STRATEGIES",
    "ActiveLearningSource",
    "Item",
    "QueueSource",
    "Scorer",
    "StageSource",
    "as_items",
    "items_from_file",
    "normalise_item",
    "pairs_from_samples",
]
