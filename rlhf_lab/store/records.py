"""The records of the preference store: labels, votes and training pairs.

A `Label` is one annotator's judgement of one item (a prompt and 2..k responses). Every label
can be read as a list of `Vote`s, one per pair of responses it compares, in a canonical orientation
(the two texts in sorted order), so that labels made with the responses shown in different orders
still line up. Votes are what pair expansion (`expand_pairs`) and agreement metrics consume.

    >>> label_item_id("Say hi.", ["hello", "hi"]) == label_item_id("Say hi.", ["hi", "hello"])
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any


class Judgement(str, Enum):
    """What kind of judgement a label holds. Pair verdicts refer to the responses as shown (A = first)."""

    A = "A"
    B = "B"
    TIE = "tie"
    BOTH_BAD = "both_bad"
    RANKING = "ranking"  # a full ranking of k responses, best first (`Label.ranking`)
    LIKERT = "likert"  # a 1-5 score per response (`Label.likert`)

    def __str__(self) -> str:
        return self.value


PAIR_JUDGEMENTS = (Judgement.A, Judgement.B, Judgement.TIE, Judgement.BOTH_BAD)
KNOWN_CRITERIA = ("helpfulness", "harmlessness", "honesty")
SOURCE_PREFIXES = ("rater:", "ai:", "import:")  # plus the bare "human"
LIKERT_RANGE = (1, 5)

_JUDGEMENT_ALIASES = {
    "a": Judgement.A,
    "b": Judgement.B,
    "tie": Judgement.TIE,
    "both_bad": Judgement.BOTH_BAD,
    "both bad": Judgement.BOTH_BAD,
    "both-bad": Judgement.BOTH_BAD,
    "ranking": Judgement.RANKING,
    "likert": Judgement.LIKERT,
}


def label_item_id(prompt: str, responses: Sequence[str]) -> str:
    """A stable id for (prompt, set of responses); independent of the order the responses were shown in."""
    payload = json.dumps([prompt, sorted(responses)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def parse_judgement(value: Judgement | str) -> Judgement:
    """`Judgement` from an enum or a string such as "A", "b", "tie", "both bad"."""
    if isinstance(value, Judgement):
        return value
    if isinstance(value, str) and value.strip().lower() in _JUDGEMENT_ALIASES:
        return _JUDGEMENT_ALIASES[value.strip().lower()]
    allowed = ", ".join(j.value for j in Judgement)
    raise ValueError(f"unknown judgement {value!r} (expected one of {allowed})")


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} is empty")
    return value


def _check_int_list(name: str, value: object, k: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of {k} integers, got {type(value).__name__}")
    items = list(value)
    # bool is an int subclass; True as a rank or score is always a bug upstream.
    if len(items) != k or not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        raise ValueError(f"{name} must be a list of {k} integers (one per response), got {items!r}")
    return tuple(items)


def validate_label(
    prompt: object,
    responses: object,
    judgement: Judgement | str | None = None,
    ranking: Sequence[int] | None = None,
    likert: Sequence[int] | None = None,
) -> tuple[str, tuple[str, ...], Judgement, tuple[int, ...] | None, tuple[int, ...] | None]:
    """Check a label's content and return it normalised; raise ValueError saying what is wrong.

    Pairs take a pair judgement (A, B, tie, both_bad); any number k >= 2 of responses can carry
    `ranking` (a permutation of 0..k-1, best first) or `likert` (k integers in 1..5) instead, with
    `judgement` left out or set to "ranking"/"likert".
    """
    prompt = _check_text("prompt", prompt)
    if isinstance(responses, (str, bytes)) or not isinstance(responses, Sequence):
        raise ValueError(f"responses must be a list of strings, got {type(responses).__name__}")
    responses = tuple(_check_text(f"response {i}", r) for i, r in enumerate(responses))
    k = len(responses)
    if k < 2:
        raise ValueError(f"a label needs at least 2 responses, got {k}")
    seen: dict[str, int] = {}
    for i, r in enumerate(responses):
        if r in seen:
            raise ValueError(f"responses {seen[r]} and {i} are identical; there is nothing to compare")
        seen[r] = i

    if ranking is not None and likert is not None:
        raise ValueError("give either a ranking or likert scores, not both")
    kind = parse_judgement(judgement) if judgement is not None else None
    if ranking is not None:
        if kind not in (None, Judgement.RANKING):
            raise ValueError(f"judgement {kind.value!r} conflicts with the ranking given")
        ranking = _check_int_list("ranking", ranking, k)
        if sorted(ranking) != list(range(k)):
            raise ValueError(f"ranking must be a permutation of 0..{k - 1} (best first), got {list(ranking)}")
        return prompt, responses, Judgement.RANKING, ranking, None
    if likert is not None:
        if kind not in (None, Judgement.LIKERT):
            raise ValueError(f"judgement {kind.value!r} conflicts with the likert scores given")
        likert = _check_int_list("likert", likert, k)
        lo, hi = LIKERT_RANGE
        if not all(lo <= s <= hi for s in likert):
            raise ValueError(f"likert scores must be between {lo} and {hi}, got {list(likert)}")
        return prompt, responses, Judgement.LIKERT, None, likert
    if kind is None:
        raise ValueError("no judgement given: pass A/B/tie/both_bad, a ranking or likert scores")
    if kind in (Judgement.RANKING, Judgement.LIKERT):
        raise ValueError(f"judgement {kind.value!r} needs the {kind.value} itself")
    if k != 2:
        raise ValueError(f"judgement {kind.value!r} is for a pair; {k} responses need a ranking or likert")
    return prompt, responses, kind, None, None


MAX_UNIX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z, the last time `datetime` can show
SQLITE_MAX_INT = 2**63 - 1  # the largest INTEGER SQLite stores (https://www.sqlite.org/datatype3.html)


def _check_name(name: str, value: object) -> str:
    value = _check_text(name, value).strip()
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise ValueError(f"{name} must be one line of printable text, got {value!r} (contains {bad!r})")
    return value


def validate_meta(
    annotator: object, source: object, criterion: object, note: object, policy_step: object
) -> tuple[str, str, str | None, str | None, int | None]:
    """Check the metadata of a label; criterion names are lower-cased, free text is kept."""
    annotator = _check_name("annotator", annotator)
    source = _check_name("source", source)
    if source != "human" and not any(source.startswith(p) and len(source) > len(p) for p in SOURCE_PREFIXES):
        raise ValueError(
            f"source must be 'human', 'rater:<name>', 'ai:<name>' or 'import:<name>', got {source!r}"
        )
    if criterion is not None:
        criterion = _check_name("criterion", criterion)
        if criterion.lower() in KNOWN_CRITERIA:
            criterion = criterion.lower()
    if note is not None and not isinstance(note, str):
        raise ValueError(f"note must be a string or None, got {type(note).__name__}")
    if policy_step is not None and (
        not isinstance(policy_step, int)
        or isinstance(policy_step, bool)
        or not 0 <= policy_step <= SQLITE_MAX_INT
    ):
        raise ValueError(f"policy_step must be an integer in [0, 2**63 - 1] or None, got {policy_step!r}")
    return annotator, source, criterion, note or None, policy_step


RECORD_FIELDS = (
    "prompt",
    "responses",
    "judgement",
    "ranking",
    "likert",
    "annotator",
    "note",
    "criterion",
    "source",
    "policy_step",
    "created",
    "deleted",
)


def normalise_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Check a label given as a dict (the keywords of `PreferenceStore.add`, plus optional
    `created`/`deleted` Unix times) and return it with every field normalised."""
    unknown = set(record) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; known: {', '.join(RECORD_FIELDS)}")
    for key in ("prompt", "responses"):
        if key not in record:
            raise ValueError(f"missing {key!r}")
    prompt, responses, judgement, ranking, likert = validate_label(
        record["prompt"],
        record["responses"],
        record.get("judgement"),
        record.get("ranking"),
        record.get("likert"),
    )
    annotator, source, criterion, note, policy_step = validate_meta(
        record.get("annotator", "anon"),
        record.get("source", "human"),
        record.get("criterion"),
        record.get("note"),
        record.get("policy_step"),
    )
    times = {}
    for key in ("created", "deleted"):
        value = record.get(key)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not 0 <= value <= MAX_UNIX_TIME
        ):
            raise ValueError(f"{key} must be a Unix time in seconds (0 to year 9999), got {value!r}")
        times[key] = None if value is None else float(value)
    return {
        "prompt": prompt,
        "responses": responses,
        "judgement": judgement,
        "ranking": ranking,
        "likert": likert,
        "annotator": annotator,
        "note": note,
        "criterion": criterion,
        "source": source,
        "policy_step": policy_step,
        **times,
    }


