"""Which words drive a reward score: occlusion and integrated gradients, plus safe HTML rendering.

    >>> from rlhf_lab.attribution import occlusion, integrated_gradients, attribution_html
    >>> attr = occlusion(rm_scorer, "Review a film.", "Great great great film, truly great.")
    >>> attr.top(3)                     # the words whose removal costs the most reward
    >>> HTML(attribution_html(attr))    # red = pushes the score up, blue = pulls it down

Occlusion drops one word (or token) at a time and measures the reward change: model-agnostic,
works for any scorer (a reward model, a rule-based judge). Integrated gradients needs a
differentiable reward model with input embeddings; it integrates the gradient of the reward
along a straight path from a baseline embedding to the real one (Sundararajan et al. 2017), so the
attributions sum to r(input) - r(baseline).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rlhf_lab.chat import format_conversation, format_prompt

ScoreFn = Callable[[list[str], list[str]], list[float]]
_WORDS = re.compile(r"\s*\S+")  # each unit keeps its leading whitespace, so units join back to the text


@dataclass(frozen=True)
class Attribution:
    """Per-unit contributions to a score: `units` joined give the response text."""

    units: list[str]
    scores: list[float]
    base: float  # reward of the full response
    method: str = "occlusion"
    reference: float | None = (
        None  # integrated gradients: reward at the baseline (scores sum to base - reference)
    )

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The k units with the largest positive contribution."""
        order = sorted(range(len(self.units)), key=lambda i: -self.scores[i])[:k]
        return [(self.units[i].strip(), self.scores[i]) for i in order]


def reward_model_scorer(model: Any, tokenizer: Any, *, batch_size: int = 16) -> ScoreFn:
    """score(prompts, responses) for a sequence-classification reward model (one scalar head)."""

    @torch.no_grad()
    def score(prompts: list[str], responses: list[str]) -> list[float]:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        out: list[float] = []
        try:
            for start in range(0, len(prompts), batch_size):
                texts = [
                    format_conversation(tokenizer, p, r)
                    for p, r in zip(
                        prompts[start : start + batch_size], responses[start : start + batch_size]
                    )
                ]
                enc = tokenizer(  # right padding: left padding shifts GPT-2 positions
                    texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False
                ).to(device)
                out.extend(model(**enc).logits[:, 0].float().tolist())
        finally:
            if was_training:
                model.train()
        return out

    return score


def as_score_fn(reward: Any) -> ScoreFn:
    """Turn what the lab calls a reward into `score(prompts, responses) -> list[float]`.

    Accepts an object with `score_batch(prompts, responses)`, a judge with `score(prompt, response)`
    (rlhf_lab.raters), anything called as `reward(prompts, responses)` (a reward-model stage, an
    ensemble, a plain function), or an object with a `model` and `tokenizer`.
    """
    if hasattr(reward, "score_batch"):
        return lambda prompts, responses: _floats(reward.score_batch(list(prompts), list(responses)))
    if hasattr(reward, "score"):
        return lambda prompts, responses: [float(reward.score(p, r)) for p, r in zip(prompts, responses)]
    if callable(reward):
        return lambda prompts, responses: _floats(reward(list(prompts), list(responses)))
    model, tokenizer = getattr(reward, "model", None), getattr(reward, "tokenizer", None)
    if isinstance(model, torch.nn.Module) and tokenizer is not None:
        return reward_model_scorer(model, tokenizer)
    raise TypeError(
        f"cannot score with a {type(reward).__name__}: give a reward model stage, a judge or a function"
    )


def _floats(values: Any) -> list[float]:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().reshape(-1).tolist()
    return [float(v) for v in values]


def split_units(text: str, tokenizer: Any = None) -> list[str]:
    """Words (with their leading whitespace) or, with a tokenizer, its tokens as text pieces."""
    if tokenizer is None:
        units = _WORDS.findall(text)
        tail = text[len("".join(units)) :]
        if tail and units:
            units[-1] += tail
        return units or [text]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    units, previous = [], 0
    for i, (_, end) in enumerate(offsets):
        end = len(text) if i == len(offsets) - 1 else end
        if end > previous:
            units.append(text[previous:end])
            previous = end
    return units or [text]


