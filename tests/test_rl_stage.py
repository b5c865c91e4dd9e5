"""RLStage behaviour on the tiny preset: contract, guards, errors, samples, checkpoints."""

import copy
import math
import warnings

import pytest
import torch
from rl_toy import PROMPTS, e_count, make_stage

from rlhf_lab.errors import StageError
from rlhf_lab.metrics import is_known
from rlhf_lab.models.tiny import tiny_policy
from rlhf_lab.rl import RewardError, RLConfig, RLStage
from rlhf_lab.rl.kl import AdaptiveKLController, FixedKLController

ESTIMATORS = ["ppo", "rloo", "grpo", "reinforce"]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_first_minibatch_has_ratio_one_and_metric_names_are_known(estimator, tiny_tok):
    stage = make_stage(estimator, tok=tiny_tok)
    row = stage.step()[0]
    first = stage.last_minibatch_stats[0]
    assert first["policy/ratio"] == pytest.approx(1.0, abs=1e-5)
    assert first["policy/approxkl"] == pytest.approx(0.0, abs=1e-8)
    assert first["policy/clipfrac"] == 0.0
    assert row["stage"] == estimator
    unknown = [k for k in row if not is_known(k)]
    assert not unknown, unknown
    assert all(math.isfinite(v) for v in row.values() if isinstance(v, float))
    assert ("loss/value" in row) == (estimator == "ppo")
    assert row["objective/beta"] == 0.05 and row["objective/kl_k3"] >= 0


def test_multi_objective_and_gold_metrics_are_known(tiny_tok):
    class Gold:
        def score(self, prompt, response):
            return len(response) / 10

    reward = {"e": e_count, "short": (lambda p, r: [-len(x) / 10 for x in r], 0.5)}
    stage = make_stage("ppo", reward=reward, tok=tiny_tok, gold=Gold())
    row = stage.step()[0]
    assert {"objective/scores/e", "objective/scores/short", "objective/gold_scores"} <= set(row)
    assert all(is_known(k) for k in row)
    assert row["objective/scores"] == pytest.approx(
        row["objective/scores/e"] + 0.5 * row["objective/scores/short"]
    )
    sample = stage.samples(1)[0]
    assert {"gold_score", "score/e", "score/short"} <= set(sample)


def test_reference_is_frozen_and_never_changes(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok, learning_rate=1e-2)
    ref_before = copy.deepcopy(stage.ref_policy.state_dict())
    policy_before = copy.deepcopy(stage.policy.state_dict())
    stage.step(2)
    assert stage.ref_policy is not stage.policy
    assert not stage.ref_policy.training
    assert all(not p.requires_grad for p in stage.ref_policy.parameters())
    for key, value in stage.ref_policy.state_dict().items():
        assert torch.equal(value, ref_before[key]), key
    assert any(not torch.equal(v, policy_before[k]) for k, v in stage.policy.state_dict().items())


def test_given_reference_is_used_and_frozen(tiny_tok):
    ref = tiny_policy(tiny_tok, seed=1)
    stage = make_stage("rloo", tok=tiny_tok, ref_policy=ref)
    assert stage.ref_policy is ref and not any(p.requires_grad for p in ref.parameters())
    assert stage.step()[0]["objective/kl_k3"] > 0.05  # two different random models


