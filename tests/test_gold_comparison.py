"""Policies compared on held-out prompts by a gold judge: means and win rates with their 95% intervals."""

import math

import pytest

from rlhf_lab.gold_comparison import (
    compare_on_gold,
    gold_ordered_pairs,
    mean_interval,
    score_answers,
    verdicts,
)


class LengthJudge:
    """Scores an answer by its word count: longer is better."""

    def score(self, prompt, answer):
        return len(answer.split())


PROMPTS = [f"prompt {i}" for i in range(40)]


def test_win_rates_count_ties_half_and_carry_wilson_intervals():
    answers = {
        "SFT": ["two words"] * 40,
        "longer": ["three words here"] * 30 + ["two words"] * 10,  # 30 wins, 10 ties
        "shorter": ["one"] * 40,
        "same": ["two words"] * 40,
    }
    table = score_answers(LengthJudge(), PROMPTS, answers)
    assert table.attrs["baseline"] == "SFT" and list(table.index) == list(answers)
    assert table.loc["longer", "win rate vs SFT"] == pytest.approx(35 / 40)
    low, high = table.loc["longer", "win rate vs SFT 95% interval"]
    assert 0.5 < low < 35 / 40 < high < 1
    assert table.loc["shorter", "win rate vs SFT"] == 0 and table.loc["same", "win rate vs SFT"] == 0.5
    assert (
        math.isnan(table.loc["SFT", "win rate vs SFT"])
        and table.loc["SFT", "win rate vs SFT 95% interval"] is None
    )
    assert table.loc["longer", "gold score"] == pytest.approx(2.75)
    assert table.loc["same", "gold score 95% interval"] == (2.0, 2.0)  # no spread, no width
    lines = verdicts(table).splitlines()
    assert lines[0].startswith("longer: the gold judge prefers its answer to SFT's in 88% of 40 comparisons")
    assert lines[0].endswith(": better than SFT.")
    assert lines[1].endswith(": worse than SFT.")
    assert lines[2].endswith("no difference shown (the interval includes 50%).")


def test_a_mean_interval_is_two_standard_errors_wide_each_side():
    low, high = mean_interval([0.0, 1.0] * 50)  # mean 0.5, sd 0.5025, n 100
    assert (low, high) == pytest.approx((0.5 - 1.96 * 0.050252, 0.5 + 1.96 * 0.050252), abs=1e-5)
    assert all(math.isnan(x) for x in mean_interval([1.0]))


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="longer: 3 answers for 40 prompts"):
        score_answers(LengthJudge(), PROMPTS, {"SFT": ["a"] * 40, "longer": ["a b"] * 3})
    with pytest.raises(ValueError, match="baseline 'base' is not among"):
        score_answers(LengthJudge(), PROMPTS, {"SFT": ["a"] * 40}, baseline="base")
    with pytest.raises(ValueError, match="at least one policy"):
        score_answers(LengthJudge(), PROMPTS, {})
    with pytest.raises(
        ValueError, match="prompts must be a non-empty list of prompt texts, got 'one prompt'"
    ):
        score_answers(LengthJudge(), "one prompt", {"SFT": ["a"] * 10})
    with pytest.raises(ValueError, match="prompts must be a non-empty list"):
        score_answers(LengthJudge(), [], {"SFT": []})


def test_the_same_model_with_the_same_seed_ties_every_answer():
    from rlhf_lab import Lab
    from rlhf_lab.raters import get_judge

    lab = Lab.from_preset("tiny", store=":memory:")
    lab.snapshot("start")
    table = compare_on_gold(
        lab,
        PROMPTS[:6],
        {"start": lab.snapshots["start"], "now": None},
        get_judge("positive_review"),
        samples=2,
        max_new_tokens=6,
    )
    assert table.loc["now", "answers"] == 12 and table.loc["now", "win rate vs start"] == 0.5
    assert table.loc["now", "gold score"] == table.loc["start", "gold score"]
    with pytest.raises(ValueError, match="samples must be a whole number of at least 1"):
        compare_on_gold(lab, PROMPTS, {"now": None}, get_judge("positive_review"), samples=0)


def test_gold_ordered_pairs_put_the_judges_favourite_first_and_leave_out_ties():
    prompts = [{"prompt": "p1"}, "p2", "p3", "p4", "p5"]  # a record from load_prompts stands for its prompt
    first = ["one two three", "one", "same length", "same", "  "]
    second = ["one", "one two", "equal length", "same", "some words"]
    pairs = gold_ordered_pairs(LengthJudge(), prompts, first, second)
    assert pairs == [
        {"prompt": "p1", "chosen": "one two three", "rejected": "one"},
        {"prompt": "p2", "chosen": "one two", "rejected": "one"},
    ]  # p3: a gold tie; p4: the same answer twice; p5: an empty answer (no pair for a reward model)
    with pytest.raises(ValueError):
        gold_ordered_pairs(LengthJudge(), prompts, first, second[:4])  # an answer missing
    assert gold_ordered_pairs(LengthJudge(), [], [], []) == []  # no answers: no pairs, not an error


def test_a_reward_model_is_graded_on_gold_ordered_pairs(tiny_lab):
    from rlhf_lab.reward.evaluation import wilson_interval

    pairs = gold_ordered_pairs(LengthJudge(), PROMPTS[:6], ["a b c"] * 6, ["a"] * 6)
    rm = tiny_lab.reward_model(pairs, split=[1.0, 0.0, 0.0])
    result = rm.evaluate(pairs=pairs, log=False)
    assert result["n_pairs"] == 6 and result["accuracy_ci"] == pytest.approx(
        wilson_interval(result["accuracy"], 6)
    )
