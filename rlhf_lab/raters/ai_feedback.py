"""RLAIF: a causal language model judges which response better follows a written constitution.

For each comparison the judge picks a principle and reads the model's next-token log-probabilities
of "A" and "B" after a fixed question; no free text is generated or parsed. By default it also asks
with the responses swapped and averages, because small models have a strong position bias.

    >>> judge = ConstitutionalJudge(model, tokenizer)               # doctest: +SKIP
    >>> judge("How do I boil an egg?", "Boil it 8 minutes.", "No.")  # doctest: +SKIP
    RaterVerdict(judgement=<Judgement.A: 'A'>, rater='constitution', note='principle: ...', ...)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlhf_lab.progress import progress_bar
from rlhf_lab.raters.gold import RaterVerdict
from rlhf_lab.raters.wrappers import unit_random
from rlhf_lab.store.records import Judgement

DEFAULT_CONSTITUTION = (
    "Prefer the response that answers the request directly, without padding or filler.",
    "Prefer the response that gives no help to someone trying to hurt people, property or computer systems.",
    "Prefer the response that admits what it does not know instead of making things up.",
    "Prefer the response that is polite and respectful without flattering the reader.",
    "Prefer the response a careful expert would call clearer and more useful.",
)

JUDGE_TEMPLATE = (
    "Principle: {principle}\n"
    "Prompt: {prompt}\n"
    "Response (A): {a}\n"
    "Response (B): {b}\n"
    "Which response better follows the principle? Answer: ("
)


def _answer_token(tokenizer, letter: str) -> int:
    """The id the tokenizer gives `letter` right after "Answer: (" (the context the judge reads)."""
    probe = "Answer: ("
    base = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe + letter, add_special_tokens=False)["input_ids"]
    if len(full) == len(base) + 1 and full[: len(base)] == base:
        return full[-1]
    # The tokenizer merges "(" with the letter; fall back to the letter on its own.
    return tokenizer(letter, add_special_tokens=False)["input_ids"][0]


class ConstitutionalJudge:
    """Judge pairs against `principles` with a causal LM (`model`, `tokenizer`).

    - `pick`: "round_robin" cycles through the principles call by call; "random" draws one per
      pair from a hash of (seed, pair), the same pair always getting the same principle.
    - `debias`: also ask with A and B swapped and average the two readings.
    - `tie_margin`: a log-probability difference this small or smaller is a tie.
    - `device`: move the model there (default: leave it where it is).
    Responses longer than `max_response_chars` are cut, and a prompt longer than the model's
    context keeps its last tokens (the question and answer slot matter most).
    """

    def __init__(
        self,
        model,
        tokenizer,
        principles: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        *,
        name: str = "constitution",
        pick: str = "round_robin",
        seed: int = 0,
        debias: bool = True,
        tie_margin: float = 0.0,
        batch_size: int = 8,
        max_response_chars: int = 1000,
    ):
        if pick not in ("round_robin", "random"):
            raise ValueError(f"pick must be 'round_robin' or 'random', got {pick!r}")
        self.principles = list(principles or DEFAULT_CONSTITUTION)
        if not self.principles or not all(isinstance(p, str) and p.strip() for p in self.principles):
            raise ValueError("principles must be a non-empty list of non-empty strings")
        self.model = model if device is None else model.to(device)
        self.tokenizer = tokenizer
        self.name, self.source = name, f"ai:{name}"
        self.pick, self.seed, self.debias = pick, seed, debias
        self.tie_margin, self.batch_size, self.max_response_chars = tie_margin, batch_size, max_response_chars
        self._calls = 0
        self._ids = (_answer_token(tokenizer, "A"), _answer_token(tokenizer, "B"))
        if self._ids[0] == self._ids[1]:
            raise ValueError(
                "the tokenizer gives 'A' and 'B' the same token; this judge cannot tell them apart"
            )
        config = getattr(model, "config", None)
        self._max_len = getattr(config, "n_positions", None) or getattr(
            config, "max_position_embeddings", None
        )

    def _principle(self, prompt: str, a: str, b: str) -> str:
        if self.pick == "random":
            index = int(unit_random(self.seed, "principle", prompt, a, b) * len(self.principles))
        else:
            index = self._calls % len(self.principles)
            self._calls += 1
        return self.principles[index]

    def judge_prompt(self, principle: str, prompt: str, a: str, b: str) -> str:
        cut = self.max_response_chars
        return JUDGE_TEMPLATE.format(principle=principle, prompt=prompt, a=a[:cut], b=b[:cut])

    @torch.inference_mode()
    def _answer_logprobs(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), 2) log-probabilities of "A" and "B" as the next token of each text."""
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        was_training = self.model.training
        self.model.eval()
        out = []
        bar = progress_bar(len(texts), "AI judge", show=None if len(texts) > self.batch_size else False)
        try:
            for start in range(0, len(texts), self.batch_size):
                # verbose=False: a judge prompt may be longer than the model's positions; we keep its
                # last _max_len tokens below on purpose, so transformers' length warning is noise here.
                ids = [
                    self.tokenizer(t, verbose=False)["input_ids"]
                    for t in texts[start : start + self.batch_size]
                ]
                if self._max_len:
                    ids = [seq[-self._max_len :] for seq in ids]
                # Right padding: real tokens keep their positions, and causal attention never looks
                # ahead at the pads, so each row reads exactly as it would alone.
                width = max(len(seq) for seq in ids)
                input_ids = torch.tensor([seq + [pad] * (width - len(seq)) for seq in ids], device=device)
                mask = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq in ids], device=device)
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits
                last = torch.tensor([len(seq) - 1 for seq in ids], device=device)
                logprobs = torch.log_softmax(
                    logits[torch.arange(len(ids), device=device), last].float(), dim=-1
                )
                out.append(logprobs[:, list(self._ids)].cpu())
                bar.update(len(ids))
        finally:
            bar.close()
            self.model.train(was_training)
        return torch.cat(out)

    def judge_batch(self, comparisons: Sequence[tuple[str, str, str]]) -> list[RaterVerdict]:
        """Verdicts for many (prompt, response_a, response_b) at once, in batches of `batch_size`."""
        if not comparisons:
            return []
        principles = [self._principle(p, a, b) for p, a, b in comparisons]
        texts = [self.judge_prompt(pr, p, a, b) for pr, (p, a, b) in zip(principles, comparisons)]
        if self.debias:
            texts += [self.judge_prompt(pr, p, b, a) for pr, (p, a, b) in zip(principles, comparisons)]
        lp = self._answer_logprobs(texts)
        n = len(comparisons)
        verdicts = []
        for i, principle in enumerate(principles):
            lp_a, lp_b = lp[i].tolist()
            note = f"principle: {principle} | logp(A)={lp_a:.3f} logp(B)={lp_b:.3f}"
            if self.debias:
                swap_a, swap_b = lp[n + i].tolist()  # here response A sits in slot (B)
                note += f" | swapped: logp(A)={swap_a:.3f} logp(B)={swap_b:.3f}"
                lp_a, lp_b = (lp_a + swap_b) / 2, (lp_b + swap_a) / 2
            diff = lp_a - lp_b
            if abs(diff) <= self.tie_margin:
                judgement = Judgement.TIE
            else:
                judgement = Judgement.A if diff > 0 else Judgement.B
            note = f"{note} | verdict: {judgement.value}"
            verdicts.append(RaterVerdict(judgement, self.name, note, lp_a, lp_b))
        return verdicts

    def __call__(self, prompt: str, response_a: str, response_b: str) -> RaterVerdict:
        return self.judge_batch([(prompt, response_a, response_b)])[0]