@dataclass(frozen=True)
class Vote:
    """One comparison of two responses inside a label, oriented canonically (`first` < `second`).

    `outcome` is "first", "second", "tie" or "both_bad"; `margin` is the Likert score difference
    (first minus second) where the label has scores.
    """

    item_id: str
    prompt: str
    criterion: str | None
    first: str
    second: str
    outcome: str
    margin: float | None
    label_id: int
    annotator: str

    @property
    def unit(self) -> tuple[str, str | None, str, str]:
        """What several annotators' votes are compared on: the item, the criterion, the two texts."""
        return (self.item_id, self.criterion, self.first, self.second)


@dataclass(frozen=True)
class Label:
    """One stored judgement. `created`/`deleted` are Unix times; `deleted` is set by `undo`."""

    id: int
    item_id: str
    prompt: str
    responses: tuple[str, ...]
    judgement: Judgement
    ranking: tuple[int, ...] | None = None
    likert: tuple[int, ...] | None = None
    annotator: str = "anon"
    created: float = 0.0
    note: str | None = None
    criterion: str | None = None
    source: str = "human"
    policy_step: int | None = None
    deleted: float | None = None

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created, tz=timezone.utc)

    def to_record(self) -> dict:
        """A JSON-ready dict with every field (lists for tuples, the judgement as its string)."""
        record = asdict(self)
        record["judgement"] = self.judgement.value
        for key in ("responses", "ranking", "likert"):
            if record[key] is not None:
                record[key] = list(record[key])
        return record

    def votes(self) -> list[Vote]:
        """The pairwise comparisons this label makes; a ranking or Likert label of k gives k(k-1)/2."""
        r = self.responses
        if self.judgement in PAIR_JUDGEMENTS:
            outcome = {Judgement.A: 0, Judgement.B: 1}.get(self.judgement, self.judgement.value)
            return [self._vote(r[0], r[1], outcome, None)]
        votes = []
        if self.judgement is Judgement.RANKING:
            order = self.ranking
            for a in range(len(order)):
                for b in range(a + 1, len(order)):
                    votes.append(self._vote(r[order[a]], r[order[b]], 0, None))
        else:
            s = self.likert
            for i in range(len(r)):
                for j in range(i + 1, len(r)):
                    outcome = "tie" if s[i] == s[j] else (0 if s[i] > s[j] else 1)
                    votes.append(self._vote(r[i], r[j], outcome, float(s[i] - s[j])))
        return votes

    def _vote(self, x: str, y: str, outcome: int | str, margin: float | None) -> Vote:
        # outcome 0/1 = x/y won, as shown; swap into canonical (sorted) order.
        swap = y < x
        if swap:
            x, y = y, x
            margin = 0.0 - margin if margin is not None else None
            if isinstance(outcome, int):
                outcome = 1 - outcome
        if isinstance(outcome, int):
            outcome = "first" if outcome == 0 else "second"
        return Vote(self.item_id, self.prompt, self.criterion, x, y, outcome, margin, self.id, self.annotator)


