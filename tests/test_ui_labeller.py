"""PairLabeller driven from Python: messages as labeller.js sends them, assertions on the store."""

import asyncio
import time
from importlib import resources

import pytest
from ui_fakes import run_cell

from rlhf_lab.active import ActiveLearningSource
from rlhf_lab.store import PreferenceStore
from rlhf_lab.ui.labeller import SHORTCUTS, PairLabeller

ITEMS = [
    {"prompt": "Review a film.", "responses": ["Loved it!", "Meh."]},
    {"prompt": "Say hello.", "responses": ["Hello!", "Go away."]},
    {"prompt": "Describe rain.", "responses": ["Wet.", "Soft grey drops on the window."]},
]


def send(labeller, action, **extra):
    """What the browser does: a custom message carrying the sequence number of the item on screen."""
    seq = extra.pop("seq", labeller.item["seq"])
    labeller._on_frontend_msg(labeller, {"action": action, "seq": seq, **extra}, [])


@pytest.fixture()
def store():
    s = PreferenceStore(":memory:")
    yield s
    s.close()


def test_click_then_double_click_records_once_each(store):
    labeller = PairLabeller(store, ITEMS, annotator="ana")
    send(labeller, "A")
    assert store.count() == 1
    seq = labeller.item["seq"]
    send(labeller, "B", seq=seq)
    send(labeller, "B", seq=seq)  # the second click of a double click carries the same seq
    labels = store.labels()
    assert [(label.prompt, label.judgement.value) for label in labels] == [
        ("Review a film.", "A"),
        ("Say hello.", "B"),
    ]
    assert labeller.current["prompt"] == "Describe rain."  # the third item was not touched
    assert (
        labels[0].annotator == "ana" and labels[0].criterion == "helpfulness" and labels[0].source == "human"
    )


def test_stale_judgement_is_ignored(store):
    labeller = PairLabeller(store, ITEMS)
    old = labeller.item["seq"]
    send(labeller, "A")
    send(labeller, "tie", seq=old)  # arrives after the view moved on
    assert store.count() == 1 and labeller.current["prompt"] == "Say hello."


def test_undo_removes_last_label_and_shows_item_again(store):
    labeller = PairLabeller(store, ITEMS, annotator="ana")
    send(labeller, "A")
    send(labeller, "B")
    assert store.count() == 2
    seq = labeller.item["seq"]
    send(labeller, "undo", seq=seq)
    send(labeller, "undo", seq=seq)  # double click on Undo: one undo
    assert store.count() == 1
    assert store.labels()[0].prompt == "Review a film."
    assert labeller.current["prompt"] == "Say hello."
    assert labeller.queued == 1  # "Describe rain." went back behind it
    send(labeller, "tie")
    assert [label.judgement.value for label in store.labels()] == ["A", "tie"]
    assert len(store.labels(include_deleted=True)) == 3  # undone labels stay in the file, marked deleted


def test_undo_of_skip_does_not_touch_store(store):
    labeller = PairLabeller(store, ITEMS)
    send(labeller, "A")
    send(labeller, "skip")
    assert labeller.current["prompt"] == "Describe rain."
    send(labeller, "undo")
    assert labeller.current["prompt"] == "Say hello." and store.count() == 1


def test_undo_refuses_to_remove_someone_elses_label(store):
    labeller = PairLabeller(store, ITEMS, annotator="ana")
    send(labeller, "A")
    store.add("Other prompt", ["x", "y"], "B", annotator="ana")  # another kernel, same annotator id
    send(labeller, "undo")
    assert store.count() == 2
    assert labeller.status_kind == "error" and "another session" in labeller.status


def test_note_is_stored_and_blank_notes_are_dropped(store):
    labeller = PairLabeller(store, ITEMS)
    send(labeller, "both_bad", note="  both rude ")
    send(labeller, "A", note="   ")
    assert [label.note for label in store.labels()] == ["both rude", None]


