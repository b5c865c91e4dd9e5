"""Imperfect simulated raters, built around a base rater, and a helper to label a store with them.

Randomness is drawn from a hash of (seed, prompt, responses), not from a running generator, so a
rater gives the same verdict on the same pair whatever the order or thread it is asked in; give
simulated annotators different seeds to make them disagree.

    >>> from rlhf_lab.raters import SentimentJudge
    >>> gold = SentimentJudge()
    >>> crowd = [NoisyRater(gold, flip_prob=0.2, seed=s) for s in range(3)]
    >>> label_with_raters(store, [("Write a review.", a, b)], crowd)        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from rlhf_lab.raters.gold import Rater, RaterVerdict, ScoringRater
from rlhf_lab.store.records import Judgement


def unit_random(seed: int, *parts: str) -> float:
    """A uniform number in [0, 1) determined by the seed and the strings given."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _swapped(judgement: Judgement) -> Judgement:
    return {Judgement.A: Judgement.B, Judgement.B: Judgement.A}.get(judgement, judgement)


def _add_note(verdict: RaterVerdict, name: str, extra: str) -> RaterVerdict:
    note = f"{verdict.note}; {extra}" if verdict.note else extra
    return replace(verdict, rater=name, note=note)


class NoisyRater:
    """Flips the base rater's A/B verdict with probability `flip_prob` (ties stay ties)."""

    def __init__(self, base: Rater, flip_prob: float, seed: int = 0, name: str | None = None):
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.base, self.flip_prob, self.seed = base, flip_prob, seed
        self.name = name or f"{base.name}+noise{flip_prob:g}-s{seed}"

    def __call__(self, prompt: str, response_a: str, response_b: str) -> RaterVerdict:
        verdict = self.base(prompt, response_a, response_b)
        if (
            verdict.judgement is Judgement.TIE
            or unit_random(self.seed, "flip", prompt, response_a, response_b) >= self.flip_prob
        ):
            return replace(verdict, rater=self.name)
        flipped = _swapped(verdict.judgement)
        return _add_note(
            replace(verdict, judgement=flipped), self.name, f"noise flipped {verdict.judgement} to {flipped}"
        )


class CarelessRater:
    """With probability `careless_prob`, clicks A or B at random without reading; otherwise the base verdict.

    Unlike `NoisyRater`, whose flips leave ties alone, a careless click lands on A or B even where the
    base rater would say tie: someone clicking through a queue does not stop for the tie button. On data
    with many ties the difference matters: a NoisyRater at 45% flips still agrees with every careful
    annotator on all the ties, so agreement statistics rate it well above chance.
    """

    def __init__(self, base: Rater, careless_prob: float, seed: int = 0, name: str | None = None):
        if not 0.0 <= careless_prob <= 1.0:
            raise ValueError(f"careless_prob must be in [0, 1], got {careless_prob}")
        self.base, self.careless_prob, self.seed = base, careless_prob, seed
        self.name = name or f"{base.name}+careless{careless_prob:g}-s{seed}"

    def __call__(self, prompt: str, response_a: str, response_b: str) -> RaterVerdict:
        if unit_random(self.seed, "careless", prompt, response_a, response_b) >= self.careless_prob:
            return replace(self.base(prompt, response_a, response_b), rater=self.name)
        click = (
            Judgement.A
            if unit_random(self.seed, "click", prompt, response_a, response_b) < 0.5
            else Judgement.B
        )
        return RaterVerdict(click, rater=self.name, note="careless: clicked without reading")


class LengthBiasedRater:
    """With probability `strength`, prefers the longer response (in characters) whatever the base says.

    `strength=0` is the base rater, `strength=1` a rater who only looks at length: the bias that
    policies learn to exploit by padding their answers.
    """

    def __init__(self, base: Rater, strength: float, seed: int = 0, name: str | None = None):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.base, self.strength, self.seed = base, strength, seed
        self.name = name or f"{base.name}+length{strength:g}-s{seed}"

    def __call__(self, prompt: str, response_a: str, response_b: str) -> RaterVerdict:
        verdict = self.base(prompt, response_a, response_b)
        if (
            len(response_a) == len(response_b)
            or unit_random(self.seed, "length", prompt, response_a, response_b) >= self.strength
        ):
            return replace(verdict, rater=self.name)
        longer = Judgement.A if len(response_a) > len(response_b) else Judgement.B
        return _add_note(
            replace(verdict, judgement=longer), self.name, "length bias: picked the longer response"
        )


_CONTRACTION = re.compile(r"\b\w+'(?:s|t|re|ve|ll|d|m)\b", re.IGNORECASE)
_CASUAL = re.compile(r"\b(?:lol|omg|gonna|wanna|kinda|yeah|hey|awesome|cool|stuff|super)\b", re.IGNORECASE)
_HEDGES = re.compile(
    r"\b(?:might|perhaps|possibly|arguably|it depends|may|likely|generally)\b", re.IGNORECASE
)


