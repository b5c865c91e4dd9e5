"""Export to TRL/JSONL/Parquet, import back, and rejection of bad files (nothing half-imported)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlhf_lab.store import PreferenceImportError, PreferencePair, PreferenceStore
from rlhf_lab.store.io import import_rows, to_trl, trl_rows

P = "Write a short movie review."


def _comparable(labels):
    return [{k: v for k, v in lab.to_record().items() if k != "id"} for lab in labels]


@pytest.fixture()
def store(tmp_path):
    s = PreferenceStore(tmp_path / "src.sqlite")
    s.add(
        P, ["Great film! 🎬", "Bad film."], "A", annotator="ana", note="naïve café", criterion="helpfulness"
    )
    s.add(P, ["Great film! 🎬", "Bad film."], "B", annotator="vader", source="rater:vader", policy_step=4)
    s.add(P, ["Fine.", "Okay."], "tie", annotator="ana")
    s.add(P, ["Awful.", "Dreadful."], "both_bad", annotator="bo", criterion="my own criterion")
    s.add("Rank these", ["one", "two", "three"], ranking=[1, 2, 0], annotator="bo", source="ai:judge")
    s.add("Score these", ["one", "two", "three"], likert=[5, 3, 1], annotator="cy")
    s.add(P, ["to", "undo"], "A", annotator="cy")
    s.undo("cy")
    yield s
    s.close()


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_full_records_round_trip(store, tmp_path, suffix):
    path = tmp_path / f"labels.{suffix}"
    writer = store.to_jsonl if suffix == "jsonl" else store.to_parquet
    assert writer(path, include_deleted=True) == 7
    copy = PreferenceStore(tmp_path / "copy.sqlite")
    assert len(copy.import_file(path)) == 7
    assert _comparable(copy.labels(include_deleted=True)) == _comparable(store.labels(include_deleted=True))
    assert copy.count() == 6  # the undone label came back undone
    # Importing the same export again (or merging stores) adds nothing twice.
    assert copy.import_file(path) == []
    assert copy.count() == 6


def test_exports_replace_files_whole(store, tmp_path):
    path = tmp_path / "out" / "labels.jsonl"
    store.to_jsonl(path)
    store.to_jsonl(path)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 6
    assert not list(path.parent.glob("*.tmp"))


def test_trl_standard_rows(store):
    rows = store.to_trl()
    assert all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
    assert {"prompt": P, "chosen": "Great film! 🎬", "rejected": "Bad film."} in rows
    assert {"prompt": P, "chosen": "Bad film.", "rejected": "Great film! 🎬"} in rows  # hard labels disagree
    assert len(rows) == 2 + 3 + 3  # pairs + ranking of 3 + likert of 3; ties/both_bad have no preference
    soft = store.to_trl(soft=True, ties="soft")
    assert not any(r["chosen"] in ("Fine.", "Okay.") for r in soft)  # target 0.5: no direction to teach


def test_trl_conversational_rows_and_dataset(store):
    from trl.data_utils import is_conversational

    rows = store.to_trl(conversational=True, include_margin=True)
    assert rows[0]["prompt"] == [{"role": "user", "content": P}]
    assert rows[0]["chosen"][0]["role"] == "assistant" and is_conversational(rows[0])
    assert not is_conversational(store.to_trl()[0])
    assert {r["margin"] for r in rows} == {0.0, 2.0, 4.0}

    dataset = store.to_trl(as_dataset=True, conversational=True)
    assert dataset.column_names == ["prompt", "chosen", "rejected"] and len(dataset) == len(rows)
    assert dataset[0]["chosen"] == rows[0]["chosen"]
    empty = to_trl(PreferenceStore(":memory:"), as_dataset=True)
    assert len(empty) == 0 and empty.column_names == ["prompt", "chosen", "rejected"]


@pytest.mark.parametrize("conversational", [False, True])
@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_trl_files_import_back_to_the_same_pairs(store, tmp_path, conversational, suffix):
    rows = store.to_trl(conversational=conversational)
    path = tmp_path / f"pairs.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    copy = PreferenceStore(":memory:")
    copy.import_file(path)
    assert copy.to_trl(conversational=conversational) == rows
    assert {lab.source for lab in copy.labels()} == {"import:pairs"}
    assert {lab.annotator for lab in copy.labels()} == {"pairs"}


def test_trl_rows_orient_pairs_and_drop_undecided_ones():
    pairs = [
        PreferencePair("p", "x", "y", target=0.25, margin=-2.0),  # y is preferred
        PreferencePair("p", "u", "v", target=0.5),
        PreferencePair("p", "m", "n", target=0.8),
    ]
    assert trl_rows(pairs, include_margin=True) == [
        {"prompt": "p", "chosen": "y", "rejected": "x", "margin": 2.0},
        {"prompt": "p", "chosen": "m", "rejected": "n", "margin": 0.0},
    ]
    assert trl_rows([]) == []


def test_import_rows_from_a_dataset(store):
    dataset = store.to_trl(as_dataset=True)
    copy = PreferenceStore(":memory:")
    ids = import_rows(copy, dataset, annotator="hub", source="import:hub")
    assert len(ids) == len(dataset) and copy.count_by_annotator() == {"hub": len(dataset)}


# ----------------------------------------------------------------------------- bad files
def _jsonl(tmp_path, rows, name="bad.jsonl"):
    path = tmp_path / name
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


GOOD = {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"prompt": "Hi", "chosen": "Hello!"}, "row 3: missing 'rejected'"),
        ({"chosen": "Hello!", "rejected": "x"}, "row 3: missing 'prompt'"),
        ({"prompt": "Hi", "chosen": "  ", "rejected": "x"}, "row 3: 'chosen' is empty"),
        ({"prompt": "", "chosen": "a", "rejected": "x"}, "row 3: 'prompt' is empty"),
        ({"prompt": "Hi", "chosen": None, "rejected": "x"}, "row 3: 'chosen' is empty"),
        ({"prompt": "Hi", "chosen": "same", "rejected": "same"}, "row 3: chosen and rejected are identical"),
        ({"prompt": "Hi", "chosen": 7, "rejected": "x"}, "row 3: response 0 must be a string, got int"),
        (
            {"prompt": "Hi", "chosen": "x" * 20_001, "rejected": "x"},
            "row 3: response 0 has 20,001 characters",
        ),
        (b'{"prompt": "Hi", "chosen": "caf\xe9", "rejected": "x"}', "row 3: not valid UTF-8 (byte 0xe9"),
        (b'{"prompt": "Hi", "chosen": ', "row 3: not valid JSON"),
        ([1, 2], "row 3: expected an object"),
        (
            {
                "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                "chosen": "a",
                "rejected": "b",
            },
            "row 3: 'prompt' must be a single 'user' message",
        ),
    ],
)
def test_bad_pair_rows_name_the_row_and_write_nothing(tmp_path, bad_row, message):
    store = PreferenceStore(tmp_path / "s.sqlite")
    store.add("kept", ["x", "y"], "A")
    path = _jsonl(tmp_path, [GOOD, {**GOOD, "chosen": "Hey!"}, bad_row, {**GOOD, "chosen": "Yo"}])
    with pytest.raises(PreferenceImportError, match=f"bad.jsonl, {message}".replace("(", r"\(")):
        store.import_file(path)
    assert store.count() == 1 and [lab.prompt for lab in store.labels(include_deleted=True)] == ["kept"]


RECORD = {"prompt": "Hi", "responses": ["Hello!", "Go away."], "judgement": "A", "annotator": "ana"}


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({**RECORD, "judgement": "C"}, "row 2: unknown judgement 'C'"),
        ({k: v for k, v in RECORD.items() if k != "judgement"}, "row 2: missing 'judgement'"),
        ({**RECORD, "responses": ["same", "same"]}, "row 2: responses 0 and 1 are identical"),
        ({**RECORD, "responses": ["only one"]}, "row 2: a label needs at least 2 responses"),
        ({**RECORD, "judgement": "ranking", "ranking": [0, 0]}, "row 2: ranking must be a permutation"),
        ({**RECORD, "judgement": "likert", "likert": [9, 1]}, "row 2: likert scores must be between 1 and 5"),
        ({**RECORD, "source": "somewhere"}, "row 2: source must be"),
        ({**RECORD, "created": "yesterday"}, "row 2: created must be a Unix time"),
        ({**RECORD, "prompt": "p" * 50}, "row 2: prompt has 50 characters, over the limit of 40"),
    ],
)
def test_bad_label_records_name_the_row_and_write_nothing(tmp_path, bad_row, message):
    store = PreferenceStore(":memory:")
    path = _jsonl(tmp_path, [RECORD, bad_row])
    with pytest.raises(PreferenceImportError, match=message):
        store.import_file(path, max_chars=40)
    assert store.labels(include_deleted=True) == []


def test_files_that_cannot_be_read(tmp_path):
    store = PreferenceStore(":memory:")
    big = _jsonl(tmp_path, [GOOD] * 100, "big.jsonl")
    with pytest.raises(PreferenceImportError, match=r"big.jsonl: file is .* MiB, over the .* MiB limit"):
        store.import_file(big, max_bytes=1000)
    with pytest.raises(PreferenceImportError, match="no such file"):
        store.import_file(tmp_path / "missing.jsonl")
    (tmp_path / "x.csv").write_text("prompt,chosen,rejected\n")
    with pytest.raises(PreferenceImportError, match="unsupported file type '.csv'"):
        store.import_file(tmp_path / "x.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PreferenceImportError, match="not a readable Parquet file"):
        store.import_file(tmp_path / "broken.parquet")
    odd = _jsonl(tmp_path, [{"text": "hello"}], "odd.jsonl")
    with pytest.raises(
        PreferenceImportError, match=r"row 1: expected label records .* found columns \['text'\]"
    ):
        store.import_file(odd)
    assert store.count() == 0


def test_parquet_problems_name_the_row(tmp_path):
    store = PreferenceStore(":memory:")
    missing = tmp_path / "missing.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "Hi", "chosen": "a"}]), missing)
    with pytest.raises(PreferenceImportError, match="missing.parquet, row 1: missing 'rejected'"):
        store.import_file(missing)
    binary = tmp_path / "binary.parquet"
    table = pa.table(
        {
            "prompt": ["Hi", "Hi"],
            "chosen": pa.array([b"fine", b"caf\xe9"], pa.binary()),
            "rejected": ["no", "no"],
        }
    )
    pq.write_table(table, binary)
    with pytest.raises(
        PreferenceImportError, match=r"binary.parquet, row 2: 'chosen' is not valid UTF-8 \(byte 0xe9"
    ):
        store.import_file(binary)
    assert store.count() == 0


def test_byte_order_mark_and_blank_lines_are_fine(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n\n" + json.dumps({**GOOD, "chosen": "Hey"}).encode()
    )
    store = PreferenceStore(":memory:")
    assert len(store.import_file(path, annotator="me", source="human")) == 2
    assert store.count_by_annotator() == {"me": 2}


def test_add_many_is_all_or_nothing():
    store = PreferenceStore(":memory:")
    good = {"prompt": "Hi", "responses": ["a", "b"], "judgement": "A"}
    with pytest.raises(ValueError, match="record 2: unknown judgement"):
        store.add_many([good, good, {**good, "judgement": "?"}])
    with pytest.raises(ValueError, match="record 0: unknown field"):
        store.add_many([{**good, "colour": "red"}])
    assert store.count() == 0
    assert len(store.add_many([good, good])) == 2
