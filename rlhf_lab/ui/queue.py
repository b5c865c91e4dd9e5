"""Deprecated: kept for one release; import from `rlhf_lab.active` (item sources, active learning)."""

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
from rlhf_lab.moved import warn_moved

warn_moved(__name__, "rlhf_lab.active")

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
