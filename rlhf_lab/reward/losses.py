"""The reward model's loss: Bradley-Terry on pairs, or the InstructGPT ranking loss on items.

    >>> from rlhf_lab.reward.losses import pairwise_loss
    >>> pairwise_loss(r_chosen, r_rejected)                  # -log sigmoid(r_c - r_r), averaged
    >>> pairwise_loss(r_chosen, r_rejected, target, margin, groups)

Bradley-Terry (Bradley & Terry 1952; Ouyang et al. 2022, arXiv:2203.02155, eq. 1) with soft targets
and margins (Touvron et al. 2023, Llama 2, arXiv:2307.09288, eq. 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    target: torch.Tensor | None = None,
    margin: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """BCE(sigmoid(r_c - r_r - margin), target), averaged over pairs, or over groups of pairs.

    With `groups` (an item index per pair) each group's pair losses are averaged first and the
    groups then weigh equally: the InstructGPT ranking loss.
    """
    logits = chosen - rejected
    if margin is not None:
        logits = logits - margin
    if target is None:
        target = torch.ones_like(logits)
    per_pair = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if groups is None:
        return per_pair.mean()
    _, inverse = torch.unique(groups, return_inverse=True)
    n_groups = int(inverse.max()) + 1
    sums = torch.zeros(n_groups, dtype=per_pair.dtype, device=per_pair.device).index_add(0, inverse, per_pair)
    counts = torch.bincount(inverse, minlength=n_groups).to(per_pair.dtype)
    return (sums / counts).mean()
