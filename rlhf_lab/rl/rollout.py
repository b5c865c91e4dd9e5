"""Rollouts: which prompts, sampling responses, and the forward pass that scores tokens.

    >>> order = PromptOrder(len(prompts), seed=0)
    >>> idx = order.take(16)                                   # seeded, resumable (state_dict)
    >>> batch = sample_responses(policy, tok, ids, mask, settings)   # Rollout with token ids + masks
    >>> logits, hidden = response_forward(policy, batch, with_hidden=True)

Prompts are left-padded, so every response starts at the same column P and one forward over
prompt + response gives the logits of all response tokens at columns P-1 ... P+R-2. Position ids
are computed from the attention mask, exactly as `generate` does, so re-scoring a sample gives
the log-probs it was sampled with.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from rlhf_lab.generation import padding_warning_filtered


class PromptOrder:
    """Shuffled passes over the prompt list; `state_dict()` resumes at the same prompt."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed = n, seed
        self.epoch, self.position = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def take(self, count: int) -> list[int]:
        out = []
        while len(out) < count:
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            out.append(self._perm[self.position])
            self.position += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.n, self.seed, self.epoch, self.position = (
            state["n"],
            state["seed"],
            state["epoch"],
            state["position"],
        )
        self._perm = self._permutation(self.epoch)


def left_pad(
    sequences: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids, attention mask), left-padded to the longest."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


@dataclass
class Rollout:
    """One batch of sampled responses, on the policy's device."""

    prompt_ids: torch.Tensor  # (N, P) left-padded
    prompt_mask: torch.Tensor  # (N, P)
    response_ids: torch.Tensor  # (N, R) pad after EOS
    response_mask: torch.Tensor  # (N, R) float: 1 on tokens up to and including EOS
    ended_with_eos: torch.Tensor  # (N,) bool

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_mask.long()], dim=1)

    @property
    def response_length(self) -> int:
        return self.response_ids.shape[1]

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(1)

    def rows(self, index: torch.Tensor) -> Rollout:
        return Rollout(*(t[index] for t in self.fields()))

    def fields(self) -> tuple[torch.Tensor, ...]:
        return (self.prompt_ids, self.prompt_mask, self.response_ids, self.response_mask, self.ended_with_eos)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, as `generate` does with left padding."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def response_masks(
    response_ids: torch.Tensor, eos_token_id: int | None, stop_on_eos: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask up to and including the first EOS, whether an EOS was emitted) for each response."""
    n, r = response_ids.shape
    if eos_token_id is None:
        is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    else:
        is_eos = response_ids == eos_token_id
    has_eos = is_eos.any(1)
    if not stop_on_eos:
        return torch.ones((n, r), dtype=torch.float32, device=response_ids.device), has_eos
    last = torch.where(has_eos, is_eos.float().argmax(1), torch.full_like(has_eos, r - 1, dtype=torch.long))
    mask = torch.arange(r, device=response_ids.device)[None, :] <= last[:, None]
    return mask.float(), has_eos


@torch.no_grad()
def sample_responses(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    pad_token_id: int,
    eos_token_id: int | None,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_on_eos: bool = True,
    static_cache: bool = False,
) -> Rollout:
    """Sample one response per row with HF `generate` (batched, KV cache, left padding)."""
    base = getattr(model, "generation_config", None) or GenerationConfig()
    config = copy.deepcopy(base)
    config.update(
        do_sample=True,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        min_new_tokens=None,
        max_length=None,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id if stop_on_eos else None,
        return_dict_in_generate=True,
        output_scores=False,
        output_logits=False,
        cache_implementation="static" if static_cache else None,
    )
    with padding_warning_filtered():  # a batch without padding would warn about a mask we did pass
        out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config)
    response_ids = out.sequences[:, prompt_ids.shape[1] :]
    mask, has_eos = response_masks(response_ids, eos_token_id, stop_on_eos)
    return Rollout(prompt_ids, prompt_mask, response_ids, mask, has_eos)


def response_forward(
    model: torch.nn.Module, batch: Rollout, *, with_hidden: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N, R, V) for the response tokens and, optionally, the matching last hidden states (N, R, H).

    Only the response's R logits are computed (`logits_to_keep`), never the prompt's.
    """
    attention_mask = batch.attention_mask
    r = batch.response_length
    out = model(
        input_ids=batch.input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        output_hidden_states=with_hidden,
        logits_to_keep=r + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1]
    hidden = out.hidden_states[-1][:, -(r + 1) : -1] if with_hidden else None
    return logits, hidden


def decode_responses(tokenizer, batch: Rollout) -> list[str]:
    """Response text up to EOS, special tokens removed (what the reward and the user see)."""
    ids = batch.response_ids.tolist()
    lengths = batch.lengths.long().tolist()
    texts = tokenizer.batch_decode([row[:n] for row, n in zip(ids, lengths)], skip_special_tokens=True)
    return [t.strip() for t in texts]


def in_chunks(batch: Rollout, rows: int | None, run: Callable[[Rollout], tuple]) -> tuple:
    """run(part) over row chunks of `batch` (all at once when rows is None), outputs concatenated."""
    n = batch.response_ids.shape[0]
    if rows is None or rows >= n:
        return run(batch)
    parts = [
        run(batch.rows(torch.arange(s, min(s + rows, n), device=batch.response_ids.device)))
        for s in range(0, n, rows)
    ]
    return tuple(None if p[0] is None else torch.cat(p) for p in zip(*parts))
