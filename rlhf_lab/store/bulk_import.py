"""Copying a checked side table into a store in short transactions, hidden until the last one.

SQLite has one write lock per file. A 100 MiB import is about 400,000 rows; copying them in one
INSERT ... SELECT holds that lock for tens of seconds on a small machine, and every participant's
click waits behind it. So the rows go in `CHUNK_ROWS` at a time, each chunk its own short
transaction, tagged with the import's batch id (`labels.import_batch`). Readers skip rows whose
batch is not done (`schema.VISIBLE`), and one last, tiny transaction marks the batch done: the
whole file appears at once, or (if anything fails) never. A failed copy deletes its rows again;
rows left by a process that died mid-copy are removed by the next import into the same file
(`drop_abandoned`).

Ids: imported rows get their ids while they are copied, so a label clicked during an import may
have a smaller id than rows that become visible after it. `labels(since_id=...)` pollers see an
import's rows only if they started polling before it began.

Used by `PreferenceStore.add_streamed`; the functions take the store and use its package-internal
`_write` (one IMMEDIATE transaction), `_read` and `_lock`.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from typing import Any

from rlhf_lab.store.schema import STAGED_COLUMNS, visible

CHUNK_ROWS = 2_000  # ~0.5 MiB of labels: a few milliseconds of lock on a laptop disk
YIELD_S = 0.003  # between chunks, so writers polling for the lock get it before the next chunk
ABANDONED_AFTER_S = 24 * 3600  # an unfinished batch from another host is given up after a day
_COPYING: set[tuple[str, int]] = set()  # (store path, batch) being copied by this process now


def copy_in_chunks(store: Any, staged_path: str, *, skip_existing: bool) -> list[int]:
    """Copy every row of the side table at `staged_path` into `store`; returns the new label ids.

    All or nothing: the rows become visible in one transaction after the last chunk. With
    `skip_existing`, a row whose (item, annotator, created time) is already visible in the store,
    or repeats an earlier row of the file, is skipped.
    """
    drop_abandoned(store)
    alias = f"staged_{uuid.uuid4().hex[:12]}"
    batch, after_id = store._write(_register_batch)
    _COPYING.add((store.path, batch))
    with store._lock:
        store.conn.execute(f"ATTACH DATABASE ? AS {alias}", (staged_path,))
    try:
        total = store._read(f"SELECT COALESCE(MAX(rowid), 0) FROM {alias}.labels")[0][0]
        insert = _chunk_insert(alias, skip_existing)
        for low in range(0, total, CHUNK_ROWS):
            params = {"batch": batch, "low": low, "high": low + CHUNK_ROWS}
            store._write(lambda conn, p=params: conn.execute(insert, p))
            # The importer, not a participant's next commit, pays for moving its pages out of the
            # WAL (SQLite checkpoints in whichever commit crosses wal_autocheckpoint's threshold).
            with store._lock:
                store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            time.sleep(YIELD_S)
        store._write(lambda conn: conn.execute("UPDATE imports SET done = 1 WHERE id = ?", (batch,)))
    except BaseException:
        try:  # the rows were never visible; give the space back (or the next import will)
            _drop_batch(store, batch, after_id)
        except Exception:
            pass
        raise
    finally:
        _COPYING.discard((store.path, batch))
        with store._lock:
            store.conn.execute(f"DETACH DATABASE {alias}")
    rows = store._read(
        "SELECT id FROM labels WHERE id > ? AND import_batch = ? ORDER BY id", (after_id, batch)
    )
    return [r[0] for r in rows]


def drop_abandoned(store: Any) -> int:
    """Delete the hidden rows of imports whose process died before finishing; returns how many batches."""
    host = socket.gethostname()
    pending = store._read("SELECT id, host, pid, started, after_id FROM imports WHERE done = 0")
    dropped = 0
    for batch, batch_host, pid, started, after_id in pending:
        if (store.path, batch) in _COPYING:
            abandoned = False
        elif batch_host == host:
            abandoned = pid == os.getpid() or not _alive(pid)
        else:
            abandoned = time.time() - started > ABANDONED_AFTER_S
        if abandoned:
            _drop_batch(store, batch, after_id)
            dropped += 1
    return dropped


def _register_batch(conn: sqlite3.Connection) -> tuple[int, int]:
    """A new import batch: (its id, the label id every row of it will be above)."""
    # AUTOINCREMENT hands out ids above sqlite_sequence, which is >= MAX(id).
    after_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM labels").fetchone()[0]
    cursor = conn.execute(
        "INSERT INTO imports (started, host, pid, after_id) VALUES (?, ?, ?, ?)",
        (time.time(), socket.gethostname(), os.getpid(), after_id),
    )
    return cursor.lastrowid, after_id


def _chunk_insert(alias: str, skip_existing: bool) -> str:
    columns = ", ".join(STAGED_COLUMNS)
    sql = (
        f"INSERT INTO main.labels ({columns}, import_batch) SELECT {columns}, :batch "
        f"FROM {alias}.labels s WHERE s.rowid > :low AND s.rowid <= :high"
    )
    if skip_existing:
        # Rows already visible in the store; repeats within the file are left to the MIN(rowid) test.
        same = "{t}.item_id = s.item_id AND {t}.annotator = s.annotator AND {t}.created = s.created"
        sql += (
            f" AND NOT EXISTS (SELECT 1 FROM main.labels m WHERE {same.format(t='m')} AND {visible('m')})"
            f" AND s.rowid = (SELECT MIN(t.rowid) FROM {alias}.labels t WHERE {same.format(t='t')})"
        )
    return sql


def _drop_batch(store: Any, batch: int, after_id: int) -> None:
    """Delete a batch's hidden rows chunk by chunk (each a short transaction), then the batch."""
    if store._read("SELECT done FROM imports WHERE id = ?", (batch,)) != [(0,)]:
        return  # finished (visible) or already gone: never delete labels people can see
    delete = (
        "DELETE FROM labels WHERE id IN (SELECT id FROM labels WHERE id > ? AND import_batch = ? LIMIT ?)"
    )
    while store._write(lambda conn: conn.execute(delete, (after_id, batch, CHUNK_ROWS)).rowcount):
        time.sleep(YIELD_S)
    store._write(lambda conn: conn.execute("DELETE FROM imports WHERE id = ? AND done = 0", (batch,)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
