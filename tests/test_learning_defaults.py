"""What makes small-scale RLHF learn: reward normalisation, the KL controller's horizon, the value head's own
learning rate, reward-model schedules in steps, intervals on accuracies, and the pre-trained reward model."""

import math
import warnings

import pytest
import torch
from rl_toy import make_stage

from rlhf_lab.reward import RewardModelStage
from rlhf_lab.reward.evaluation import pair_metrics, wilson_interval
from rlhf_lab.rl.config import RLConfig
from rlhf_lab.rl.kl import AdaptiveKLController
from rlhf_lab.rl.normalization import FLAT_STD, FlatRewardWarning, RewardNormalizer


# ---------------------------------------------------------------------- reward normalisation
def test_normalizer_gives_mean_zero_std_one_on_the_samples_it_was_fitted_on():
    scores = torch.tensor([0.2, 0.5, -0.1, 0.9, 0.4, 0.3])
    norm = RewardNormalizer()
    assert norm.fit(scores) is None
    out = norm(scores)
    assert abs(float(out.mean())) < 1e-6 and float(out.std(correction=1)) == pytest.approx(1.0, abs=1e-5)
    assert norm(torch.tensor([scores.mean().item()])).abs().item() < 1e-6  # the bias is the mean


def test_a_flat_reward_warns_in_plain_words_and_is_not_blown_up():
    scores = 3.0 + 1e-4 * torch.randn(16)
    norm = RewardNormalizer()
    with pytest.warns(FlatRewardWarning, match="nearly flat"):
        message = norm.fit(scores)
    assert "Label more pairs" in message
    assert norm.gain == pytest.approx(1 / FLAT_STD)  # noise is scaled up 20x at most, not to unit size
    assert float(norm(scores).std()) < 0.01


def test_state_round_trip():
    norm = RewardNormalizer()
    norm.fit(torch.tensor([1.0, 2.0, 4.0]))
    other = RewardNormalizer()
    other.load_state_dict(norm.state_dict())
    assert other.fitted and other.gain == norm.gain and other.bias == norm.bias


class _LinearRM(RewardModelStage):
    """A stand-in reward model whose scores are 100 + 50 * (number of e's): big, arbitrary scale."""

    def __init__(self):  # no backbone needed: is_learned_reward only looks at the type
        pass

    def __call__(self, prompts, responses, batch_size=None):
        return torch.tensor([100.0 + 50.0 * r.count("e") for r in responses])


def test_rl_normalises_learned_reward_models_but_not_reward_functions(tiny_tok):
    learned = make_stage("rloo", reward=_LinearRM(), tok=tiny_tok)
    row = learned.step(1, progress=False)[0]
    assert row["objective/raw_scores"] > 90  # what the model said
    assert abs(row["objective/scores"]) < 1e-4  # first step: mean 0 on the starting policy's samples
    assert learned.normalizer.fitted and learned.normalizer.gain == pytest.approx(
        1
        / float(torch.tensor([s["score"] for s in learned.samples()]).std() * 0 + learned.normalizer.raw_std)
    )
    plain = make_stage("rloo", tok=tiny_tok)  # the e-count function: its scale means something
    row = plain.step(1, progress=False)[0]
    assert row["objective/scores"] == row["objective/raw_scores"] and not plain.normalizer.fitted
    forced = make_stage("rloo", tok=tiny_tok, normalize_reward=True)
    forced.step(1, progress=False)
    assert forced.normalizer.fitted


def test_set_reward_refits_the_normalisation(tiny_tok):
    stage = make_stage("rloo", reward=_LinearRM(), tok=tiny_tok)
    stage.step(1, progress=False)
    stage.set_reward(_LinearRM())
    assert not stage.normalizer.fitted
    stage.step(1, progress=False)
    assert stage.normalizer.fitted


def test_rl_checkpoint_keeps_the_normalisation(tiny_tok, tmp_path):
    from rlhf_lab.rl import RLStage

    stage = make_stage("rloo", reward=_LinearRM(), tok=tiny_tok)
    stage.step(1, progress=False)
    stage.save(tmp_path / "ckpt")
    loaded = RLStage.load(tmp_path / "ckpt", reward=_LinearRM())
    assert loaded.normalizer.state_dict() == stage.normalizer.state_dict()


# ---------------------------------------------------------------------- KL controller horizon
def test_default_kl_horizon_is_ten_steps_of_rollouts():
    cfg = RLConfig(batch_size=4, estimator="rloo", samples_per_prompt=4).validate()
    assert cfg.kl_horizon_rollouts == 10 * 16
    assert RLConfig(kl_horizon=500).kl_horizon_rollouts == 500


def test_adaptive_beta_responds_within_a_lab_run(tiny_tok):
    # KL held at twice the target for 20 steps of 16 rollouts: beta must clearly grow (it moved 0.4% with
    # the old 10,000-rollout horizon).
    cfg = RLConfig(batch_size=16, target_kl=2.0, beta=0.1)
    ctl = AdaptiveKLController(0.1, 2.0, cfg.kl_horizon_rollouts)
    for _ in range(20):
        ctl.update(current_kl=4.0, n_rollouts=16)
    assert ctl.value > 0.1 * 1.4
    stage = make_stage("ppo", tok=tiny_tok, target_kl=1.0)
    assert stage.kl_ctl.horizon == 10 * stage.config.rollouts_per_step


