"""`RewardEnsemble`: several reward models scored together (mean, spread, conservative reward).

>>> from rlhf_lab.reward import RewardModelStage
>>> ens = RewardModelStage.ensemble(3, lab.new_reward_backbone, lab.store)
>>> ens.fit(); ens(prompts, responses)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from rlhf_lab.progress import progress_bar
from rlhf_lab.reward.scorer import PairScoring, RewardScorer, as_lists


class RewardEnsemble(PairScoring):
    """Several reward models scored together: mean, spread, and a conservative reward.

        >>> ens = RewardModelStage.ensemble(3, lab.new_reward_backbone, lab.store)
        >>> ens.fit()
        >>> ens(prompts, responses)              # mean - k * std with reduce="conservative"
        >>> ens.disagreement(prompts, responses) # std across members: where to label next

    Members are RewardModelStages, RewardScorers, `(model, tokenizer)` tuples or any callable
    `(prompts, responses) -> tensor [n]`.
    """

    def __init__(self, members: Sequence[Any], *, k: float = 1.0, reduce: str = "mean") -> None:
        if not members:
            raise ValueError("An ensemble needs at least one member.")
        if reduce not in ("mean", "conservative"):
            raise ValueError(f"reduce must be 'mean' or 'conservative', got {reduce!r}")
        self.members = [RewardScorer(*m) if isinstance(m, tuple) else m for m in members]
        self.k = k
        self.reduce = reduce

    def scores(self, prompts: str | Sequence[str], responses: str | Sequence[str]) -> torch.Tensor:
        """Every member's rewards, shape [members, n]."""
        prompts, responses = as_lists(prompts, responses)
        return torch.stack([member(prompts, responses).float().cpu() for member in self.members])

    def mean(self, prompts: str | Sequence[str], responses: str | Sequence[str]) -> torch.Tensor:
        return self.scores(prompts, responses).mean(0)

    def std(self, prompts: str | Sequence[str], responses: str | Sequence[str]) -> torch.Tensor:
        """Standard deviation across members (0 for a single member)."""
        scores = self.scores(prompts, responses)
        return scores.std(0, correction=1) if len(self.members) > 1 else torch.zeros(scores.shape[1])

    def conservative(
        self, prompts: str | Sequence[str], responses: str | Sequence[str], k: float | None = None
    ) -> torch.Tensor:
        """mean - k * std: a reward that is hard to game where members disagree."""
        scores = self.scores(prompts, responses)
        std = scores.std(0, correction=1) if len(self.members) > 1 else torch.zeros(scores.shape[1])
        return scores.mean(0) - (self.k if k is None else k) * std

    def disagreement(self, prompts: str | Sequence[str], responses: str | Sequence[str]) -> torch.Tensor:
        """Per-response std across members: high = the members disagree, a good item to label."""
        return self.std(prompts, responses)

    def __call__(self, prompts: str | Sequence[str], responses: str | Sequence[str]) -> torch.Tensor:
        if self.reduce == "conservative":
            return self.conservative(prompts, responses)
        return self.mean(prompts, responses)

    def fit(self, **kwargs: Any) -> list[dict[str, Any]]:
        """fit() every member that can be fitted; their summaries. A bar counts the members once the
        fits have taken a couple of seconds (`progress=` as in RewardModelStage.fit)."""
        fittable = [m for m in self.members if hasattr(m, "fit")]
        bar = progress_bar(len(fittable), "ensemble fit", show=kwargs.get("progress"))
        summaries = []
        try:
            for member in fittable:
                summaries.append(member.fit(**kwargs))
                bar.update(1)
        finally:
            bar.close()
        return summaries

    def evaluate(self, split: str = "val", **kwargs: Any) -> pd.DataFrame:
        """One row of held-out metrics per member."""
        rows = [m.evaluate(split, **kwargs) for m in self.members if hasattr(m, "evaluate")]
        return pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, pd.DataFrame)} for r in rows])

    def __len__(self) -> int:
        return len(self.members)
