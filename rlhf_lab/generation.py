"""Sampling text from a policy in batches (for notebooks, sample views and data generation).

    >>> from rlhf_lab.generation import generate
    >>> generate(model, tokenizer, ["Write a positive movie review."], max_new_tokens=32)

The RL engine has its own rollout code (it needs token ids and log-probs); this is the plain
text-in, text-out path. It holds `model_lock(model)` while it samples, as a stage's step does while it
trains, so a cell, the playground or a labeller sampling during a background run waits for the step to
end instead of reading half-updated weights or switching dropout on under it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab.chat import format_prompt
from rlhf_lab.hparams import whole_number
from rlhf_lab.progress import progress_bar

MAX_NEW_TOKENS_LIMIT = 2048
_MODEL_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """The one re-entrant lock of `model` (a peft wrapper shares its base model's): stages hold it for a
    step, `generate` while it samples, so neither runs into the other."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(base)
        if lock is None:
            lock = _MODEL_LOCKS[base] = threading.RLock()
        return lock


def check_generation_length(max_new_tokens: int) -> None:
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        raise ValueError(
            f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}, got {max_new_tokens}."
        )


Prompt = str | list[dict[str, str]]
"""One prompt: its text, or a conversation as chat messages ({"role": ..., "content": ...})."""


def is_single_prompt(prompts: Any) -> bool:
    """Whether `prompts` is one prompt (a string, or one conversation of chat messages), not a list.

    A list of prompt records ({"prompt": ..., ...}, as `rlhf_lab.bundled.load_prompts` returns) is a list.
    """
    return isinstance(prompts, str) or (
        isinstance(prompts, list)
        and bool(prompts)
        and all(isinstance(m, dict) for m in prompts)
        and not all("prompt" in m and "role" not in m for m in prompts)
    )


def prompt_of(item: Any) -> Any:
    """A prompt record's prompt (a dict with a "prompt" field, e.g. from `load_prompts`); anything else as it is."""
    return item["prompt"] if isinstance(item, Mapping) and "prompt" in item else item


def prompt_list(prompts: Any) -> list[Prompt]:
    """`prompts` as a list, or a TypeError/ValueError that names the first bad prompt and why.

    Each prompt is non-empty text or a conversation (a non-empty list of {"role", "content"} dicts);
    a prompt record (a dict with a "prompt" field, e.g. from `load_prompts`) stands for its prompt.

        >>> prompt_list(load_prompts("positive_review"))[0]
        'Write a positive review of a family film about a stolen painting.'
    """
    if is_single_prompt(prompts):
        raise TypeError(
            "prompts must be a list of prompts, not one prompt: pass [prompt] (Lab.generate takes either)."
        )
    if isinstance(prompts, (bytes, Mapping)) or not isinstance(prompts, Iterable):
        raise TypeError(
            f"prompts must be a list of prompts (strings or chat conversations), got {type(prompts).__name__}."
        )
    prompts = [prompt_of(p) for p in prompts]
    for i, prompt in enumerate(prompts):
        conversation = (
            isinstance(prompt, list)
            and bool(prompt)
            and all(isinstance(m, Mapping) and {"role", "content"} <= m.keys() for m in prompt)
        )
        if not (isinstance(prompt, str) or conversation):
            raise TypeError(
                f"prompt {i} must be text or a list of chat messages ({{'role': ..., 'content': ...}}), "
                f"got {type(prompt).__name__}: {str(prompt)[:60]!r}"
            )
        if isinstance(prompt, str) and not prompt.strip():
            raise ValueError(f"Empty prompt (prompt {i}): every prompt needs some text.")
    return prompts


class _NoMaskWarning(logging.Filter):
    """Drops transformers' "passing in an `attention_mask`" warning while we sample.

    We always pass the mask, but `generate` (transformers 5) drops it when the batch has no padding
    (all ones); if the model then samples its pad token, GPT-2's forward warns about padding without a
    mask (`PreTrainedModel.warn_if_padding_and_no_attention_mask`), which is not true of our batch.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "attention_mask" not in record.getMessage()


@contextlib.contextmanager
def padding_warning_filtered() -> Iterator[None]:
    """While it lasts, transformers' spurious "passing in an `attention_mask`" warning is dropped
    (`_NoMaskWarning` says why); every other message passes. Used around every `generate` we call."""
    quiet, transformers_logger = _NoMaskWarning(), logging.getLogger("transformers.modeling_utils")
    transformers_logger.addFilter(quiet)
    try:
        yield
    finally:
        transformers_logger.removeFilter(quiet)


GENERATE_BATCH_CPU = 16
GENERATE_BATCH_CUDA = 64
"""Prompts per batch in `generate` when the caller names none. On a GPU a small model's decoding is
launch-bound (bench/README.md, "GPU"): 64 rows cost about what 16 do per token. On the CPU 64 was 1.3x
faster too (smollm2-135m, 2 threads), but the samples a seed gives depend on the batch size and the labs
quote CPU samples, so the CPU keeps 16."""


def default_generate_batch(device: torch.device) -> int:
    """The batch size `generate` uses on `device` when the caller names none."""
    return GENERATE_BATCH_CUDA if device.type == "cuda" else GENERATE_BATCH_CPU


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    *,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    do_sample: bool = True,
    batch_size: int | None = None,
    seed: int | None = None,
) -> list[str]:
    """Responses (text after the prompt, special tokens removed) for each prompt.

    `batch_size` prompts are sampled together (None: `default_generate_batch`). Many prompts get a
    progress bar once sampling has taken a couple of seconds (rlhf_lab.progress)."""
    check_generation_length(max_new_tokens)
    prompts = prompt_list(prompts)
    device = next(model.parameters()).device
    if batch_size is None:
        batch_size = default_generate_batch(device)
    batch_size = whole_number(batch_size, "batch_size", minimum=1)
    with model_lock(model):  # not while a stage's step updates these weights (module docstring)
        was_training = model.training
        model.eval()
        generator_state = None
        if seed is not None:
            generator_state = torch.get_rng_state()
            torch.manual_seed(seed)
        out: list[str] = []
        bar = progress_bar(len(prompts), "sampling", show=None if len(prompts) > batch_size else False)
        try:
            for start in range(0, len(prompts), batch_size):
                texts = [format_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
                enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                sampling = (
                    {"temperature": temperature, "top_k": top_k or None, "top_p": top_p} if do_sample else {}
                )
                with padding_warning_filtered():
                    ids = model.generate(
                        **enc,
                        max_new_tokens=max_new_tokens,
                        do_sample=do_sample,
                        pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id,
                        **sampling,
                    )
                new_tokens = ids[:, enc["input_ids"].shape[1] :]
                out.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
                bar.update(len(texts))
        finally:
            bar.close()
            if was_training:
                model.train()
            if generator_state is not None:
                torch.set_rng_state(generator_state)
        return [text.strip() for text in out]