def test_shortcut_map_is_what_the_front_end_reads(store):
    labeller = PairLabeller(store, ITEMS)
    assert labeller.shortcuts == {"1": "A", "2": "B", "t": "tie", "b": "both_bad", "s": "skip", "u": "undo"}
    assert labeller.shortcuts == SHORTCUTS
    for key, action in SHORTCUTS.items():
        if action not in ("skip", "undo"):
            send(labeller, labeller.shortcuts[key])
    assert [label.judgement.value for label in store.labels()] == ["A", "B", "tie"]


def test_front_end_never_writes_data_as_html():
    source = resources.files("rlhf_lab.widgets").joinpath("labeller.js").read_text()
    js = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "outerHTML" not in js
    assert "stopPropagation" in js and "data-lm-suppress-shortcuts" in js


def test_progress_counts_per_annotator_and_two_labellers_share_a_store(store):
    ana = PairLabeller(store, ITEMS, annotator="ana")
    bob = PairLabeller(store, ITEMS, annotator="bob")
    send(ana, "A")
    send(bob, "B")
    send(bob, "A")
    assert store.count_by_annotator() == {"ana": 1, "bob": 2}
    assert bob.progress["session"] == 2 and bob.progress["mine"] == 2 and bob.progress["left"] == 1
    assert bob.progress["by_annotator"] == {"ana": 1, "bob": 2}
    send(ana, "undo")  # ana's undo does not touch bob's labels
    assert store.count_by_annotator() == {"bob": 2}


def test_add_appends_and_wakes_an_empty_labeller(store):
    labeller = PairLabeller(store)
    assert labeller.current is None and "prompt" not in labeller.item
    assert labeller.add(ITEMS[:1]) == 1
    assert labeller.current["prompt"] == "Review a film."
    labeller.add(ITEMS[1:])
    assert labeller.queued == 2


def test_bad_items_fail_when_added(store):
    labeller = PairLabeller(store)
    with pytest.raises(ValueError, match="responses"):
        labeller.add([{"prompt": "p"}])
    with pytest.raises(ValueError, match="2 responses"):
        labeller.add([{"prompt": "p", "responses": ["a", "b", "c"]}])  # pair mode


def test_unknown_message_shows_error_not_traceback(store):
    labeller = PairLabeller(store, ITEMS)
    send(labeller, "explode")
    assert labeller.status_kind == "error" and "explode" in labeller.status
    labeller._on_frontend_msg(labeller, {"action": "rank", "seq": labeller.item["seq"]}, [])  # no order
    assert labeller.status_kind == "error" and store.count() == 0


def test_rank_mode_records_a_ranking(store):
    items = [{"prompt": "Pick.", "responses": ["one", "two", "three"]}]
    labeller = PairLabeller(store, items, mode="rank")
    send(labeller, "rank", order=[2, 0, 1])
    label = store.labels()[0]
    assert label.judgement.value == "ranking" and label.ranking == (2, 0, 1)


def test_rank_mode_groups_rl_samples_into_items_of_four(store):
    from rlhf_lab.ui.labeller import RANKED_ANSWERS

    samples = [
        {"step": 5, "prompt": "Pick.", "response": "one"},
        {"step": 5, "prompt": "Pick.", "response": "two"},
    ]
    more = lambda prompt, n: [f"answer {i}" for i in range(n)]  # noqa: E731
    labeller = PairLabeller(store, mode="rank", generate=more)
    assert labeller.add(samples) == 1
    item = labeller.current
    assert len(item["responses"]) == RANKED_ANSWERS == 4 and {"one", "two"} <= set(item["responses"])
    send(labeller, "rank", order=[3, 2, 1, 0])
    assert store.labels()[0].ranking == (3, 2, 1, 0) and store.labels()[0].policy_step == 5


def test_likert_mode_records_scores_and_rejects_out_of_range(store):
    labeller = PairLabeller(store, ITEMS, mode="likert")
    send(labeller, "likert", scores=[7, 1])
    assert store.count() == 0 and labeller.status_kind == "error"
    send(labeller, "likert", scores=[5, 2])
    assert store.labels()[0].likert == (5, 2)


