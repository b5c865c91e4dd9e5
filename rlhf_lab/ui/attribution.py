"""Deprecated: kept for one release; import from `rlhf_lab.attribution` (token attribution)."""

import warnings

from rlhf_lab.attribution import (
    Attribution,
    as_score_fn,
    attribution_html,
    integrated_gradients,
    occlusion,
    reward_model_scorer,
    split_units,
)

warnings.warn(
    "rlhf_lab.ui.attribution is deprecated and will be removed; import from rlhf_lab.attribution.",
    DeprecationWarning,
    stacklevel=2,  # the importer's line (warnings skips importlib's frames)
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
