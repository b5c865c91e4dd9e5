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

import itertools
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


def load_preferences(task: str, *, disjoint: bool = False) -> list[dict[str, Any]]:
    """Rated pairs of SmolLM2 responses: prompt, responses [a, b], judgements {rater: "A"|"B"|"tie"},
    raters, gold_scores [a, b] and the generation settings.

    Each train prompt has four responses, rated in every pairing (6 pairs, 1,800 in all). `disjoint=True`
    keeps the pairs in which no response appears twice (2 per prompt, the first 600): what agreement
    statistics over a panel, or a lab that wants one vote per response, should read.
    """
    rows = _read(task, "preferences")
    if not disjoint:
        return rows
    used: dict[str, set[str]] = {}
    kept = []
    for row in rows:
        seen = used.setdefault(row["prompt"], set())
        if not seen & set(row["responses"]):
            seen.update(row["responses"])
            kept.append(row)
    return kept


def load_rankings(task: str) -> list[dict[str, Any]]:
    """k-way rankings: prompt, responses (k), ranking (indices into responses, best first), gold_scores."""
    return _read(task, "rankings")


def ranking_pairs(task: str) -> list[dict[str, Any]]:
    """Every two answers of a bundled ranking that the gold judge tells apart, as prompt/chosen/rejected
    (chosen: the higher gold score); for helpful_harmless 139 pairs on 30 prompts. Labs 06 and 07 hold
    these prompts out of training and grade reward models on them (`rm.accuracy_on(pairs)`)."""
    pairs = []
    for row in load_rankings(task):
        answers = list(zip(row["responses"], row["gold_scores"]))
        for (a, score_a), (b, score_b) in itertools.combinations(answers, 2):
            if score_a != score_b:
                chosen, rejected = (a, b) if score_a > score_b else (b, a)
                pairs.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
    return pairs


def load_samples(task: str) -> list[dict[str, Any]]:
    """Every SmolLM2 response drawn for a train prompt (the raw material of pairs and rankings)."""
    return _read(task, "samples")


def load_heldout(task: str) -> list[dict[str, Any]]:
    """The fixed held-out set: pairs of SmolLM2 responses on *test* prompts, rated like the preferences.

    Never used for training. Labs 03 and 05, the benches and the demo grade reward models on it, so
    their accuracies are comparable (labs 06 and 07 grade on `ranking_pairs`). Same fields as
    `load_preferences`.
    """
    return _read(task, "heldout")


def _oriented(rows: list[dict[str, Any]], rater: str, task: str) -> list[dict[str, Any]]:
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


def preference_pairs(task: str, rater: str = "gold") -> list[dict[str, Any]]:
    """`rater`'s pairs as prompt/chosen/rejected (the layout TRL's reward and DPO trainers read); ties dropped."""
    return _oriented(load_preferences(task), rater, task)


def heldout_pairs(task: str, rater: str = "gold") -> list[dict[str, Any]]:
    """The held-out set as prompt/chosen/rejected by `rater` (default: the gold judge); ties dropped."""
    return _oriented(load_heldout(task), rater, task)


CROWD = ("noisy-1", "noisy-2", "noisy-3")
"""The bundled panel's three crowd raters: each flips the gold verdict 20% of the time."""


def crowd_pairs(task: str, raters: tuple[str, ...] = CROWD) -> list[dict[str, Any]]:
    """Training pairs from several raters' votes: prompt, chosen (the majority's), rejected and target =
    the fraction of decided votes for `chosen` (soft labels). Pairs every rater called a tie are dropped."""
    out = []
    for row in load_preferences(task):
        votes = [row["judgements"][r] for r in raters]
        decided = [v for v in votes if v != "tie"]
        if not decided:
            continue
        share_a = sum(v == "A" for v in decided) / len(decided)
        a, b = row["responses"]
        chosen, rejected, target = (a, b, share_a) if share_a >= 0.5 else (b, a, 1.0 - share_a)
        out.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected, "target": target})
    return out


def rater_agreement_with_gold(rows: list[dict[str, Any]], raters: tuple[str, ...] = CROWD) -> float:
    """Mean share of `raters`' verdicts that match the gold judge's, over pairs gold decides.

    This is the ceiling a reward model trained on those raters is measured against.
    """
    hits = [
        row["judgements"][r] == row["judgements"]["gold"]
        for row in rows
        if row["judgements"]["gold"] != "tie"
        for r in raters
    ]
    return sum(hits) / len(hits) if hits else float("nan")
