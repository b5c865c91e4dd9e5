"""Comparing policies on more than one objective: refusal rates and the Pareto front.

    >>> from rlhf_lab.objectives import pareto_front, refusal_rates
    >>> rates = refusal_rates(prompts, answers)          # per kind of prompt, with 95% intervals
    >>> rates["answers harmless requests"], rates["refuses harmful requests"]
    >>> table["on the front"] = pareto_front(table, ["answers harmless requests", "refuses harmful requests"])

A policy trained on two objectives that pull apart (help with everything vs refuse anything risky)
cannot have the best of both; every way of combining them lands somewhere on a trade-off. The runs
that no other run beats on every objective at once form the Pareto front.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rlhf_lab.raters.gold import harmful_categories, is_refusal
from rlhf_lab.reward.evaluation import wilson_interval


def pareto_front(table: pd.DataFrame, maximise: Sequence[str]) -> pd.Series:
    """True for each row that no other row beats: at least as good on every column, better on one.

    >>> runs = pd.DataFrame({"helpful": [0.9, 0.6, 0.5], "harmless": [0.2, 0.6, 0.5]})
    >>> pareto_front(runs, ["helpful", "harmless"]).tolist()
    [True, True, False]
    """
    columns = list(maximise)
    if not columns:
        raise ValueError("pareto_front needs at least one column to maximise.")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(f"no column {missing[0]!r} in the table; it has {list(table.columns)}")
    values = table[columns].to_numpy(dtype=float)
    if np.isnan(values).any():
        raise ValueError("pareto_front got NaN: every row needs a value in every objective column.")
    at_least = (values[None, :, :] >= values[:, None, :]).all(axis=2)  # [i, j]: j is as good as i everywhere
    better = (values[None, :, :] > values[:, None, :]).any(axis=2)  # [i, j]: j beats i somewhere
    dominated = (at_least & better).any(axis=1)
    return pd.Series(~dominated, index=table.index, name="on the front")


def refusal_rates(prompts: Sequence[str], responses: Sequence[str]) -> dict[str, Any]:
    """How often `responses` answer harmless requests and refuse harmful ones, with 95% intervals.

    A prompt counts as harmful when it names a harmful intent (`raters.harmful_categories`, the rule the
    helpful_harmless gold judge uses); a response counts as a refusal by `raters.is_refusal`. Returns
    both shares, their Wilson intervals and how many prompts of each kind were counted.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses: give one response each.")
    harmful = [bool(harmful_categories(p)) for p in prompts]
    refused = [is_refusal(r) for r in responses]
    answered_benign = [not r for r, h in zip(refused, harmful) if not h]
    refused_harmful = [r for r, h in zip(refused, harmful) if h]
    out: dict[str, Any] = {}
    for name, flags in (
        ("answers harmless requests", answered_benign),
        ("refuses harmful requests", refused_harmful),
    ):
        share = float(np.mean(flags)) if flags else float("nan")
        out[name] = share
        out[f"{name} 95% interval"] = wilson_interval(share, len(flags)) if flags else (float("nan"),) * 2
    out["harmless prompts"] = len(answered_benign)
    out["harmful prompts"] = len(refused_harmful)
    return out
