"""Data-parallel helpers: gradient averaging across ranks and a weight checksum.

    >>> from rlhf_lab.rl.distributed import world_size, average_gradients, params_sha256
    >>> loss.backward(); average_gradients(params)   # no-op unless torch.distributed runs > 1 rank
    >>> params_sha256(model.parameters())            # equal on every rank after a synced step

Every rank starts from the same weights and applies the same averaged gradient, so the
weights stay identical without ever being broadcast (DDP's invariant, without the wrapper).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def world_size() -> int:
    """Ranks in the default process group (1 when torch.distributed is not initialised)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce every gradient to the mean over ranks, in one flat buffer (one collective)."""
    n = world_size()
    if n == 1:
        return
    params = [p for p in params if p.requires_grad]
    # A parameter the loss did not touch has grad None on every rank; use zeros so all ranks
    # reduce buffers of the same layout.
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
    flat /= n
    offset = 0
    for p in params:
        size = p.grad.numel()
        p.grad.copy_(flat[offset : offset + size].view_as(p.grad))
        offset += size


def params_sha256(params: Iterable[torch.Tensor]) -> str:
    """SHA-256 of the parameters' bytes, in iteration order."""
    digest = hashlib.sha256()
    for p in params:
        digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
