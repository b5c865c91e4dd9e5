"""Agreement metrics against statsmodels, the krippendorff package and published worked examples."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pytest
from statsmodels.stats import inter_rater

from rlhf_lab.agreement import (
    cohens_kappa,
    filter_by_agreement,
    fleiss_kappa,
    fraction_unanimous,
    item_agreement,
    krippendorff_alpha,
    majority_agreement,
    percent_agreement,
    ratings_from_labels,
    ratings_table,
    store_agreement,
    unit_agreement,
)
from rlhf_lab.store import PreferenceStore

# Fleiss (1971) as reworked on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories.
FLEISS_EXAMPLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 observers x 12 units
# example with gaps; published: nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797.
N = None
KRIPPENDORFF_EXAMPLE = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]


def _random_ratings(seed, n_items=40, n_raters=4, n_categories=3, missing=0.0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_categories, size=n_items)
    ratings = np.where(
        rng.random((n_items, n_raters)) < 0.6,
        truth[:, None],
        rng.integers(0, n_categories, (n_items, n_raters)),
    )
    ratings = ratings.astype(float)
    ratings[rng.random(ratings.shape) < missing] = np.nan
    return ratings


# ----------------------------------------------------------------------------- published examples
def test_fleiss_worked_example():
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(0.20993, abs=1e-5)
    assert round(fleiss_kappa(FLEISS_EXAMPLE), 3) == 0.210


@pytest.mark.parametrize(
    "level, published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_worked_example(level, published):
    assert round(krippendorff_alpha(KRIPPENDORFF_EXAMPLE, level), 3) == published


def test_cohens_kappa_by_hand():
    # 75% observed agreement, 50% expected by chance.
    assert cohens_kappa(["A", "A", "B", "B"], ["A", "B", "B", "B"]) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- references
@pytest.mark.parametrize("seed", range(5))
def test_cohens_kappa_matches_statsmodels(seed):
    ratings = _random_ratings(seed, n_raters=2, n_categories=4)
    a, b = ratings[:, 0].astype(int), ratings[:, 1].astype(int)
    table = np.zeros((4, 4))
    np.add.at(table, (a, b), 1)
    reference = inter_rater.cohens_kappa(table).kappa
    assert cohens_kappa(list(a), list(b)) == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_matches_statsmodels(seed):
    ratings = _random_ratings(seed, n_raters=3 + seed, n_categories=2 + seed % 3)
    table, _ = inter_rater.aggregate_raters(ratings.astype(int))
    reference = inter_rater.fleiss_kappa(table, method="fleiss")
    assert fleiss_kappa(table) == pytest.approx(reference, abs=1e-6)
    assert fleiss_kappa(ratings=ratings.tolist()) == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
@pytest.mark.parametrize("seed", range(3))
def test_krippendorff_matches_the_krippendorff_package(seed, level):
    data = _random_ratings(seed, n_items=30, n_raters=5, n_categories=5, missing=0.3).T + 1
    reference = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert krippendorff_alpha(data, level) == pytest.approx(reference, abs=1e-6)
    as_lists = [[None if math.isnan(v) else int(v) for v in row] for row in data]
    assert krippendorff_alpha(as_lists, level) == pytest.approx(reference, abs=1e-6)


def test_krippendorff_ordinal_strings_with_a_value_domain():
    words = {1: "very low", 2: "low", 3: "mid", 4: "high", 5: "very high"}
    data = [[words.get(v) for v in row] for row in KRIPPENDORFF_EXAMPLE]
    assert round(krippendorff_alpha(data, "ordinal", value_domain=list(words.values())), 3) == 0.815
    assert round(krippendorff_alpha(data, "nominal"), 3) == 0.743
    with pytest.raises(ValueError, match="not in value_domain"):
        krippendorff_alpha(data, "ordinal", value_domain=["low", "mid"])


# ----------------------------------------------------------------------------- edge cases
def test_missing_values_and_undefined_cases():
    assert cohens_kappa(["A", None, "B", float("nan")], ["A", "A", "B", "B"]) == 1.0
    assert math.isnan(cohens_kappa(["A", "A"], ["A", "A"]))  # chance agreement is already perfect
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))
    with pytest.raises(ValueError, match="no item has labels from both"):
        cohens_kappa(["A", None], [None, "B"])
    with pytest.raises(ValueError, match="either a count table or ratings"):
        fleiss_kappa()
    with pytest.raises(ValueError, match="no unit has 2 or more ratings"):
        krippendorff_alpha([[1, None], [None, 2]])
    table, categories = ratings_table([["A", "B", None], ["B", "B", "B"]])
    assert categories == ["A", "B"] and table.tolist() == [[1, 1], [0, 3]]


def test_fleiss_allows_items_with_different_numbers_of_raters():
    # Each item's agreement uses its own raters; one-rater items are skipped.
    ratings = [["A", "A", None], ["A", "B", "B"], ["B", None, None]]
    p_items = np.mean([1.0, 1 / 3])
    shares = np.array([3, 2]) / 5
    expected = (p_items - (shares**2).sum()) / (1 - (shares**2).sum())
    assert fleiss_kappa(ratings=ratings) == pytest.approx(expected)


def test_summary_helpers():
    ratings = {
        "u1": {"ana": "A", "bo": "A", "cy": "A"},
        "u2": {"ana": "A", "bo": "B", "cy": "B"},
        "u3": {"ana": "B", "bo": "A"},
        "u4": {"ana": "A"},
    }
    assert unit_agreement(ratings) == {"u1": 1.0, "u2": pytest.approx(2 / 3), "u3": 0.5, "u4": 1.0}
    assert fraction_unanimous(ratings) == pytest.approx(1 / 3)
    assert percent_agreement(ratings) == pytest.approx((1 + 1 / 3 + 0) / 3)
    # Against the majority of the others: ana agrees on u1 only (of u1-u3); bo on u1, not u3 (u2 is
    # a 1-1 split among the others, skipped); cy on u1 (u2 skipped).
    assert majority_agreement(ratings) == {"ana": pytest.approx(1 / 3), "bo": 0.5, "cy": 1.0}


# ----------------------------------------------------------------------------- store data
def _labelled_store():
    store = PreferenceStore(":memory:")
    p = "Review the film."
    for who, verdict in (("ana", "A"), ("bo", "A"), ("cy", "A")):
        store.add(p, ["x1", "y1"], verdict, annotator=who)
    for who, verdict in (("ana", "A"), ("bo", "B"), ("cy", "B")):
        store.add(p, ["x2", "y2"], verdict, annotator=who)
    store.add(p, ["y3", "x3"], "B", annotator="ana")  # shown swapped: the same preference as "x3 wins"
    store.add(p, ["x3", "y3"], "A", annotator="bo")
    store.add(p, ["x4", "y4"], "A", annotator="ana")  # one annotator only: not part of agreement
    store.add(p, ["a", "b", "c"], ranking=[0, 1, 2], annotator="ana")
    store.add(p, ["a", "b", "c"], likert=[5, 3, 4], annotator="bo")
    return store


def test_store_agreement():
    store = _labelled_store()
    summary = store_agreement(store)
    assert (
        summary["n_items"] == 4 and summary["n_units"] == 6 and summary["annotators"] == ["ana", "bo", "cy"]
    )
    assert summary["n_labels"] == 10
    ratings = {u: r for u, r in ratings_from_labels(store.labels()).items() if len(r) >= 2}
    outcomes = [list(r.values()) for r in ratings.values()]
    assert summary["fleiss_kappa"] == pytest.approx(fleiss_kappa(ratings=outcomes))
    assert summary["fraction_unanimous"] == pytest.approx(4 / 6)  # x1, x3 and the a>b, a>c sub-pairs
    data = [[ratings[u].get(a) for u in ratings] for a in ["ana", "bo", "cy"]]
    reference = krippendorff.alpha(
        reliability_data=[
            [np.nan if v is None else {"first": 0, "second": 1}[v] for v in row] for row in data
        ],
        level_of_measurement="nominal",
    )
    assert summary["krippendorff_alpha"] == pytest.approx(reference, abs=1e-6)
    assert set(summary["pairwise_kappa"]) == {("ana", "bo"), ("ana", "cy"), ("bo", "cy")}
    assert summary["annotator_agreement"]["cy"] == 1.0

    empty = store_agreement(PreferenceStore(":memory:"))
    assert empty["n_items"] == 0 and math.isnan(empty["fleiss_kappa"]) and empty["pairwise_kappa"] == {}


def test_filter_by_agreement():
    store = _labelled_store()
    by_prompt_pair = {item.responses[0]: item for item in store.items()}
    assert item_agreement(by_prompt_pair["x2"]) == pytest.approx(2 / 3)
    kept = {item.responses[0] for item in filter_by_agreement(store, 0.6)}
    assert kept == {"x1", "x2", "y3", "x4", "a"}  # ranking vs likert: b/c split, item mean 5/6
    assert {item.responses[0] for item in filter_by_agreement(store, 0.9)} == {"x1", "y3", "x4"}
    assert {item.responses[0] for item in filter_by_agreement(store.items(), 0.6, min_annotators=3)} == {
        "x1",
        "x2",
    }
