"""Several objectives on one scale: each reward model among a weighted or routed reward's objectives is
normalised on its own (mean 0, std 1 on the starting policy's samples) before the objectives are combined."""

import pytest
import torch
from rl_toy import PROMPTS, e_count, make_stage

from rlhf_lab.metrics import describe, is_known
from rlhf_lab.reward import RewardModelStage
from rlhf_lab.rl import RLStage
from rlhf_lab.rl.normalization import FlatRewardWarning, ObjectiveNormalizers, learned_objectives
from rlhf_lab.rl.rewards import (
    CombinedReward,
    ModelReward,
    RoutedReward,
    WeightedReward,
    as_reward,
    objective_parts,
)


class _ScaledRM(RewardModelStage):
    """A stand-in reward model: offset + scale * (number of e's), an arbitrary scale as Bradley-Terry leaves it."""

    def __init__(self, offset: float, scale: float):  # no backbone: is_learned_reward looks at the type
        self.offset, self.scale = offset, scale

    def __call__(self, prompts, responses, batch_size=None):
        return torch.tensor([self.offset + self.scale * r.count("e") for r in responses])


def _first_step_samples(stage):
    return stage.samples(step=1)


def _column(samples, key):
    return torch.tensor([s[key] for s in samples])


def test_each_reward_model_objective_is_rescaled_so_that_the_weights_mean_what_they_say(tiny_tok):
    # Raw spreads 1000x apart: unnormalised, the 0.5-weighted wide model would outweigh the other 500 to 1.
    reward = {"narrow": _ScaledRM(5.0, 0.1), "wide": (_ScaledRM(-300.0, 100.0), 0.5)}
    stage = make_stage("rloo", reward=reward, tok=tiny_tok, batch_size=8)
    [row] = stage.step(1, progress=False)
    samples = _first_step_samples(stage)
    for name in ("narrow", "wide"):
        values = _column(samples, f"score/{name}")
        if float(values.std()) > 0:  # both count e's: a batch without any spread cannot be rescaled
            assert float(values.mean()) == pytest.approx(0.0, abs=1e-4)
            assert float(values.std(correction=1)) == pytest.approx(1.0, abs=1e-3)
        assert is_known(f"objective/raw_scores/{name}") and f"objective/raw_scores/{name}" in row
    e_counts = torch.tensor([float(s["response"].count("e")) for s in samples])
    # what the model said, before rescaling
    assert row["objective/raw_scores/wide"] == pytest.approx(
        float(-300.0 + 100.0 * e_counts.mean()), abs=1e-3
    )
    total = _column(samples, "score/narrow") + 0.5 * _column(samples, "score/wide")
    assert torch.allclose(_column(samples, "score"), total, atol=1e-4)  # the total is combined afterwards
    assert row["objective/scores"] == pytest.approx(
        row["objective/scores/narrow"] + 0.5 * row["objective/scores/wide"], abs=1e-5
    )
    assert not stage.normalizer.fitted  # the total itself is not rescaled again


def test_a_reward_function_among_the_objectives_keeps_its_own_scale(tiny_tok):
    reward = {"rm": _ScaledRM(100.0, 50.0), "e": (e_count, 2.0)}
    assert learned_objectives(as_reward(reward)) == ["rm"]
    stage = make_stage("rloo", reward=reward, tok=tiny_tok)
    [row] = stage.step(1, progress=False)
    samples = _first_step_samples(stage)
    assert torch.equal(
        _column(samples, "score/e"), torch.tensor([float(s["response"].count("e")) for s in samples])
    )
    assert "objective/raw_scores/e" not in row and "objective/raw_scores/rm" in row
    assert stage.objective_normalizers.fitted == ["rm"]


def test_a_routed_reward_rescales_each_reward_model_before_routing(tiny_tok):
    def route(prompt):
        return "cats" if "cat" in prompt else "rest"

    reward = RoutedReward({"cats": _ScaledRM(50.0, 10.0), "rest": (_ScaledRM(-1.0, 0.1), 2.0)}, route=route)
    stage = make_stage("rloo", reward=reward, tok=tiny_tok, batch_size=4)
    stage.step(1, progress=False)
    for sample in _first_step_samples(stage):
        name = route(sample["prompt"])
        weight = 2.0 if name == "rest" else 1.0
        assert sample["score"] == pytest.approx(weight * sample[f"score/{name}"], abs=1e-5)
        assert abs(sample["score"]) < 10  # on one scale: the 50 + 10 * e's model is no longer far above


