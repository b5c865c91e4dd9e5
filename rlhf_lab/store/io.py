"""Moving labels in and out of a `PreferenceStore`.

Export:
- `to_trl(store)`: `{"prompt", "chosen", "rejected"}` rows (strings, or with `conversational=True`
  the chat form `[{"role": "user", "content": ...}]` / `[{"role": "assistant", ...}]`) as TRL's
  RewardTrainer and DPOTrainer read them; a `datasets.Dataset` with `as_dataset=True`. TRL joins
  prompt and response verbatim (`prompt + chosen`), as our policies generate them.
- `write_jsonl` / `write_parquet`: full label records, every field, for backups and merging stores.

Import (`import_file`, `import_rows`): label records (as written above) or preference pairs
(`prompt`/`chosen`/`rejected`, standard or conversational). Every row is checked before anything
is written and the whole file goes in all or nothing, so a bad row leaves the store untouched;
the `PreferenceImportError` names the row and the problem. Files are read a row at a time and
checked into a temporary side table (memory stays bounded), then copied into the store 2,000 rows
per transaction, hidden until one last transaction makes the whole file visible at once: people
labelling meanwhile wait milliseconds, not the whole copy (`PreferenceStore.add_streamed`,
`rlhf_lab.store.bulk_import`).

A pair row is stored as a label with responses [chosen, rejected] (A = chosen, B = rejected). Its
verdict is "chosen wins" ("A") unless the row carries `judgement` (or `label`), which is honoured
exactly, never reinterpreted:

    "A" -> chosen wins    "B" -> rejected wins    "tie" -> tie    "both_bad" (or "both bad") -> both bad

(case-insensitive). Any other value (e.g. "maybe", null, true) is refused with the row named. With
`strict=True`, a field the format does not know is refused too (by default extra columns such as a
dataset's scores are ignored).

    >>> store.to_jsonl("backup.jsonl")                           # doctest: +SKIP
    >>> PreferenceStore("merged.sqlite").import_file("backup.jsonl")   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from rlhf_lab.errors import RLHFLabError
from rlhf_lab.store.records import PAIR_JUDGEMENTS, Label, PreferencePair, normalise_record, parse_judgement


class LabelSink(Protocol):
    """What an import writes into: a `PreferenceStore` (io does not import it, the store imports io)."""

    def add_many(self, records: Iterable[Mapping[str, Any]], *, skip_existing: bool = False) -> list[int]: ...


class PairSource(Protocol):
    """What an export reads from: a `PreferenceStore`'s `pairs(...)`."""

    def pairs(self, **options: Any) -> list[PreferencePair]: ...


DEFAULT_MAX_CHARS = 20_000  # per text; far beyond anything the lab generates or a person writes
DEFAULT_MAX_BYTES = 100 * 2**20

LABEL_FIELDS = tuple(Label.__dataclass_fields__)
_TEXT_KEYS = ("prompt", "chosen", "rejected")
PAIR_FIELDS = ("prompt", "chosen", "rejected", "judgement", "label")


class PreferenceImportError(RLHFLabError, ValueError):
    """An import file or row is not usable; the message names the file, the row and the problem."""


