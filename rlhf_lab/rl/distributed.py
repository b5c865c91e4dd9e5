"""Data-parallel helpers: gradient averaging across ranks, a gather of scores, and a weight checksum.

    >>> from rlhf_lab.rl.distributed import world_size, average_gradients, params_sha256
    >>> loss.backward(); average_gradients(params)   # no-op unless torch.distributed runs > 1 rank
    >>> params_sha256(model.parameters())            # equal on every rank after a synced step

Every rank starts from the same weights and applies the same averaged gradient, so the
weights stay identical without ever being broadcast (DDP's invariant, without the wrapper).

Stopping together: a rank that stops (a NaN loss, the KL limit, a reward error) would leave the
others waiting at the next all-reduce. So a step runs inside `stopping_together()`, which tells the
other ranks when it fails, and every rank calls `ranks_continue()` at the step boundaries (before
the update, before each backward): one all-reduce of a stop flag, after which either every rank
goes on or every rank raises, before changing the weights.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator

import torch

from rlhf_lab.errors import StageError


class OtherRankStopped(StageError):
    """Another rank of a multi-process run stopped; this one stops at the same step boundary."""


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


def _collective_device() -> torch.device:
    """Where a tensor must live for a collective: the rank's GPU under NCCL, else the CPU (gloo)."""
    on_gpu = torch.distributed.get_backend() == "nccl"
    return torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")


def gather_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Every rank's 1-D `values` (the same length on each), concatenated in rank order, on every rank
    (float32, on the CPU); `values` itself with one rank. Every rank must call it."""
    n = world_size()
    if n == 1:
        return values
    local = values.detach().float().reshape(-1).to(_collective_device())
    parts = [torch.empty_like(local) for _ in range(n)]
    torch.distributed.all_gather(parts, local)
    return torch.cat(parts).cpu()


def _stop_flags(stopped: bool) -> int | None:
    """All-reduce a stop flag; the lowest rank that stopped, or None. Every rank must call it."""
    dist = torch.distributed
    n = world_size()
    flag = torch.tensor([n - rank() if stopped else 0], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    top = int(flag.item())
    return None if top == 0 else n - top


def ranks_continue(name: str, step: int) -> None:
    """A step boundary: raise OtherRankStopped if another rank stopped (no-op with one rank)."""
    if world_size() > 1 and (stopped := _stop_flags(False)) is not None:
        raise OtherRankStopped(
            f"{name}: rank {stopped} stopped at step {step} (its own error says why); rank {rank()} "
            "stops at the same point, before changing the weights, so the ranks stay identical."
        )


@contextlib.contextmanager
def stopping_together() -> Iterator[None]:
    """Run a step; if it fails on this rank, tell the others at their next `ranks_continue`."""
    try:
        yield
    except Exception as exc:
        if world_size() > 1 and not isinstance(exc, OtherRankStopped):
            _stop_flags(True)
        raise
