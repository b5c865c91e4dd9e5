"""The SQLite layout of a PreferenceStore: its tables, and label rows to and from `Label`s.

>>> from rlhf_lab.store.schema import SCHEMA_VERSION, make_row, row_to_label
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

from rlhf_lab.store.records import Judgement, Label, label_item_id, normalise_record

SCHEMA_VERSION = 2  # 2: big imports land in chunks, hidden until done (labels.import_batch, imports)

SCHEMA = (
    """
CREATE TABLE labels (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused
    item_id     TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    responses   TEXT NOT NULL,                      -- JSON list of strings, as shown
    judgement   TEXT NOT NULL,
    ranking     TEXT,                               -- JSON list, best first
    likert      TEXT,                               -- JSON list, one score per response
    annotator   TEXT NOT NULL,
    created     REAL NOT NULL,
    note        TEXT,
    criterion   TEXT,
    source      TEXT NOT NULL,
    policy_step INTEGER,
    deleted     REAL,                               -- set by undo(), NULL while live
    import_batch INTEGER                            -- imports.id for a bulk import's rows, else NULL
)""",
    "CREATE INDEX labels_item ON labels(item_id)",
    "CREATE INDEX labels_annotator ON labels(annotator, id)",
    """
CREATE TABLE revisions (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    label_id INTEGER NOT NULL REFERENCES labels(id),
    changed  REAL NOT NULL,
    previous TEXT NOT NULL                          -- JSON of the label before the edit
)""",
)

# A bulk import copies its rows in many short transactions; they stay invisible until one last
# transaction marks the batch done, so readers never see half a file and writers never wait long.
IMPORTS_SCHEMA = (
    """
CREATE TABLE imports (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    started  REAL NOT NULL,
    host     TEXT NOT NULL,                         -- who is copying (to clean up after a crash)
    pid      INTEGER NOT NULL,
    after_id INTEGER NOT NULL,                      -- the batch's rows all have larger label ids
    done     INTEGER NOT NULL DEFAULT 0             -- 1: the batch's rows are visible
)""",
)
SCHEMA = SCHEMA + IMPORTS_SCHEMA
MIGRATIONS = {  # from version N to N + 1, statement by statement
    1: ("ALTER TABLE labels ADD COLUMN import_batch INTEGER", *IMPORTS_SCHEMA),
}


def visible(table: str | None = None) -> str:
    """The condition every read of labels goes through: rows of an unfinished import are not there yet.
    `table` qualifies the column when a query names several tables."""
    column = f"{table}.import_batch" if table else "import_batch"
    return f"({column} IS NULL OR {column} IN (SELECT id FROM main.imports WHERE done = 1))"


VISIBLE = visible()

COLUMNS = (
    "id, item_id, prompt, responses, judgement, ranking, likert, annotator, created, note, "
    "criterion, source, policy_step, deleted"
)


def make_row(record: Mapping[str, Any], *, checked: bool = False) -> dict[str, Any]:
    """The database row of a label given as a dict (see `normalise_record`; `checked=True`: its output)."""
    r = record if checked else normalise_record(record)
    return {
        "item_id": label_item_id(r["prompt"], r["responses"]),
        "prompt": r["prompt"],
        "responses": json.dumps(list(r["responses"]), ensure_ascii=False),
        "judgement": r["judgement"].value,
        "ranking": None if r["ranking"] is None else json.dumps(list(r["ranking"])),
        "likert": None if r["likert"] is None else json.dumps(list(r["likert"])),
        "annotator": r["annotator"],
        "created": time.time() if r["created"] is None else r["created"],
        "note": r["note"],
        "criterion": r["criterion"],
        "source": r["source"],
        "policy_step": r["policy_step"],
        "deleted": r["deleted"],
    }


def insert_row(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
    keys = list(row)
    cursor = conn.execute(
        f"INSERT INTO labels ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
        [row[k] for k in keys],
    )
    return cursor.lastrowid


def row_to_label(row: tuple) -> Label:
    (label_id, item_id, prompt, responses, judgement, ranking, likert, annotator, created, note) = row[:10]
    criterion, source, policy_step, deleted = row[10:]
    return Label(
        id=label_id,
        item_id=item_id,
        prompt=prompt,
        responses=tuple(json.loads(responses)),
        judgement=Judgement(judgement),
        ranking=None if ranking is None else tuple(json.loads(ranking)),
        likert=None if likert is None else tuple(json.loads(likert)),
        annotator=annotator,
        created=created,
        note=note,
        criterion=criterion,
        source=source,
        policy_step=policy_step,
        deleted=deleted,
    )


STAGED_COLUMNS = tuple(c.strip() for c in COLUMNS.split(",") if c.strip() != "id")


def write_staged(
    records: Iterable[Mapping[str, Any]], path: str, *, checked: bool = False, chunk: int = 5_000
) -> int:
    """Check every record (`make_row`) into a side table at `path`, `chunk` rows at a time, so
    memory stays bounded; the store then copies it in one short transaction. Returns the count."""
    side = sqlite3.connect(path, isolation_level=None)
    try:
        side.execute("PRAGMA journal_mode = OFF")  # a scratch file: durability comes from the copy
        side.execute("PRAGMA synchronous = OFF")
        side.execute(f"CREATE TABLE labels ({', '.join(STAGED_COLUMNS)})")
        insert = f"INSERT INTO labels VALUES ({', '.join('?' * len(STAGED_COLUMNS))})"
        side.execute("BEGIN")
        batch: list[list[Any]] = []
        count = 0
        for count, record in enumerate(records, start=1):
            try:
                row = make_row(record, checked=checked)
            except ValueError as exc:
                raise ValueError(f"record {count - 1}: {exc}") from None
            batch.append([row[c] for c in STAGED_COLUMNS])
            if len(batch) >= chunk:
                side.executemany(insert, batch)
                batch.clear()
        side.executemany(insert, batch)
        side.execute("CREATE INDEX staged_key ON labels(item_id, annotator, created)")
        side.execute("COMMIT")
        return count
    finally:
        side.close()
