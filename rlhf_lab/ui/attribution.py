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

__all__ = [
    "Attribution",
    "as_score_fn",
    "attribution_html",
    "integrated_gradients",
    "occlusion",
    "reward_model_scorer",
    "split_units",
]
