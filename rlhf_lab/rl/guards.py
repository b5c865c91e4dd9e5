"""What stops an RL step from going wrong: input checks, the KL guard, dropout and memory.

>>> prompts = check_prompts(prompts)                 # a clear error for empty prompt lists
>>> check_lengths(policy, prompt_tokens, max_new_tokens=24)
>>> with dropout_off(policy, value_model): ...       # the first PPO ratio is exactly 1
>>> warned = check_kl(mean_kl, config, name="ppo", warned=warned)
"""

from __future__ import annotations

import contextlib
import gc
import threading
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from rlhf_lab.errors import StageError
from rlhf_lab.generation import prompt_list
from rlhf_lab.notices import KLWarning


def check_prompts(prompts: Any) -> list[str]:
    """The prompts as a list of non-empty strings, or a TypeError/ValueError naming the bad one.

    generation.prompt_list's checks, then RL's own: at least one prompt, and text only (reward
    models and judges score a text prompt with its response, so a chat conversation is refused).
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string: pass [prompt].")
    prompts = prompt_list(prompts)
    if not prompts:
        raise ValueError("The prompt list is empty: RL needs prompts to sample responses for.")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(
                f"prompt {i} is a chat conversation; RL takes each prompt as text (reward models and "
                "judges score a text prompt with its response): pass the user message's text."
            )
    return prompts


def check_lengths(model: torch.nn.Module, prompt_tokens: list[list[int]], max_new_tokens: int) -> None:
    """ValueError when the longest prompt plus `max_new_tokens` exceeds the model's positions."""
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    longest = max(len(t) for t in prompt_tokens)
    if limit is not None and longest >= limit:
        raise ValueError(
            f"The longest prompt is {longest} tokens, which leaves no room for a response in the model's "
            f"{limit} positions. Shorten the prompts to fewer than {limit} tokens (minus max_new_tokens)."
        )
    if limit is not None and longest + max_new_tokens > limit:
        raise ValueError(
            f"The longest prompt is {longest} tokens; with max_new_tokens={max_new_tokens} that is more "
            f"than the model's {limit} positions. Lower max_new_tokens to at most {limit - longest} or shorten "
            "the prompts."
        )


def check_kl(mean_kl: float, config: Any, *, name: str, warned: bool) -> bool:
    """Warn once (main thread, a KLWarning) above `config.kl_warning`; StageError above `config.kl_limit`.

    Returns whether the warning has now been given. The background thread only flags rows
    (objective/kl_warning), since a warning there would print into whichever cell runs next.
    """
    if mean_kl > config.kl_warning and not warned and threading.current_thread() is threading.main_thread():
        warned = True
        warnings.warn(
            f"KL to the reference is {mean_kl:.1f} nats per answer, above the alarm level of "
            f"{config.kl_warning:g}: {name}'s policy has moved far from where it started. Training goes on. "
            "This often means reward hacking: check that the gold score still rises with the reward, and "
            "read a few answers (stage.samples()).",
            KLWarning,
            stacklevel=2,
        )
    if config.kl_limit is not None and mean_kl > config.kl_limit:
        raise StageError(
            f"{name}: KL to the reference is {mean_kl:.2f} nats per sequence, above kl_limit="
            f"{config.kl_limit}. Stopped before updating (the policy is unchanged); the samples are in "
            "stage.samples(). To go on: raise beta (set(beta=...)), lower the learning rate, or raise kl_limit."
        )
    return warned


@contextlib.contextmanager
def dropout_off(*modules: torch.nn.Module | None) -> Iterator[None]:
    """Eval mode for the whole step: dropout would make the first ratio differ from 1."""
    present = [m for m in modules if m is not None]
    modes = [m.training for m in present]
    for m in present:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(present, modes):
            m.train(mode)


def out_of_memory_error(
    exc: BaseException, name: str, phase: str, step: int, config: Any, optimizer: Any, device: torch.device
) -> StageError:
    """Free what the failed step held and explain what to change (the stage is then paused)."""
    traceback.clear_frames(exc.__traceback__)  # drop the step's tensors held by the traceback
    optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    cfg = config
    partial = " Some minibatch updates of this step may have been applied." if phase == "update" else ""
    return StageError(
        f"{name}: out of memory during {phase} at step {step} "
        f"(batch_size={cfg.batch_size} x {cfg.k} samples, max_new_tokens={cfg.max_new_tokens}).{partial} "
        f"The stage is paused and memory was freed. Lower batch_size (e.g. set(batch_size="
        f"{max(cfg.num_minibatches, cfg.batch_size // 2)})) or max_new_tokens, raise "
        f"gradient_accumulation_steps (now {cfg.gradient_accumulation_steps}: same update, less memory), "
        "set eval_batch_size, "
        "train LoRA adapters (lora=True) to save optimizer memory, or free the finished stages this "
        "kernel still holds (old_stage.release() keeps their curves)."
    )