# ---------------------------------------------------------------------- value head learning rate
def test_value_head_has_its_own_larger_learning_rate(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok, learning_rate=1e-4)
    policy_group, value_group = stage.optimizer.param_groups
    head_params = {id(p) for p in stage.value_head.parameters()}
    assert {id(p) for p in value_group["params"]} == head_params
    assert not head_params & {id(p) for p in policy_group["params"]}
    assert policy_group["lr"] == 1e-4 and value_group["lr"] == 1e-3
    stage.set(learning_rate=2e-4)
    assert stage.optimizer.param_groups[0]["lr"] == 2e-4 and stage.optimizer.param_groups[1]["lr"] == 1e-3
    same = make_stage("ppo", tok=tiny_tok, learning_rate=1e-4, value_learning_rate=None)
    assert same.optimizer.param_groups[1]["lr"] == 1e-4
    assert len(make_stage("rloo", tok=tiny_tok).optimizer.param_groups) == 1  # no value function


def test_value_head_catches_up_with_the_returns(tiny_tok):
    # Constant reward 1 at a policy learning rate too small to move the head: with the head's own rate the
    # value climbs toward the return; at the policy's rate it stays at zero (explained variance 0).
    def value_means(**overrides):
        stage = make_stage(
            "ppo", reward=lambda p, r: [1.0] * len(r), tok=tiny_tok, learning_rate=1e-5, **overrides
        )
        return [row["val/mean"] for row in stage.step(8, progress=False)]

    own, shared = value_means(), value_means(value_learning_rate=None)
    assert own[-1] > 0.2 and own[-1] > own[1] > own[0]
    assert shared[-1] < 0.05


# ---------------------------------------------------------------------- intervals and RM schedules
def test_wilson_interval_matches_the_published_formula():
    lo, hi = wilson_interval(0.27, 11)
    assert (round(lo, 2), round(hi, 2)) == (0.10, 0.56)
    lo, hi = wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert all(math.isnan(x) for x in wilson_interval(0.5, 0))
    metrics = pair_metrics([1.0, -1.0, 2.0, 0.5], [1, 1, 1, 0.5])
    assert metrics["accuracy_ci"] == wilson_interval(2 / 3, 3)  # the tie is not a decided pair


def _pairs(n):
    return [{"prompt": f"p{i}", "chosen": "great film", "rejected": "slow film"} for i in range(n)]


def test_reward_model_schedules_count_optimizer_steps(tiny_tok):
    from rlhf_lab.models.tiny import tiny_reward_model

    stage = RewardModelStage(tiny_reward_model(tiny_tok), tiny_tok, _pairs(40), steps=7, warm_start_steps=3)
    assert stage.fit(progress=False)["steps"] == 7
    assert stage.fit(progress=False)["steps"] == 3  # warm start
    few = RewardModelStage(tiny_reward_model(tiny_tok), tiny_tok, _pairs(10), steps=7, split=[1, 0, 0])
    few.fit(progress=False)
    assert few.fit(progress=False)["steps"] == 2 * math.ceil(10 / 8)  # at most two passes over 10 pairs
    lrs = few.history["train/learning_rate"].dropna().tolist()
    assert lrs[0] == few.config.learning_rate and lrs[-1] == pytest.approx(few.config.learning_rate / 10)
    assert few.optimizer.param_groups[0]["lr"] == few.config.learning_rate  # restored after the warm fit
    assert stage.fit(warm_start=False, progress=False)["steps"] == 7
    assert stage.fit(epochs=1, progress=False)["steps"] == math.ceil(len(stage._units) / 8)  # batch 8
    with pytest.raises(ValueError, match="steps"):
        RewardModelStage(tiny_reward_model(tiny_tok), tiny_tok, _pairs(4), steps=0)


def test_evaluate_on_given_pairs_reports_accuracy_with_interval(tiny_tok):
    from rlhf_lab.models.tiny import tiny_reward_model

    stage = RewardModelStage(tiny_reward_model(tiny_tok), tiny_tok, _pairs(40), steps=30, learning_rate=1e-3)
    stage.fit(progress=False)
    result = stage.evaluate(pairs=_pairs(12), log=False)
    assert result["n_pairs"] == 12 and result["accuracy"] == 1.0
    lo, hi = result["accuracy_ci"]
    assert lo < 1.0 and hi == 1.0


@pytest.mark.slow
def test_pretrained_reward_model_is_cached_and_fine_tunes_warm(tiny_lab, tmp_path, monkeypatch):
    import rlhf_lab.reward.pretrained as pretrained
    from rlhf_lab.bundled import heldout_pairs

    monkeypatch.setenv("RLHF_LAB_CACHE", str(tmp_path / "cache"))  # cold: this test pre-trains and caches
    # a short pre-training (the real one, ~300 steps, is what tests/test_cli.py's demo runs)
    monkeypatch.setattr(pretrained, "pretraining_steps", lambda n_pairs, batch_size: 12)
    # split [1, 0, 0]: the one label below must be a training pair (a hash split could hold it out).
    settings = {"steps": 20, "split": [1.0, 0.0, 0.0]}
    rm = tiny_lab.reward_model(pretrained="positive_review", **settings)
    assert rm.pretrained and "positive_review" in rm.pretrained
    assert rm.step_count == 0 and tiny_lab.clock.value == 0  # pre-training is off the lab's clock
    assert len(list((tmp_path / "cache" / "reward_pretrained").iterdir())) == 1
    before = rm.evaluate(pairs=heldout_pairs("positive_review"), log=False)["accuracy"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # second time: loaded from the cache, no training
        again = tiny_lab.reward_model(pretrained="positive_review", **settings)
    assert again.evaluate(pairs=heldout_pairs("positive_review"), log=False)["accuracy"] == before
    assert again.scorer.offset == rm.scorer.offset
    tiny_lab.store.add("Review a film.", ["A dull, awful film.", "A wonderful film!"], "B", annotator="me")
    summary = rm.fit(progress=False)
    assert summary["warm_start"] and summary["steps"] == 2  # two passes over one new label
