"""The losses of one RL minibatch: pure functions of tensors, one formula each.

    >>> from rlhf_lab.rl.losses import policy_loss, clipped_value_loss
    >>> pg_loss, ratio, logratio = policy_loss(logprobs, old_logprobs, advantages, mask, clip_range=0.2)
    >>> v_loss, v_clipfrac = clipped_value_loss(values, old_values, returns, mask, clip_range=0.2)

Shapes are [rows, response tokens]; `mask` is 1 on response tokens, and every mean is a masked
mean over them (rlhf_lab.rl.advantages.masked_mean).

- Clipped surrogate (PPO, Schulman et al. 2017, eq. 7), used by ppo, rloo and grpo:
  ratio = exp(log pi - log pi_old);  loss = mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))).
- REINFORCE with importance weights (no clipping): loss = mean(-A * ratio). On the first
  minibatch ratio = 1 and its gradient is the plain policy gradient -A * grad log pi.
- Clipped value loss (Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO",
  arXiv:2403.17031, as in TRL's PPO trainer):
  v_clip = v_old + clip(v - v_old, -eps_v, eps_v);  loss = 0.5 * mean(max((v - R)^2, (v_clip - R)^2)).
"""

from __future__ import annotations

import torch

from rlhf_lab.rl.advantages import masked_mean


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float,
    clipped: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The policy-gradient loss, the probability ratio and the masked log-ratio.

    `clipped=False` gives REINFORCE's importance-weighted loss (see the module docstring).
    """
    logratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(logratio)
    if clipped:
        losses = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    else:
        losses = -advantages * ratio
    return masked_mean(losses, mask), ratio, logratio


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss and the fraction of tokens where the clipped term was larger."""
    v_clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    unclipped, clipped = (values - returns) ** 2, (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)
