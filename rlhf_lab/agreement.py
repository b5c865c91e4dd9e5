"""Inter-annotator agreement and data-quality filters, in plain numpy.

Chance-corrected agreement: 1 is perfect, 0 is what random labelling with the same label
frequencies gives, below 0 is systematic disagreement. All coefficients are nan when undefined
(only one label ever used: chance agreement is then already perfect).

- `cohens_kappa(a, b)`: two annotators, the same items.
- `fleiss_kappa(table)` / `fleiss_kappa(ratings=...)`: any number of annotators per item.
- `krippendorff_alpha(data, level)`: annotators x units with gaps, nominal/ordinal/interval/ratio.
- `store_agreement(store)`: all of the above over the store's items with >= 2 annotators.

On store data the unit of agreement is one comparison of two responses (a `Vote`), labelled
"first", "second", "tie" or "both_bad" with the responses in a fixed order, so rankings, Likert
scores and pairs shown in either order are compared like with like.

    >>> cohens_kappa(["A", "A", "B", "B"], ["A", "B", "B", "B"])   # 75% observed, 50% by chance
    0.5
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from rlhf_lab.store.records import Item, Label

Ratings = Mapping[Hashable, Mapping[str, Hashable]]  # unit -> annotator -> label


def is_missing(value: Any) -> bool:
    """None or NaN: no rating."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _chance_corrected(observed: float, expected: float) -> float:
    return float("nan") if math.isclose(expected, 1.0) else (observed - expected) / (1.0 - expected)


# ------------------------------------------------------------------- coefficients
def cohens_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two annotators' labels of the same items; items either left empty are skipped."""
    if len(a) != len(b):
        raise ValueError(f"both annotators need a label per item: got {len(a)} and {len(b)}")
    pairs = [(x, y) for x, y in zip(a, b) if not is_missing(x) and not is_missing(y)]
    if not pairs:
        raise ValueError("no item has labels from both annotators")
    n = len(pairs)
    observed = sum(x == y for x, y in pairs) / n
    count_a, count_b = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    expected = sum(count_a[c] * count_b[c] for c in count_a) / n**2
    return _chance_corrected(observed, expected)


def ratings_table(ratings: Sequence[Sequence[Hashable]]) -> tuple[np.ndarray, list]:
    """Count table (items x categories) from ratings (items x annotators, None/NaN for gaps).

    Returns the table and its categories, in sorted order where they sort.
    """
    rows = [[r for r in row if not is_missing(r)] for row in ratings]
    categories = list({r for row in rows for r in row})
    try:
        categories.sort()
    except TypeError:  # mixed types: keep the order of appearance
        categories = list(dict.fromkeys(r for row in rows for r in row))
    index = {c: j for j, c in enumerate(categories)}
    table = np.zeros((len(rows), len(categories)), dtype=np.int64)
    for i, row in enumerate(rows):
        for r in row:
            table[i, index[r]] += 1
    return table, categories


def fleiss_kappa(table: Any = None, *, ratings: Sequence[Sequence[Hashable]] | None = None) -> float:
    """Fleiss' kappa from a count table (items x categories) or from `ratings` (items x annotators).

    Items may have different numbers of ratings (each item's agreement is computed over its own
    raters; items with fewer than 2 are skipped); with the same number everywhere this is Fleiss' 1971
    statistic.
    """
    if (table is None) == (ratings is None):
        raise ValueError("pass either a count table or ratings=")
    counts = ratings_table(ratings)[0] if ratings is not None else np.asarray(table, dtype=float)
    if counts.ndim != 2 or (counts < 0).any():
        raise ValueError("the table must be a 2-d array of non-negative counts (items x categories)")
    per_item = counts.sum(axis=1)
    counts, per_item = counts[per_item >= 2], per_item[per_item >= 2]
    if len(counts) == 0:
        raise ValueError("no item has 2 or more ratings")
    agreement = ((counts**2).sum(axis=1) - per_item) / (per_item * (per_item - 1))
    shares = counts.sum(axis=0) / per_item.sum()
    return _chance_corrected(float(agreement.mean()), float((shares**2).sum()))


