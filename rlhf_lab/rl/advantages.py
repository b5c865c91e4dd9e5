"""Advantage estimators as pure functions on tensors (no models, no state).

    >>> from rlhf_lab.rl.advantages import gae, rloo_advantages, grpo_advantages
    >>> adv, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)   # (N, T) each
    >>> rloo_advantages(scores, k=4)     # scores of N = P * k samples, each prompt's k in a row

Shapes: per-token tensors are (N, T) with `mask` 1 on response tokens (a contiguous prefix: the
response up to and including EOS), 0 on padding. Sequence-level tensors are (N,).
"""

from __future__ import annotations

from typing import Any

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of the masked entries."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    return ((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Scale masked entries to unit variance (and zero mean when shift_mean); padding stays 0."""
    mean = masked_mean(x, mask)
    out = (x - mean) * torch.rsqrt(masked_var(x, mask) + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last response token of each row (where the score arrives)."""
    return (mask.sum(1).long() - 1).clamp(min=0)


def kl_shaped_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float | torch.Tensor
) -> torch.Tensor:
    """Per-token rewards: -beta * KL on every response token, plus the score on the last one."""
    rewards = -beta * kl * mask
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_token_index(mask)] += scores
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens; the episode ends at the last one.

    delta_t = r_t + gamma * V_{t+1} - V_t (V after the last token is 0)
    A_t = delta_t + gamma * lam * A_{t+1};  returns = A + V.
    """
    n, t_max = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(n, dtype=rewards.dtype, device=rewards.device)
    next_advantage = torch.zeros_like(next_value)
    for t in reversed(range(t_max)):
        alive = mask[:, t + 1] if t + 1 < t_max else torch.zeros_like(next_value)
        delta = rewards[:, t] + gamma * next_value * alive - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage * alive
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Leave-one-out baseline: r_i - mean of the other k-1 rewards of the same prompt."""
    grouped = rewards.view(-1, k)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(-1)


def grpo_advantages(rewards: torch.Tensor, k: int, eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised: (r - group mean) / (group std + eps), std unbiased as in torch.std."""
    grouped = rewards.view(-1, k)
    mean = grouped.mean(1, keepdim=True)
    std = grouped.std(1, keepdim=True)
    return ((grouped - mean) / (std + eps)).reshape(-1)


def reinforce_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Batch-mean baseline: r - mean(r)."""
    return rewards - rewards.mean()


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns) over response tokens (1 = perfect, <= 0 = useless)."""
    var_returns = masked_var(returns, mask)
    return 1 - masked_var(returns - values, mask) / var_returns.clamp(min=1e-8)


def estimator_advantages(
    config: Any,
    scores: torch.Tensor,
    penalty: torch.Tensor,
    values: torch.Tensor | None,
    mask: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token advantages (N, T) and, for PPO, GAE returns, as `config.estimator` defines them.

    ppo: GAE on KL-shaped per-token rewards; rloo / reinforce: a per-sequence baseline on
    score - beta * KL; grpo: group-normalised scores (its KL goes into the loss, not the reward).
    `config` is an RLConfig (estimator, k, gamma, lam, whiten_*, group_std_eps).
    """
    returns = None
    if config.estimator == "ppo":
        rewards = kl_shaped_rewards(scores, penalty, mask, beta)
        if config.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = gae(rewards, values, mask, config.gamma, config.lam)
    else:
        if config.estimator == "grpo":  # KL is in the loss, not the reward
            per_sequence = grpo_advantages(scores, config.k, config.group_std_eps)
        else:
            shaped = scores - beta * penalty.sum(1)
            per_sequence = (
                rloo_advantages(shaped, config.k)
                if config.estimator == "rloo"
                else reinforce_advantages(shaped)
            )
        advantages = per_sequence[:, None] * mask
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    return advantages, returns
