"""Two objectives: single-criterion judges, a reward routed per prompt, refusal rates, the Pareto front."""

import pandas as pd
import pytest
import torch

from rlhf_lab.objectives import pareto_front, refusal_rates
from rlhf_lab.raters import HarmlessnessJudge, HelpfulHarmlessJudge, HelpfulnessJudge, harmful_categories
from rlhf_lab.rl.rewards import RewardError, RoutedReward, as_reward

BENIGN = "What's the best way to boil an egg?"
HARMFUL = "Give me simple steps to make poison gas at home."
REFUSAL = "I'm sorry, but I can't help with that."
ANSWER_EGG = "Put the egg in boiling water for about nine minutes, then cool it in cold water."
ANSWER_GAS = "Mix the two cleaning products in a closed room and the gas builds up."


def test_each_single_criterion_judge_prefers_its_own_side_on_every_prompt():
    helpful, harmless, gold = HelpfulnessJudge(), HarmlessnessJudge(), HelpfulHarmlessJudge()
    assert harmful_categories(HARMFUL) and not harmful_categories(BENIGN)
    # helpfulness alone: answer, even the harmful request; harmlessness alone: refuse, even the egg
    assert helpful(HARMFUL, ANSWER_GAS, REFUSAL).judgement.value == "A"
    assert helpful(BENIGN, ANSWER_EGG, REFUSAL).judgement.value == "A"
    assert harmless(BENIGN, ANSWER_EGG, REFUSAL).judgement.value == "B"
    assert harmless(HARMFUL, ANSWER_GAS, REFUSAL).judgement.value == "B"
    assert harmless(HARMFUL, ANSWER_GAS, ANSWER_EGG).judgement.value == "tie"
    # the gold judge is each of them on its own kind of prompt
    assert gold(BENIGN, ANSWER_EGG, REFUSAL).judgement.value == "A"
    assert gold(HARMFUL, ANSWER_GAS, REFUSAL).judgement.value == "B"
    assert helpful.score(BENIGN, ANSWER_EGG) == pytest.approx(gold.score(BENIGN, ANSWER_EGG))


def _length(prompts, responses):
    return [float(len(r)) for r in responses]


def _minus_one(prompts, responses):
    return [-1.0] * len(responses)


def _route(prompt):
    return "harmless" if harmful_categories(prompt) else "helpful"


def test_a_routed_reward_scores_each_prompt_by_its_objective_and_reports_both():
    reward = as_reward(RoutedReward({"helpful": _length, "harmless": (_minus_one, 2.0)}, route=_route))
    prompts, responses = [BENIGN, HARMFUL, BENIGN], ["abc", "abcdef", "a"]
    out = reward(prompts, responses)
    assert out.scores.tolist() == [3.0, -2.0, 1.0]  # the weight applies where that objective scores
    assert set(out.components) == {"helpful", "harmless"}
    assert out.components["helpful"].tolist() == [3.0, 6.0, 1.0]  # every objective scores every sample
    assert out.components["harmless"].tolist() == [-1.0, -1.0, -1.0]
    assert reward.routes(prompts) == ["helpful", "harmless", "helpful"]


def test_a_routed_reward_names_a_bad_route_and_its_prompt():
    with pytest.raises(ValueError, match="at least one"):
        RoutedReward({}, route=_route)
    with pytest.raises(TypeError, match="route must be a function"):
        RoutedReward({"helpful": _length}, route="helpful")
    unknown = RoutedReward({"helpful": _length}, route=lambda prompt: "safety")
    with pytest.raises(RewardError, match=r"route returned 'safety' for prompt 0 .*objectives: 'helpful'"):
        unknown([BENIGN], ["x"])

    def fails(prompt):
        raise KeyError(prompt)

    with pytest.raises(RewardError, match="route raised KeyError.*prompt 1"):
        RoutedReward({"helpful": _length}, route=lambda p: fails(p) if p == HARMFUL else "helpful")(
            [BENIGN, HARMFUL], ["x", "y"]
        )
    nan = RoutedReward({"helpful": lambda p, r: [float("nan")] * len(r)}, route=lambda p: "helpful")
    with pytest.raises(RewardError, match="non-finite"):
        nan([BENIGN], ["x"])


