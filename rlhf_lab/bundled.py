"""The bundled tasks: prompts, demonstrations, rated preference pairs and rankings as plain dicts.

    >>> from rlhf_lab.bundled import TASKS, load_prompts, load_demos, load_preferences
    >>> sorted(TASKS)
    ['helpful_harmless', 'positive_review']
    >>> prompts = [row["prompt"] for row in load_prompts("positive_review", split="test")]
    >>> demos = load_demos("helpful_harmless")            # [{"prompt": ..., "response": ...}, ...]
    >>> pairs = preference_pairs("positive_review", rater="gold")   # prompt/chosen/rejected

The files live in `rlhf_lab/data/` and are made by `scripts/make_data.py` (see the README there).
Every loader returns a fresh list, so callers may mutate what they get.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Literal

TASKS: dict[str, str] = {
    "positive_review": "Write a positive review of a described movie; gold judge: VADER sentiment of the response.",
    "helpful_harmless": "Answer benign questions helpfully and concisely, refuse harmful requests politely; "
    "gold judge: a rule-based helpful/harmless scorer.",
}

SPLITS = ("train", "test")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise KeyError(f"Unknown task {task!r}. Known tasks: {', '.join(sorted(TASKS))}.")


def _read(task: str, kind: str) -> list[dict[str, Any]]:
    _check_task(task)
    text = resources.files("rlhf_lab.data").joinpath(f"{task}_{kind}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_prompts(task: str, split: Literal["train", "test"] = "train") -> list[dict[str, Any]]:
    """Prompt records (id, task, split, prompt, plus task metadata such as kind/category or genre)."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Known splits: {', '.join(SPLITS)}.")
    return [row for row in _read(task, "prompts") if row["split"] == split]


def load_demos(task: str) -> list[dict[str, Any]]:
    """SFT demonstrations written by templates: records with prompt and response (train prompts only)."""
    return _read(task, "demos")


def load_preferences(task: str) -> list[dict[str, Any]]:
    """Rated pairs of SmolLM2 responses: prompt, responses [a, b], judgements {rater: "A"|"B"|"tie"},
    raters, gold_scores [a, b] and the generation settings."""
    return _read(task, "preferences")


def load_rankings(task: str) -> list[dict[str, Any]]:
    """k-way rankings: prompt, responses (k), ranking (indices into responses, best first), gold_scores."""
    return _read(task, "rankings")


def load_samples(task: str) -> list[dict[str, Any]]:
    """Every SmolLM2 response drawn for a train prompt (the raw material of pairs and rankings)."""
    return _read(task, "samples")


def preference_pairs(task: str, rater: str = "gold") -> list[dict[str, Any]]:
    """`rater`'s pairs as prompt/chosen/rejected (the layout TRL's reward and DPO trainers read); ties dropped."""
    rows = load_preferences(task)
    known = rows[0]["raters"] if rows else []
    if rater not in known:
        raise KeyError(f"Unknown rater {rater!r} for {task!r}. Known raters: {', '.join(known)}.")
    out = []
    for row in rows:
        verdict = row["judgements"][rater]
        if verdict == "tie":
            continue
        a, b = row["responses"]
        chosen, rejected = (a, b) if verdict == "A" else (b, a)
        out.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
    return out
