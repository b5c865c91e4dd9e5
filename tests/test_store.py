"""PreferenceStore: validation, undo/edit, pair expansion, persistence, crashes and concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rlhf_lab.store import Judgement, PreferenceStore, label_item_id
from rlhf_lab.store.preference_store import SCHEMA_VERSION

WRITER = Path(__file__).with_name("helpers_store_writer.py")
P = "Write a short movie review."


@pytest.fixture()
def store(tmp_path):
    with PreferenceStore(tmp_path / "labels.sqlite") as s:
        yield s


# ----------------------------------------------------------------------------- basics
def test_add_and_get_keep_every_field(store):
    label_id = store.add(
        P,
        ["Great film!", "Bad film."],
        "B",
        annotator="ana",
        note="close call ✓",
        criterion="Helpfulness",
        source="human",
        policy_step=12,
    )
    label = store.get(label_id)
    assert label.id == label_id
    assert label.responses == ("Great film!", "Bad film.")
    assert label.judgement is Judgement.B
    assert (label.annotator, label.note, label.criterion, label.policy_step) == (
        "ana",
        "close call ✓",
        "helpfulness",
        12,
    )
    assert label.item_id == label_item_id(P, ["Bad film.", "Great film!"])
    assert label.deleted is None and label.created > 0
    assert store.count() == 1


def test_ranking_and_likert_labels(store):
    r = store.add(P, ["a", "b", "c"], ranking=[2, 0, 1], criterion="free-text criterion")
    lk = store.add(P, ["a", "b", "c"], likert=[5, 1, 3], annotator="bo")
    assert store.get(r).judgement is Judgement.RANKING and store.get(r).ranking == (2, 0, 1)
    assert store.get(r).criterion == "free-text criterion"
    assert store.get(lk).judgement is Judgement.LIKERT and store.get(lk).likert == (5, 1, 3)
    assert store.get(r).item_id == store.get(lk).item_id


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("", ["a", "b"], "A"), {}, "prompt is empty"),
        (("   ", ["a", "b"], "A"), {}, "prompt is empty"),
        ((P, ["a"], "A"), {}, "at least 2 responses"),
        ((P, "ab", "A"), {}, "responses must be a list"),
        ((P, ["a", ""], "A"), {}, "response 1 is empty"),
        ((P, ["same", "same"], "A"), {}, "identical"),
        ((P, ["a", "b"], "C"), {}, "unknown judgement 'C'"),
        ((P, ["a", "b"], None), {}, "no judgement given"),
        ((P, ["a", "b", "c"], "A"), {}, "is for a pair"),
        ((P, ["a", "b", "c"]), {"ranking": [0, 1, 1]}, "permutation"),
        ((P, ["a", "b", "c"]), {"ranking": [0, 1]}, "list of 3 integers"),
        ((P, ["a", "b", "c"]), {"ranking": [0, 1, True]}, "list of 3 integers"),
        ((P, ["a", "b"]), {"likert": [0, 5]}, "between 1 and 5"),
        ((P, ["a", "b"]), {"likert": [3, 6]}, "between 1 and 5"),
        ((P, ["a", "b"]), {"likert": [3, 4], "ranking": [0, 1]}, "not both"),
        ((P, ["a", "b"], "A"), {"ranking": [0, 1]}, "conflicts"),
        ((P, ["a", "b"], "A"), {"source": "robot"}, "source must be"),
        ((P, ["a", "b"], "A"), {"source": "rater:"}, "source must be"),
        ((P, ["a", "b"], "A"), {"annotator": ""}, "annotator is empty"),
        ((P, ["a", "b"], "A"), {"policy_step": -1}, "policy_step"),
    ],
)
def test_bad_input_is_rejected_and_nothing_written(store, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        store.add(*args, **kwargs)
    assert store.count() == 0 and store.labels(include_deleted=True) == []


def test_judgement_spellings():
    s = PreferenceStore(":memory:")
    ids = [s.add(P, ["x", "y"], j) for j in ("a", "b", "TIE", "both bad", Judgement.BOTH_BAD)]
    assert [s.get(i).judgement for i in ids] == [
        Judgement.A,
        Judgement.B,
        Judgement.TIE,
        Judgement.BOTH_BAD,
    ] + [Judgement.BOTH_BAD]


def test_item_id_ignores_display_order_and_items_group(store):
    store.add(P, ["x", "y"], "A", annotator="ana")
    store.add(P, ["y", "x"], "B", annotator="bo")
    store.add("Another prompt", ["x", "y"], "A", annotator="ana")
    items = store.items()
    assert [len(it.labels) for it in items] == [2, 1]
    assert items[0].annotators == ["ana", "bo"] and items[0].responses == ("x", "y")


# ----------------------------------------------------------------------------- undo / edit
def test_undo_is_per_annotator_soft_and_restorable(store):
    a1 = store.add(P, ["x", "y"], "A", annotator="ana")
    b1 = store.add(P, ["x", "z"], "A", annotator="bo")
    a2 = store.add(P, ["y", "z"], "B", annotator="ana")
    undone = store.undo("ana")
    assert undone.id == a2 and undone.deleted is not None
    assert [lab.id for lab in store.labels()] == [a1, b1]
    assert store.undo("ana").id == a1  # walks further back
    assert store.undo("ana") is None
    assert store.count_by_annotator() == {"bo": 1}
    assert {lab.id for lab in store.labels(include_deleted=True)} == {a1, b1, a2}
    assert store.restore(a2).deleted is None
    assert store.count() == 2
    # ids are never reused after undo
    assert store.add(P, ["q", "r"], "A", annotator="ana") > a2


def test_edit_keeps_history(store):
    label_id = store.add(P, ["x", "y"], "A", annotator="ana")
    edited = store.edit(label_id, judgement="tie", note="on reflection")
    assert edited.judgement is Judgement.TIE and edited.note == "on reflection"
    store.edit(label_id, ranking=[1, 0])
    assert store.get(label_id).judgement is Judgement.RANKING
    history = store.history(label_id)
    assert [h["judgement"] for h in history] == ["A", "tie"]
    assert history[0]["note"] is None and history[0]["changed"] >= history[0]["created"]


def test_bad_edit_changes_nothing(store):
    label_id = store.add(P, ["x", "y"], "A", annotator="ana")
    with pytest.raises(ValueError, match="cannot edit"):
        store.edit(label_id, prompt="other")
    with pytest.raises(ValueError, match="unknown judgement"):
        store.edit(label_id, judgement="maybe")
    with pytest.raises(KeyError):
        store.edit(999, note="x")
    assert store.get(label_id).judgement is Judgement.A and store.history(label_id) == []


# ----------------------------------------------------------------------------- reading
def test_filters_and_counts(store):
    store.add(P, ["x", "y"], "A", annotator="ana", criterion="helpfulness")
    store.add(P, ["x", "y"], "B", annotator="vader", source="rater:vader")
    store.add(P, ["x", "y"], "B", annotator="judge", source="ai:judge", criterion="harmlessness")
    first = store.labels()[0].id
    assert [lab.annotator for lab in store.labels(source="rater:")] == ["vader"]
    assert [lab.annotator for lab in store.labels(source="human")] == ["ana"]
    assert [lab.annotator for lab in store.labels(criterion="harmlessness")] == ["judge"]
    assert [lab.annotator for lab in store.labels(since_id=first)] == ["vader", "judge"]
    assert store.count_by_annotator() == {"ana": 1, "judge": 1, "vader": 1}


def test_to_dataframe(store):
    store.add(P, ["x", "y"], "A", policy_step=3)
    store.add(P, ["x", "y", "z"], likert=[1, 2, 3])
    frame = store.to_dataframe()
    assert list(frame["judgement"]) == ["A", "likert"]
    assert str(frame["created"].dtype).startswith("datetime64") and frame["policy_step"].iloc[0] == 3
    assert frame["policy_step"].isna().iloc[1]


# ----------------------------------------------------------------------------- pair expansion
def test_ranking_expands_to_all_ordered_pairs(store):
    store.add(P, ["a", "b", "c", "d"], ranking=[2, 0, 3, 1])
    pairs = store.pairs()
    assert len(pairs) == 6
    order = ["c", "a", "d", "b"]
    assert {(p.chosen, p.rejected) for p in pairs} == {
        (order[i], order[j]) for i in range(4) for j in range(i + 1, 4)
    }
    assert all(p.target == 1.0 and p.n_votes == 1 for p in pairs)


def test_likert_pairs_carry_margins_and_ties(store):
    store.add(P, ["a", "b", "c"], likert=[4, 2, 4])
    hard = {(p.chosen, p.rejected): p.margin for p in store.pairs()}
    assert hard == {("a", "b"): 2.0, ("c", "b"): 2.0}
    with_ties = store.pairs(ties="soft")
    tie = [p for p in with_ties if p.target == 0.5]
    assert len(tie) == 1 and {tie[0].chosen, tie[0].rejected} == {"a", "c"} and tie[0].margin == 0.0


def test_tie_and_both_bad_policies(store):
    store.add(P, ["x", "y"], "A", annotator="ana")
    store.add(P, ["x", "y"], "A", annotator="bo")
    store.add(P, ["x", "y"], "tie", annotator="cy")
    store.add(P, ["x", "y"], "both_bad", annotator="di")
    assert [p.target for p in store.pairs()] == [1.0, 1.0]
    assert sorted(p.target for p in store.pairs(ties="soft", both_bad="keep")) == [0.5, 0.5, 1.0, 1.0]

    (merged,) = store.pairs(soft=True)
    assert (merged.chosen, merged.target, merged.n_votes) == ("x", 1.0, 2)
    (merged,) = store.pairs(soft=True, ties="soft", both_bad="soft")
    assert merged.target == pytest.approx(3 / 4) and merged.n_votes == 4
    kept = store.pairs(soft=True, ties="keep", both_bad="soft")
    assert sorted((p.target, p.n_votes) for p in kept) == [(0.5, 1), (pytest.approx(2.5 / 3), 3)]
    with pytest.raises(ValueError, match="ties must be one of"):
        store.pairs(ties="maybe")


def test_soft_labels_aggregate_across_display_orders_and_split_criteria(store):
    store.add(P, ["x", "y"], "A", annotator="ana")
    store.add(P, ["y", "x"], "B", annotator="bo")  # same preference, shown the other way round
    store.add(P, ["x", "y"], "B", annotator="cy")
    store.add(P, ["x", "y"], "B", annotator="ana", criterion="harmlessness")
    by_criterion = {p.criterion: p for p in store.pairs(soft=True)}
    overall = by_criterion[None]
    assert (overall.chosen, overall.rejected, overall.n_votes) == ("x", "y", 3)
    assert overall.target == pytest.approx(2 / 3) and len(overall.label_ids) == 3
    assert (by_criterion["harmlessness"].chosen, by_criterion["harmlessness"].target) == ("y", 1.0)
    frame = store.pairs_dataframe(soft=True)
    assert list(frame.columns)[:4] == ["prompt", "chosen", "rejected", "target"] and len(frame) == 2


def test_pairs_min_agreement_drops_split_items(store):
    for annotator, verdict in (("ana", "A"), ("bo", "A"), ("cy", "B")):
        store.add(P, ["x", "y"], verdict, annotator=annotator)
    for annotator, verdict in (("ana", "A"), ("bo", "B")):
        store.add(P, ["u", "v"], verdict, annotator=annotator)
    assert {p.chosen for p in store.pairs(soft=True, min_agreement=0.6)} == {"x"}
    assert len(store.pairs(soft=True)) == 2


# ----------------------------------------------------------------------------- persistence
def test_reopen_after_close_keeps_everything(tmp_path):
    path = tmp_path / "sub" / "labels.sqlite"
    with PreferenceStore(path) as s:
        ids = [s.add(P, ["x", f"y{i}"], "A", annotator="ana") for i in range(5)]
        s.undo("ana")
    reopened = PreferenceStore(path)
    assert [lab.id for lab in reopened.labels(include_deleted=True)] == ids
    assert reopened.count() == 4
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version"):
        PreferenceStore(path)


def test_closed_store_says_so(tmp_path):
    s = PreferenceStore(tmp_path / "x.sqlite")
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.count()
    assert "closed" in repr(s)


def test_threads_share_one_store(store):
    def label(worker: int) -> None:
        for i in range(25):
            store.add(P, [f"w{worker} good {i}", "bad"], "A", annotator=f"t{worker}")
            store.count()

    threads = [threading.Thread(target=label, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_by_annotator() == {f"t{w}": 25 for w in range(4)}


def _add_in_child(store: PreferenceStore) -> None:
    store.add(P, ["from the child", "y"], "A", annotator="child")


def test_forked_child_opens_its_own_connection(store):
    store.add(P, ["from the parent", "y"], "A", annotator="parent")
    child = multiprocessing.get_context("fork").Process(target=_add_in_child, args=(store,))
    child.start()
    child.join(timeout=20)
    assert child.exitcode == 0
    assert store.count_by_annotator() == {"child": 1, "parent": 1}


def _writer(db: Path, name: str, n: int, *go_and_pause: object) -> subprocess.Popen:
    command = [sys.executable, str(WRITER), str(db), name, str(n), *map(str, go_and_pause)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def test_sigkill_mid_labelling_loses_no_returned_label(tmp_path):
    db = tmp_path / "crash.sqlite"
    child = _writer(db, "crashy", 100_000)
    promised = []
    for line in child.stdout:
        promised.append(int(line))
        if len(promised) == 40:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=20)
    assert child.returncode == -signal.SIGKILL
    # Ids already in the pipe when it died were also returned by add(): they count too.
    promised += [int(line) for line in child.stdout.read().splitlines()]
    child.stdout.close()

    with PreferenceStore(db) as s:
        stored = {lab.id: lab for lab in s.labels()}
        assert set(promised) <= set(stored)
        for label_id in promised:  # and each is complete, not a torn row
            i = int(stored[label_id].note)
            assert stored[label_id].prompt == f"crashy #{i}" and stored[label_id].judgement is Judgement.A
        # The store still takes labels after the crash.
        assert s.add(P, ["after", "crash"], "A") > max(promised)


def test_concurrent_processes_each_label_exactly_once(tmp_path):
    db = tmp_path / "shared.sqlite"
    n_writers, n_labels = 5, 50
    go = tmp_path / "go"
    writers = [_writer(db, f"w{k}", n_labels, go, 0.002) for k in range(n_writers)]
    for proc in writers:  # every writer has the file open before any starts labelling
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    returned = []
    for proc in writers:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        returned += [int(x) for x in out.split()]
    assert len(returned) == len(set(returned)) == n_writers * n_labels

    with PreferenceStore(db) as s:
        labels = s.labels()
        assert sorted(lab.id for lab in labels) == sorted(returned)
        prompts = [lab.prompt for lab in labels]
        assert sorted(prompts) == sorted(f"w{k} #{i}" for k in range(n_writers) for i in range(n_labels))
        assert s.count_by_annotator() == {f"w{k}": n_labels for k in range(n_writers)}
        writer_in_id_order = [lab.annotator for lab in labels]
        switches = sum(a != b for a, b in zip(writer_in_id_order, writer_in_id_order[1:]))
        assert switches > 2 * n_writers, "the writers ran one after another; the test proves nothing"


def test_writer_helper_never_imports_torch(tmp_path):
    # Labelling processes (and these subprocess tests) stay fast only while importing the store
    # does not drag in torch.
    code = (
        f"import runpy, sys; sys.argv = ['w', {str(tmp_path / 'x.sqlite')!r}, 'w', '1']; "
        f"runpy.run_path({str(WRITER)!r}, run_name='__main__'); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env={**os.environ})
