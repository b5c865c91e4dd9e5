"""Evaluation metrics for reward models: pure functions on numpy arrays.

A reward model is judged on pairs: `margin = r(chosen) - r(rejected)` and `target` = P(chosen
wins) (1.0 for a hard label, a fraction for soft labels, 0.5 for a tie).

    >>> import numpy as np
    >>> from rlhf_lab.reward.evaluation import pairwise_accuracy, pair_metrics
    >>> pairwise_accuracy(np.array([1.2, -0.3, 0.8]))
    0.6666666666666666
    >>> pair_metrics(np.array([1.2, -0.3, 0.8]))["auc"]
    0.8888888888888888

Pairs are stored chosen-first, so every label is "the first one wins". For AUC and calibration
each pair is counted in both orders, (margin, target) and (-margin, 1 - target), which is the
same as showing A and B in a random order, without the randomness.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

ArrayLike = np.ndarray | list[float]


def _targets(margins: np.ndarray, targets: ArrayLike | None) -> np.ndarray:
    if targets is None:
        return np.ones_like(margins)
    targets = np.asarray(targets, dtype=float)
    if targets.shape != margins.shape:
        raise ValueError(f"margins and targets differ in shape: {margins.shape} vs {targets.shape}")
    return targets


def pairwise_accuracy(margins: ArrayLike, targets: ArrayLike | None = None) -> float:
    """Fraction of pairs where the sign of the margin agrees with the label.

    Pairs with target 0.5 (ties) have no right answer and are skipped; a margin of exactly 0
    counts as half right. NaN when no pair is decided.
    """
    margins = np.asarray(margins, dtype=float)
    targets = _targets(margins, targets)
    decided = targets != 0.5
    if not decided.any():
        return float("nan")
    m, wants_first = margins[decided], targets[decided] > 0.5
    right = np.where(m == 0, 0.5, (m > 0) == wants_first)
    return float(right.mean())


def average_ranks(values: ArrayLike) -> np.ndarray:
    """1-based ranks with ties sharing their average rank (what Spearman and AUC need)."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(values, dtype=float), method="average")


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve: P(a random positive scores above a random negative), ties half.

    The Mann-Whitney U of the positives over n_pos * n_neg (scipy.stats.mannwhitneyu). NaN unless
    both classes are present.
    """
    from scipy.stats import mannwhitneyu

    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = mannwhitneyu(scores[labels], scores[~labels], method="asymptotic", use_continuity=False).statistic
    return float(u / (n_pos * n_neg))


def spearman_rho(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rank correlation (scipy.stats.spearmanr). NaN if either side is constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def reliability_table(probs: ArrayLike, labels: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Predicted probability vs observed frequency in `n_bins` equal-width bins.

    Bins are closed on the right ((0.1, 0.2] ...; the first also holds 0), like sklearn's
    `calibration_curve`. Labels may be soft (fractions). Empty bins have count 0 and NaN means.
    """
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], probs, side="left")
    rows = []
    for b in range(n_bins):
        inside = bins == b
        count = int(inside.sum())
        confidence = float(probs[inside].mean()) if count else float("nan")
        frequency = float(labels[inside].mean()) if count else float("nan")
        rows.append(
            {
                "lower": edges[b],
                "upper": edges[b + 1],
                "count": count,
                "confidence": confidence,
                "frequency": frequency,
                "gap": abs(frequency - confidence) if count else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean |observed frequency - mean confidence| over the bins."""
    table = reliability_table(probs, labels, n_bins)
    total = table["count"].sum()
    if total == 0:
        return float("nan")
    filled = table[table["count"] > 0]
    return float((filled["count"] * filled["gap"]).sum() / total)


def both_orders(margins: ArrayLike, targets: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each pair as (margin, target) and (-margin, 1 - target)."""
    margins = np.asarray(margins, dtype=float)
    targets = _targets(margins, targets)
    return np.concatenate([margins, -margins]), np.concatenate([targets, 1.0 - targets])


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion `p` observed on `n` trials (Wilson 1927).

    Unlike p +- z * SE it stays inside [0, 1] and is honest at small n: on 11 pairs an accuracy of
    0.27 has the interval (0.10, 0.56), i.e. "too few pairs to tell". Fractional successes (ties
    counted as half) are fine. (nan, nan) when n is 0.
    """
    if n <= 0 or p != p:
        return (float("nan"), float("nan"))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def sigmoid(x: ArrayLike) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def pair_metrics(margins: ArrayLike, targets: ArrayLike | None = None, n_bins: int = 10) -> dict:
    """Accuracy, AUC, calibration and mean margins of right and wrong pairs, in one dict.

    `margin_right` / `margin_wrong` are the mean margin (towards the label) of the pairs the model
    gets right / wrong: a useful model is confident when right and unsure when wrong.
    """
    margins = np.asarray(margins, dtype=float)
    targets = _targets(margins, targets)
    scores, labels = both_orders(margins, targets)
    decided = labels != 0.5
    probs = sigmoid(scores)
    oriented = np.where(targets >= 0.5, margins, -margins)[targets != 0.5]
    accuracy = pairwise_accuracy(margins, targets)
    return {
        "n_pairs": int(len(margins)),
        "accuracy": accuracy,
        "accuracy_ci": wilson_interval(accuracy, int((targets != 0.5).sum())),
        "auc": roc_auc(scores[decided], labels[decided] > 0.5),
        "ece": expected_calibration_error(probs, labels, n_bins),
        "margin_right": float(oriented[oriented > 0].mean()) if (oriented > 0).any() else float("nan"),
        "margin_wrong": float(oriented[oriented <= 0].mean()) if (oriented <= 0).any() else float("nan"),
        "reliability": reliability_table(probs, labels, n_bins),
    }


# ---------------------------------------------------------------------- on pairs and items
def ranking_spearman(pairs: Sequence[Any], reward: dict[tuple[str, str], float]) -> float | None:
    """Mean Spearman rho between rewards and wins-per-response over items with 3+ responses."""
    items: dict[str, dict[str, float]] = {}
    for p in pairs:
        wins = items.setdefault(p.item, {})
        wins[p.chosen] = wins.get(p.chosen, 0.0) + p.target
        wins[p.rejected] = wins.get(p.rejected, 0.0) + 1.0 - p.target
    prompts = {p.item: p.prompt for p in pairs}
    rhos = []
    for item, wins in items.items():
        if len(wins) >= 3:
            scores = [reward[(prompts[item], r)] for r in wins]
            rho = spearman_rho(scores, list(wins.values()))
            if rho == rho:
                rhos.append(rho)
    return float(np.mean(rhos)) if rhos else None


def gold_accuracy(pairs: Sequence[Any], margins: np.ndarray, gold: Any) -> float:
    """How often the reward model orders a pair as the gold judge does (gold ties skipped)."""
    gold_margin = np.array([gold.score(p.prompt, p.chosen) - gold.score(p.prompt, p.rejected) for p in pairs])
    gold_target = np.where(gold_margin > 0, 1.0, np.where(gold_margin < 0, 0.0, 0.5))
    return pairwise_accuracy(margins, gold_target)


def agreement_ceiling(source: Any) -> float | None:
    """Observed inter-annotator agreement on a store's data (rlhf_lab.agreement), if measurable.

    Annotators who agree on 75% of comparisons cap a model trained on their labels near 75%.
    """
    if not hasattr(source, "labels"):
        return None
    from rlhf_lab.agreement import store_agreement

    value = store_agreement(source).get("percent_agreement")
    return float(value) if isinstance(value, (int, float)) and value == value else None