def _distance(level: str, values: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Squared distances between value categories (Krippendorff's delta^2)."""
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "ordinal":
        # Between ranks c <= k: the number of pairable values from c to k, less half of the ends.
        cumulative = np.concatenate([[0.0], np.cumsum(totals)])
        i, j = np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        return (cumulative[hi + 1] - cumulative[lo] - (totals[i] + totals[j]) / 2) ** 2
    x = values.astype(float)
    if level == "interval":
        return (x[:, None] - x[None, :]) ** 2
    if level == "ratio":
        total = x[:, None] + x[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total == 0, 0.0, ((x[:, None] - x[None, :]) / total) ** 2)
    raise ValueError(f"level must be nominal, ordinal, interval or ratio, got {level!r}")


def krippendorff_alpha(
    reliability_data: Sequence[Sequence[Any]],
    level: str = "nominal",
    value_domain: Sequence[Hashable] | None = None,
) -> float:
    """Krippendorff's alpha of `reliability_data` (annotators x units, None/NaN where not rated).

    `level`: "nominal" (categories), "ordinal" (ranks: `value_domain` gives their order, else sorted),
    "interval" or "ratio" (numbers). Units with fewer than 2 ratings are skipped.
    """
    columns = list(zip(*reliability_data)) if len(reliability_data) else []
    units = [[v for v in column if not is_missing(v)] for column in columns]
    units = [u for u in units if len(u) >= 2]
    if value_domain is not None:
        values = list(value_domain)
    else:
        values = list(dict.fromkeys(v for u in units for v in u))
        try:
            values.sort()
        except TypeError:  # mixed types can only be nominal; any order will do
            if level != "nominal":
                raise ValueError(f"{level} data need values that sort, or a value_domain") from None
    index = {v: i for i, v in enumerate(values)}
    unknown = {v for u in units for v in u} - set(index)
    if unknown:
        raise ValueError(f"values {sorted(map(str, unknown))} are not in value_domain")
    if not units:
        raise ValueError("no unit has 2 or more ratings")

    # Coincidence matrix: each unit with m values adds every ordered pair of its values, weighted 1/(m-1).
    coincidence = np.zeros((len(values), len(values)))
    for unit in units:
        counts = np.bincount([index[v] for v in unit], minlength=len(values)).astype(float)
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    totals = coincidence.sum(axis=1)
    n = totals.sum()
    delta = _distance(level, np.asarray(values, dtype=object if level == "nominal" else None), totals)
    observed = (coincidence * delta).sum()
    expected = (np.outer(totals, totals) * delta).sum() / (n - 1)
    return float("nan") if expected == 0 else float(1.0 - observed / expected)


# ------------------------------------------------------------------- store data
def ratings_from_labels(labels: Iterable[Label]) -> dict[tuple, dict[str, str]]:
    """unit -> annotator -> outcome for the votes in `labels` (an annotator's latest label counts)."""
    ratings: dict[tuple, dict[str, str]] = {}
    for label in sorted(labels, key=lambda lab: lab.id):
        for vote in label.votes():
            ratings.setdefault(vote.unit, {})[vote.annotator] = vote.outcome
    return ratings


def _multi(ratings: Ratings) -> dict[Hashable, Mapping[str, Hashable]]:
    return {unit: by for unit, by in ratings.items() if len(by) >= 2}


def unit_agreement(ratings: Ratings) -> dict[Hashable, float]:
    """Per unit, the share of its annotators who gave the most common label (1.0 = unanimous)."""
    return {unit: max(Counter(by.values()).values()) / len(by) for unit, by in ratings.items() if by}


def fraction_unanimous(ratings: Ratings) -> float:
    """Share of units rated by >= 2 annotators on which all of them agree (nan if there are none)."""
    multi = _multi(ratings)
    return float(np.mean([len(set(by.values())) == 1 for by in multi.values()])) if multi else float("nan")


def percent_agreement(ratings: Ratings) -> float:
    """Mean share of agreeing annotator pairs per unit (observed agreement, not chance-corrected)."""
    table = ratings_table([list(by.values()) for by in _multi(ratings).values()])[0]
    if len(table) == 0:
        return float("nan")
    n = table.sum(axis=1)
    return float((((table**2).sum(axis=1) - n) / (n * (n - 1))).mean())


def majority_agreement(ratings: Ratings) -> dict[str, float]:
    """Per annotator, how often they agree with the majority of the *other* annotators of a unit.

    Units where the others have no single most common label are skipped; an annotator with no
    countable unit is left out.
    """
    hits: dict[str, list[bool]] = {}
    for by in ratings.values():
        for annotator, label in by.items():
            others = Counter(v for a, v in by.items() if a != annotator).most_common()
            if not others or (len(others) > 1 and others[0][1] == others[1][1]):
                continue
            hits.setdefault(annotator, []).append(label == others[0][0])
    return {a: float(np.mean(h)) for a, h in sorted(hits.items())}


def item_agreement(item: Item) -> float:
    """Mean `unit_agreement` over an item's comparisons (1.0 for an item with a single annotator)."""
    per_unit = unit_agreement(ratings_from_labels(item.labels))
    return float(np.mean(list(per_unit.values()))) if per_unit else 1.0


def filter_by_agreement(store_or_items: Any, threshold: float, *, min_annotators: int = 1) -> list[Item]:
    """The items (from a store or a list of `Item`) whose annotators agree at least `threshold`.

    Agreement is `item_agreement`: 2 of 3 annotators agreeing is 0.67, so threshold 0.6 keeps
    2-of-3 majorities and drops 1-1 splits. Items with fewer than `min_annotators` distinct
    annotators are dropped too (single-annotator items count as agreeing with themselves).
    """
    items = store_or_items.items() if hasattr(store_or_items, "items") else list(store_or_items)
    return [
        item for item in items if len(item.annotators) >= min_annotators and item_agreement(item) >= threshold
    ]


def store_agreement(store: Any, **filters: Any) -> dict[str, Any]:
    """Agreement over the store's comparisons labelled by >= 2 annotators (filters as `store.labels`).

    Returns n_items, n_units, n_labels, annotators, percent_agreement, fleiss_kappa,
    krippendorff_alpha (nominal), fraction_unanimous, annotator_agreement (each annotator
    against the majority of the others) and pairwise_kappa ({(a, b): Cohen's kappa} on the units
    both labelled). Coefficients are nan when there is nothing to measure.
    """
    labels = store.labels(**filters)
    ratings = _multi(ratings_from_labels(labels))
    annotators = sorted({a for by in ratings.values() for a in by})
    nan = float("nan")
    summary: dict[str, Any] = {
        "n_items": len({unit[0] for unit in ratings}),
        "n_units": len(ratings),
        "n_labels": len({lab.id for lab in labels if any(vote.unit in ratings for vote in lab.votes())}),
        "annotators": annotators,
        "percent_agreement": percent_agreement(ratings),
        "fleiss_kappa": nan,
        "krippendorff_alpha": nan,
        "fraction_unanimous": fraction_unanimous(ratings),
        "annotator_agreement": majority_agreement(ratings),
        "pairwise_kappa": {},
    }
    if not ratings:
        return summary
    units = list(ratings)
    summary["fleiss_kappa"] = fleiss_kappa(ratings=[list(ratings[u].values()) for u in units])
    data = [[ratings[u].get(a) for u in units] for a in annotators]
    summary["krippendorff_alpha"] = krippendorff_alpha(data, "nominal")
    for (i, a), (j, b) in combinations(enumerate(annotators), 2):
        shared = [k for k in range(len(units)) if data[i][k] is not None and data[j][k] is not None]
        if shared:
            summary["pairwise_kappa"][(a, b)] = cohens_kappa(
                [data[i][k] for k in shared], [data[j][k] for k in shared]
            )
    return summary
