"""Preference pairs from whatever the notebook holds, as one plain, validated record type.

Stages that learn from pairs (reward model, DPO) accept a `PreferenceStore`, a list of dicts or
objects with prompt/chosen/rejected (and optionally target, margin, item), or a pandas DataFrame
with those columns. `as_pair_records` turns any of them into a list of `PairRecord`s and says
exactly which row is wrong when one is; `read_pairs` is the reward model's reading of the same
data (store options, the ranked item each pair belongs to, margin 0 where there is none).

    >>> from rlhf_lab.reward.pairs import as_pair_records
    >>> as_pair_records([{"prompt": "Say hi.", "chosen": "Hello!", "rejected": "Go away."}])
    [PairRecord(prompt='Say hi.', chosen='Hello!', rejected='Go away.', target=1.0, margin=None, item='')]
    >>> as_pair_records(store, ties="exclude", both_bad="exclude", soft=True)   # store.pairs(...)

The pair types, one name per concept:
- `PairRecord`: a validated training pair (what the reward model and DPO learn from);
- `PreferencePair` (rlhf_lab.store.records, re-exported here): what a store's `pairs()` returns, a
  pair plus its provenance (votes merged, item id, criterion, label ids).
`TrainingPair` is the reward stage's former name for `PairRecord` (deprecated: kept for one release).
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from rlhf_lab.store.records import PreferencePair

__all__ = ["PairRecord", "PreferencePair", "TrainingPair", "as_pair_records", "prompt_unit", "read_pairs"]


@dataclass(frozen=True)
class PairRecord:
    """One training pair. `target` = P(chosen beats rejected): 1.0 for a hard label, a fraction for
    merged or soft votes. `margin` is a score difference where the label had one (Likert). `item`
    groups the pairs of one ranked item (the reward model's "ranking" loss); "" when unknown."""

    prompt: str
    chosen: str
    rejected: str
    target: float = 1.0
    margin: float | None = None
    item: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_pair_records(data: Any, **store_options: Any) -> list[PairRecord]:
    """Normalise `data` into validated `PairRecord`s (possibly an empty list).

    `data` is a store (anything with a `.pairs(...)` method, called with `store_options`), a
    pandas DataFrame, or an iterable of mappings / objects with prompt, chosen, rejected and
    optional target and margin. Raises ValueError naming the first bad row: an empty prompt or
    response, identical chosen and rejected, a target outside [0, 1].
    """
    if hasattr(data, "pairs") and callable(data.pairs):
        rows: Iterable[Any] = data.pairs(**store_options)
    elif store_options:
        raise TypeError(
            f"{sorted(store_options)} only apply to a preference store, not {type(data).__name__}"
        )
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # a DataFrame
        rows = data.to_dict("records")
    elif isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise TypeError(
            "pairs must be a PreferenceStore, a DataFrame or a list of records with prompt/chosen/rejected, "
            f"got {type(data).__name__}"
        )
    else:
        rows = data
    return [_record(row, i) for i, row in enumerate(rows)]


def _field(row: Any, name: str, default: Any = ...) -> Any:
    value = row.get(name, default) if isinstance(row, Mapping) else getattr(row, name, default)
    if value is ...:
        raise ValueError(f"has no {name!r}")
    return value


def _text(row: Any, name: str) -> str:
    value = _field(row, name)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} is empty")
    return value


def _record(row: Any, index: int) -> PairRecord:
    try:
        if isinstance(row, (tuple, list)) and not hasattr(row, "_fields"):  # a namedtuple has names
            # Positions are not read as (prompt, chosen, rejected): (prompt, a, b) of unlabelled pairs
            # is as common, and reading it as a preference would invent a label.
            raise ValueError(
                f"is a {type(row).__name__} of {len(row)} values; a pair needs named fields: "
                "{'prompt': ..., 'chosen': ..., 'rejected': ...} (a dict, a DataFrame row or a record)"
            )
        if isinstance(row, Mapping) and "responses" in row and "chosen" not in row:
            raise ValueError(_UNORIENTED)
        prompt, chosen, rejected = _text(row, "prompt"), _text(row, "chosen"), _text(row, "rejected")
        if chosen == rejected:
            raise ValueError("chosen and rejected are identical; there is nothing to prefer")
        target = _field(row, "target", 1.0)
        target = 1.0 if _missing(target) else float(target)
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target must be a probability in [0, 1], got {target}")
        margin = _field(row, "margin", None)
        margin = None if _missing(margin) else float(margin)
    except ValueError as exc:
        raise ValueError(f"pair {index}: {exc}") from None
    return PairRecord(prompt, chosen, rejected, target, margin)


_UNORIENTED = (
    "has 'responses' but no 'chosen'/'rejected': it is a pair to label (lab.label(items) writes the labels "
    "to the store, which the stages read), or a rated pair from rlhf_lab.bundled.load_preferences, which "
    "preference_pairs(task, rater='gold') turns into chosen/rejected by one rater's judgement"
)


def _missing(value: Any) -> bool:
    # DataFrames hold missing numbers as NaN.
    return value is None or (isinstance(value, float) and math.isnan(value))


# The reward stage's former name for the same record (deprecated: kept for one release).
TrainingPair = PairRecord


def read_pairs(
    data: Any, *, ties: str = "exclude", both_bad: str = "exclude", soft: bool = True
) -> list[PairRecord]:
    """The reward model's pairs from a store, a DataFrame or a list of dicts/objects.

    Rows are checked by `as_pair_records` (errors name the row); `item_id` (the store's) or `item`
    groups the pairs of one ranked item, else the prompt does; a missing margin reads as 0.
    """
    if hasattr(data, "pairs") and callable(data.pairs):
        wanted = {"ties": ties, "both_bad": both_bad, "soft": soft}
        accepted = inspect.signature(data.pairs).parameters
        rows: list[Any] = list(data.pairs(**{k: v for k, v in wanted.items() if k in accepted}))
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # a DataFrame
        rows = data.to_dict(orient="records")
    elif isinstance(data, (list, tuple)):
        rows = list(data)
    else:
        raise TypeError(
            "Reward-model data must be a PreferenceStore, a DataFrame or a list of pairs "
            f"(prompt/chosen/rejected), not {type(data).__name__}."
        )
    records = as_pair_records(rows)
    out = []
    for row, record in zip(rows, records):
        get = row.get if isinstance(row, dict) else lambda key, row=row: getattr(row, key, None)
        item = get("item_id") or get("item") or record.prompt
        margin = 0.0 if record.margin is None else record.margin
        out.append(replace(record, margin=margin, item=str(item)))
    return out


def prompt_unit(prompt: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, prompt): the prompt's place in the train/val/test split."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).hexdigest()
    return int(digest[:13], 16) / 16**13


def no_pairs_message(config: Any) -> str:
    """Why a fit has nothing to train on, saying when ties / "both bad" verdicts were left out."""
    excluded = [f"{k}='exclude'" for k in ("ties", "both_bad") if getattr(config, k, None) == "exclude"]
    hint = (
        f" Ties and 'both bad' verdicts are left out ({', '.join(excluded)}); 'soft' keeps them."
        if excluded
        else ""
    )
    return f"No training pairs: the data holds no labelled pairs with a training prompt yet.{hint}"