def test_lora_reference_is_the_adapter_switched_off(tiny_tok):
    original = tiny_policy(tiny_tok)
    stage = RLStage(
        tiny_policy(tiny_tok),
        tiny_tok,
        PROMPTS,
        e_count,
        lora=True,
        lora_r=4,
        batch_size=8,
        max_new_tokens=8,
        learning_rate=1e-2,
        num_minibatches=2,
        num_epochs=2,
    )
    assert stage.ref_policy is None and stage.uses_lora
    trainable = [n for n, p in stage.policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    stage.step(2)
    assert stage.last_minibatch_stats[-1]["policy/approxkl"] > 0  # the adapter did move
    with stage._dropout_off(), torch.no_grad():
        batch = stage._sample([stage._prompt_tokens[0]] * 2)
        ref = stage._reference_pass(batch)
        stage.ref_policy = original.eval()  # the untouched original model as an explicit reference
        expected = stage._reference_pass(batch)
    assert torch.allclose(ref, expected, atol=1e-5)


def test_value_loss_falls_on_a_constant_reward(tiny_tok):
    # The toy's policy learning rate (3e-3) is above the value head's default; share it, as before.
    stage = make_stage("ppo", reward=lambda p, r: [1.0] * len(r), tok=tiny_tok, value_learning_rate=None)
    losses = [row["loss/value"] for row in stage.step(8)]
    assert losses[-1] < 0.2 * losses[0]


def test_separate_value_model(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok, value="separate")
    assert stage.value_head is None and stage.value_model is not None
    row = stage.step()[0]
    assert row["loss/value"] > 0 and "val/explained_variance" in row


def test_chunked_no_grad_passes_match_one_pass(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok)
    with stage._dropout_off(), torch.no_grad():
        batch = stage._sample([t for t in stage._prompt_tokens for _ in range(2)])
        whole = stage._policy_pass(batch)
        stage.config.eval_batch_size = 3
        chunked = stage._policy_pass(batch)
    for a, b in zip(whole, chunked):
        assert torch.allclose(a, b, atol=1e-5)


def _responses_of_varied_length(stage):
    """The untrained tiny model rarely stops early: cut its responses to 3-7 tokens, so rows differ."""
    sample = stage._sample

    def cut(prompt_tokens):
        batch = sample(prompt_tokens)
        rows, width = batch.response_mask.shape
        keep = torch.arange(width) < (torch.arange(rows) % 5 + 3)[:, None]
        batch.response_mask = batch.response_mask * keep.to(batch.response_mask)
        return batch

    stage._sample = cut
    return stage


@pytest.mark.parametrize("estimator", ["ppo", "grpo"])
def test_gradient_accumulation_gives_the_same_update(estimator, tiny_tok):
    # Slices of 1-2 rows holding different numbers of tokens: weighted by tokens, the same gradient.
    settings = dict(num_minibatches=2, num_epochs=2, learning_rate=1e-3, max_new_tokens=8)
    rows, policies = [], []
    for steps in (1, 3):  # each stage built, then stepped: sampling draws from the global RNG it seeds
        stage = _responses_of_varied_length(
            make_stage(estimator, tok=tiny_tok, gradient_accumulation_steps=steps, **settings)
        )
        rows.append(stage.step(2, progress=False)[-1])
        policies.append(stage.policy)
    assert rows[0]["response/length"] == rows[1]["response/length"] < 7  # the same (cut) rollouts
    for a, b in zip(*(p.parameters() for p in policies)):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)  # measured: about 1e-7 apart
    for name in ("loss/policy", "loss/total", "policy/entropy", "policy/clipfrac", "train/grad_norm"):
        assert rows[1][name] == pytest.approx(rows[0][name], rel=1e-5, abs=1e-6), name
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        make_stage(estimator, tok=tiny_tok, gradient_accumulation_steps=0)


def test_fixed_length_sampling_when_not_stopping_on_eos(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok, stop_on_eos=False, max_new_tokens=6)
    row = stage.step()[0]
    assert row["response/length"] == 6
    assert all(s["length"] == 6 for s in stage.samples())


# ---------------------------------------------------------------------- set() and swaps
def test_set_applies_from_the_next_step(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok)
    stage.step()
    stage.set(beta=0.3, learning_rate=1e-4, temperature=0.8, max_new_tokens=4, top_k=20, top_p=0.9)
    row = stage.step()[0]
    assert row["objective/beta"] == 0.3 and row["train/learning_rate"] == 1e-4
    assert row["response/length"] <= 4
    stage.set(target_kl=2.0)
    assert isinstance(stage.kl_ctl, AdaptiveKLController) and stage.kl_ctl.value == 0.3
    stage.step()
    assert stage.kl_ctl.value != 0.3  # the controller moved beta
    stage.set(target_kl=None)
    assert isinstance(stage.kl_ctl, FixedKLController)


