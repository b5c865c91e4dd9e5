"""Where the labeller's items come from: lists, RL samples, active learning, files.

An item is a dict `{"prompt": str, "responses": [str, ...]}` plus optional metadata
(`source`, `policy_step`). Every source ends up as a list of such dicts that
`PairLabeller.add(items)` appends to its queue; sources that can produce more on demand
(`StageSource`, `ActiveLearningSource`) have `next(n)`, which the labeller calls when its queue
runs dry.

    >>> from rlhf_lab.active import as_items, StageSource, ActiveLearningSource
    >>> as_items([{"prompt": "Hi", "responses": ["Hello!", "Go away."]}])
    >>> as_items(ppo.samples(8), generate=policy_generator(ppo))  # RL samples: paired by prompt
    >>> source = StageSource(ppo, n=8)                              # pairs grouped by prompt
    >>> source = ActiveLearningSource(candidates, rm_scorer, strategy="uncertainty")
    >>> labeller = PairLabeller(store, source)
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rlhf_lab.agreement import is_missing

Item = dict[str, Any]
# scorer(prompts, responses) -> one reward per (prompt, response); see attribution.as_score_fn
Scorer = Callable[[list[str], list[str]], Sequence[float]]
# generate(prompt, n) -> n more responses to the prompt, e.g. lambda p, n: lab.generate([p] * n)
Generate = Callable[[str, int], list[str]]
STRATEGIES = ("uncertainty", "disagreement", "random")
GENERATION_KEYS = ("max_new_tokens", "temperature", "top_k", "top_p")


class QueueSource(Protocol):
    def next(self, n: int) -> list[Item]: ...


def normalise_item(obj: Mapping[str, Any], *, k: int | None = None) -> Item:
    """A checked item dict from `{"prompt", "responses"}`, `{"prompt", "chosen", "rejected"}` or `{"prompt", "a", "b"}`.

    Raises ValueError naming what is missing, so a bad queue fails when it is added, not mid-session.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"an item must be a dict with prompt and responses, got {type(obj).__name__}")
    if "prompt" not in obj:
        raise ValueError(f"item has no 'prompt' (keys: {sorted(obj)})")
    if "responses" in obj:
        responses = obj["responses"]
        if isinstance(responses, (str, bytes)) or not isinstance(responses, (list, tuple)):
            raise ValueError(f"item 'responses' must be a list of texts, got {type(responses).__name__}")
        responses = list(responses)
    elif "chosen" in obj and "rejected" in obj:
        responses = [obj["chosen"], obj["rejected"]]
    elif "a" in obj and "b" in obj:
        responses = [obj["a"], obj["b"]]
    else:
        raise ValueError(f"item has no 'responses' (or chosen/rejected); keys: {sorted(obj)}")
    prompt = obj["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("item prompt must be non-empty text")
    if len(responses) < 2 or not all(isinstance(r, str) and r.strip() for r in responses):
        raise ValueError("an item needs at least two non-empty text responses")
    if len(set(responses)) != len(responses):
        raise ValueError("an item's responses must differ")
    if k is not None and len(responses) != k:
        raise ValueError(f"this labeller shows {k} responses per item, got {len(responses)}")
    item: Item = {"prompt": prompt, "responses": responses}
    for key in ("source", "policy_step", "meta"):
        if obj.get(key) is not None:
            item[key] = obj[key]
    step = item.get("policy_step")
    if isinstance(step, float) and step.is_integer():  # 3.0 from a DataFrame column with gaps
        item["policy_step"] = int(step)
    return item


def is_sample(obj: Any) -> bool:
    """An RL sample (`{"prompt", "response", ...}`, one answer, as `stage.samples()` gives), not an item."""
    return (
        isinstance(obj, Mapping)
        and "response" in obj
        and not any(key in obj for key in ("responses", "chosen", "a"))
    )


def as_items(source: Any, n: int = 16, *, k: int = 2, generate: Generate | None = None) -> list[Item]:
    """Items from a list of dicts (or a DataFrame of them), a file path, or anything with `next(n)` /
    `samples(n)`.

    RL samples (one answer each: an RL stage, or the list its `samples(n)` returns) are grouped by
    prompt into items of `k` answers; a prompt with fewer gets more from `generate(prompt, n)`
    (for a stage, its own policy with its sampling settings).
    """
    if source is None:
        return []
    if isinstance(source, (str, os.PathLike)):
        return items_from_file(source)
    if hasattr(source, "next") and callable(source.next):
        return [normalise_item(x) for x in source.next(n)]
    if hasattr(source, "samples") and callable(source.samples):
        samples = list(source.samples(n))
        more = policy_generator(source) or generate  # the stage's own sampling settings first
        return items_from_samples(
            samples, k=k, generate=more, policy_step=getattr(source, "step_count", None)
        )
    if isinstance(source, Mapping):
        return [normalise_item(source)]
    if hasattr(source, "columns") and callable(getattr(source, "to_dict", None)):  # a DataFrame: its rows
        # an empty cell (NaN, e.g. no policy step) is a missing field, not a value
        source = [{k: v for k, v in row.items() if not is_missing(v)} for row in source.to_dict("records")]
    if not isinstance(source, Iterable):
        raise TypeError(
            "items must be a list of {'prompt', 'responses'} dicts, a file path, or a source with "
            f"next(n) / samples(n); got {type(source).__name__}."
        )
    rows = list(source)
    if rows and all(is_sample(row) for row in rows):
        return items_from_samples(rows, k=k, generate=generate)
    return [normalise_item(x) for x in rows]


def items_from_samples(
    samples: list[Mapping[str, Any]],
    *,
    k: int = 2,
    generate: Generate | None = None,
    policy_step: int | None = None,
) -> list[Item]:
    """`pairs_from_samples`, with an error that says what to do when samples give no item at all."""
    items = pairs_from_samples(samples, k=k, generate=generate, policy_step=policy_step)
    if samples and not items:
        raise ValueError(
            f"{len(samples)} RL sample(s) give no item of {k} different answers to one prompt. Pass "
            "generate=lambda prompt, n: lab.generate([prompt] * n) to draw more answers for each prompt "
            "(lab.label() does), or sample several answers per prompt (samples_per_prompt)."
        )
    return items


def items_from_file(path: str | os.PathLike) -> list[Item]:
    """Unlabelled items from a JSONL/Parquet file, read with the store's importer (`rlhf_lab.store.io.read_rows`).

    Rows carry `prompt` + `responses`, or `prompt` + `chosen`/`rejected` (shown in a random order, so
    position does not give the old label away).
    """
    from rlhf_lab.store.io import read_rows

    rng = random.Random(0)
    items = []
    for number, row in read_rows(path):
        try:
            item = normalise_item(row)
        except ValueError as exc:
            raise ValueError(f"{Path(path).name}, row {number}: {exc}") from None
        if "responses" not in row:
            rng.shuffle(item["responses"])
        item.setdefault("source", f"import:{Path(path).stem}")
        items.append(item)
    return items


def pairs_from_samples(
    samples: Iterable[Mapping[str, Any]],
    *,
    k: int = 2,
    generate: Generate | None = None,
    policy_step: int | None = None,
    seed: int = 0,
) -> list[Item]:
    """Group `{"prompt", "response"}` samples by prompt into items of `k` distinct responses.

    Prompts with fewer than k distinct responses get more from `generate(prompt, n)` when it is
    given (e.g. `lambda p, n: lab.generate([p] * n)`), and are dropped otherwise. Each item's
    `policy_step` is `policy_step`, else the latest `step` among its prompt's samples.
    """
    by_prompt: dict[str, list[str]] = {}
    steps: dict[str, int] = {}
    for sample in samples:
        prompt = sample["prompt"]
        responses = by_prompt.setdefault(prompt, [])
        text = sample["response"]
        if isinstance(text, str) and text.strip() and text not in responses:
            responses.append(text)
        if sample.get("step") is not None:
            steps[prompt] = max(int(sample["step"]), steps.get(prompt, 0))
    rng = random.Random(seed)
    items = []
    for prompt, responses in by_prompt.items():
        if len(responses) < k and generate is not None:
            extra = [r for r in generate(prompt, k - len(responses)) if r.strip() and r not in responses]
            responses = responses + extra
        rng.shuffle(responses)
        step = policy_step if policy_step is not None else steps.get(prompt)
        for start in range(0, len(responses) - k + 1, k):
            item: Item = {"prompt": prompt, "responses": responses[start : start + k], "source": "policy"}
            if step is not None:
                item["policy_step"] = int(step)
            items.append(item)
    return items


def policy_generator(stage: Any) -> Generate | None:
    """`(prompt, n) -> n responses` from `stage.policy` with the stage's sampling settings, or None.

    Used to complete pairs for stages that sample one response per prompt (PPO). Reads
    `stage.policy` at call time, so it always samples the current policy; during a background run
    it samples between two steps, never mid-update (`rlhf_lab.generation.model_lock`).
    """
    if getattr(stage, "policy", None) is None or getattr(stage, "tokenizer", None) is None:
        return None
    config = getattr(stage, "config", None)
    settings = {
        key: getattr(config, key) for key in GENERATION_KEYS if getattr(config, key, None) is not None
    }

    def more(prompt: str, n: int) -> list[str]:
        from rlhf_lab.generation import generate

        return generate(stage.policy, stage.tokenizer, [prompt] * n, **settings)

    return more


class StageSource:
    """Pairs from an RL stage's recent samples: `next(n)` calls `stage.samples(n)` and groups by prompt."""

    def __init__(
        self,
        stage: Any,
        n: int = 16,
        *,
        k: int = 2,
        generate: Generate | None = None,
    ) -> None:
        self.stage, self.n, self.k, self.generate = stage, n, k, generate

    def next(self, n: int) -> list[Item]:
        samples = self.stage.samples(max(n, self.n))
        step = getattr(self.stage, "step_count", None)
        return pairs_from_samples(samples, k=self.k, generate=self.generate, policy_step=step)[:n]


class ActiveLearningSource:
    """Picks the candidate pairs worth a human's time next.

    strategy "uncertainty": smallest |r(A) - r(B)| under `scorers[0]` (the reward model is least sure);
    "disagreement": largest spread of the margin across an ensemble of scorers (a list, or a
    `RewardEnsemble`), counting how many members disagree on the sign first; "random": uniform, the baseline to compare against.
    Change `source.strategy` at any time; chosen candidates are not offered again.
    """

    def __init__(
        self,
        candidates: Iterable[Mapping[str, Any]],
        scorers: Scorer | Sequence[Scorer],
        strategy: str = "uncertainty",
        *,
        seed: int = 0,
    ) -> None:
        from rlhf_lab.attribution import as_score_fn

        self.pool = [normalise_item(c, k=2) for c in candidates]
        if hasattr(scorers, "members"):  # a RewardEnsemble: its members are the ensemble
            scorers = list(scorers.members)
        members = list(scorers) if isinstance(scorers, Sequence) else [scorers]
        # reward-model stages, judges with score(prompt, response) and plain functions alike
        self.scorers = [as_score_fn(m) for m in members]
        if not self.scorers:
            raise ValueError("ActiveLearningSource needs at least one scorer")
        self.strategy = strategy
        self._rng = random.Random(seed)

    @property
    def strategy(self) -> str:
        return self._strategy

    @strategy.setter
    def strategy(self, value: str) -> None:
        if value not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {value!r}")
        if value == "disagreement" and len(getattr(self, "scorers", [])) < 2:
            raise ValueError("strategy 'disagreement' needs an ensemble: pass two or more scorers")
        self._strategy = value

    def margins(self, items: Sequence[Item] | None = None) -> np.ndarray:
        """r(A) - r(B) for each item (rows) under each scorer (columns)."""
        items = self.pool if items is None else items
        if not items:
            return np.zeros((0, len(self.scorers)))
        prompts = [it["prompt"] for it in items for _ in (0, 1)]
        texts = [r for it in items for r in it["responses"]]
        columns = []
        for scorer in self.scorers:
            scores = np.asarray(scorer(prompts, texts), dtype=float).reshape(-1, 2)
            columns.append(scores[:, 0] - scores[:, 1])
        return np.stack(columns, axis=1)

    def priorities(self) -> np.ndarray:
        """Higher = label sooner, for each item in the pool under the current strategy."""
        if self.strategy == "random":
            return np.array([self._rng.random() for _ in self.pool])
        margins = self.margins()
        if self.strategy == "uncertainty":
            return -np.abs(margins[:, 0])
        signs = np.sign(margins)
        minority = np.minimum((signs > 0).sum(1), (signs < 0).sum(1))
        return minority * 1e6 + margins.std(axis=1)

    def next(self, n: int) -> list[Item]:
        if not self.pool:
            return []
        order = np.argsort(-self.priorities(), kind="stable")[:n]
        chosen = [self.pool[i] for i in order]
        taken = set(order.tolist())
        self.pool = [item for i, item in enumerate(self.pool) if i not in taken]
        return [{**item, "source": item.get("source", f"active:{self.strategy}")} for item in chosen]

    def __len__(self) -> int:
        return len(self.pool)
