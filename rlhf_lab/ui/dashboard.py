"""`Dashboard`: live training curves and run controls for one or more stages.

    >>> from rlhf_lab.ui import Dashboard
    >>> dash = Dashboard(sft, rm, ppo, smoothing=0.6)   # one story in lab_step units
    >>> dash                                            # curves, Step/Run/Pause/Stop, beta/lr/temperature
    >>> ppo.run(steps=200)                              # curves update while it trains
    >>> dash.mark("reward model retrained")             # a dotted line where the curves go on from

A notebook that needs a run finished waits with `await dash.finished()` (or `await
until_done(stage)`): unlike `stage.wait()`, an awaiting cell lets the kernel handle widget
messages (ipykernel 7.4 and later dispatch comm messages while a cell awaits), so Pause, Run
and Step keep working during Run All, and the cells below run when the run ends.

The dashboard is assembled from its curves (rlhf_lab.ui.curves: panels, traces, smoothing),
its controls (rlhf_lab.ui.controls: buttons, sliders, status) and shared HTML helpers
(rlhf_lab.ui.html). It only observes and calls public stage methods: rows arrive through
`stage.subscribe`, buttons call `step`/`run`/`pause`/`resume`/`stop` and sliders call `set` (the
change applies from the next step). Redraws are throttled: rows that arrive between two frames
are batched, at most `max_fps` frames a second are drawn by a ticker thread, and the ticker
always draws the last rows before it goes idle. Where widgets cannot render (plain IPython,
nbconvert to text) the dashboard shows a text summary of the latest metrics instead.

Every panel counts `lab_step`, but the RL panels zoom to the RL steps while the SFT, reward-model
and learning-rate panels span the whole run (rlhf_lab.ui.curves.x_group), so 120 SFT steps before
10 PPO steps do not squeeze the PPO curves into a sliver.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from rlhf_lab.ui.awaiting import upgrade_hint, widgets_answer_while_awaiting
from rlhf_lab.ui.chart_style import DASHES, PALETTE  # noqa: F401  (re-exported)
from rlhf_lab.ui.controls import ControlsMixin
from rlhf_lab.ui.curves import (  # noqa: F401  (re-exported: views and tests import them from here)
    DEFAULT_PANELS,
    LOG_PANELS,
    RL_PANELS,
    SHORT_NAMES,
    STAGE_PANELS,
    CurvesMixin,
    _panels,
    ema,
)
from rlhf_lab.ui.html import clean_message, error_html  # noqa: F401  (re-exported)

LATE_VIEW_SYNC_S = 2.0  # how often a running dashboard refreshes the state late views start from
ACTIVE = ("running",)


class Dashboard(CurvesMixin, ControlsMixin):
    """Live curves (plotly FigureWidget subplots) plus Step/Run/Pause/Stop and hyper-parameter sliders.

    `metrics`: None for the default panels, a list of metric names (one panel each) or a dict
    {panel title: [metric names]}. Controls act on the stage picked in the dropdown (the last one
    by default).
    """

    def __init__(
        self,
        *stages: Any,
        metrics: Any = None,
        smoothing: float = 0.0,
        max_fps: float = 4,
        columns: int = 3,
        height: int | None = None,
    ) -> None:
        if max_fps <= 0:
            raise ValueError("max_fps must be positive")
        self.stages = list(stages)
        self._all_panels = _panels(metrics)
        self._auto_panels = metrics is None
        self._columns_wanted = columns
        self._height = height
        self.max_fps = float(max_fps)
        self.redraws = 0  # frames drawn, for tests and curiosity
        self._raw: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        self._steps: dict[tuple[str, str], list[float | None]] = {}  # each point's own stage step
        self._metric_x_range: dict[str, tuple[float, float]] = {}  # smallest and largest lab_step per metric
        self._trace_index: dict[tuple[str, str], int] = {}
        self._latest: dict[str, Any] = {}
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._draw_lock = threading.RLock()
        self._ticker: threading.Thread | None = None  # set while a ticker draws; it clears it as it stops
        self._ticker_done = threading.Event()  # the latest ticker's end (set: none is drawing)
        self._ticker_done.set()
        self._last_sync = 0.0
        self._unsubscribe = []
        self._stage_rank: dict[str, int] = {}
        self._marks: list[tuple[float, str]] = []  # (lab_step, label) of each Dashboard.mark
        self.figure = self._build_figure()
        self._build_controls()
        for stage in self.stages:
            self._attach(stage)
        self.smoothing = smoothing
        self.flush()

    # ------------------------------------------------------------------ data flow
    def attach(self, stage: Any) -> None:
        """Follow another stage (its past rows are drawn at once)."""
        self.stages.append(stage)
        self._rebuild_figure_if_needed()
        self._attach(stage)
        self.stage_picker.options = [
            (f"{getattr(s, 'name', 'stage')} #{i + 1}", i) for i, s in enumerate(self.stages)
        ]
        self.stage_picker.value = len(self.stages) - 1
        self.stage_picker.layout.display = "" if len(self.stages) > 1 else "none"
        self.flush()

    def _attach(self, stage: Any) -> None:
        past = getattr(stage, "rows", None)
        if past is None and hasattr(stage, "history"):
            past = stage.history.to_dict("records")
        with self._lock:
            self._pending.extend(past or [])
        self._unsubscribe.append(stage.subscribe(self._on_row))

    def _on_row(self, row: dict) -> None:
        """Subscriber: called in the stage's thread for each new row; drawing happens in the ticker."""
        with self._lock:
            self._pending.append(row)
        self._ensure_ticker()

    def _ensure_ticker(self) -> None:
        # Not `is_alive()`: the notebook's stop button during `wait()`'s join makes CPython (3.11, 3.12)
        # mark the ticker stopped while it still runs (bpo-45274), and a second ticker would start.
        with self._lock:
            if self._ticker is not None:
                return
            done = threading.Event()
            self._ticker_done = done
            self._ticker = threading.Thread(
                target=self._tick, args=(done,), name="rlhf-lab-dashboard", daemon=True
            )
            self._ticker.start()

    def _busy(self) -> bool:
        return any(getattr(s, "status", None) in ACTIVE for s in self.stages)

    def _tick(self, done: threading.Event) -> None:
        interval = 1.0 / self.max_fps
        try:
            while True:
                time.sleep(interval)
                self._draw_pending()
                self._show_status()
                if time.monotonic() - self._last_sync > LATE_VIEW_SYNC_S:
                    self._sync_late_views()
                with self._lock:
                    if not self._pending and not self._busy():
                        self._ticker = None
                        break
            self._draw_pending()  # rows that slipped in while we decided to stop
            self._sync_late_views()
        finally:
            with self._lock:  # a drawing error ended the loop early: let the next row start a ticker
                if self._ticker is threading.current_thread():
                    self._ticker = None
            done.set()

    def flush(self) -> None:
        """Draw every row received so far now (also the final ones) and sync late views."""
        self._draw_pending()
        self._show_status()
        self._sync_late_views()

    def wait(self, timeout: float | None = 10.0) -> None:
        """Block until the ticker has drawn everything and gone idle (for scripts and tests)."""
        self._ticker_done.wait(timeout)  # an Event, not join(): see _ensure_ticker
        self.flush()

    async def finished(self, poll_s: float = 0.2) -> None:
        """Await the end of every background run on this dashboard; the buttons act meanwhile.

        A paused run has not ended: press Run (or Stop) in the dashboard and the wait ends.
        """
        await until_done(*self.stages, poll_s=poll_s)
        self.wait()

    # ------------------------------------------------------------------ display
    def summary(self) -> str:
        """Plain-text state: each stage's status and the latest value of every plotted metric."""
        lines = ["rlhf-lab dashboard"]
        for stage in self.stages:
            line = f"  {getattr(stage, 'name', 'stage')}: {getattr(stage, 'status', '?')}, step {getattr(stage, 'step_count', '?')}"
            message = getattr(stage, "error_message", None)
            if message:
                line += f" (error: {clean_message(message)})"
            lines.append(line)
        shown = [
            (n, self._latest[n]) for n in self._panel_of if isinstance(self._latest.get(n), (int, float))
        ]
        if shown:
            lines.append("  latest: " + ", ".join(f"{n}={v:.4g}" for n, v in shown))
        else:
            lines.append("  no metrics yet")
        if self._marks:
            lines.append("  marks: " + ", ".join(f"{label} (lab_step {at:g})" for at, label in self._marks))
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict:
        self.flush()
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude, **kwargs) or {}
        bundle = dict(bundle)
        bundle["text/plain"] = self.summary()
        return bundle

    def __repr__(self) -> str:
        return self.summary()

    def close(self) -> None:
        """Stop following the stages and close the widgets."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self.widget.close()
        self.figure.close()


async def until_done(*stages: Any, poll_s: float = 0.2) -> None:
    """Await the end of the stages' background runs (`await until_done(ppo)` in a notebook cell).

    Awaiting, rather than blocking in `stage.wait()`, leaves the kernel free to handle widget
    messages, so dashboard buttons act while the cell waits. A paused run keeps the cell waiting
    until Run or Stop is pressed. Errors from a run are re-raised, as `wait()` does. Interrupting the
    cell (the notebook's stop button) pauses the runs after their current step, as it does `wait()`.

    Keep the cell after this one free of `await`: with ipykernel 7.4.0 it can keep showing `[*]`
    after it has run (`rlhf_lab.ui.awaiting`). A kernel that holds widget clicks back while a cell
    awaits (ipykernel < 7.4) still waits for the run to end, but the buttons act only afterwards: it
    says so once.
    """
    if any(_in_flight(s) for s in stages) and not widgets_answer_while_awaiting():
        print(f"Note: the dashboard's buttons act only after this cell ends: {upgrade_hint()}.")
    announced = False
    try:
        while any(_in_flight(s) for s in stages):
            if not announced and any(getattr(s, "status", None) == "paused" for s in stages):
                print("A run is paused: this cell waits until you press Run (or Stop) in the dashboard.")
                announced = True
            await asyncio.sleep(poll_s)
    except asyncio.CancelledError:  # the notebook's stop button: ipykernel cancels an awaiting cell
        for stage in stages:
            if hasattr(stage, "pause_on_interrupt"):
                stage.pause_on_interrupt()
        raise
    for stage in stages:
        stage.wait()


def _in_flight(stage: Any) -> bool:
    """A background run is alive (running or paused). Objects that are not stages: status "running"."""
    if hasattr(stage, "run_in_flight"):
        return bool(stage.run_in_flight)
    return getattr(stage, "status", None) == "running"
