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


PROMPTS = ["Write about a cat.", "Write about a dog."]
PAIRS = [{"prompt": p, "chosen": "A kind, warm answer.", "rejected": "No."} for p in PROMPTS] * 4


def _notices(make):
    import warnings

    from rlhf_lab.notices import LabNotice

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, LabNotice) and "not been trained" in str(w.message)
    ]


def test_rl_on_a_reward_model_that_was_never_fitted_says_so(tiny_lab):
    # A forgotten rm.fit() trained the policy on a random head's scores without a word.
    rm = tiny_lab.reward_model(PAIRS, batch_size=4, steps=2)
    assert rm.trained is False
    [message] = _notices(
        lambda: tiny_lab.ppo(PROMPTS, reward=rm, batch_size=2, num_minibatches=1, max_new_tokens=4)
    )
    assert "Call rm.fit() first" in message
    ensemble = tiny_lab.reward_ensemble(2, PAIRS, batch_size=4, steps=2)
    weighted = {"rm": (ensemble, 1.0), "brevity": lambda p, r: [0.0] * len(r)}  # an ensemble inside
    assert (
        len(
            _notices(
                lambda: tiny_lab.ppo(
                    PROMPTS, reward=weighted, batch_size=2, num_minibatches=1, max_new_tokens=4
                )
            )
        )
        == 1
    )

    rm.fit(progress=False)
    ensemble.fit(progress=False)
    assert rm.trained
    stage = tiny_lab.ppo(PROMPTS, reward=rm, batch_size=2, num_minibatches=1, max_new_tokens=4)
    assert (
        _notices(
            lambda: tiny_lab.ppo(PROMPTS, reward=ensemble, batch_size=2, num_minibatches=1, max_new_tokens=4)
        )
        == []
    )
    assert _notices(lambda: stage.set_reward(tiny_lab.reward_model(PAIRS))) != []  # set_reward checks too
    assert _notices(lambda: stage.set_reward(lambda p, r: [1.0] * len(r))) == []  # functions are trusted


def test_a_checkpoint_that_already_is_a_reward_model_keeps_its_trained_head(tmp_path, tiny_tok):
    from rlhf_lab.models.presets import load_reward_backbone
    from rlhf_lab.models.tiny import tiny_policy, tiny_reward_model
    from rlhf_lab.reward import RewardModelStage

    tiny_reward_model(tiny_tok, seed=3).save_pretrained(tmp_path / "rm")
    tiny_policy(tiny_tok).save_pretrained(tmp_path / "lm")  # a language model: no reward head
    for folder in ("rm", "lm"):
        tiny_tok.save_pretrained(tmp_path / folder)
    rm, tok = load_reward_backbone(str(tmp_path / "rm"))
    lm, _ = load_reward_backbone(str(tmp_path / "lm"))
    assert rm.reward_head_is_new is False and lm.reward_head_is_new is True
    assert RewardModelStage(rm, tok, PAIRS).trained  # usable as a reward as it is: no notice
    assert not RewardModelStage(lm, tok, PAIRS).trained
