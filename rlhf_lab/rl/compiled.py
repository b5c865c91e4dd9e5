"""Regional compilation of the update: torch.compile each transformer block, not the whole model.

A causal LM is a stack of identical blocks (GPT-2's `transformer.h`, Llama's `model.layers`). Compiled
one by one they share one compiled graph: dynamo traces and inductor compiles a block once, and every
other block reuses it (the blocks' parameters are graph inputs). Compiling the SmolLM2-135M shape's
forward + backward from a cold cache took 131 s whole and 17 s block by block on a 2-core CPU, with
the same step time after (bench/compile_time.py); PyTorch's recipe "Reducing torch.compile cold start
compilation time with regional compilation" describes the idea.

The compiled blocks are switched on only inside `active()`, i.e. during the update's minibatches:
sampling (which hands each block a KV cache, so a compiled block would recompile per layer) and the
no-grad forwards run the plain blocks.

    >>> regional = RegionalCompile(policy)          # finds the blocks; compiles lazily
    >>> with regional.active():
    ...     loss = loss_of(policy(input_ids))       # the blocks run compiled
    >>> loss.backward()                             # the compiled backward
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def repeated_blocks(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The model's largest list of identical blocks (by parameter count), or None if it has none."""
    best, best_size = None, 0
    for module in model.modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) < 2:
            continue
        if len({type(block) for block in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if size > best_size:
            best, best_size = module, size
    return best


class RegionalCompile:
    """torch.compile'd calls for each block of `model`, switched on by `active()`.

    Each block's call goes through `nn.Module._compiled_call_impl`, the hook `nn.Module.compile()` sets
    (torch/nn/modules/module.py, torch 2.2 and later), set here only for the duration of `active()`.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        blocks = repeated_blocks(model)
        if blocks is None:
            raise ValueError(f"{type(model).__name__} has no list of identical blocks to compile one by one.")
        self.blocks = list(blocks)
        self._calls: list | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if self._calls is None:
            # dynamic=True: new sequence lengths reuse the graph instead of compiling another one.
            self._calls = [torch.compile(b._call_impl, dynamic=True) for b in self.blocks]
        for block, call in zip(self.blocks, self._calls):
            block._compiled_call_impl = call
        try:
            yield
        finally:
            for block in self.blocks:
                block._compiled_call_impl = None