def _formality(text: str) -> float:
    return -(len(_CONTRACTION.findall(text)) + len(_CASUAL.findall(text)) + text.count("!"))


def _words(text: str) -> int:
    return len(text.split())


PERSONALITIES = {
    "formal": (_formality, "fewer contractions, casual words and exclamation marks"),
    "terse": (lambda text: -_words(text), "fewer words"),
    "verbose": (_words, "more words"),
    "enthusiastic": (lambda text: text.count("!"), "more exclamation marks"),
    "hedging": (lambda text: len(_HEDGES.findall(text)), "more hedges (might, perhaps, it depends)"),
}


class PersonalityRater(ScoringRater):
    """A rater with a fixed taste, one of `PERSONALITIES` (formal, terse, verbose, enthusiastic, hedging).

    Where the taste does not separate two responses, it defers to `base` if given, else calls a tie.
    """

    def __init__(self, personality: str, base: Rater | None = None, name: str | None = None):
        if personality not in PERSONALITIES:
            raise ValueError(f"unknown personality {personality!r}; choose from {', '.join(PERSONALITIES)}")
        self.personality, self.base = personality, base
        self._feature, self.description = PERSONALITIES[personality]
        self.name = name or f"persona:{personality}"

    def score(self, prompt: str, response: str) -> float:
        return float(self._feature(response))

    def __call__(self, prompt: str, response_a: str, response_b: str) -> RaterVerdict:
        verdict = super().__call__(prompt, response_a, response_b)
        if verdict.judgement is Judgement.TIE and self.base is not None:
            return _add_note(
                self.base(prompt, response_a, response_b), self.name, "no difference in taste: deferred"
            )
        note = f"prefers {self.description}: score A {verdict.score_a:g}, B {verdict.score_b:g}"
        return replace(verdict, note=note)


def _as_item(item: Any) -> tuple[str, list[str]]:
    if isinstance(item, Mapping):
        return item["prompt"], list(item["responses"])
    if len(item) == 2 and not isinstance(item[1], str):
        return item[0], list(item[1])
    return item[0], list(item[1:])


def rank_by_wins(rater: Rater, prompt: str, responses: Sequence[str]) -> list[int]:
    """Rank k responses with a pairwise rater: every pair judged once, order by wins (a tie is half).

    For raters without scores (noisy wrappers, AI judges); k(k-1)/2 calls. Equal wins keep the
    order given.
    """
    wins = [0.0] * len(responses)
    for i in range(len(responses)):
        for j in range(i + 1, len(responses)):
            judgement = rater(prompt, responses[i], responses[j]).judgement
            wins[i] += {Judgement.A: 1.0, Judgement.TIE: 0.5}.get(judgement, 0.0)
            wins[j] += {Judgement.B: 1.0, Judgement.TIE: 0.5}.get(judgement, 0.0)
    return sorted(range(len(responses)), key=lambda i: -wins[i])


def label_with_raters(
    store,
    items: Iterable[Any],
    raters: Sequence[Rater],
    *,
    criterion: str | None = None,
    policy_step: int | None = None,
) -> list[int]:
    """Have every rater judge every item and store the verdicts; returns the new label ids.

    An item is `(prompt, response_a, response_b)`, `(prompt, [responses])` or a dict with
    "prompt" and "responses". Pairs get the rater's A/B/tie; more responses are stored as a ranking
    (the rater's `rank`, else `rank_by_wins`). Each label has annotator = rater name and source
    `rater:<name>` (or the rater's own `source`, e.g. "ai:<name>" for AI judges). A rater with
    `judge_batch` (the AI judge) is asked for all pairs at once. Each rater's labels are committed
    together, so a failure part-way leaves complete raters in the store.
    """
    items = [_as_item(item) for item in items]
    ids = []
    for rater in raters:
        source = getattr(rater, "source", f"rater:{rater.name}")
        records = [None] * len(items)
        pairs = [i for i, (_, responses) in enumerate(items) if len(responses) == 2]
        if hasattr(rater, "judge_batch"):
            verdicts = rater.judge_batch([(items[i][0], *items[i][1]) for i in pairs])
        else:
            verdicts = [rater(items[i][0], *items[i][1]) for i in pairs]
        for i, verdict in zip(pairs, verdicts):
            records[i] = {"judgement": verdict.judgement, "note": verdict.note}
        for i, (prompt, responses) in enumerate(items):
            if records[i] is None:
                rank = getattr(rater, "rank", None) or (lambda p, rs, r=rater: rank_by_wins(r, p, rs))
                records[i] = {"ranking": rank(prompt, responses), "note": None}
            records[i].update(
                prompt=prompt,
                responses=responses,
                annotator=rater.name,
                source=source,
                criterion=criterion,
                policy_step=policy_step,
            )
        ids += store.add_many(records)
    return ids