def test_source_refills_the_queue(store):
    def scorer(prompts, responses):
        return [len(r) for r in responses]

    candidates = [{"prompt": f"p{i}", "responses": ["a" * (i + 1), "b" * 5]} for i in range(10)]
    source = ActiveLearningSource(candidates, scorer)
    labeller = PairLabeller(store, source)
    assert labeller.current["prompt"] == "p4"  # |len(a) - len(b)| = 0: the most uncertain
    assert labeller.queued == 7  # first batch of 8
    for _ in range(8):
        send(labeller, "A")
    assert labeller.current is not None and labeller.queued == 1  # refilled with the last 2


def test_policy_step_travels_with_the_item(store):
    labeller = PairLabeller(store, [{"prompt": "p", "responses": ["a", "b"], "policy_step": 12}])
    assert "12" in labeller.item["origin"]
    send(labeller, "A")
    assert store.labels()[0].policy_step == 12


def test_lab_label_factory(tiny_lab):
    labeller = tiny_lab.label(ITEMS, annotator="zoe")
    send(labeller, "B")
    assert tiny_lab.store.labels()[0].annotator == "zoe"


def test_rename_via_trait_stores_next_label_under_new_name_and_undo_is_per_annotator(store):
    labeller = PairLabeller(store, ITEMS, annotator="ana")
    send(labeller, "A")
    labeller.set_state({"annotator": "  bo  "})  # what the name field sends
    assert labeller.annotator == "bo" and labeller.status_kind == "ok"
    assert labeller.progress["mine"] == 0 and labeller.can_undo is False  # counts follow the name
    send(labeller, "B")
    assert [(label.annotator, label.judgement.value) for label in store.labels()] == [
        ("ana", "A"),
        ("bo", "B"),
    ]
    assert labeller.progress["mine"] == 1
    send(labeller, "undo")
    send(labeller, "undo")  # bo has nothing left to undo: ana's label stays
    assert [label.annotator for label in store.labels()] == ["ana"]
    labeller.annotator = "ana"
    assert labeller.can_undo is True


@pytest.mark.parametrize("bad", ["", "   ", "x" * 65])
def test_invalid_name_keeps_the_old_one_and_says_why(store, bad):
    labeller = PairLabeller(store, ITEMS, annotator="ana")
    sent = []
    labeller._send = lambda msg, buffers=None: sent.append(msg)  # as if a browser were connected
    labeller.set_state({"annotator": bad})
    assert labeller.annotator == "ana"
    assert labeller.status_kind == "error" and "Name not changed" in labeller.status
    assert {"method": "update", "state": {"annotator": "ana"}, "buffer_paths": []} in sent  # field resets
    labeller.annotator = bad
    assert labeller.annotator == "ana"
    send(labeller, "A")
    assert store.labels()[0].annotator == "ana"
    with pytest.raises(ValueError, match="annotator"):
        PairLabeller(store, ITEMS, annotator=bad)


def test_annotator_defaults_to_environment_then_me(store, monkeypatch):
    monkeypatch.setenv("RLHF_LAB_ANNOTATOR", " workshop-7 ")
    labeller = PairLabeller(store, ITEMS)
    assert labeller.annotator == "workshop-7"
    assert PairLabeller(store, ITEMS, annotator="ana").annotator == "ana"  # explicit wins
    send(labeller, "A")
    assert store.labels()[0].annotator == "workshop-7"
    monkeypatch.delenv("RLHF_LAB_ANNOTATOR")
    assert PairLabeller(store, ITEMS).annotator == "me"


def test_sample_viewer_sends_pairs_for_a_real_ppo_stage(tiny_lab):
    """PPO keeps one response per prompt: the button completes each pair from the current policy."""
    from rlhf_lab.ui.samples import SampleViewer

    def reward(prompts, responses):
        return [float(len(r)) for r in responses]

    prompts = ["Write a review.", "Say hi.", "Describe rain.", "Name a colour."]
    ppo = tiny_lab.rl(prompts, reward=reward, batch_size=4, max_new_tokens=4)
    ppo.step(1, progress=False)
    samples = ppo.samples()
    assert len({s["prompt"] for s in samples}) == len(samples)  # one response per prompt
    labeller = tiny_lab.label()
    viewer = SampleViewer(ppo, labeller=labeller, n=4)
    viewer.send_button.click()  # what the button does in the browser
    assert "Sent" in viewer.status.value and "error" not in viewer.status.value
    assert labeller.current is not None and labeller.queued + 1 >= 3  # a rare duplicate pair is dropped
    queued = [labeller.current, *labeller._queue]
    by_prompt = {s["prompt"]: s["response"] for s in samples}
    for item in queued:
        assert by_prompt[item["prompt"]] in item["responses"] and item["policy_step"] == 1
    no_generate = SampleViewer(ppo, labeller=tiny_lab.label(), n=4, generate=None)
    assert no_generate.send_to_labeller() == 0  # the old behaviour, on request


