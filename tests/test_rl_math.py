"""Pure functions of the RL engine against hand-computed values and known distributions."""

import math

import pytest
import torch

from rlhf_lab.rl.advantages import (
    gae,
    grpo_advantages,
    kl_shaped_rewards,
    reinforce_advantages,
    rloo_advantages,
    whiten,
)
from rlhf_lab.rl.kl import AdaptiveKLController, FixedKLController, kl_k1, kl_k3, make_kl_controller
from rlhf_lab.rl.logprobs import token_logprobs
from rlhf_lab.rl.rollout import PromptOrder, response_masks


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 0.2, 0.1]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # delta = [1+0.2-0.5, 0+0.1-0.2, 2-0.1] = [0.7, -0.1, 1.9]; A_t = delta_t + 0.5 * A_{t+1}
    assert adv.tolist()[0] == pytest.approx([1.125, 0.85, 1.9])
    assert ret.tolist()[0] == pytest.approx([1.625, 1.05, 2.0])
    adv, _ = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert adv.tolist()[0] == pytest.approx([0.68 + 0.45 * 0.745, -0.11 + 0.45 * 1.9, 1.9])


def test_gae_stops_at_the_last_response_token():
    rewards = torch.tensor([[1.0, 2.0, 99.0]])
    values = torch.tensor([[0.5, 0.2, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert adv.tolist()[0] == pytest.approx([0.7 + 0.5 * 1.8, 1.8, 0.0])
    assert ret[0, 2] == 0


def test_score_arrives_at_the_last_token_with_kl_penalty_everywhere():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    rewards = kl_shaped_rewards(torch.tensor([1.0, 2.0]), kl, mask, beta=0.5)
    assert rewards.tolist()[0] == pytest.approx([-0.05, -0.1, 1 - 0.15])
    assert rewards.tolist()[1] == pytest.approx([2 - 0.25, 0.0, 0.0])


def test_group_estimators_match_hand_values():
    scores = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    # leave-one-out: 1 - (2+6)/2, 2 - (1+6)/2, 6 - (1+2)/2
    assert rloo_advantages(scores, k=3).tolist()[:3] == pytest.approx([-3.0, -1.5, 4.5])
    assert rloo_advantages(scores, k=3).tolist()[3:] == pytest.approx([-1.5, -1.5, 3.0])
    std = math.sqrt(7.0)  # unbiased std of (1, 2, 6)
    assert grpo_advantages(scores, k=3, eps=0.0).tolist()[:3] == pytest.approx([-2 / std, -1 / std, 3 / std])
    assert reinforce_advantages(torch.tensor([1.0, 2.0, 6.0])).tolist() == pytest.approx([-2.0, -1.0, 3.0])


def test_grpo_group_with_equal_scores_has_zero_advantage():
    assert grpo_advantages(torch.tensor([2.0, 2.0]), k=2).tolist() == [0.0, 0.0]


def test_whiten_ignores_padding():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = whiten(x, mask)
    assert out[0, 2] == 0 and out[0, 0] == pytest.approx(-out[0, 1].item())


def test_k1_and_k3_estimate_kl_of_known_distributions():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.3, 0.5])
    exact = float((p * (p / q).log()).sum())
    generator = torch.Generator().manual_seed(0)
    samples = torch.multinomial(p, 200_000, replacement=True, generator=generator)
    logp, logq = p.log()[samples], q.log()[samples]
    assert kl_k1(logp, logq).mean().item() == pytest.approx(exact, abs=0.01)
    assert kl_k3(logp, logq).mean().item() == pytest.approx(exact, abs=0.01)
    assert (kl_k3(logp, logq) >= 0).all()
    assert kl_k3(logp, logp).abs().max() == 0


def test_adaptive_controller_moves_beta_toward_target():
    ctl = AdaptiveKLController(beta=0.1, target=6.0, horizon=1000)
    ctl.update(current_kl=12.0, n_rollouts=100)  # too much KL: raise beta (error clipped to +0.2)
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    high = ctl.value
    ctl.update(current_kl=3.0, n_rollouts=100)  # too little: lower beta
    assert ctl.value < high
    fixed = FixedKLController(0.3)
    fixed.update(100.0, 100)
    assert fixed.value == 0.3
    assert isinstance(make_kl_controller(0.1, None, 10), FixedKLController)


def test_token_logprobs_match_log_softmax_and_chunking_is_exact():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, 11)
    tokens = torch.randint(0, 11, (5, 4))
    ref = (logits / 0.7).log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
    logp, entropy = token_logprobs(logits, tokens, temperature=0.7, with_entropy=True, chunk_rows=2)
    assert torch.allclose(logp, ref, atol=1e-6)
    dist = torch.distributions.Categorical(logits=logits / 0.7)
    assert torch.allclose(entropy, dist.entropy(), atol=1e-5)
    bf16, _ = token_logprobs(logits.bfloat16(), tokens, temperature=0.7)
    assert bf16.dtype == torch.float32


def test_response_masks_end_at_first_eos():
    ids = torch.tensor([[5, 2, 9, 9], [5, 6, 7, 8], [2, 0, 0, 0]])
    mask, eos = response_masks(ids, eos_token_id=2, stop_on_eos=True)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert eos.tolist() == [True, False, True]
    mask, _ = response_masks(ids, eos_token_id=2, stop_on_eos=False)
    assert mask.sum() == 12


def test_prompt_order_is_seeded_covers_all_and_resumes():
    order = PromptOrder(5, seed=3)
    first = order.take(5)
    assert sorted(first) == list(range(5))
    state = order.state_dict()
    expected = order.take(7)
    again = PromptOrder(5, seed=99)
    again.load_state_dict(state)
    assert again.take(7) == expected
    assert PromptOrder(5, seed=3).take(5) == first