def test_normalize_reward_true_rescales_the_total_and_false_nothing(tiny_tok):
    reward = {"a": _ScaledRM(100.0, 50.0), "b": _ScaledRM(0.0, 1.0)}
    total = make_stage("rloo", reward=reward, tok=tiny_tok, normalize_reward=True)
    [row] = total.step(1, progress=False)
    assert total.normalizer.fitted and not total.objective_normalizers.fitted
    assert abs(row["objective/scores"]) < 1e-4 and row["objective/scores/a"] > 90  # parts stay raw
    raw = make_stage("rloo", reward=reward, tok=tiny_tok, normalize_reward=False)
    [row] = raw.step(1, progress=False)
    assert row["objective/scores"] == row["objective/raw_scores"] > 90
    assert not raw.normalizer.fitted and not raw.objective_normalizers.fitted


def test_the_fits_are_kept_refitted_for_a_new_reward_and_saved_with_the_stage(tiny_tok, tmp_path):
    reward = {"a": _ScaledRM(100.0, 50.0), "b": (_ScaledRM(0.0, 1.0), 0.5)}
    stage = make_stage("rloo", reward=reward, tok=tiny_tok)
    stage.step(1, progress=False)
    fits = stage.objective_normalizers.state_dict()
    stage.step(1, progress=False)
    assert stage.objective_normalizers.state_dict() == fits  # fitted once, on the starting policy's samples
    stage.save(tmp_path / "ckpt")
    loaded = RLStage.load(tmp_path / "ckpt", reward=reward)
    assert loaded.objective_normalizers.state_dict() == fits
    stage.set_reward({"a": _ScaledRM(0.0, 3.0), "b": _ScaledRM(0.0, 1.0)})  # the flywheel: new reward models
    assert not stage.objective_normalizers.fitted
    stage.step(1, progress=False)
    assert stage.objective_normalizers.state_dict() != fits


class _RecordingRM(_ScaledRM):
    """A stand-in reward model that keeps every (prompts, scores) call it answered."""

    def __init__(self, offset: float, scale: float):
        super().__init__(offset, scale)
        self.calls = []

    def __call__(self, prompts, responses, batch_size=None):
        scores = super().__call__(prompts, responses)
        self.calls.append((list(prompts), scores))
        return scores


@pytest.mark.parametrize("objectives", [False, True], ids=["one-model", "per-objective"])
def test_reward_norm_samples_fits_the_scale_on_that_many_fresh_answers(tiny_tok, objectives):
    rm = _RecordingRM(3.0, 2.0)
    reward = {"rm": rm, "e": e_count} if objectives else rm
    stage = make_stage("ppo", reward=reward, tok=tiny_tok, batch_size=4, reward_norm_samples=10)
    stage.step(1, progress=False)
    step_call, *fit_calls = rm.calls
    assert [len(prompts) for prompts, _ in fit_calls] == [4, 4, 2]  # a rollout's worth at a time
    fit_prompts = [prompt for prompts, _ in fit_calls for prompt in prompts]
    assert fit_prompts == [stage.prompts[i % len(PROMPTS)] for i in range(10)]  # one each, in order
    fit_scores = torch.cat([scores for _, scores in fit_calls])
    normalizer = stage.objective_normalizers.normalizers["rm"] if objectives else stage.normalizer
    assert normalizer.bias == pytest.approx(float(fit_scores.mean()))
    assert normalizer.raw_std == pytest.approx(float(fit_scores.std(correction=1)))
    stage.step(1, progress=False)
    assert len(rm.calls) == 5  # fitted once: the second step only scores its own rollout


@pytest.mark.parametrize("objectives", [False, True], ids=["one-model", "per-objective"])
def test_reward_scale_pins_the_scale_instead_of_fitting_it(tiny_tok, objectives):
    rm = _RecordingRM(3.0, 2.0)
    reward = {"rm": rm, "e": e_count} if objectives else rm
    pair = {"bias": 1.0, "std": 4.0}
    scale = {"rm": pair} if objectives else pair
    stage = make_stage("ppo", reward=reward, tok=tiny_tok, batch_size=4, reward_scale=scale)
    [row] = stage.step(1, progress=False)
    assert len(rm.calls) == 1  # no fit: the step's own scores only
    raw = rm.calls[0][1]
    key = "score/rm" if objectives else "score"
    scores = torch.tensor([s[key] for s in stage.samples(step=1)])
    assert torch.allclose(scores, (raw - 1.0) / 4.0, atol=1e-5)
    stage.set_reward(reward)  # a new reward model: its scale is fitted anew
    assert not (stage.objective_normalizers.fitted if objectives else stage.normalizer.fitted)