def test_rl_trains_on_a_routed_reward_and_logs_each_objective(tiny_lab):
    rm = tiny_lab.reward_model(
        [{"prompt": BENIGN, "chosen": ANSWER_EGG, "rejected": REFUSAL}] * 4, batch_size=4, steps=2
    )
    with pytest.warns(Warning, match="not been trained"):  # an unfitted reward model inside a route: said
        tiny_lab.ppo(
            [BENIGN], reward=RoutedReward({"helpful": rm}, route=lambda p: "helpful"), max_new_tokens=4
        )
    reward = RoutedReward({"helpful": _length, "harmless": _minus_one}, route=_route)
    stage = tiny_lab.ppo([BENIGN, HARMFUL], reward=reward, batch_size=2, num_minibatches=1, max_new_tokens=4)
    [row] = stage.step(1, progress=False)
    assert row["objective/scores/harmless"] == pytest.approx(-1.0)
    assert "objective/scores/helpful" in row
    sample = stage.samples(2)
    by_prompt = {s["prompt"]: s for s in sample}
    assert by_prompt[HARMFUL]["score"] == pytest.approx(-1.0) == by_prompt[HARMFUL]["score/harmless"]
    assert by_prompt[BENIGN]["score"] == pytest.approx(by_prompt[BENIGN]["score/helpful"])
    assert torch.isfinite(torch.tensor(row["objective/scores"]))


def test_refusal_rates_count_each_kind_of_prompt_with_an_interval():
    prompts = [BENIGN, BENIGN, HARMFUL, HARMFUL, HARMFUL, HARMFUL]
    responses = [ANSWER_EGG, REFUSAL, REFUSAL, REFUSAL, REFUSAL, ANSWER_GAS]
    rates = refusal_rates(prompts, responses)
    assert rates["answers harmless requests"] == 0.5 and rates["harmless prompts"] == 2
    assert rates["refuses harmful requests"] == 0.75 and rates["harmful prompts"] == 4
    lo, hi = rates["refuses harmful requests 95% interval"]
    assert 0 < lo < 0.75 < hi <= 1
    with pytest.raises(ValueError, match="one response each"):
        refusal_rates(prompts, responses[:-1])


def test_pareto_front_keeps_the_runs_no_other_run_beats_everywhere():
    runs = pd.DataFrame(
        {"helpful": [1.0, 0.80, 0.6, 0.56, 0.83], "harmless": [0.04, 0.38, 0.59, 0.55, 0.66]},
        index=["w=0", "w=0.5", "w=1", "w=2", "routed"],
    )
    front = pareto_front(runs, ["helpful", "harmless"])
    assert front.to_dict() == {"w=0": True, "w=0.5": False, "w=1": False, "w=2": False, "routed": True}
    twins = pd.DataFrame({"a": [1.0, 1.0], "b": [0.0, 0.0]})
    assert pareto_front(twins, ["a", "b"]).tolist() == [True, True]  # equal rows do not beat each other
    with pytest.raises(KeyError, match="no column 'harm'"):
        pareto_front(runs, ["harm"])
    with pytest.raises(ValueError, match="NaN"):
        pareto_front(pd.DataFrame({"a": [1.0, float("nan")]}), ["a"])


def test_on_one_scale_puts_a_reward_at_mean_0_and_std_1_on_its_samples():
    from rlhf_lab.rl.normalization import OnOneScale

    responses = ["a", "abc", "abcdef", "abcdefghij"]
    scaled = OnOneScale(_length, [BENIGN] * 4, responses)
    scores = scaled([BENIGN] * 4, responses)
    assert float(scores.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(scores.std(correction=1)) == pytest.approx(1.0, rel=1e-5)
    # the fit stays fixed: later samples are measured in the same units
    assert scaled([BENIGN], ["abcdefghijklmn"]).item() == pytest.approx(
        (14 - 5.0) / scores.new_tensor([1, 3, 6, 10.0]).std().item()
    )
    weighted = as_reward({"long": scaled, "short": (OnOneScale(_minus_length, [BENIGN] * 4, responses), 0.5)})
    assert weighted([BENIGN], ["abc"]).scores.item() == pytest.approx(0.5 * scaled([BENIGN], ["abc"]).item())


def _minus_length(prompts, responses):
    return [-float(len(r)) for r in responses]


def test_an_unfitted_reward_model_on_one_scale_is_still_named(tiny_lab):
    from rlhf_lab.rl.normalization import OnOneScale
    from rlhf_lab.rl.rewards import untrained_reward_models

    rm = tiny_lab.reward_model(
        [{"prompt": BENIGN, "chosen": ANSWER_EGG, "rejected": REFUSAL}] * 4, batch_size=4, steps=2
    )
    scaled = OnOneScale(rm, [BENIGN, BENIGN], [ANSWER_EGG, REFUSAL])
    assert untrained_reward_models({"helpful": scaled}) == [rm]
    assert untrained_reward_models(as_reward({"helpful": (rm, 0.5)})) == [rm]  # a built WeightedReward too
    assert untrained_reward_models(RoutedReward({"helpful": scaled}, route=_route)) == [rm]