# ------------------------------------------------------------------------ export
def trl_rows(
    pairs: Iterable[PreferencePair], *, conversational: bool = False, include_margin: bool = False
) -> list[dict[str, Any]]:
    """TRL preference rows from pairs. Pairs without a preference (target 0.5) are left out,
    since TRL's trainers read every row as "chosen beats rejected"."""
    rows = []
    for pair in pairs:
        if pair.target == 0.5:
            continue
        chosen, rejected = (pair.chosen, pair.rejected) if pair.target > 0.5 else (pair.rejected, pair.chosen)
        margin = (pair.margin or 0.0) * (1 if pair.target > 0.5 else -1)
        if conversational:
            row = {
                "prompt": [{"role": "user", "content": pair.prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        else:
            row = {"prompt": pair.prompt, "chosen": chosen, "rejected": rejected}
        if include_margin:  # RewardTrainer subtracts it inside the loss: -log sigmoid(r_c - r_r - margin)
            row["margin"] = max(0.0, float(margin))
        rows.append(row)
    return rows


def to_trl(
    source: PairSource | Iterable[PreferencePair],
    *,
    conversational: bool = False,
    as_dataset: bool = False,
    include_margin: bool = False,
    **pair_options: Any,
):
    """Preference rows for TRL from a store (through `store.pairs(**pair_options)`) or from pairs.

    Returns a list of dicts, or a `datasets.Dataset` when `as_dataset=True`.
    """
    pairs = source.pairs(**pair_options) if hasattr(source, "pairs") else list(source)
    rows = trl_rows(pairs, conversational=conversational, include_margin=include_margin)
    if not as_dataset:
        return rows
    from datasets import Dataset  # slow import; only when asked

    if not rows:
        columns = ["prompt", "chosen", "rejected"] + (["margin"] if include_margin else [])
        return Dataset.from_dict({key: [] for key in columns})
    return Dataset.from_list(rows)


def pairs_to_dataframe(pairs: Sequence[PreferencePair]):
    """Pairs as a pandas DataFrame, one row per pair."""
    import pandas as pd

    columns = list(PreferencePair.__dataclass_fields__)
    return pd.DataFrame([[getattr(p, c) for c in columns] for p in pairs], columns=columns)


def _replace_atomically(path: Path, write) -> None:
    # Write next to the target, then rename: a crash mid-export never leaves half a file behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_jsonl(labels: Iterable[Label], path: str | os.PathLike) -> int:
    """Full label records, one JSON object per line (UTF-8). Returns the number of labels."""
    lines = [json.dumps(label.to_record(), ensure_ascii=False) for label in labels]

    def write(tmp: Path) -> None:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    _replace_atomically(Path(path), write)
    return len(lines)


def _parquet_schema():
    import pyarrow as pa

    text, ints = pa.string(), pa.list_(pa.int64())
    types = {"id": pa.int64(), "responses": pa.list_(pa.string()), "ranking": ints, "likert": ints}
    types |= {"created": pa.float64(), "deleted": pa.float64(), "policy_step": pa.int64()}
    return pa.schema([(name, types.get(name, text)) for name in LABEL_FIELDS])


def write_parquet(labels: Iterable[Label], path: str | os.PathLike) -> int:
    """Full label records as a Parquet table with a fixed schema. Returns the number of labels."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [label.to_record() for label in labels]
    table = pa.Table.from_pylist(records, schema=_parquet_schema())
    _replace_atomically(Path(path), lambda tmp: pq.write_table(table, tmp))
    return len(records)


# ------------------------------------------------------------------------ import
def read_rows(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[tuple[int, Any]]:
    """(row number, row) pairs from a .jsonl/.json-lines or .parquet file; row numbers start at 1."""
    return list(iter_rows(path, max_bytes=max_bytes))


def iter_rows(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[int, Any]]:
    """`read_rows` one row at a time (JSONL line by line, Parquet batch by batch): memory stays bounded."""
    path = Path(path)
    if not path.is_file():
        raise PreferenceImportError(f"{path}: no such file")
    size = path.stat().st_size
    if size > max_bytes:
        raise PreferenceImportError(
            f"{path.name}: file is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB limit "
            "(pass max_bytes= to raise it, or split the file)"
        )
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    if suffix not in (".jsonl", ".ndjson", ".json"):
        raise PreferenceImportError(f"{path.name}: unsupported file type {suffix!r} (use .jsonl or .parquet)")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\n")
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark, as some editors write
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PreferenceImportError(
                    f"{path.name}, row {number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start})"
                ) from None
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                raise PreferenceImportError(
                    f"{path.name}, row {number}: not valid JSON ({exc.msg})"
                ) from None


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except PreferenceImportError:
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise PreferenceImportError(f"{path.name}: not a readable Parquet file ({exc})") from None


def import_file(
    store: LabelSink,
    path: str | os.PathLike,
    *,
    annotator: str | None = None,
    source: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    skip_existing: bool = True,
    strict: bool = False,
) -> list[int]:
    """Validate every row of a JSONL/Parquet file, then add them all (all or nothing).

    Label records keep their annotator, times, source and note (their `id` is reassigned); with
    `skip_existing` a record already in the store (same item, annotator and created time) is
    skipped, so importing the same export twice or merging stores is safe. Preference-pair rows
    become "A" labels with responses [chosen, rejected], by `annotator` (default: the file's
    name) with `source` (default "import:<file name>"); a `judgement`/`label` on a pair row is honoured
    as the module docstring says. `strict=True` refuses fields the format does not know. Returns the
    ids of the new labels.
    """
    name = Path(path).name
    rows = iter_rows(path, max_bytes=max_bytes)
    return import_rows(
        store,
        rows,
        name=name,
        annotator=annotator or Path(path).stem,
        source=source or f"import:{Path(path).stem}",
        max_chars=max_chars,
        skip_existing=skip_existing,
        strict=strict,
    )


def import_rows(
    store: LabelSink,
    rows: Iterable[Mapping[str, Any]] | Iterable[tuple[int, Mapping[str, Any]]],
    *,
    name: str = "rows",
    annotator: str = "import",
    source: str = "import:rows",
    max_chars: int = DEFAULT_MAX_CHARS,
    skip_existing: bool = True,
    strict: bool = False,
) -> list[int]:
    """Like `import_file` for rows already in memory (dicts, e.g. a `datasets.Dataset`)."""
    numbered = (row if isinstance(row, tuple) else (i, row) for i, row in enumerate(rows, start=1))
    first_row = next(numbered, None)
    if first_row is None:
        return []
    first_number, first = first_row
    if not isinstance(first, Mapping):
        raise PreferenceImportError(
            f"{name}, row {first_number}: expected an object, got {type(first).__name__}"
        )
    is_record = "responses" in first
    if not is_record and not {"chosen", "rejected"} & set(first):
        raise PreferenceImportError(
            f"{name}, row {first_number}: expected label records (prompt, responses, judgement) or "
            f"preference pairs (prompt, chosen, rejected); found columns {sorted(first)}"
        )

    def records() -> Iterator[dict[str, Any]]:
        for number, row in itertools.chain([first_row], numbered):
            try:
                if not isinstance(row, Mapping):
                    raise ValueError(f"expected an object, got {type(row).__name__}")
                if strict:
                    known = LABEL_FIELDS if is_record else PAIR_FIELDS
                    unknown = sorted(set(row) - set(known))
                    if unknown:
                        raise ValueError(
                            f"unknown field(s) {unknown} (strict import); known: {', '.join(known)}"
                        )
                record = (
                    _record_from_label_row(row)
                    if is_record
                    else _record_from_pair_row(row, annotator, source)
                )
                _check_lengths(record, max_chars)
                checked = normalise_record(record)
            except ValueError as exc:
                raise PreferenceImportError(f"{name}, row {number}: {exc}") from None
            yield checked

    skip = skip_existing and is_record
    add_streamed = getattr(store, "add_streamed", None)  # a PreferenceStore: staged, short lock
    if add_streamed is not None:
        return add_streamed(records(), skip_existing=skip, checked=True)
    return store.add_many(list(records()), skip_existing=skip)


def _text(row: Mapping[str, Any], key: str) -> Any:
    if key not in row:
        raise ValueError(f"missing {key!r}")
    value = row[key]
    if isinstance(value, bytes):  # binary Parquet columns
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{key!r} is not valid UTF-8 (byte 0x{value[exc.start]:02x} at position {exc.start})"
            ) from None
    if value is None:
        raise ValueError(f"{key!r} is empty")
    return value


def _record_from_label_row(row: Mapping[str, Any]) -> dict[str, Any]:
    record = {key: row[key] for key in LABEL_FIELDS if key in row and key not in ("id", "item_id")}
    record["prompt"] = _text(row, "prompt")
    responses = _text(row, "responses")
    if isinstance(responses, (list, tuple)):
        responses = [_text({f"response {i}": r}, f"response {i}") for i, r in enumerate(responses)]
    record["responses"] = responses
    if record.get("judgement") is None and record.get("ranking") is None and record.get("likert") is None:
        raise ValueError("missing 'judgement'")
    return record


def _message_content(value: Any, key: str, role: str) -> Any:
    # Conversational rows: our store keeps single-turn text, so accept exactly one message of the
    # expected role rather than silently dropping system prompts or earlier turns.
    if not isinstance(value, list):
        return value
    if not all(isinstance(m, Mapping) and "role" in m for m in value):
        raise ValueError(
            f"{key!r} must be a text or a list with one {{'role': {role!r}, 'content': ...}} message, "
            f"got a list of {', '.join(sorted({type(m).__name__ for m in value})) or 'nothing'}"
        )
    if len(value) != 1 or value[0].get("role") != role:
        raise ValueError(
            f"{key!r} must be a single {role!r} message; multi-turn conversations are not supported"
        )
    return _text(value[0], "content")


def _pair_verdict(row: Mapping[str, Any]) -> str:
    """The judgement a pair row states (see the module docstring); "A" when it states none."""
    given = {key: row[key] for key in ("judgement", "label") if key in row}
    if not given:
        return "A"
    verdicts = set()
    for key, value in given.items():
        try:
            verdict = parse_judgement(value) if isinstance(value, str) else None
        except ValueError:
            verdict = None
        if verdict not in PAIR_JUDGEMENTS:
            raise ValueError(
                f"{key!r} is {value!r}; a pair row's {key} must be 'A' (chosen wins), 'B' (rejected wins), "
                "'tie' or 'both_bad' (leave it out for chosen wins)"
            )
        verdicts.add(verdict.value)
    if len(verdicts) > 1:
        raise ValueError(f"'judgement' and 'label' disagree ({given['judgement']!r} vs {given['label']!r})")
    return verdicts.pop()


def _record_from_pair_row(row: Mapping[str, Any], annotator: str, source: str) -> dict[str, Any]:
    if "prompt" not in row:
        raise ValueError("missing 'prompt' (rows whose prompt is inside 'chosen' are not supported)")
    prompt = _message_content(_text(row, "prompt"), "prompt", "user")
    chosen = _message_content(_text(row, "chosen"), "chosen", "assistant")
    rejected = _message_content(_text(row, "rejected"), "rejected", "assistant")
    for key, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"{key!r} is empty")
    if isinstance(chosen, str) and chosen == rejected:
        raise ValueError("chosen and rejected are identical")
    return {
        "prompt": prompt,
        "responses": [chosen, rejected],
        "judgement": _pair_verdict(row),
        "annotator": annotator,
        "source": source,
    }


def _check_lengths(record: Mapping[str, Any], max_chars: int) -> None:
    texts = [("prompt", record["prompt"])]
    if isinstance(record["responses"], (list, tuple)):
        texts += [(f"response {i}", r) for i, r in enumerate(record["responses"])]
    for key, value in texts:
        if isinstance(value, str) and len(value) > max_chars:
            raise ValueError(
                f"{key} has {len(value):,} characters, over the limit of {max_chars:,} (pass max_chars= to raise it)"
            )
