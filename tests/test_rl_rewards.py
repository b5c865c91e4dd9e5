"""Gold judges from rlhf_lab.raters work as RL rewards."""

import pytest


def test_a_gold_judge_is_a_reward_scored_per_response():
    from rlhf_lab.raters import get_judge
    from rlhf_lab.rl.rewards import as_reward

    judge = get_judge("positive_review")
    reward = as_reward(judge)
    scores = reward.scores(["Review it."] * 2, ["I loved it, wonderful!", "Terrible and boring."])
    assert scores.shape == (2,) and scores[0] > 0 > scores[1]
    assert scores[0].item() == pytest.approx(judge.score("Review it.", "I loved it, wonderful!"))