def test_set_rejects_bad_values_and_changes_nothing(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok)
    with pytest.raises(ValueError, match="minibatches"):
        stage.set(batch_size=3)
    with pytest.raises(ValueError, match="positions"):
        stage.set(max_new_tokens=2000)
    with pytest.raises(ValueError, match="changeable"):
        stage.set(gamma=0.5)
    assert stage.config.batch_size == 8 and stage.config.max_new_tokens == 8


def test_set_reward_swaps_the_reward(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok)
    stage.step()
    stage.set_reward(lambda p, r: [7.0] * len(r))
    assert stage.step()[0]["objective/scores"] == 7.0


def test_background_run_and_pause(tiny_tok):
    stage = make_stage("grpo", tok=tiny_tok)
    stage.run(steps=2)
    stage.wait(60)
    assert stage.step_count == 2 and len(stage.history) == 2


# ---------------------------------------------------------------------- samples
def test_samples_are_kept_for_recent_steps_only(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok, keep_sample_steps=2)
    stage.step(3)
    latest = stage.samples()
    assert len(latest) == 8 and {s["step"] for s in latest} == {3}
    assert {"prompt", "response", "score", "kl", "kl_k3", "rlhf_reward", "length", "eos"} <= set(latest[0])
    assert len(stage.samples(10)) == 10 and stage.samples(10)[-1]["step"] == 2
    assert stage.samples(step=2)[0]["step"] == 2
    with pytest.raises(KeyError):
        stage.samples(step=1)
    frame = stage.samples_dataframe()
    assert len(frame) == 16 and set(frame["step"]) == {2, 3}
    assert all(s["prompt"] in PROMPTS for s in latest)


# ---------------------------------------------------------------------- KL guards
def test_kl_limit_pauses_before_updating(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok, beta=0.0, learning_rate=1e-2)
    stage.step(3)
    stage.set(kl_limit=1e-3)
    before = copy.deepcopy(stage.policy.state_dict())
    with pytest.raises(StageError, match="kl_limit"):
        stage.step()
    assert stage.step_count == 3
    assert all(torch.equal(v, before[k]) for k, v in stage.policy.state_dict().items())
    assert stage.samples()[0]["step"] == 4  # the offending samples can be inspected
    stage.set(kl_limit=None)
    stage.step()
    assert stage.step_count == 4


def test_high_kl_warns_once_and_flags_rows(tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok, kl_warning=-1e9)
    with pytest.warns(RuntimeWarning, match="reward hacking"):
        stage.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = stage.step()[0]
    assert row["objective/kl_warning"] == 1.0


def test_out_of_memory_pauses_with_advice_and_next_step_works(tiny_tok, monkeypatch):
    import rlhf_lab.rl.stage as stage_module

    stage = make_stage("ppo", tok=tiny_tok)
    real = stage_module.sample_responses
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(stage_module, "sample_responses", flaky)
    with pytest.raises(StageError, match="batch_size") as info:
        stage.step()
    assert (
        "max_new_tokens" in str(info.value) and "LoRA" in str(info.value) and "release()" in str(info.value)
    )
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    stage.set(batch_size=4)
    assert stage.step()[0]["step"] == 1