def occlusion(
    reward: Any,
    prompt: str,
    response: str,
    *,
    tokenizer: Any = None,
    replacement: str = "",
) -> Attribution:
    """Contribution of each word (or token) = r(full) - r(response without it).

    `replacement` fills the gap instead of dropping the unit (e.g. "<unk>" or "..."); one batched
    scorer call for all occluded variants.
    """
    score = as_score_fn(reward)
    units = split_units(response, tokenizer)
    variants = []
    for i, unit in enumerate(units):
        lead = unit[: len(unit) - len(unit.lstrip())]
        filler = lead + replacement if replacement else ""
        text = ("".join(units[:i]) + filler + "".join(units[i + 1 :])).strip()
        variants.append(text or replacement or "...")  # scorers reject empty text
    scores = score([prompt] * (len(variants) + 1), [response, *variants])
    base = float(scores[0])
    return Attribution(units, [base - float(s) for s in scores[1:]], base, "occlusion")


def integrated_gradients(
    model: Any,
    tokenizer: Any,
    prompt: str,
    response: str,
    *,
    steps: int = 32,
    baseline: str = "zeros",
) -> Attribution:
    """Integrated gradients of the reward w.r.t. the response tokens' input embeddings.

    `baseline`: "zeros" (all-zero embeddings) or "pad" (the pad token's embedding). The prompt
    tokens keep their real embeddings, so only the response is explained.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    prefix = format_prompt(tokenizer, prompt)
    full = format_conversation(tokenizer, prompt, response)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")
    ids = enc["input_ids"]
    offsets = enc["offset_mapping"][0].tolist()
    start, stop = len(prefix), len(prefix) + len(response)
    in_response = torch.tensor([s < stop and e > start for s, e in offsets])
    if not bool(in_response.any()):
        raise ValueError("the response produced no tokens to attribute")
    device = next(model.parameters()).device
    ids = ids.to(device)
    embed = model.get_input_embeddings()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            real = embed(ids)
            if baseline == "pad":
                pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
                base_embed = embed(torch.full_like(ids, pad))
            elif baseline == "zeros":
                base_embed = torch.zeros_like(real)
            else:
                raise ValueError(f"baseline must be 'zeros' or 'pad', got {baseline!r}")
            mask = in_response.to(device)[None, :, None]
            base_embed = torch.where(mask, base_embed, real)  # prompt stays real
        total = torch.zeros_like(real)
        alphas = (torch.arange(steps, dtype=real.dtype, device=device) + 0.5) / steps  # midpoint rule
        for alpha in alphas:
            point = (base_embed + alpha * (real - base_embed)).detach().requires_grad_(True)
            reward = model(inputs_embeds=point, attention_mask=torch.ones_like(ids)).logits[0, 0]
            (grad,) = torch.autograd.grad(reward, point)
            total += grad
        contributions = ((real - base_embed) * total / steps).sum(-1)[0]
        with torch.no_grad():
            ones = torch.ones_like(ids)
            base_score = float(model(inputs_embeds=real, attention_mask=ones).logits[0, 0])
            reference = float(model(inputs_embeds=base_embed, attention_mask=ones).logits[0, 0])
    finally:
        if was_training:
            model.train()
    units, scores = [], []
    for (s, e), flag, value in zip(offsets, in_response.tolist(), contributions.tolist()):
        if flag:
            units.append(full[max(s, start) : min(e, stop)])
            scores.append(value)
    return Attribution(units, scores, base_score, "integrated gradients", reference)


def attribution_html(attr: Attribution, *, max_abs: float | None = None) -> str:
    """The response as colored spans: red pushes the reward up, blue pulls it down.

    Every piece of text is escaped (html.escape), so model output can never inject markup.
    """
    scale = max_abs or max((abs(s) for s in attr.scores), default=0.0) or 1.0
    spans = []
    for unit, value in zip(attr.units, attr.scores):
        strength = min(abs(value) / scale, 1.0)
        rgb = "214,39,40" if value > 0 else "31,119,180"
        title = html.escape(f"{value:+.4f}", quote=True)
        spans.append(
            f'<span title="{title}" style="background:rgba({rgb},{0.08 + 0.6 * strength:.3f});'
            f'border-radius:3px;white-space:pre-wrap">{html.escape(unit)}</span>'
        )
    head = html.escape(f"{attr.method}: reward {attr.base:+.3f}")
    return (
        '<div class="rl-attribution" style="line-height:1.9;font-family:var(--jp-content-font-family)">'
        f'<div style="font-size:11px;color:var(--jp-ui-font-color2)">{head} · red raises it, blue lowers it</div>'
        f"{''.join(spans)}</div>"
    )