def test_reward_scale_that_does_not_fit_the_reward_is_refused(tiny_tok):
    pair = {"bias": 0.0, "std": 1.0}
    with pytest.raises(ValueError, match=r"names \['harmless'\], which are not reward-model objectives"):
        make_stage("rloo", reward={"rm": _ScaledRM(0, 1)}, tok=tiny_tok, reward_scale={"harmless": pair})
    with pytest.raises(ValueError, match="not one reward model"):
        make_stage("rloo", reward={"rm": _ScaledRM(0, 1)}, tok=tiny_tok, reward_scale=pair)
    with pytest.raises(ValueError, match="normalize_reward=False switches off"):
        make_stage("rloo", reward=_ScaledRM(0, 1), tok=tiny_tok, reward_scale=pair, normalize_reward=False)
    with pytest.raises(ValueError, match="rescales the total"):
        make_stage(
            "rloo",
            reward={"rm": _ScaledRM(0, 1)},
            tok=tiny_tok,
            reward_scale={"rm": pair},
            normalize_reward=True,
        )
    total = make_stage(
        "rloo", reward={"rm": _ScaledRM(0, 1)}, tok=tiny_tok, reward_scale=pair, normalize_reward=True
    )
    assert total.normalizer.fitted  # the total's scale, pinned
    for bad in ({"bias": 0.0}, {"rm": {"bias": 0.0, "std": 0.0}}, {"bias": float("nan"), "std": 1.0}, []):
        with pytest.raises(ValueError, match="reward_scale"):
            make_stage("rloo", reward=_ScaledRM(0, 1), tok=tiny_tok, reward_scale=bad)


def test_a_flat_objective_is_named_in_the_warning():
    reward = WeightedReward({"helpful": _ScaledRM(0.0, 1.0), "harmless": _ScaledRM(3.0, 0.0)})
    responses = ["e", "ee", "eee", "x"]
    with pytest.warns(FlatRewardWarning, match="objective 'harmless' is nearly flat"):
        out = ObjectiveNormalizers()(reward, reward(PROMPTS, responses), PROMPTS)
    assert out.components["harmless"].abs().max() < 1e-6  # the flat model is centred, not blown up
    assert float(out.components["helpful"].std()) == pytest.approx(1.0, abs=1e-5)


def test_a_hugging_face_classifier_can_be_one_objective(tiny_tok):
    from rlhf_lab.models.tiny import tiny_reward_model

    model = ModelReward(tiny_reward_model(tiny_tok), tiny_tok)
    reward = as_reward({"classifier": model, "e": e_count})
    out = reward(PROMPTS[:2], ["hello there", "cats"])
    assert out.components["classifier"].shape == (2,)  # its RewardOutput is read as its scores
    assert learned_objectives(reward) == ["classifier"]


def test_per_objective_metric_names_are_described():
    assert "before normalisation" in describe("objective/raw_scores/helpful")
    assert "Per-objective" in describe("objective/scores/safety/v2")  # a name with a slash in it


class _SafetyFirst(CombinedReward):
    """Llama 2's full rule as a user would write it: the safety model takes any answer it scores low."""

    def __init__(self, helpful, safe, threshold=-0.5):
        self.parts, self.threshold = objective_parts({"helpful": helpful, "safe": safe}), threshold
        self.seen = []

    def combine(self, components, prompts):
        self.seen.append({name: values.clone() for name, values in components.items()})
        safe = components["safe"]
        return torch.where(safe < self.threshold, safe, components["helpful"])


def test_a_rule_of_your_own_reads_each_reward_model_on_one_scale(tiny_tok):
    # safe: fewer e's is safer, on a scale of hundreds; the rule's threshold is in standard deviations
    reward = _SafetyFirst(_ScaledRM(0.0, 1.0), _ScaledRM(500.0, -100.0))
    stage = make_stage("rloo", reward=reward, tok=tiny_tok)
    stage.step(1, progress=False)
    rescaled = reward.seen[-1]  # the stage's call, after the raw call inside reward(...)
    assert float(rescaled["safe"].mean()) == pytest.approx(0.0, abs=1e-4)
    e_counts = torch.tensor([float(s["response"].count("e")) for s in _first_step_samples(stage)])
    raw = reward.seen[0]["safe"]  # what the reward itself combined first, before the stage rescaled it
    assert torch.equal(raw.sort().values, (500.0 - 100.0 * e_counts).sort().values)
    for sample in _first_step_samples(stage):
        low = sample["score/safe"] < -0.5
        assert sample["score"] == pytest.approx(sample["score/safe" if low else "score/helpful"], abs=1e-5)


def test_a_route_is_asked_once_per_sample_per_step(tiny_tok):
    """The stage combines a batch twice (raw, then rescaled): the route answers once, and consistently."""
    calls = []

    def coin_route(prompt):  # a router that is costly, or random: it must not be asked twice
        calls.append("cats" if len(calls) % 3 else "rest")
        return calls[-1]

    reward = RoutedReward({"cats": _ScaledRM(50.0, 10.0), "rest": _ScaledRM(-1.0, 0.1)}, route=coin_route)
    stage = make_stage("rloo", reward=reward, tok=tiny_tok, batch_size=2)
    stage.step(1, progress=False)
    samples = _first_step_samples(stage)
    assert len(calls) == len(samples) == 8  # 2 prompts x 4 samples, each routed once
    for sample, name in zip(samples, calls):
        assert sample["score"] == pytest.approx(sample[f"score/{name}"], abs=1e-5)
