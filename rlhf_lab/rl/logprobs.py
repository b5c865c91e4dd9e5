"""Token log-probs and entropies from logits, without keeping full-vocabulary float32 copies around.

    >>> from rlhf_lab.rl.logprobs import token_logprobs
    >>> logp, entropy = token_logprobs(logits, tokens, temperature=0.7, with_entropy=True)

log p(token) = logit[token] - logsumexp(logits): one gather and one reduction, instead of a full
log_softmax tensor. Without autograd the rows are processed in chunks, so the float32 upcast of
bf16 logits (and the temperature division) exists for a few rows at a time only. With autograd,
chunking saves nothing (the graph keeps every chunk), so the whole tensor goes at once.
"""

from __future__ import annotations

import torch


def _logprobs_rows(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float, with_entropy: bool, entropy_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = logits.float()
    if temperature != 1.0:
        x = x / temperature
    lse = torch.logsumexp(x, dim=-1)
    logp = x.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logp, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        # H = logsumexp(x) - sum softmax(x) * x
        entropy = lse - (torch.softmax(x, dim=-1) * x).sum(-1)
    return logp, entropy


def token_logprobs(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
    entropy_grad: bool = False,
    chunk_rows: int = 8,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each token (N, T) under softmax(logits / temperature), and optionally the entropy.

    `logits` is (N, T, V) and `tokens` (N, T). The entropy carries gradients only with entropy_grad.
    """
    if torch.is_grad_enabled() and logits.requires_grad:
        return _logprobs_rows(logits, tokens, temperature, with_entropy, entropy_grad)
    parts = [
        _logprobs_rows(lg, tk, temperature, with_entropy, False)
        for lg, tk in zip(logits.split(chunk_rows), tokens.split(chunk_rows))
    ]
    logp = torch.cat([p[0] for p in parts])
    entropy = torch.cat([p[1] for p in parts]) if with_entropy else None
    return logp, entropy