def test_the_flywheel_line_pairs_ppo_samples_with_answers_sampled_like_them(tiny_lab):
    """`ppo.pause(); labeller.add(ppo.samples(8)); rm.fit(); ppo.resume()` (the design's flywheel line)
    used to fail: PPO's samples hold one answer each. Each prompt's answer now gets a second one from
    the current policy, sampled with PPO's settings (here 3 new tokens, not the lab's 24)."""
    prompts = [f"Describe film number {i}." for i in range(8)]
    ppo = tiny_lab.ppo(
        prompts, reward=lambda p, r: [float(len(x)) for x in r], batch_size=8, max_new_tokens=3
    )
    ppo.step(1, progress=False)
    labeller = tiny_lab.label(annotator="me")
    added = labeller.add(ppo.samples(8))
    assert added >= 6  # a rare second answer equal to the first is dropped
    by_prompt = {s["prompt"]: s["response"] for s in ppo.samples(8)}
    for item in [labeller.current, *labeller._queue]:
        assert by_prompt[item["prompt"]] in item["responses"] and item["policy_step"] == 1
        n_tokens = [
            len(tiny_lab.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in item["responses"]
        ]
        assert max(n_tokens) <= 5, item  # 3 sampled tokens; decoding and re-encoding may split one
    while labeller.current is not None:
        send(labeller, "A")
    labels = tiny_lab.store.labels()
    assert len(labels) == added and {label.policy_step for label in labels} == {1}
    assert tiny_lab.label(ppo).queued + 1 >= 6  # the stage itself works as the items too


def test_second_answers_wait_for_the_step_in_progress(tiny_lab):
    """Sampling a second answer while a background step updates the same weights would mix two
    policies: the generator waits for the lock a step holds on the policy."""
    import threading

    from rlhf_lab.active import policy_generator
    from rlhf_lab.generation import model_lock

    ppo = tiny_lab.ppo(["Say hi."] * 4, reward=lambda p, r: [0.0] * len(r), batch_size=4, max_new_tokens=3)
    held, release, answers = threading.Event(), threading.Event(), []

    def a_step_in_progress():
        with ppo._step_lock, model_lock(ppo.policy):  # what Stage._one_step holds
            held.set()
            release.wait(10)

    threading.Thread(target=a_step_in_progress).start()
    held.wait(10)
    sampler = threading.Thread(target=lambda: answers.extend(policy_generator(ppo)("Say hi.", 1)))
    sampler.start()
    sampler.join(0.5)  # 3 tokens take milliseconds: only the lock can hold it this long
    assert sampler.is_alive() and not answers
    release.set()
    sampler.join(10)
    assert len(answers) == 1


def test_header_counts_labels_added_behind_the_labellers_back(tmp_path, monkeypatch):
    # e.g. a crowd cell that runs after the labeller is shown: the header must count them
    import rlhf_lab.ui.labeller as labeller_module

    monkeypatch.setattr(labeller_module, "REFRESH_S", 0.05)
    store = PreferenceStore(tmp_path / "labels.sqlite")
    labeller = PairLabeller(store, [{"prompt": "p", "responses": ["a", "b"]}], annotator="ana")
    assert labeller.progress["total"] == 0
    store.add("q", ["c", "d"], "A", annotator="crowd-1")
    deadline = time.monotonic() + 10
    while labeller.progress["total"] != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert labeller.progress["total"] == 1 and labeller.progress["by_annotator"] == {"crowd-1": 1}
    labeller.close()
    store.close()


def test_a_new_labeller_on_the_same_pairs_asks_only_what_this_annotator_has_not_labelled(store):
    """A kernel restart re-runs the labelling cell with the same pairs: nobody labels a pair twice."""
    first = PairLabeller(store, ITEMS, annotator="ana")
    send(first, "A")
    send(first, "B")
    again = PairLabeller(store, ITEMS, annotator="ana")
    assert again.current["prompt"] == "Describe rain."
    assert "2 item(s) 'ana' already labelled" in again.status
    send(again, "tie")
    assert again.current is None and store.count() == 3
    # Another annotator, or the same one judging another criterion, still gets every pair.
    assert PairLabeller(store, ITEMS, annotator="bo").current["prompt"] == "Review a film."
    other = PairLabeller(store, ITEMS, annotator="ana", criterion="honesty")
    assert other.current["prompt"] == "Review a film."
    # An undone label is not "labelled": its pair is asked again.
    store.undo("ana")
    assert PairLabeller(store, ITEMS, annotator="ana").current["prompt"] == "Describe rain."


def test_finished_waits_until_every_item_is_labelled_or_skipped(store, capsys, monkeypatch):
    labeller = PairLabeller(store, ITEMS, annotator="ana")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objects: shown.extend(objects))

    async def person():  # clicks arrive while the cell awaits, as the kernel hands them over
        for action in ("A", "skip", "B"):
            await asyncio.sleep(0.05)
            send(labeller, action)

    async def cell():
        clicking = asyncio.create_task(person())
        given = await asyncio.wait_for(labeller.finished(poll_s=0.01, show=True), 10)
        await clicking
        return given

    assert run_cell(cell()) == 2  # the skip is not a label; returning early would count fewer
    assert store.count() == 2 and labeller.current is None
    assert "Waiting for your labels: 3 item(s)" in capsys.readouterr().out
    assert shown == [labeller]  # shown under the waiting cell, once
    assert run_cell(labeller.finished(show=True)) == 0  # nothing queued: at once, silently, not shown
    assert capsys.readouterr().out == "" and shown == [labeller]


