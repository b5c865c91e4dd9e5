"""`PreferenceStore`: every label in one SQLite file, committed the moment it is given.

    >>> store = PreferenceStore(":memory:")          # a file path in real use: labels/prefs.sqlite
    >>> store.add("Write a review.", ["Loved it!", "Meh."], "A", annotator="ana")
    1
    >>> store.pairs()[0].chosen
    'Loved it!'

Why it is built this way:
- WAL journal + `synchronous=FULL` + one transaction per `add`: when `add` returns, the label is on
  disk; a kernel restart, a crash or SIGKILL right after loses nothing.
- Several processes (several notebooks, a facilitator view) may write the same file: writes take the
  lock up front (`BEGIN IMMEDIATE`), wait on a busy timeout and retry if SQLite still says busy.
- One connection guarded by a lock, so widget callbacks (kernel thread) and stages (background
  threads) can share a store; a forked child reopens its own connection.
- Nothing is ever really deleted: `undo` marks a label deleted (`restore` brings it back) and `edit`
  keeps the previous version in a revisions table (`history`).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlhf_lab.store import bulk_import, io
from rlhf_lab.store.records import (
    Item,
    Judgement,
    Label,
    PreferencePair,
    expand_pairs,
)
from rlhf_lab.store.schema import (
    COLUMNS,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    VISIBLE,
    insert_row,
    make_row,
    row_to_label,
    write_staged,
)

EDITABLE_FIELDS = (
    "judgement",
    "ranking",
    "likert",
    "note",
    "criterion",
    "annotator",
    "source",
    "policy_step",
)
BUSY_TIMEOUT_S = 30.0


class PreferenceStore:
    """Preference labels in a SQLite file (or ":memory:"). See the module docstring for guarantees."""

    def __init__(self, path: str | os.PathLike = ":memory:", *, busy_timeout: float = BUSY_TIMEOUT_S):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._conn = self._connect()
        self._migrate()

    # ----------------------------------------------------------------- connection
    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each label is its own transaction.
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        if self.path != ":memory:":
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        self._pid = os.getpid()
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("this PreferenceStore is closed")
        if self._pid != os.getpid() and self.path != ":memory:":
            # A connection must not cross fork(); the child opens its own.
            self._conn = self._connect()
        return self._conn

    def _migrate(self) -> None:
        def upgrade(conn: sqlite3.Connection) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}; this rlhf_lab reads up to "
                    f"{SCHEMA_VERSION}. Upgrade rlhf_lab to open it."
                )
            # statement by statement: executescript() would commit our open transaction
            if version == 0:
                for statement in SCHEMA:
                    conn.execute(statement)
            else:
                for old in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[old]:
                        conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._write(upgrade)

    @staticmethod
    def _retry(fn: Callable[[], Any], attempts: int = 8) -> Any:
        # busy_timeout covers most contention; a few paths (WAL recovery, journal-mode switch)
        # answer SQLITE_BUSY at once, so back off and try again.
        for attempt in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                message = str(exc).lower()
                if attempt == attempts - 1 or ("locked" not in message and "busy" not in message):
                    raise
                time.sleep(0.05 * 2**attempt)

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """Take the write lock, polling every millisecond or so until the busy timeout.

        SQLite's own busy handler backs off in steps of up to 100 ms, so with 30 writers a loser
        can sleep through many free windows; short jittered polls keep the p99 write latency low.
        """
        deadline = time.monotonic() + self._busy_timeout
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    message = str(exc).lower()
                    if ("locked" not in message and "busy" not in message) or time.monotonic() > deadline:
                        raise
                    time.sleep(random.uniform(0.0002, 0.0015))
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `fn` in one IMMEDIATE transaction: all of it is committed or none of it."""

        def attempt() -> Any:
            conn = self.conn
            self._begin_immediate(conn)
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        with self._lock:
            return self._retry(attempt)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else f"{self.count()} labels"
        return f"PreferenceStore({self.path!r}, {state})"

    # ----------------------------------------------------------------- writing
    def add(
        self,
        prompt: str,
        responses: Sequence[str],
        judgement: Judgement | str | None = None,
        *,
        annotator: str = "anon",
        note: str | None = None,
        criterion: str | None = None,
        source: str = "human",
        policy_step: int | None = None,
        ranking: Sequence[int] | None = None,
        likert: Sequence[int] | None = None,
    ) -> int:
        """Store one label in its own committed transaction and return its id.

        `judgement` is "A", "B", "tie" or "both_bad" for a pair (A = responses[0]); for k responses
        give `ranking` (indices, best first) or `likert` (1-5 per response) instead. Bad input
        raises ValueError naming the problem; nothing is written then.
        """
        row = make_row(
            {
                "prompt": prompt,
                "responses": responses,
                "judgement": judgement,
                "ranking": ranking,
                "likert": likert,
                "annotator": annotator,
                "source": source,
                "criterion": criterion,
                "note": note,
                "policy_step": policy_step,
            }
        )
        return self._write(lambda conn: insert_row(conn, row))

    def add_many(self, records: Iterable[Mapping[str, Any]], *, skip_existing: bool = False) -> list[int]:
        """Validate every record first, then store all of them in one transaction (all or nothing).

        Each record has the keyword arguments of `add` (prompt, responses, judgement, ...) and may
        carry `created` and `deleted` times (imports keep them). With `skip_existing`, a record whose
        (item, annotator, created time) is already stored is skipped. Returns the new ids.
        """
        rows = []
        for i, record in enumerate(records):
            try:
                rows.append(make_row(record))
            except ValueError as exc:
                raise ValueError(f"record {i}: {exc}") from None

        def insert(conn: sqlite3.Connection) -> list[int]:
            seen = set()
            if skip_existing:
                seen = set(conn.execute(f"SELECT item_id, annotator, created FROM labels WHERE {VISIBLE}"))
            ids = []
            for row in rows:
                key = (row["item_id"], row["annotator"], row["created"])
                if key not in seen:
                    ids.append(insert_row(conn, row))
                    seen.add(key)
            return ids

        return self._write(insert)

    def add_streamed(
        self, records: Iterable[Mapping[str, Any]], *, skip_existing: bool = False, checked: bool = False
    ) -> list[int]:
        """`add_many` for big imports, all or nothing as well: records are checked into a temporary
        side table first (memory bounded), then copied in short transactions that stay hidden until
        the last one (`bulk_import`), so participants labelling meanwhile never wait long.
        `checked=True`: the records are already `normalise_record`'s output (io.import_rows)."""
        if self.path == ":memory:":
            return self.add_many(list(records), skip_existing=skip_existing)
        with tempfile.TemporaryDirectory(prefix="rlhf-lab-import-") as folder:
            staged = os.path.join(folder, "staged.sqlite")
            if not write_staged(records, staged, checked=checked):
                return []
            return bulk_import.copy_in_chunks(self, staged, skip_existing=skip_existing)

    def undo(self, annotator: str) -> Label | None:
        """Mark `annotator`'s most recent live label deleted and return it (None if there is none).

        The row stays in the file (`labels(include_deleted=True)`, `restore(id)`); repeated undos walk
        further back.
        """

        def mark(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                f"SELECT id FROM labels WHERE annotator = ? AND deleted IS NULL AND {VISIBLE} "
                "ORDER BY id DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if row is not None:
                conn.execute("UPDATE labels SET deleted = ? WHERE id = ?", (time.time(), row[0]))
            return None if row is None else row[0]

        label_id = self._write(mark)
        return None if label_id is None else self.get(label_id)

    def restore(self, label_id: int) -> Label:
        """Bring back a label removed by `undo`."""
        self.get(label_id)  # KeyError if unknown
        self._write(lambda conn: conn.execute("UPDATE labels SET deleted = NULL WHERE id = ?", (label_id,)))
        return self.get(label_id)

    def edit(self, label_id: int, **fields: Any) -> Label:
        """Change a label's judgement or metadata; the previous version goes to `history(label_id)`.

        Editable: judgement, ranking, likert, note, criterion, annotator, source, policy_step.
        The prompt and responses define the item and cannot change (add a new label instead).
        Changing the kind of judgement clears the old ranking/likert.
        """
        unknown = set(fields) - set(EDITABLE_FIELDS)
        if unknown:
            raise ValueError(f"cannot edit {sorted(unknown)}; editable fields: {', '.join(EDITABLE_FIELDS)}")
        old = self.get(label_id)
        merged = {key: getattr(old, key) for key in EDITABLE_FIELDS}
        if {"judgement", "ranking", "likert"} & set(fields):
            merged.update(judgement=None, ranking=None, likert=None)
        merged.update(fields)
        row = make_row({**merged, "prompt": old.prompt, "responses": old.responses})

        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO revisions (label_id, changed, previous) VALUES (?, ?, ?)",
                (label_id, time.time(), json.dumps(old.to_record(), ensure_ascii=False)),
            )
            conn.execute(
                "UPDATE labels SET judgement = ?, ranking = ?, likert = ?, annotator = ?, note = ?, "
                "criterion = ?, source = ?, policy_step = ? WHERE id = ?",
                (
                    row["judgement"],
                    row["ranking"],
                    row["likert"],
                    row["annotator"],
                    row["note"],
                    row["criterion"],
                    row["source"],
                    row["policy_step"],
                    label_id,
                ),
            )

        self._write(update)
        return self.get(label_id)

    def history(self, label_id: int) -> list[dict]:
        """Earlier versions of a label (oldest first), each a record dict plus `changed` (Unix time)."""
        rows = self._read(
            "SELECT changed, previous FROM revisions WHERE label_id = ? ORDER BY id", (label_id,)
        )
        return [{**json.loads(previous), "changed": changed} for changed, previous in rows]

    # ----------------------------------------------------------------- reading
    def get(self, label_id: int) -> Label:
        """The label with this id (also when undone); KeyError if there is none."""
        rows = self._read(f"SELECT {COLUMNS} FROM labels WHERE id = ? AND {VISIBLE}", (label_id,))
        if not rows:
            raise KeyError(f"no label with id {label_id} in {self.path}")
        return row_to_label(rows[0])

    def labels(
        self,
        annotator: str | None = None,
        source: str | None = None,
        criterion: str | None = None,
        since_id: int | None = None,
        *,
        include_deleted: bool = False,
    ) -> list[Label]:
        """Labels in the order given, filtered. A `source` ending in ":" matches by prefix ("rater:").

        `since_id` returns only labels with a larger id: poll with the last id seen to follow new clicks.
        A bulk import (`add_streamed`) numbers its rows while it copies them and shows them all at once
        when it finishes, so a poller may already be past their ids: after an import, read again
        without `since_id` (or compare `count()`).
        """
        where, params = [VISIBLE], []
        if not include_deleted:
            where.append("deleted IS NULL")
        if annotator is not None:
            where.append("annotator = ?")
            params.append(annotator)
        if source is not None:
            if source.endswith(":"):
                where.append("substr(source, 1, ?) = ?")
                params += [len(source), source]
            else:
                where.append("source = ?")
                params.append(source)
        if criterion is not None:
            where.append("criterion = ?")
            params.append(criterion)
        if since_id is not None:
            where.append("id > ?")
            params.append(since_id)
        clause = f" WHERE {' AND '.join(where)}"
        return [
            row_to_label(r) for r in self._read(f"SELECT {COLUMNS} FROM labels{clause} ORDER BY id", params)
        ]

    def count(self) -> int:
        """Number of live (not undone) labels."""
        return self._read(f"SELECT COUNT(*) FROM labels WHERE deleted IS NULL AND {VISIBLE}")[0][0]

    def count_by_annotator(self) -> dict[str, int]:
        rows = self._read(
            f"SELECT annotator, COUNT(*) FROM labels WHERE deleted IS NULL AND {VISIBLE} "
            "GROUP BY annotator ORDER BY annotator"
        )
        return dict(rows)

    def items(self, **filters: Any) -> list[Item]:
        """Labels grouped by item (same prompt and responses), in order of each item's first label.

        Takes the filters of `labels()`.
        """
        return group_items(self.labels(**filters))

    def to_dataframe(self, *, include_deleted: bool = False):
        """Every label as a pandas DataFrame (one row per label, `created`/`deleted` as UTC datetimes)."""
        import pandas as pd

        records = [label.to_record() for label in self.labels(include_deleted=include_deleted)]
        columns = list(Label.__dataclass_fields__)
        frame = pd.DataFrame(records, columns=columns)
        for key in ("created", "deleted"):
            frame[key] = pd.to_datetime(frame[key], unit="s", utc=True)
        frame["policy_step"] = frame["policy_step"].astype("Int64")
        return frame

    # ----------------------------------------------------------------- training data
    def pairs(
        self,
        ties: str = "exclude",
        both_bad: str = "exclude",
        soft: bool = False,
        *,
        min_agreement: float | None = None,
        **filters: Any,
    ) -> list[PreferencePair]:
        """Training pairs from the live labels; see `rlhf_lab.store.records.expand_pairs`.

        `min_agreement` drops items whose annotators agree less than that (see
        `rlhf_lab.agreement.filter_by_agreement`); other keywords filter as in `labels()`.
        """
        labels = self.labels(**filters)
        if min_agreement is not None:
            from rlhf_lab.agreement import filter_by_agreement  # agreement imports the store package

            kept = filter_by_agreement(group_items(labels), min_agreement)
            labels = [label for item in kept for label in item.labels]
        return expand_pairs(labels, ties=ties, both_bad=both_bad, soft=soft)

    def pairs_dataframe(self, *args: Any, **kwargs: Any):
        """`pairs(...)` as a pandas DataFrame, one row per pair."""
        return io.pairs_to_dataframe(self.pairs(*args, **kwargs))

    # ----------------------------------------------------------------- import / export
    def to_trl(self, *, conversational: bool = False, as_dataset: bool = False, **options: Any):
        """Rows (or a `datasets.Dataset`) for TRL's RewardTrainer/DPOTrainer; see `io.to_trl`."""
        return io.to_trl(self, conversational=conversational, as_dataset=as_dataset, **options)

    def to_jsonl(self, path: str | os.PathLike, *, include_deleted: bool = False) -> int:
        """Write every label (all fields) as JSON lines; returns the number written."""
        return io.write_jsonl(self.labels(include_deleted=include_deleted), path)

    def to_parquet(self, path: str | os.PathLike, *, include_deleted: bool = False) -> int:
        """Write every label (all fields) as Parquet; returns the number written."""
        return io.write_parquet(self.labels(include_deleted=include_deleted), path)

    def import_file(self, path: str | os.PathLike, **options: Any) -> list[int]:
        """Validate and import a JSONL/Parquet file in one transaction; see `io.import_file`."""
        return io.import_file(self, path, **options)


# --------------------------------------------------------------------- helpers
def group_items(labels: Iterable[Label]) -> list[Item]:
    """Group labels by item id, keeping the order in which items first appear."""
    groups: dict[str, list[Label]] = {}
    for label in labels:
        groups.setdefault(label.item_id, []).append(label)
    return [Item(key, group[0].prompt, group[0].responses, tuple(group)) for key, group in groups.items()]
