"""Imports never reinterpret a label; out-of-range numbers, odd names and odd items are refused by row."""

from __future__ import annotations

import json

import pytest

from rlhf_lab.active import normalise_item
from rlhf_lab.store import PreferenceImportError, PreferenceStore

GOOD = {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}
RECORD = {"prompt": "Hi", "responses": ["Hello!", "Go away."], "judgement": "A", "annotator": "ana"}


def _jsonl(tmp_path, rows, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("extra", "judgement"),
    [
        ({}, "A"),
        ({"judgement": "A"}, "A"),
        ({"judgement": "B"}, "B"),
        ({"judgement": "b"}, "B"),
        ({"judgement": "tie"}, "tie"),
        ({"label": "tie"}, "tie"),
        ({"judgement": "both bad"}, "both_bad"),
        ({"label": "B", "judgement": "B"}, "B"),
    ],
)
def test_a_pair_rows_judgement_is_honoured_exactly(tmp_path, extra, judgement):
    store = PreferenceStore(":memory:")
    store.import_file(_jsonl(tmp_path, [{**GOOD, **extra}]))
    (label,) = store.labels()
    assert label.responses == ("Hello!", "Go away.") and label.judgement.value == judgement


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"label": "maybe"}, "'label' is 'maybe'"),
        ({"judgement": "ranking"}, "'judgement' is 'ranking'"),
        ({"judgement": None}, "'judgement' is None"),
        ({"label": True}, "'label' is True"),
        ({"label": 1}, "'label' is 1"),
        ({"label": "A", "judgement": "B"}, "'judgement' and 'label' disagree"),
    ],
)
def test_an_unknown_pair_verdict_is_refused_with_the_row(tmp_path, extra, message):
    store = PreferenceStore(":memory:")
    path = _jsonl(tmp_path, [GOOD, {**GOOD, "chosen": "Hey", **extra}])
    with pytest.raises(PreferenceImportError, match=f"pairs.jsonl, row 2: {message}"):
        store.import_file(path)
    assert store.labels(include_deleted=True) == []


def test_strict_mode_refuses_unknown_fields(tmp_path):
    store = PreferenceStore(":memory:")
    pairs = _jsonl(tmp_path, [GOOD, {**GOOD, "chosen": "Hey", "score_chosen": 9}])
    with pytest.raises(PreferenceImportError, match=r"row 2: unknown field\(s\) \['score_chosen'\]"):
        store.import_file(pairs, strict=True)
    records = _jsonl(tmp_path, [RECORD, {**RECORD, "annotator": "bo", "mood": "x"}], "records.jsonl")
    with pytest.raises(PreferenceImportError, match=r"row 2: unknown field\(s\) \['mood'\]"):
        store.import_file(records, strict=True)
    assert store.count() == 0
    assert len(store.import_file(pairs)) == 2  # without strict, extra columns are ignored


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"policy_step": 10**30}, "policy_step must be an integer in"),
        ({"policy_step": -1}, "policy_step must be an integer in"),
        ({"created": 1e300}, "created must be a Unix time"),
        ({"annotator": "ana\x00"}, "annotator must be one line"),
        ({"annotator": "ana\nbo"}, "annotator must be one line"),
        ({"source": "rater:x\ny"}, "source must be one line"),
    ],
)
def test_out_of_range_numbers_and_odd_names_are_row_errors(tmp_path, changes, message):
    store = PreferenceStore(":memory:")
    with pytest.raises(PreferenceImportError, match=f"row 2: {message}"):
        store.import_file(_jsonl(tmp_path, [RECORD, {**RECORD, **changes}], "records.jsonl"))
    assert store.count() == 0
    add = {k: v for k, v in {**RECORD, **changes}.items() if k not in ("created",)}
    if "created" not in changes:
        with pytest.raises(ValueError, match=message):
            store.add(**add)
    assert store.count() == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["a"], "must be a text or a list with one"),
        ([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "multi-turn"),
    ],
)
def test_conversational_messages_say_what_is_wrong(tmp_path, value, message):
    with pytest.raises(PreferenceImportError, match=message):
        PreferenceStore(":memory:").import_file(_jsonl(tmp_path, [{**GOOD, "chosen": value}]))


@pytest.mark.parametrize("responses", ["ab", None, 7, {"a": 1}])
def test_labeller_items_need_a_list_of_responses(responses):
    with pytest.raises(ValueError, match="must be a list of texts"):
        normalise_item({"prompt": "Hi", "responses": responses})
    assert normalise_item({"prompt": "Hi", "responses": ("a", "b")})["responses"] == ["a", "b"]


@pytest.mark.parametrize("n", [50, pytest.param(6_000, marks=pytest.mark.slow)])  # 6000: two staging chunks
def test_a_streamed_import_is_all_or_nothing_and_skips_what_is_there(tmp_path, n):
    store = PreferenceStore(tmp_path / "s.sqlite")
    store.add("kept", ["x", "y"], "A")
    rows = [{**GOOD, "prompt": f"Hi {i}"} for i in range(n)]
    bad = _jsonl(tmp_path, [*rows, {**GOOD, "label": "maybe"}], "bad.jsonl")
    with pytest.raises(PreferenceImportError, match=f"bad.jsonl, row {n + 1}: 'label' is 'maybe'"):
        store.import_file(bad)
    assert store.count() == 1
    ids = store.import_file(_jsonl(tmp_path, rows))
    assert len(ids) == n and ids == sorted(ids) and store.count() == n + 1
    store.to_jsonl(tmp_path / "export.jsonl")
    again = PreferenceStore(tmp_path / "again.sqlite")
    assert len(again.import_file(tmp_path / "export.jsonl")) == n + 1
    assert again.import_file(tmp_path / "export.jsonl") == []  # skip_existing: nothing twice
    assert again.count() == n + 1


def test_a_store_of_ties_only_says_ties_are_left_out(tiny_tok):
    from rlhf_lab.errors import StageError
    from rlhf_lab.models.tiny import tiny_reward_model
    from rlhf_lab.reward import RewardModelStage

    store = PreferenceStore(":memory:")
    for i in range(3):
        store.add(f"Review film {i}.", ["Fine.", "Okay."], "tie")
    stage = RewardModelStage(tiny_reward_model(tiny_tok), tiny_tok, store)
    with pytest.raises(StageError, match=r"Ties and 'both bad' verdicts are left out \(ties='exclude'"):
        stage.fit(progress=False)