def test_finished_ends_when_the_widget_is_closed(store, capsys):
    labeller = PairLabeller(store, [{"prompt": "Rank.", "responses": ["a", "b", "c"]}], mode="rank")

    async def cell():
        closing = asyncio.get_running_loop().call_later(0.05, labeller.close)
        given = await asyncio.wait_for(labeller.finished(poll_s=0.01), 10)
        closing.cancel()
        return given

    assert run_cell(cell()) == 0 and labeller.current is not None
    assert "(s skips one)" in capsys.readouterr().out  # no pair keys for a ranking


def old_kernel(monkeypatch, found=(7, 3)):
    """Pretend to run in an ipykernel that holds widget clicks back while a cell awaits."""
    monkeypatch.setattr("rlhf_lab.ui.awaiting.in_ipykernel", lambda: True)
    monkeypatch.setattr("rlhf_lab.ui.awaiting.ipykernel_version", lambda: found)


def test_finished_refuses_to_wait_for_clicks_that_cannot_arrive(store, monkeypatch):
    labeller = PairLabeller(store, ITEMS, annotator="ana")
    old_kernel(monkeypatch)
    with pytest.raises(RuntimeError, match=r"ipykernel \(7\.3\) holds widget clicks back.*>= 7\.4"):
        run_cell(asyncio.wait_for(labeller.finished(poll_s=0.01), 5))  # not a hang until the timeout
    assert labeller.current is not None and store.count() == 0
    old_kernel(monkeypatch, (7, 4))
    while labeller.current is not None:
        send(labeller, "A")
    assert run_cell(asyncio.wait_for(labeller.finished(poll_s=0.01), 5)) == 0  # queue empty: no wait
    old_kernel(monkeypatch, (7, 3))
    assert run_cell(labeller.finished()) == 0  # nothing to wait for: no error either


def test_ipykernel_version_reads_the_installed_one():
    from importlib.metadata import version

    from rlhf_lab.ui.awaiting import in_ipykernel, ipykernel_version, widgets_answer_while_awaiting

    assert ipykernel_version() == tuple(int(part) for part in version("ipykernel").split(".")[:2])
    assert not in_ipykernel() and widgets_answer_while_awaiting()  # pytest is no kernel
