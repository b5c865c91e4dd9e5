"""Deprecated: kept for one release; import from `rlhf_lab.attribution` (token attribution)."""

from rlhf_lab.attribution import (
    Attribution,
    as_score_fn,
    attribution_html,
    integrated_gradients,
    occlusion,
    reward_model_scorer,
    split_units,
)
from rlhf_lab.moved import warn_moved

warn_moved(__name__, "rlhf_lab.attribution")

__all__ = [
    "Attribution",
    "as_score_fn",
    "attribution_html",
    "integrated_gradients",
    "occlusion",
    "reward_model_scorer",
    "split_units",
]
