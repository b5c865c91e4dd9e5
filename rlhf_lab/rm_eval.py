"""Deprecated: kept for one release; import from `rlhf_lab.reward.evaluation`."""

import warnings

from rlhf_lab.reward.evaluation import (
    average_ranks,
    both_orders,
    expected_calibration_error,
    gold_accuracy,
    pair_metrics,
    pairwise_accuracy,
    ranking_spearman,
    reliability_table,
    roc_auc,
    sigmoid,
    spearman_rho,
)

warnings.warn(
    "rlhf_lab.rm_eval is deprecated and will be removed; import from rlhf_lab.reward.evaluation.",
    DeprecationWarning,
    stacklevel=2,  # the importer's line (warnings skips importlib's frames)
)

__all__ = [
    "average_ranks",
    "both_orders",
    "expected_calibration_error",
    "gold_accuracy",
    "pair_metrics",
    "pairwise_accuracy",
    "ranking_spearman",
    "reliability_table",
    "roc_auc",
    "sigmoid",
    "spearman_rho",
]
