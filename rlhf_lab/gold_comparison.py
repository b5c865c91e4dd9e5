"""Policies compared on held-out prompts by the task's gold judge, each figure with its 95% interval.

A mean gold score of 0.74 against 0.69 says nothing until one knows how much it moves from one set of
answers to the next. So each policy answers the same prompts with the same sampling seed, and the table
gives its mean gold score with a 95% interval (normal approximation: mean +- 1.96 standard errors) and
how often the gold judge prefers its answer to the baseline's answer to the same prompt (a tie counts
half), with a 95% Wilson interval. A win rate whose interval includes 0.5 shows no difference.

    >>> from rlhf_lab.gold_comparison import compare_on_gold, verdicts
    >>> models = {"SFT": lab.snapshots["sft"], "PPO": lab.policy}
    >>> table = compare_on_gold(lab, test_prompts, models, judge, samples=2)   # 2 answers per prompt
    >>> print(verdicts(table))       # one line per policy: better than the baseline, worse, or no difference
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rlhf_lab.generation import prompt_of
from rlhf_lab.reward.evaluation import wilson_interval

Z_95 = 1.96


def gold_scores(judge: Any, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
    """The gold judge's score of each answer to its prompt."""
    return [judge.score(prompt, answer) for prompt, answer in zip(prompts, answers, strict=True)]


def wins_over(scores: Sequence[float], baseline_scores: Sequence[float]) -> list[float]:
    """Per prompt: 1 where `scores` beats `baseline_scores`, 0.5 for a tie, else 0."""
    return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline_scores, strict=True)]


def gold_wins(
    judge: Any, prompts: Sequence[str], answers: Sequence[str], baseline: Sequence[str]
) -> list[float]:
    """Per prompt: 1 if the gold judge scores `answers` above `baseline`, 0.5 for a tie, else 0."""
    return wins_over(gold_scores(judge, prompts, answers), gold_scores(judge, prompts, baseline))


def gold_ordered_pairs(
    judge: Any, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]
) -> list[dict[str, str]]:
    """Two answers to each prompt as a pair the gold judge orders: `{"prompt", "chosen", "rejected"}`.
    Ties, identical answers and empty ones are left out. Grades a reward model on answers of one's choice, e.g. the
    policy's own, which a held-out set of other models' answers may not resemble:

        >>> own = gold_ordered_pairs(judge, prompts, lab.generate(prompts, seed=1), lab.generate(prompts, seed=2))
        >>> rm.evaluate(pairs=own, log=False)["accuracy"]
    """
    if not len(prompts):  # no answers, no pairs (a round whose answers were all alike)
        return []
    texts = _prompt_texts(prompts)
    scores = zip(gold_scores(judge, texts, first), gold_scores(judge, texts, second), strict=True)
    pairs = []
    for prompt, a, b, (score_a, score_b) in zip(texts, first, second, scores, strict=True):
        if a.strip() and b.strip() and a != b and score_a != score_b:
            chosen, rejected = (a, b) if score_a > score_b else (b, a)
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return pairs


def mean_interval(values: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """(low, high): mean +- z standard errors; (nan, nan) for fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return (math.nan, math.nan)
    half = z * values.std(ddof=1) / math.sqrt(len(values))
    return (float(values.mean() - half), float(values.mean() + half))


def score_answers(
    judge: Any, prompts: Sequence[str], answers: Mapping[str, Sequence[str]], baseline: str | None = None
) -> pd.DataFrame:
    """The table for answers already generated: `answers` maps each policy's name to its answers to
    `prompts` (the same prompts, in order, with the same seed); `baseline` (default: the first policy)
    is what the others' win rates are measured against."""
    prompts = _prompt_texts(prompts)
    if not answers:
        raise ValueError("score_answers needs the answers of at least one policy.")
    baseline = next(iter(answers)) if baseline is None else baseline
    if baseline not in answers:
        raise ValueError(f"baseline {baseline!r} is not among the policies {list(answers)}.")
    for name, texts in answers.items():
        if len(texts) != len(prompts):
            raise ValueError(f"{name}: {len(texts)} answers for {len(prompts)} prompts; give one per prompt.")
    win_column = f"win rate vs {baseline}"
    scores = {name: gold_scores(judge, prompts, texts) for name, texts in answers.items()}  # each once
    rows = []
    for name, gold in scores.items():
        row = {
            "answers": len(gold),
            "gold score": float(np.mean(gold)),
            "gold score 95% interval": _rounded(mean_interval(gold)),
            win_column: math.nan,
            f"{win_column} 95% interval": None,
        }
        if name != baseline:
            wins = wins_over(gold, scores[baseline])
            row[win_column] = sum(wins) / len(wins)
            row[f"{win_column} 95% interval"] = _rounded(wilson_interval(row[win_column], len(wins)))
        rows.append({"policy": name, **row})
    table = pd.DataFrame(rows).set_index("policy")
    table.attrs["baseline"] = baseline
    return table


def compare_on_gold(
    lab: Any,
    prompts: Sequence[str],
    models: Mapping[str, Any],
    judge: Any,
    *,
    samples: int = 1,
    seed: int = 7,
    baseline: str | None = None,
    **generate_kwargs: Any,
) -> pd.DataFrame:
    """Each of `models` (name -> model; None = the lab's policy now) answers every prompt `samples` times
    with sampling seed `seed`, then `score_answers`. More answers narrow the intervals."""
    prompts = _prompt_texts(prompts)
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a whole number of at least 1, got {samples!r}.")
    asked = list(prompts) * samples
    answers = {
        name: lab.generate(asked, model=model, seed=seed, **generate_kwargs) for name, model in models.items()
    }
    return score_answers(judge, asked, answers, baseline)


def verdicts(table: pd.DataFrame) -> str:
    """One line per policy of a `score_answers` table: its win rate against the baseline, with what the
    interval allows one to say."""
    baseline = table.attrs.get("baseline", table.index[0])
    column = f"win rate vs {baseline}"
    lines = []
    for name, row in table.iterrows():
        if name == baseline:
            continue
        low, high = row[f"{column} 95% interval"]
        if low > 0.5:
            verdict = f"better than {baseline}"
        elif high < 0.5:
            verdict = f"worse than {baseline}"
        else:
            verdict = "no difference shown (the interval includes 50%)"
        lines.append(
            f"{name}: the gold judge prefers its answer to {baseline}'s in {row[column]:.0%} of "
            f"{row['answers']} comparisons (95% interval {low:.0%}-{high:.0%}; a tie counts half): {verdict}."
        )
    return "\n".join(lines)


def _prompt_texts(prompts: Sequence[Any]) -> list[str]:
    """The prompts' texts (a record from `load_prompts` stands for its "prompt"), or a ValueError."""
    if isinstance(prompts, (list, tuple)):
        prompts = [prompt_of(p) for p in prompts]
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(
            f"prompts must be a non-empty list of prompt texts, got {str(prompts)[:80]!r}: one prompt is too few "
            "to compare policies on."
        )
    return list(prompts)


def _rounded(interval: tuple[float, float]) -> tuple[float, float]:
    return (round(interval[0], 3), round(interval[1], 3))
