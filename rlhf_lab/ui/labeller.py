"""`PairLabeller`: an inline widget that turns clicks and keys into preference labels.

    >>> from rlhf_lab.store import PreferenceStore
    >>> from rlhf_lab.ui import PairLabeller
    >>> store = PreferenceStore("labels.sqlite")
    >>> labeller = PairLabeller(store, [{"prompt": "Review a film.", "responses": ["Loved it!", "Meh."]}],
    ...                         annotator="ana", criterion="helpfulness")
    >>> labeller                                   # shows the widget; 1 / 2 / t / b / s / u label from the keyboard
    >>> labeller.add(StageSource(ppo).next(8))     # more items at any time
    >>> labeller.annotator = "bo"                  # or type a name in the widget's header
    >>> await labeller.finished(show=True)         # in a cell: shows it there, goes on once all are labelled

The annotator defaults to the environment variable RLHF_LAB_ANNOTATOR (workshop mode), else "me".
A name is checked in Python (non-empty after strip, at most 64 characters); an invalid one keeps
the old name and says why in the status line. Undo only removes the current annotator's labels.

Every judgement goes to `store.add` the moment it is given (one committed transaction), so a
kernel restart loses nothing. The header counts what the store holds now: a background thread
re-reads the counts every `REFRESH_S` seconds, so labels other cells (or other people) add show
up while a cell runs. A widget whose kernel has gone says so in the browser and records nothing. The browser sends each judgement with the sequence number of the
item it was shown; the kernel records only judgements for the item on screen, so a double click
or a held key records once. Modes: "pair" (A / B / tie / both bad), "rank" (k responses, click or
press their numbers best-first) and "likert" (1-5 per response).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from rlhf_lab.active import Generate, Item, as_items, normalise_item
from rlhf_lab.store.records import label_item_id
from rlhf_lab.ui.awaiting import upgrade_hint, widgets_answer_while_awaiting

MODES = ("pair", "rank", "likert")
# RL samples become items of this many answers in rank and Likert modes (InstructGPT ranked 4 to 9)
RANKED_ANSWERS = 4
PAIR_JUDGEMENTS = ("A", "B", "tie", "both_bad")
# key -> action; the front-end reads this trait, so Python is the single source of truth.
SHORTCUTS = {"1": "A", "2": "B", "t": "tie", "b": "both_bad", "s": "skip", "u": "undo"}
REFILL = 8  # items pulled from a source whenever the queue runs dry
ANNOTATOR_ENV = "RLHF_LAB_ANNOTATOR"
MAX_ANNOTATOR_LEN = 64
REFRESH_S = 2.0  # how often the header re-reads the store's counts


def default_annotator() -> str:
    """$RLHF_LAB_ANNOTATOR when set (a workshop sets it per participant), else "me"."""
    return os.environ.get(ANNOTATOR_ENV, "").strip() or "me"


def check_annotator(name: Any) -> str:
    """The stripped name, or ValueError saying why it cannot be an annotator id."""
    text = name.strip() if isinstance(name, str) else ""
    if not text:
        raise ValueError("annotator name must not be empty (e.g. your initials)")
    if len(text) > MAX_ANNOTATOR_LEN:
        raise ValueError(f"annotator name must be at most {MAX_ANNOTATOR_LEN} characters, got {len(text)}")
    return text


GUIDELINES = {
    "helpfulness": "Prefer the response that answers the prompt more usefully: on topic, correct, clear "
    "and complete without padding. Length alone is not a reason to prefer a response.",
    "harmlessness": "Prefer the response less likely to cause harm: no dangerous instructions, insults or "
    "unfair claims. A polite refusal beats a harmful answer.",
    "honesty": "Prefer the response that is more truthful and calibrated: no invented facts, and "
    "uncertainty stated where it exists.",
}


def widgets_folder() -> Path:
    """The folder of the front-end files (labeller.js, labeller.css).

    Installed (`pip install -e .` or a wheel), they are the package data `rlhf_lab.widgets`, which
    pyproject.toml maps to the top-level widgets/ folder. A source checkout put on PYTHONPATH without an
    install (a GPU machine with no package registry, say) has no such package, so the checkout's own
    widgets/ folder is used.
    """
    try:
        return Path(str(resources.files("rlhf_lab.widgets")))
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parents[2] / "widgets"
        if (checkout / "labeller.js").is_file():
            return checkout
        raise ModuleNotFoundError(
            "rlhf_lab's widget files are missing: neither the package data rlhf_lab.widgets nor a "
            f"widgets/ folder at {checkout.parent} holds labeller.js. Install rlhf-lab (pip install -e .)."
        ) from None


# The front-end files on disk: anywidget reads a pathlib.Path itself and, with ANYWIDGET_HMR=1,
# watches it, so edits to widgets/labeller.js show up without restarting the kernel.
WIDGETS = widgets_folder()


class PairLabeller(anywidget.AnyWidget):
    """Label pairs (or rank k responses, or rate them 1-5) straight into a `PreferenceStore`.

    `items` is a list of `{"prompt", "responses"}` dicts, a JSONL/Parquet path, or a source with
    `next(n)` (see `rlhf_lab.active`), which is asked for more whenever the queue runs dry. RL
    samples (`ppo.samples(8)`, or the stage itself) are grouped by prompt into pairs (in rank and
    Likert modes, items of `RANKED_ANSWERS`); a prompt with fewer answers gets more from
    `generate(prompt, n)` (`lab.label` passes the lab's current policy).
    """

    _esm = WIDGETS / "labeller.js"
    _css = WIDGETS / "labeller.css"

    item = traitlets.Dict().tag(sync=True)  # what is on screen: seq, prompt, responses (+ origin)
    mode = traitlets.Unicode("pair").tag(sync=True)
    annotator = traitlets.Unicode("me").tag(sync=True)
    criterion = traitlets.Unicode("helpfulness").tag(sync=True)
    guideline = traitlets.Unicode("").tag(sync=True)
    shortcuts = traitlets.Dict(SHORTCUTS).tag(sync=True)
    progress = traitlets.Dict().tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    status_kind = traitlets.Unicode("info").tag(sync=True)  # info, ok or error
    can_undo = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        store: Any,
        items: Any = None,
        *,
        annotator: str | None = None,
        criterion: str = "helpfulness",
        guideline: str | None = None,
        mode: str = "pair",
        generate: Generate | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        name = check_annotator(default_annotator() if annotator is None else str(annotator))
        self._annotator_ok = name  # the last valid name: what an invalid one falls back to
        self._announced = name
        super().__init__(
            mode=mode,
            annotator=name,
            criterion=criterion,
            guideline=guideline if guideline is not None else GUIDELINES.get(criterion.lower(), ""),
            **kwargs,
        )
        self.store = store
        self.generate = generate
        self._lock = threading.RLock()
        self._queue: deque[Item] = deque()
        self._current: Item | None = None
        self._seq = 0
        # per annotator: (item, label id or None for a skip), for undo; a rename switches stacks
        self._done_by: dict[str, list[tuple[Item, int | None]]] = {}
        self.session_count = 0
        self._source = None
        if items is not None and hasattr(items, "next") and callable(items.next):
            self._source = items
        else:
            self._queue.extend(self._checked(self._items(items)))
        self.on_msg(self._on_frontend_msg)
        passed = self._advance()
        if passed:
            self._say(
                f"{passed} item(s) {name!r} already labelled (they are in the store) are not asked again.",
                "info",
            )
        self._stop_refresh = threading.Event()
        threading.Thread(
            target=_refresh_counts,
            args=(weakref.ref(self), self._stop_refresh),
            name="rlhf-lab-labeller",
            daemon=True,
        ).start()

    @traitlets.validate("annotator")
    def _validate_annotator(self, proposal: dict) -> str:
        # An invalid name (from Python or the widget's name field) keeps the old one. Returning
        # it, rather than raising, makes ipywidgets send the old name back to the browser.
        fallback = getattr(self, "_annotator_ok", "me")
        try:
            name = check_annotator(proposal["value"])
        except ValueError as exc:
            if hasattr(self, "_lock"):  # not during __init__
                self._say(f"Name not changed: {exc}. Still labelling as {fallback!r}.", "error")
            return fallback
        self._annotator_ok = name
        return name

    @traitlets.observe("annotator")
    def _annotator_changed(self, _change: dict) -> None:
        if not hasattr(self, "_lock"):
            return
        with self._lock:
            self.can_undo = bool(self._done)
            self._update_progress()
        # a rejected name from the browser arrives as two changes (to it and back): stay quiet then
        if self.annotator != self._announced:
            self._announced = self.annotator
            self._say(f"Now labelling as {self.annotator!r}.", "ok")

    # ------------------------------------------------------------------ public API
    def add(self, items: Any) -> int:
        """Append items (a list, a path, a source, RL samples) to the queue; returns how many were added."""
        new = self._checked(self._items(items))
        with self._lock:
            self._queue.extend(new)
            if self._current is None:
                self._advance()
            else:
                self._update_progress()
        return len(new)

    @property
    def current(self) -> Item | None:
        """The item on screen (None when the queue is empty)."""
        return self._current

    @property
    def queued(self) -> int:
        """Items waiting after the current one."""
        return len(self._queue)

    def choose(self, judgement: str, note: str | None = None, *, seq: int | None = None) -> int | None:
        """Record "A", "B", "tie" or "both_bad" for the item on screen; returns the label id.

        With `seq` (as the browser sends it) a judgement for an item no longer on screen is
        ignored and None is returned.
        """
        if judgement not in PAIR_JUDGEMENTS:
            raise ValueError(f"judgement must be one of {PAIR_JUDGEMENTS}, got {judgement!r}")
        return self._record(seq, note, judgement=judgement)

    def rank(self, order: list[int], note: str | None = None, *, seq: int | None = None) -> int | None:
        """Record a ranking of the responses on screen (indices, best first)."""
        return self._record(seq, note, ranking=[int(i) for i in order])

    def rate(self, scores: list[int], note: str | None = None, *, seq: int | None = None) -> int | None:
        """Record Likert scores (1-5), one per response on screen."""
        return self._record(seq, note, likert=[int(s) for s in scores])

    def skip(self, *, seq: int | None = None) -> bool:
        """Move past the item on screen without labelling it (undo brings it back)."""
        with self._lock:
            if self._current is None or not self._is_current(seq):
                return False
            self._done.append((self._current, None))
            self._advance()
            self._say("Skipped.", "info")
            return True

    def undo(self, *, seq: int | None = None) -> bool:
        """Remove this annotator's last label from the store and show its item again."""
        with self._lock:
            if not self._done or not self._is_current(seq):
                return False
            item, label_id = self._done[-1]
            if label_id is not None:
                undone = self.store.undo(self.annotator)
                if undone is None or undone.id != label_id:
                    if undone is not None:  # someone else labelled as this annotator since: put it back
                        self.store.restore(undone.id)
                    self._say(
                        f"Cannot undo: another session labelled as {self.annotator!r} since. "
                        "Use store.undo/restore to fix labels by hand.",
                        "error",
                    )
                    return False
                self.session_count -= 1
            self._done.pop()
            if self._current is not None:
                self._queue.appendleft(self._current)
            self._show(item)
            self._say(
                "Undone: label removed." if label_id is not None else "Back to the skipped item.", "info"
            )
            return True

    async def finished(self, poll_s: float = 0.2, *, show: bool = False) -> int:
        """Await an empty queue: every item labelled or skipped; returns the labels given meanwhile.

        `await labeller.finished(show=True)` in a cell says what it waits for, shows the labeller
        right there, and goes on when the person is done, even under Run All: an awaiting cell
        leaves the kernel free to take the widget's clicks and keys. It also ends when the widget
        is closed. A labeller fed by a source that never runs dry never finishes.

        Raises RuntimeError, instead of waiting for ever, in a kernel that holds clicks back while a
        cell awaits (ipykernel < 7.4, see `rlhf_lab.ui.awaiting`). Keep the cell after this one free
        of `await`: with ipykernel 7.4.0 such a cell can keep showing `[*]` after it has run.
        """
        before = self.session_count
        if self._current is not None and self.comm is not None:
            if not widgets_answer_while_awaiting():
                raise RuntimeError(f"Cannot wait for labels here: {upgrade_hint()}.")
            keys = "keys 1 / 2 / t / b, " if self.mode == "pair" else ""
            print(
                f"Waiting for your labels: {1 + self.queued} item(s) in the labeller ({keys}s skips one). "
                "This cell goes on when the queue is empty.",
                flush=True,
            )
            if show:
                from IPython.display import display

                display(self)
        while self._current is not None and self.comm is not None:
            await asyncio.sleep(poll_s)
        return self.session_count - before

    # ------------------------------------------------------------------ internals
    @property
    def _done(self) -> list[tuple[Item, int | None]]:
        """The current annotator's undo stack."""
        return self._done_by.setdefault(self.annotator, [])

    def _items(self, source: Any) -> list[Item]:
        k = 2 if self.mode == "pair" else RANKED_ANSWERS
        return as_items(source, k=k, generate=self.generate)

    def _checked(self, items: list[Item]) -> list[Item]:
        k = 2 if self.mode == "pair" else None
        return [normalise_item(item, k=k) for item in items]

    def _is_current(self, seq: int | None) -> bool:
        return seq is None or seq == self._seq

    def _record(self, seq: int | None, note: str | None, **judgement: Any) -> int | None:
        with self._lock:
            if self._current is None or not self._is_current(seq):
                return None  # a repeat (double click, held key) or a stale view: record once
            item = self._current
            try:
                label_id = self.store.add(
                    item["prompt"],
                    item["responses"],
                    judgement.pop("judgement", None),
                    annotator=self.annotator,
                    criterion=self.criterion or None,
                    note=(note or "").strip() or None,
                    source="human",
                    policy_step=item.get("policy_step"),
                    **judgement,
                )
            except ValueError as exc:
                self._say(f"Not recorded: {exc}", "error")
                return None
            self.session_count += 1
            self._done.append((item, label_id))
            self._advance()
            self._say(f"Recorded label #{label_id}.", "ok")
            return label_id

    def _advance(self) -> int:
        """Show the next item this annotator has not labelled yet; returns how many were passed over.

        After a kernel restart a lab re-runs its labelling cell with the same pairs: what is already
        in the store under this annotator (and criterion) is not asked again, so nobody labels twice.
        """
        with self._lock:
            done = self._labelled_here()
            passed, refilled = 0, False
            while True:
                if not self._queue and self._source is not None and not refilled:
                    refilled = True  # at most one refill per click, even if it brings only done items
                    try:
                        self._queue.extend(self._checked(as_items(self._source, REFILL)))
                    except Exception as exc:  # a broken source must not break labelling
                        self._say(f"Could not fetch more items: {type(exc).__name__}: {exc}", "error")
                item = self._queue.popleft() if self._queue else None
                if item is None or label_item_id(item["prompt"], item["responses"]) not in done:
                    break
                passed += 1
            self._show(item)
            return passed

    def _labelled_here(self) -> set[str]:
        """Item ids this annotator has a live label for under the current criterion."""
        try:
            labels = self.store.labels(annotator=self.annotator)
        except Exception:  # a closed store: the status line says so when a label is attempted
            return set()
        criterion = self.criterion or None
        return {label.item_id for label in labels if label.criterion == criterion}

    def _show(self, item: Item | None) -> None:
        self._current = item
        self._seq += 1
        if item is None:
            self.item = {"seq": self._seq}
        else:
            origin = item.get("source", "")
            if item.get("policy_step") is not None:
                origin = f"{origin} step {item['policy_step']}".strip()
            self.item = {
                "seq": self._seq,
                "prompt": item["prompt"],
                "responses": list(item["responses"]),
                "origin": origin,
            }
        self.can_undo = bool(self._done)
        self._update_progress()

    def _update_progress(self) -> None:
        with self._lock:
            self._set_progress()

    def _set_progress(self) -> None:
        try:
            by_annotator = self.store.count_by_annotator()
            total = self.store.count()
        except Exception:  # a closed store: keep the widget alive, say so in the status line
            by_annotator, total = {}, None
        self.progress = {
            "session": self.session_count,
            "left": len(self._queue) + (self._current is not None),
            "total": total,
            "mine": by_annotator.get(self.annotator, 0),
            "by_annotator": by_annotator,
        }

    def close(self) -> None:
        stop = getattr(self, "_stop_refresh", None)  # absent when __init__ failed early
        if stop is not None:
            stop.set()
        super().close()

    def _say(self, message: str, kind: str) -> None:
        self.status_kind = kind
        self.status = message

    def _on_frontend_msg(self, _widget: Any, content: dict, _buffers: list) -> None:
        """Messages from labeller.js: {"action": ..., "seq": n, ...}. Errors go to the status line."""
        try:
            action = content.get("action")
            seq = content.get("seq")
            note = content.get("note")
            if action in PAIR_JUDGEMENTS:
                self.choose(action, note, seq=seq)
            elif action == "rank":
                self.rank(content["order"], note, seq=seq)
            elif action == "likert":
                self.rate(content["scores"], note, seq=seq)
            elif action == "skip":
                self.skip(seq=seq)
            elif action == "undo":
                self.undo(seq=seq)
            else:
                self._say(f"Unknown action {action!r}.", "error")
        except Exception as exc:  # never a traceback in the widget
            self._say(f"{type(exc).__name__}: {exc}", "error")

    def __repr__(self) -> str:
        return (
            f"<PairLabeller {self.mode} annotator={self.annotator!r} criterion={self.criterion!r}: "
            f"{self.session_count} labelled this session, {self.progress.get('left', 0)} left>"
        )


def _refresh_counts(ref: weakref.ref, stop: threading.Event) -> None:
    """Keep a labeller's store counts current until it is closed or collected (a daemon thread)."""
    while not stop.wait(REFRESH_S):
        labeller = ref()
        if labeller is None or labeller.comm is None:
            return
        try:
            labeller._update_progress()
        except Exception:  # a closed store or widget: the next action says why
            pass
        del labeller