@dataclass(frozen=True)
class Item:
    """A prompt with its responses and every label of it (responses in the order first shown)."""

    item_id: str
    prompt: str
    responses: tuple[str, ...]
    labels: tuple[Label, ...] = field(default_factory=tuple)

    @property
    def annotators(self) -> list[str]:
        return sorted({label.annotator for label in self.labels})


@dataclass(frozen=True)
class PreferencePair:
    """A training pair: `target` = P(chosen beats rejected); 1.0 for a hard label, 0.5 for a tie.

    `margin` is a score difference (Likert) where known, `n_votes` how many votes were merged into
    `target`, `label_ids` which labels they came from.
    """

    prompt: str
    chosen: str
    rejected: str
    target: float = 1.0
    margin: float | None = None
    n_votes: int = 1
    item_id: str = ""
    criterion: str | None = None
    label_ids: tuple[int, ...] = ()


NEUTRAL_POLICIES = ("exclude", "soft", "keep")


def expand_pairs(
    labels: Sequence[Label],
    *,
    ties: str = "exclude",
    both_bad: str = "exclude",
    soft: bool = False,
) -> list[PreferencePair]:
    """Turn labels into (chosen, rejected) training pairs.

    A ranking of k gives its k(k-1)/2 pairs; Likert scores give a pair per two responses with
    different scores (margin = score difference). `ties` and `both_bad` say what happens to
    neutral votes: "exclude" drops them; "soft" counts each as half a vote for either side;
    "keep" keeps them as their own target-0.5 pairs, never merged with clear preferences.

    With `soft=False` each vote is its own pair (target 1.0, or 0.5 for a kept neutral vote).
    With `soft=True` the votes of all annotators on the same two responses (same item and
    criterion) are merged: target = fraction of votes for the chosen side, oriented so that
    target >= 0.5, and `n_votes` says how many votes it rests on.
    """
    for name, policy in (("ties", ties), ("both_bad", both_bad)):
        if policy not in NEUTRAL_POLICIES:
            raise ValueError(f"{name} must be one of {NEUTRAL_POLICIES}, got {policy!r}")
    policy_of = {"tie": ties, "both_bad": both_bad}
    votes = [v for label in labels for v in label.votes()]
    votes = [v for v in votes if v.outcome in ("first", "second") or policy_of[v.outcome] != "exclude"]
    if not soft:
        return [_pair([v]) for v in votes]

    groups: dict[tuple, list[Vote]] = {}
    for v in votes:
        kept_apart = v.outcome in policy_of and policy_of[v.outcome] == "keep"
        groups.setdefault((v.unit, kept_apart), []).append(v)
    return [_pair(group) for group in groups.values()]


def _pair(votes: list[Vote]) -> PreferencePair:
    """Merge votes on one unit into a pair oriented towards the side with more votes."""
    v0 = votes[0]
    score = sum({"first": 1.0, "second": 0.0}.get(v.outcome, 0.5) for v in votes)
    p_first = score / len(votes)
    margins = [v.margin for v in votes if v.margin is not None]
    margin = sum(margins) / len(margins) if margins else None
    chosen, rejected = v0.first, v0.second
    if p_first < 0.5:
        chosen, rejected, p_first = rejected, chosen, 1.0 - p_first
        margin = 0.0 - margin if margin is not None else None  # 0.0 - x: no "-0.0" in tables
    return PreferencePair(
        prompt=v0.prompt,
        chosen=chosen,
        rejected=rejected,
        target=p_first,
        margin=margin,
        n_votes=len(votes),
        item_id=v0.item_id,
        criterion=v0.criterion,
        label_ids=tuple(dict.fromkeys(v.label_id for v in votes)),
    )
