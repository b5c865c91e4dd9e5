"""Reward-model metrics against hand-computed values and sklearn/scipy."""

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from rlhf_lab.reward.evaluation import (
    average_ranks,
    expected_calibration_error,
    pair_metrics,
    pairwise_accuracy,
    reliability_table,
    roc_auc,
    spearman_rho,
)


def test_pairwise_accuracy_by_hand():
    assert pairwise_accuracy([1.0, -1.0, 0.0, 2.0]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    # target 0 means the rejected side won; 0.5 (a tie) has no right answer and is skipped.
    assert pairwise_accuracy([1.0, -1.0, 0.3, -2.0], [1.0, 0.0, 0.5, 0.9]) == pytest.approx(2 / 3)
    assert math.isnan(pairwise_accuracy([0.4], [0.5]))


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=200).astype(float)  # many ties
    labels = rng.random(200) < 0.3 + 0.1 * scores
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert math.isnan(roc_auc([1.0, 2.0], [1, 1]))


def test_spearman_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, size=50).astype(float)
    y = x + rng.normal(size=50)
    assert spearman_rho(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert spearman_rho([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert math.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))


def test_ece_and_reliability_by_hand():
    probs, labels = [0.1, 0.4, 0.45, 0.9], [0, 1, 0, 1]
    table = reliability_table(probs, labels, n_bins=2)
    assert table["count"].tolist() == [3, 1]
    assert table["confidence"].tolist() == pytest.approx([0.95 / 3, 0.9])
    assert table["frequency"].tolist() == pytest.approx([1 / 3, 1.0])
    expected = 0.75 * abs(1 / 3 - 0.95 / 3) + 0.25 * abs(1.0 - 0.9)
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(expected)


def test_reliability_table_matches_sklearn_bins():
    rng = np.random.default_rng(2)
    probs = np.round(rng.random(300), 1)  # values exactly on bin edges too
    labels = rng.random(300) < probs
    table = reliability_table(probs, labels, n_bins=10)
    filled = table[table["count"] > 0]
    prob_true, prob_pred = calibration_curve(labels, probs, n_bins=10, strategy="uniform")
    assert filled["frequency"].to_numpy() == pytest.approx(prob_true)
    assert filled["confidence"].to_numpy() == pytest.approx(prob_pred)
    assert table["count"].sum() == 300 and table["count"].iloc[0] > 0


def test_pair_metrics_counts_each_pair_in_both_orders():
    metrics = pair_metrics(np.array([1.2, -0.3, 0.8]))
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    # Positives {1.2, -0.3, 0.8} vs negatives {-1.2, 0.3, -0.8}: 8 of 9 comparisons won.
    assert metrics["auc"] == pytest.approx(8 / 9)
    assert metrics["margin_right"] == pytest.approx(1.0) and metrics["margin_wrong"] == pytest.approx(-0.3)
    probs = 1 / (1 + np.exp(-np.array([1.2, -0.3, 0.8, -1.2, 0.3, -0.8])))
    labels = np.array([1, 1, 1, 0, 0, 0])
    assert metrics["ece"] == pytest.approx(expected_calibration_error(probs, labels))
    assert list(metrics["reliability"].columns) == [
        "lower",
        "upper",
        "count",
        "confidence",
        "frequency",
        "gap",
    ]


def test_a_perfectly_calibrated_soft_label_has_zero_gap():
    # Three annotators of four preferred chosen and the model says sigmoid(margin) = 0.75.
    metrics = pair_metrics(np.array([math.log(3.0)]), np.array([0.75]))
    assert metrics["ece"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["accuracy"] == 1.0
