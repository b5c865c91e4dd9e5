"""Deprecated: kept for one release; import from `rlhf_lab.reward.evaluation`."""

from rlhf_lab.moved import warn_moved
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

warn_moved(__name__, "rlhf_lab.reward.evaluation")

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
