"""The fast path stays correct: static KV cache (`compile_generation`) and bf16 autocast, checked on the CPU.

On CUDA the same switches also compile the decoding step; what can differ between the paths is
how tokens are sampled and scored, and that is what these tests pin down: the same seed gives the
same tokens with either cache, sampled tokens are what re-scoring says they are (left padding and
position ids agree), and the engine's own invariants (ratio 1 on the first minibatch, learning)
hold with the fast switches on.
"""

import pytest
import torch
from rl_toy import make_stage

from rlhf_lab.models.tiny import tiny_policy
from rlhf_lab.rl.compiled import RegionalCompile, repeated_blocks
from rlhf_lab.rl.rollout import left_pad, response_forward, sample_responses

# Different lengths on purpose: left padding must not shift positions between sampling and scoring.
PROMPTS = ["Describe a cat.", "Hi", "Write a long and positive review of a film about the sea."]


def _sample(policy, tok, *, static_cache: bool, seed: int = 0, **settings):
    ids, mask = left_pad([tok(p)["input_ids"] for p in PROMPTS], tok.pad_token_id, torch.device("cpu"))
    torch.manual_seed(seed)
    return sample_responses(
        policy,
        ids,
        mask,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        max_new_tokens=12,
        stop_on_eos=False,
        static_cache=static_cache,
        **settings,
    )


def test_static_and_dynamic_cache_sample_the_same_tokens(tiny_tok):
    policy = tiny_policy(tiny_tok, seed=1).eval()
    dynamic = _sample(policy, tiny_tok, static_cache=False)
    static = _sample(policy, tiny_tok, static_cache=True)
    assert torch.equal(dynamic.response_ids, static.response_ids)
    other_seed = _sample(policy, tiny_tok, static_cache=True, seed=1)
    assert not torch.equal(static.response_ids, other_seed.response_ids)  # the comparison can fail


