"""Big imports copy in short transactions, hidden until the last one (rlhf_lab.store.bulk_import)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest

from rlhf_lab.store import PreferenceStore, bulk_import
from rlhf_lab.store.schema import SCHEMA_VERSION


def write_pairs(path, n: int, start: int = 0) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n")


def raw_count(path) -> int:
    """Every row in the file, hidden or not."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(bulk_import, "CHUNK_ROWS", 3)


def test_rows_stay_hidden_until_the_import_finishes_and_writers_get_in_between(
    tmp_path, small_chunks, monkeypatch
):
    path, file = tmp_path / "s.sqlite", tmp_path / "pairs.jsonl"
    write_pairs(file, 10)
    store = PreferenceStore(path)
    # Another participant's process (busy timeout 1 s: a whole-file lock would make it fail).
    other = PreferenceStore(path, busy_timeout=1.0)
    seen: list[tuple[int, int]] = []

    def between_chunks(_seconds: float) -> None:
        other.add("a prompt", ["x", f"y{len(seen)}"], "A", annotator="ana")
        seen.append((other.count(), raw_count(path)))

    monkeypatch.setattr(bulk_import.time, "sleep", between_chunks)
    ids = store.import_file(file, annotator="importer")
    assert len(ids) == 10
    assert len(seen) == 4  # chunks of 3, 3, 3, 1
    # Each time a participant wrote, only their own labels were visible, while the import's rows
    # were already in the file.
    assert [visible for visible, _ in seen] == [1, 2, 3, 4]
    assert [raw - visible for visible, raw in seen] == [3, 6, 9, 10]
    assert store.count() == other.count() == 14
    assert sorted(ids) == ids and all(store.get(i).annotator == "importer" for i in ids)


def test_a_failed_copy_leaves_nothing_behind(tmp_path, small_chunks, monkeypatch):
    path, file = tmp_path / "s.sqlite", tmp_path / "pairs.jsonl"
    write_pairs(file, 10)
    store = PreferenceStore(path)
    store.add("kept", ["x", "y"], "B", annotator="ana")
    calls = []

    def fail_on_second(_seconds: float) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")

    monkeypatch.setattr(bulk_import.time, "sleep", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        store.import_file(file)
    monkeypatch.undo()
    assert [lab.prompt for lab in store.labels()] == ["kept"]
    assert raw_count(path) == 1  # the hidden rows were deleted again
    assert store._read("SELECT COUNT(*) FROM imports")[0][0] == 0


def test_rows_of_an_importer_that_died_are_removed_by_the_next_import(tmp_path):
    path, file = tmp_path / "s.sqlite", tmp_path / "pairs.jsonl"
    store = PreferenceStore(path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    # What a SIGKILLed importer leaves: a batch never marked done, and its hidden rows.
    def crashed(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO imports (started, host, pid, after_id) VALUES (?, ?, ?, 0)",
            (time.time(), socket.gethostname(), dead.pid),
        )
        batch = conn.execute("SELECT MAX(id) FROM imports").fetchone()[0]
        for i in range(5):
            conn.execute(
                "INSERT INTO labels (item_id, prompt, responses, judgement, annotator, created, source,"
                " import_batch) VALUES (?, ?, '[\"a\", \"b\"]', 'A', 'ghost', 0, 'import', ?)",
                (f"item{i}", f"ghost {i}", batch),
            )

    store._write(crashed)
    assert store.count() == 0 and raw_count(path) == 5
    with pytest.raises(KeyError):
        store.get(1)  # hidden rows cannot be read, undone or edited either
    assert store.undo("ghost") is None
    write_pairs(file, 2)
    assert len(store.import_file(file)) == 2
    assert raw_count(path) == store.count() == 2
    assert {lab.annotator for lab in store.labels()} == {"pairs"}


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    path, file = tmp_path / "old.sqlite", tmp_path / "pairs.jsonl"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE labels (id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL,
            prompt TEXT NOT NULL, responses TEXT NOT NULL, judgement TEXT NOT NULL, ranking TEXT,
            likert TEXT, annotator TEXT NOT NULL, created REAL NOT NULL, note TEXT, criterion TEXT,
            source TEXT NOT NULL, policy_step INTEGER, deleted REAL);
        CREATE TABLE revisions (id INTEGER PRIMARY KEY AUTOINCREMENT, label_id INTEGER NOT NULL,
            changed REAL NOT NULL, previous TEXT NOT NULL);
        INSERT INTO labels (item_id, prompt, responses, judgement, annotator, created, source)
            VALUES ('i', 'old prompt', '["a", "b"]', 'B', 'ana', 1.0, 'human');
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    store = PreferenceStore(path)
    assert [(lab.prompt, lab.judgement.value) for lab in store.labels()] == [("old prompt", "B")]
    write_pairs(file, 4)
    assert len(store.import_file(file)) == 4 and store.count() == 5
    assert store._read("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 2


def test_skip_existing_still_skips_visible_rows_and_repeats_within_the_file(tmp_path, small_chunks):
    path, backup = tmp_path / "s.sqlite", tmp_path / "backup.jsonl"
    store = PreferenceStore(path)
    for i in range(7):
        store.add(f"p{i}", ["a", "b"], "A", annotator="ana")
    store.to_jsonl(backup)
    lines = backup.read_text().splitlines()
    backup.write_text("\n".join(lines + lines[:2]) + "\n")  # two rows repeated
    merged = PreferenceStore(tmp_path / "merged.sqlite")
    assert len(merged.import_file(backup)) == 7
    assert merged.import_file(backup) == []  # everything already there
    assert store.import_file(backup) == []
