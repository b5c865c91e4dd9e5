"""Reward models: learn r(prompt, response) from preference pairs, score text with it, evaluate it.

    >>> from rlhf_lab.reward import RewardModelStage, RewardEnsemble, RMConfig
    >>> rm = RewardModelStage(model, tokenizer, store, learning_rate=1e-3); rm.fit()

Modules, one job each: pairs (the pair record, reading pairs, the split hash), scorer
(RewardScorer: text -> reward), losses (Bradley-Terry / ranking), config (RMConfig), stage
(RewardModelStage), ensemble (RewardEnsemble), evaluation (accuracy, AUC, ECE, Spearman).
Names are imported lazily, so `import rlhf_lab.reward.evaluation` does not load transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "RMConfig": "config",
    "LOSSES": "config",
    "RewardModelStage": "stage",
    "RewardEnsemble": "ensemble",
    "RewardScorer": "scorer",
    "PairScoring": "scorer",
    "pairwise_loss": "losses",
    "PairRecord": "pairs",
    "as_pair_records": "pairs",
    "read_pairs": "pairs",
    "pair_metrics": "evaluation",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"rlhf_lab.reward.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'rlhf_lab.reward' has no attribute {name!r}")