def _tiny_llama(vocab_size: int, pad_token_id: int):
    """A 2-layer Llama (SmolLM2's family: rotary embeddings, grouped KV heads) with random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=pad_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("static_cache", [False, True])
def test_greedy_samples_are_the_argmax_of_rescoring(tiny_tok, static_cache, family):
    if family == "gpt2":
        policy = tiny_policy(tiny_tok, seed=2).eval()
    else:
        policy = _tiny_llama(len(tiny_tok), tiny_tok.pad_token_id).eval()
    batch = _sample(policy, tiny_tok, static_cache=static_cache, top_k=1)
    with torch.no_grad():
        logits, _ = response_forward(policy, batch)
    assert torch.equal(logits.argmax(-1), batch.response_ids)


@pytest.mark.parametrize("estimator", ["ppo", "rloo", "grpo"])
def test_first_minibatch_ratio_is_one_on_the_fast_path(tiny_tok, estimator):
    stage = make_stage(estimator, tok=tiny_tok, compile_generation=True, mixed_precision="bf16")
    row = stage.step()[0]
    first = stage.last_minibatch_stats[0]
    # bf16 matmuls over different batch shapes round differently: equal to bf16 precision, not exactly.
    assert first["policy/ratio"] == pytest.approx(1.0, abs=2e-2)
    assert first["policy/approxkl"] < 1e-3
    assert row["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # policy == reference before any update


def test_static_cache_under_bf16_autocast_on_a_rotary_model():
    """SmolLM2's family (Llama: rotary embeddings) on the fast path, as on a GPU: bf16 autocast + static cache.

    Under autocast the rotary embedding turns the keys back to float32 while the values stay bf16;
    transformers before 5.24 sized the static cache's value tensor by the keys' dtype, and the GPU run
    of `ppo_throughput.py --arch smollm2 --compile` failed with "index_copy_(): self and source expected
    to have the same dtype" (transformers 5.17). GPT-2 (no rotary) never showed it.
    """
    from rlhf_lab.device import autocast_for

    policy = _tiny_llama(64, 0).eval()
    ids, mask = left_pad([[5, 6, 7], [8, 9]], 0, torch.device("cpu"))
    samples = {}
    for static_cache in (False, True):
        torch.manual_seed(3)
        with autocast_for(torch.device("cpu"), "bf16"):
            samples[static_cache] = sample_responses(
                policy,
                ids,
                mask,
                pad_token_id=0,
                eos_token_id=None,
                max_new_tokens=6,
                stop_on_eos=False,
                static_cache=static_cache,
            ).response_ids
    assert samples[True].shape == (2, 6)
    assert torch.equal(samples[False], samples[True])


def test_rloo_learns_the_toy_task_on_the_fast_path(tiny_tok):
    stage = make_stage(
        "rloo", tok=tiny_tok, learning_rate=1e-2, compile_generation=True, mixed_precision="bf16"
    )
    # 16 steps, as the plain path's learning test: at 12 the margin over 1.5x was thin enough that
    # bf16 rounding (thread count, package versions) decided it (1.48x in one environment, 1.67x in another).
    scores = [row["objective/scores"] for row in stage.step(16)]
    assert sum(scores[-3:]) > 1.5 * sum(scores[:3])


@pytest.mark.slow
def test_compiled_update_matches_the_eager_update(tiny_tok):
    """compile_update runs the update's blocks through torch.compile: the same step, not another one.

    Two stages from the same seed take one step each, eager and compiled: the first minibatch's ratio is
    1 and the policies' weights after the step agree to float rounding (inductor fuses and reorders
    arithmetic, so not bit for bit). The compiled blocks are switched off again after the update, so
    sampling runs the plain ones. Slow: compiling takes seconds on a CPU.
    """
    torch.manual_seed(1)  # the value head's initial weights come from the global generator
    eager = make_stage("ppo", tok=tiny_tok, seed=3)
    torch.manual_seed(1)
    compiled = make_stage("ppo", tok=tiny_tok, seed=3, compile_update=True)
    assert compiled.train_policy is compiled.policy and eager.train_policy is eager.policy
    for stage in (eager, compiled):
        torch.manual_seed(0)  # the same samples on both sides
        stage.step()
        assert stage.last_minibatch_stats[0]["policy/ratio"] == pytest.approx(1.0, abs=1e-4)
    initial = dict(tiny_policy(tiny_tok, seed=3).named_parameters())
    moved = 0.0
    for (name, a), (_, b) in zip(eager.policy.named_parameters(), compiled.policy.named_parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), name
        moved = max(moved, (a - initial[name]).abs().max().item())
    assert moved > 1e-3  # the step changed the weights, so agreeing means something
    blocks = compiled._regional.blocks
    assert blocks == list(compiled.policy.transformer.h) and compiled._regional._calls is not None
    assert all(block._compiled_call_impl is None for block in blocks)  # off outside the update
    compiled.step()  # a second step with other lengths: shapes are dynamic
    assert eager._regional is None


def test_repeated_blocks_finds_the_transformer_stack(tiny_tok):
    policy = tiny_policy(tiny_tok)
    assert repeated_blocks(policy) is policy.transformer.h
    assert repeated_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())) is None
    with pytest.raises(ValueError, match="no list of identical blocks"):
        RegionalCompile(torch.nn.Linear(2, 2))


def test_a_policy_without_repeated_blocks_is_compiled_whole(tiny_tok, monkeypatch):
    """compile_update=True falls back to compiling the whole policy when it has no block list to share."""
    import rlhf_lab.rl.stage as stage_module

    def no_blocks(model):
        raise ValueError("no list of identical blocks")

    monkeypatch.setattr(stage_module, "RegionalCompile", no_blocks)
    stage = make_stage("ppo", tok=tiny_tok, compile_update=True)
    assert stage.train_policy is stage.policy  # nothing compiled before the first update
    with stage.compiled_update():
        assert stage.train_policy is not stage.policy  # torch.compile's wrapper (compiles on first call)
    assert stage._regional is None  # no block-by-block compile: the whole policy instead
