"""The facilitator view reads the shared store written by several participants."""

import math
import threading
import time

from rlhf_lab.store import PreferenceStore
from rlhf_lab.ui.facilitator import FacilitatorView


def _label_shared(store, people):
    items = [(f"Prompt {i}", [f"good answer {i}", f"bad answer {i}"]) for i in range(6)]
    for who, flips in people.items():
        for i, (prompt, responses) in enumerate(items):
            store.add(prompt, responses, "B" if i in flips else "A", annotator=who)


def test_counts_agreement_and_escaping(tmp_path):
    path = tmp_path / "workshop.sqlite"
    _label_shared(PreferenceStore(path), {"ana": set(), "ben": {0}, "<b>eve</b>": {0, 1}})
    view = FacilitatorView(PreferenceStore(path), refresh_s=None)  # a second connection: another kernel
    summary = view.last_summary
    assert summary["counts"] == {"ana": 6, "ben": 6, "<b>eve</b>": 6}
    assert summary["n_items"] == 6 and 0 < summary["fleiss_kappa"] < 1
    assert "&lt;b&gt;eve&lt;/b&gt;" in view.table.value and "<b>eve</b>" not in view.table.value
    PreferenceStore(path).add("Prompt 0", ["good answer 0", "bad answer 0"], "A", annotator="dan")
    assert view.refresh()["counts"]["dan"] == 1


def test_retrain_runs_once_and_reports(tmp_path):
    store = PreferenceStore(tmp_path / "w.sqlite")
    _label_shared(store, {"ana": set(), "ben": set()})
    calls = []

    def fit():
        calls.append(store.count())
        return {"val_accuracy": 0.75}

    view = FacilitatorView(store, retrain=fit, refresh_s=None)
    view.retrain(wait=True)
    assert calls == [12]
    assert "0.750" in view.status.value and "ceiling" in view.status.value
    assert not view.retrain_button.disabled


def test_retrain_errors_are_shown_not_raised(tmp_path):
    store = PreferenceStore(tmp_path / "w.sqlite")
    view = FacilitatorView(store, retrain=lambda: 1 / 0, refresh_s=None)
    view.retrain(wait=True)
    assert view.status.value.startswith("retrain failed: ZeroDivisionError")
    assert view.last_summary["counts"] == {} and math.isnan(view.last_summary["fleiss_kappa"])
    assert "no labels yet" in view.table.value


def test_lab_facilitator_retrains_on_everyones_labels(tiny_lab):
    for who in ("ana", "ben"):
        for i in range(12):
            tiny_lab.store.add(f"Prompt {i}", [f"great answer {i}", f"poor answer {i}"], "A", annotator=who)
    view = tiny_lab.facilitator(refresh_s=None)
    view.retrain(wait=True)
    assert view.last_fit["steps"] >= 1, view.status.value
    assert "retrained" in view.status.value


def test_a_second_click_during_a_retrain_starts_no_second_fit(tmp_path):
    store = PreferenceStore(tmp_path / "w.sqlite")
    _label_shared(store, {"ana": set(), "ben": set()})
    release, calls = threading.Event(), []

    def slow_fit():
        calls.append(1)
        release.wait(10)
        return {"val_accuracy": 0.5}

    view = FacilitatorView(store, retrain=slow_fit, refresh_s=None)
    view.retrain_button.click()
    assert view.retrain_button.disabled
    view.retrain_button.click()  # impatient facilitator; the button may still look live in a lagging browser
    view.retrain()
    release.set()
    assert view._fit_done.wait(10)
    assert calls == [1]
    assert not view.retrain_button.disabled and "retrained" in view.status.value


def test_the_live_view_picks_up_new_labels_and_survives_a_failing_read(tmp_path):
    path = tmp_path / "w.sqlite"
    _label_shared(PreferenceStore(path), {"ana": set()})
    view = FacilitatorView(PreferenceStore(path), refresh_s=0.05)
    try:
        PreferenceStore(path).add("Prompt 0", ["good answer 0", "bad answer 0"], "A", annotator="ben")
        _wait_for(lambda: view.last_summary["counts"].get("ben") == 1)
        good_store, view.store = view.store, _BrokenStore()  # e.g. the file was moved away mid-workshop
        _wait_for(lambda: view.status.value.startswith("refresh failed: unable to open"))
        assert "ben" in view.table.value  # the last good table stays on screen
        view.store = good_store  # moved back
        _wait_for(lambda: view.status.value == "")
    finally:
        view.close()
    _wait_for(lambda: not view._ticker.is_alive())


class _BrokenStore:
    def count_by_annotator(self):
        raise OSError("unable to open database file")


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return True
