"""Step 5 of an RL step: `num_epochs` passes over `num_minibatches` minibatches, one AdamW step each.

    >>> stats = update_policy(stage, batch, old_logprobs, ref_logprobs, advantages, returns, old_values, beta)
    >>> stats.shape                    # [epochs, minibatches, len(UPDATE_STATS)], on the CPU

Gradient accumulation: with `gradient_accumulation_steps = g` each minibatch goes through the model in
g slices (forward and backward one slice at a time) before its one optimizer step, so the activations
held at once are those of 1/g of the minibatch. Every loss term is a masked mean over the minibatch's
response tokens, so a slice's mean weighted by its share of those tokens sums to exactly the
minibatch's mean: the same gradient, up to float rounding, for any g (what Hugging Face Trainer's
`gradient_accumulation_steps` gives only when the slices hold equal numbers of tokens).
"""

from __future__ import annotations

from typing import Any

import torch

from rlhf_lab.device import autocast_for
from rlhf_lab.optim import clip_gradients
from rlhf_lab.rl.advantages import masked_mean
from rlhf_lab.rl.distributed import average_gradients, ranks_continue
from rlhf_lab.rl.kl import kl_k3
from rlhf_lab.rl.losses import clipped_value_loss, policy_loss
from rlhf_lab.rl.rollout import Rollout, response_forward
from rlhf_lab.rl.step_metrics import UPDATE_STATS


def update_policy(
    stage: Any,
    batch: Rollout,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor | None,
    old_values: torch.Tensor | None,
    beta: float,
) -> torch.Tensor:
    """Clipped-surrogate (+ value, + GRPO's KL) updates of `stage`'s policy; returns the stats per minibatch."""
    cfg = stage.config
    n = batch.response_ids.shape[0]
    # All shuffles drawn up front: no host-to-device copies inside the loop.
    order = torch.stack([torch.randperm(n) for _ in range(cfg.num_epochs)]).to(stage.device)
    stats = torch.zeros(cfg.num_epochs, cfg.num_minibatches, len(UPDATE_STATS), device=stage.device)
    per_row = (old_logprobs, ref_logprobs, advantages, returns, old_values)
    with stage.compiled_update():
        _minibatch_steps(stage, batch, order, stats, per_row, beta)
    stage.optimizer.zero_grad(set_to_none=True)
    return stats.cpu()


def _minibatch_steps(
    stage: Any,
    batch: Rollout,
    order: torch.Tensor,
    stats: torch.Tensor,
    per_row: tuple[torch.Tensor | None, ...],
    beta: float,
) -> None:
    """`num_epochs` x `num_minibatches` optimizer steps, their stats written into `stats`."""
    cfg = stage.config
    size = batch.response_ids.shape[0] // cfg.num_minibatches
    for epoch in range(cfg.num_epochs):
        for i in range(cfg.num_minibatches):
            idx = order[epoch, i * size : (i + 1) * size]
            tokens = batch.response_mask[idx].sum().clamp(min=1)
            stage.optimizer.zero_grad(set_to_none=True)
            if stage.uses_cuda_graphs:
                # A new minibatch is a new CUDA-graph generation: the last one's outputs (logits, hidden
                # states) may be overwritten from here on, and nothing reads them again.
                torch.compiler.cudagraph_mark_step_begin()
            for part in idx.chunk(min(cfg.gradient_accumulation_steps, len(idx))):
                weight = batch.response_mask[part].sum() / tokens  # this slice's share of the tokens
                loss, terms = _slice_loss(stage, batch, part, per_row, beta)
                stage.check_finite(loss)
                ranks_continue(stage.name, stage.step_count + 1)
                (loss * weight).backward()
                stats[epoch, i, :-1] += terms * weight
            if stage._world_size > 1:  # data parallel (rlhf_lab.headless under accelerate launch)
                average_gradients(stage.params)
            grad_norm = clip_gradients(stage.params, cfg.max_grad_norm)  # 0 = no clipping, as in every stage
            stage.optimizer.step()
            stats[epoch, i, -1] = grad_norm.float()


def _slice_loss(
    stage: Any,
    batch: Rollout,
    idx: torch.Tensor,
    per_row: tuple[torch.Tensor | None, ...],
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of rows `idx` (masked means over their tokens) and its UPDATE_STATS but grad_norm.

    `per_row`: old log-probs, reference log-probs, advantages, returns and old values (None without a
    value function), one row per rollout.
    """
    cfg = stage.config
    mb = batch.rows(idx)
    old_logprobs, ref_logprobs, advantages, returns, old_values = (
        None if t is None else t[idx] for t in per_row
    )
    mask = mb.response_mask
    with autocast_for(stage.device, cfg.mixed_precision):
        logits, hidden = response_forward(stage.train_policy, mb, with_hidden=stage.value_head is not None)
        values = stage._values(mb, hidden)
    logprobs, entropy = stage._logprobs(logits, mb, with_entropy=True)

    # Clipped surrogate (REINFORCE: the plain importance-weighted gradient).
    pg_loss, ratio, logratio = policy_loss(
        logprobs,
        old_logprobs,
        advantages,
        mask,
        clip_range=cfg.clip_range,
        clipped=cfg.estimator != "reinforce",
    )
    loss = pg_loss

    # Clipped value loss (PPO).
    zero = torch.zeros((), device=mask.device)
    v_loss, v_clipfrac = zero, zero
    if values is not None:
        v_loss, v_clipfrac = clipped_value_loss(values, old_values, returns, mask, cfg.value_clip_range)
        loss = loss + cfg.vf_coef * v_loss

    # GRPO keeps the KL out of the reward and penalises it here, per token (k3).
    if cfg.estimator == "grpo" and beta > 0:
        loss = loss + beta * masked_mean(kl_k3(logprobs, ref_logprobs), mask)
    if cfg.ent_coef > 0:
        loss = loss - cfg.ent_coef * masked_mean(entropy, mask)

    with torch.no_grad():
        clipfrac = masked_mean(((ratio - 1).abs() > cfg.clip_range).float(), mask)
        terms = torch.stack(
            [
                pg_loss,
                v_loss,
                loss,
                masked_mean(entropy, mask),
                masked_mean(0.5 * logratio**2, mask),
                clipfrac,
                masked_mean(ratio, mask),
                v_clipfrac,
            ]
        ).detach()
    return loss, terms