# ---------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "prompts, settings, error, match",
    [
        ([], {}, ValueError, "empty"),
        (["ok", "  "], {}, ValueError, "prompt 1"),
        ("one prompt", {}, TypeError, "list of strings"),
        (None, {}, TypeError, "list of prompts .* got NoneType"),  # was "'NoneType' object is not iterable"
        (["ok", 3], {}, TypeError, "prompt 1 must be text"),
        ([[{"role": "user", "content": "Hi."}]], {}, TypeError, "prompt 0 is a chat conversation"),
        (PROMPTS, {"batch_size": 6, "num_minibatches": 4}, ValueError, "minibatches"),
        (PROMPTS, {"estimator": "rloo", "samples_per_prompt": 1}, ValueError, ">= 2"),
        (PROMPTS, {"estimator": "grpo", "samples_per_prompt": 1}, ValueError, ">= 2"),
        (PROMPTS, {"max_new_tokens": 5000}, ValueError, "max_new_tokens"),
        (PROMPTS, {"max_new_tokens": 250}, ValueError, "positions"),
        (PROMPTS, {"estimator": "dpo"}, ValueError, "estimator"),
        (PROMPTS, {"lerning_rate": 1e-3}, TypeError, "Unknown RL settings"),
        (PROMPTS, {"temperature": 0}, ValueError, "temperature"),
        (PROMPTS, {"compile_update": "max-autotune"}, ValueError, "compile_update must be one of"),
        (
            PROMPTS,
            {"compile_update": "reduce-overhead", "gradient_accumulation_steps": 2},
            ValueError,
            "169545",
        ),
    ],
)
def test_bad_inputs_give_clear_errors(tiny_tok, prompts, settings, error, match):
    with pytest.raises(error, match=match):
        RLStage(tiny_policy(tiny_tok), tiny_tok, prompts, e_count, **settings)


def test_missing_reward_is_a_clear_error(tiny_tok):
    with pytest.raises(TypeError, match="reward is required"):
        RLStage(tiny_policy(tiny_tok), tiny_tok, PROMPTS, None)


def _bad_on_cat(prompts, responses):
    return [1 / 0 if "cat" in p else 1.0 for p in prompts]


@pytest.mark.parametrize(
    "reward, match",
    [
        (_bad_on_cat, r"ZeroDivisionError.*Describe a cat"),
        (lambda p, r: [1.0, 2.0], r"shape \(2,\) for 8 responses"),
        (
            lambda p, r: [float("nan") if "cat" in x else 0.0 for x in p],
            r"nan for sample \d+.*Describe a cat",
        ),
        (lambda p, r: "good", "not a list of numbers"),
    ],
)
def test_reward_errors_name_the_sample(tiny_tok, reward, match):
    stage = make_stage("ppo", reward=reward, tok=tiny_tok)
    stage.order.take(2)  # make sure "Describe a cat." is in the batch of 8 (two passes over 4 prompts)
    with pytest.raises(RewardError, match=match):
        stage.step()
    assert stage.step_count == 0


def test_config_object_and_overrides(tiny_tok):
    config = RLConfig(estimator="reinforce", batch_size=4, num_minibatches=2, max_new_tokens=4)
    stage = RLStage(tiny_policy(tiny_tok), tiny_tok, PROMPTS, e_count, config=config, learning_rate=1e-3)
    assert stage.name == "reinforce" and stage.config.learning_rate == 1e-3
    assert config.learning_rate == 1e-5  # the caller's object is untouched


def test_lab_factory_builds_a_working_stage(tiny_lab):
    stage = tiny_lab.rl(PROMPTS, e_count, estimator="rloo", batch_size=4, max_new_tokens=6)
    assert stage.policy is tiny_lab.policy and stage.clock is tiny_lab.clock
    row = stage.step()[0]
    assert row["lab_step"] == 1 and row["stage"] == "rloo"


def test_rollouts_without_padding_raise_no_spurious_mask_warning(tiny_tok, caplog):
    """Equal-length prompts make a batch without padding; transformers then drops the attention mask we
    pass, and once the policy samples its pad token the next forward warns that a mask is missing. Our
    rollouts filter that one message, as lab.generate does (rlhf_lab.generation)."""
    import logging

    pad = tiny_tok.pad_token_id
    policy = tiny_policy(tiny_tok, seed=0)
    stage = RLStage(policy, tiny_tok, ["Describe a cat."] * 4, e_count, batch_size=4, max_new_tokens=3)

    def prefer_pad(module, args, output):
        output[..., pad] += 100.0  # the policy now samples its pad token at every step
        return output

    logging.Logger.warning_once.cache_clear()  # transformers shows this warning once per process
    hook = policy.lm_head.register_forward_hook(prefer_pad)
    try:
        with caplog.at_level(logging.WARNING):
            stage.step()
    finally:
        hook.remove()
    assert not [r for r in caplog.records if "attention_mask" in r.getMessage()]
