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
