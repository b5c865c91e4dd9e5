"""`RewardScorer`: (prompt, response) texts in, one scalar reward each out, from a sequence classifier.

    >>> from rlhf_lab.reward.scorer import RewardScorer
    >>> scorer = RewardScorer(model, tokenizer, max_length=512)
    >>> scorer(["Write a review."], ["Great film!"])       # float32 CPU tensor [n], no gradients
    >>> scorer.score_pairs("Write a review.", ["Great!"], ["Meh."])   # r(a) - r(b)

Text layout: causal-LM backbones score `format_conversation(prompt, response)` (ending with EOS,
read at the last non-pad token); encoders without a chat template (BERT, MiniLM) score the pair
encoding `tokenizer(prompt, response)` read at [CLS]. Batches are padded on the right.
`PairScoring` gives `score_pairs` / `margin` to anything callable as `(prompts, responses) -> tensor`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab.chat import format_conversation
from rlhf_lab.device import autocast_for
from rlhf_lab.progress import progress_bar


class RewardScorer:
    """Turns (prompt, response) texts into rewards with a sequence classifier (one output).

    `scorer(prompts, responses)` returns a float32 CPU tensor of shape [n], computed in eval
    mode without gradients, in length-sorted batches (less padding), minus `offset`.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int = 512,
        batch_size: int = 64,
        offset: float = 0.0,
        mixed_precision: str = "no",
    ) -> None:
        self.model = model
        self.mixed_precision = mixed_precision
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.offset = offset
        if model.config.pad_token_id is None:  # pooling needs it to find the last real token
            model.config.pad_token_id = tokenizer.pad_token_id
        is_encoder = tokenizer.cls_token_id is not None and tokenizer.sep_token_id is not None
        self.layout = "pair" if is_encoder and not getattr(tokenizer, "chat_template", None) else "chat"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        """Right-padded model inputs for (prompt, response) pairs, on the model's device."""
        tok = self.tokenizer
        if self.layout == "pair":
            enc = tok(
                list(prompts),
                list(responses),
                truncation=True,
                max_length=self.max_length,
                padding=True,
                padding_side="right",
                return_tensors="pt",
            )
        else:
            texts = [format_conversation(tok, p, r) for p, r in zip(prompts, responses)]
            # keep the last max_length tokens on purpose (verbose=False: no "longer than the maximum" warning)
            ids = [
                row[-self.max_length :]
                for row in tok(texts, add_special_tokens=False, verbose=False)["input_ids"]
            ]
            enc = tok.pad({"input_ids": ids}, padding=True, padding_side="right", return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def forward(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Raw scores with gradients (the caller chooses train/eval mode)."""
        with autocast_for(self.device, self.mixed_precision):
            return self.model(**self.encode(prompts, responses)).logits[:, 0].float()

    @torch.inference_mode()
    def raw_scores(
        self, prompts: Sequence[str], responses: Sequence[str], batch_size: int | None = None
    ) -> torch.Tensor:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses.")
        size = batch_size or self.batch_size
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
        out = torch.empty(len(prompts), dtype=torch.float32)
        was_training = self.model.training
        self.model.eval()
        bar = progress_bar(len(order), "scoring", show=None if len(order) > size else False)
        try:
            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                scores = self.forward([prompts[i] for i in chunk], [responses[i] for i in chunk])
                out[chunk] = scores.cpu()
                bar.update(len(chunk))
        finally:
            bar.close()
            self.model.train(was_training)
        return out

    def __call__(
        self, prompts: str | Sequence[str], responses: str | Sequence[str], batch_size: int | None = None
    ) -> torch.Tensor:
        prompts, responses = as_lists(prompts, responses)
        return self.raw_scores(prompts, responses, batch_size) - self.offset


def as_lists(prompts: str | Sequence[str], responses: str | Sequence[str]) -> tuple[list[str], list[str]]:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    responses = [responses] if isinstance(responses, str) else list(responses)
    if len(prompts) == 1 and len(responses) > 1:  # one prompt, several responses
        prompts = prompts * len(responses)
    return prompts, responses


class PairScoring:
    """`score_pairs` and `margin` for anything with `__call__(prompts, responses) -> tensor`."""

    def score_pairs(self, prompts: str | Sequence[str], a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
        """Margins r(a) - r(b), shape [n]. Small |margin| = an uncertain pair, worth labelling."""
        prompts, a = as_lists(prompts, a)
        rewards = self(prompts + prompts, a + list(b))
        return rewards[: len(a)] - rewards[len(a) :]

    def margin(self, prompt: str, a: str, b: str) -> float:
        """r(a) - r(b) for one pair."""
        return float(self.score_pairs([prompt], [a], [b])[0])

    def accuracy_on(self, pairs: Sequence[dict[str, str]]) -> float:
        """The share of `pairs` (dicts with prompt, chosen, rejected) in which this reward scores chosen
        higher, counted as `rm.evaluate` counts (`pairwise_accuracy`: an exact tie is half right).

            >>> rm.accuracy_on(bundled.ranking_pairs("helpful_harmless"))   # 0.5 is a coin flip
        """
        from rlhf_lab.reward.evaluation import pairwise_accuracy

        if not pairs:
            raise ValueError("accuracy_on needs at least one pair.")
        prompts, chosen, rejected = (
            [pair[key] for pair in pairs] for key in ("prompt", "chosen", "rejected")
        )
        return pairwise_accuracy(self.score_pairs(prompts, chosen, rejected).numpy())
