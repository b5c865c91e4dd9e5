"""`Dashboard`: live training curves and run controls for one or more stages.

    >>> from rlhf_lab.ui import Dashboard
    >>> dash = Dashboard(sft, rm, ppo, smoothing=0.6)   # one story on the shared lab_step axis
    >>> dash                                            # curves, Step/Run/Pause/Stop, beta/lr/temperature
    >>> ppo.run(steps=200)                              # curves update while it trains

The dashboard only observes and calls public stage methods: rows arrive through
`stage.subscribe`, buttons call `step`/`run`/`pause`/`resume`/`stop` and sliders call `set` (the
change applies from the next step). Redraws are throttled: rows that arrive between two frames
are batched, at most `max_fps` frames a second are drawn by a ticker thread, and the ticker
always draws the last rows before it goes idle. Where widgets cannot render (plain IPython,
nbconvert to text) the dashboard shows a text summary of the latest metrics instead.
"""

from __future__ import annotations

import copy
import html
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as W

from rlhf_lab.errors import StageError

DEFAULT_PANELS: dict[str, tuple[str, ...]] = {
    "Reward": ("objective/scores", "objective/gold_scores", "objective/rlhf_reward"),
    "KL to reference (nats/seq)": ("objective/kl",),
    "Entropy": ("policy/entropy",),
    "Policy / value loss": ("loss/policy", "loss/value"),
    "Clip fraction": ("policy/clipfrac",),
    "Response length (tokens)": ("response/length",),
    "Preference accuracy": ("rm/accuracy", "rm/val_accuracy", "rewards/accuracy"),
    "SFT / RM / DPO loss": ("loss/sft", "loss/rm", "loss/dpo"),
    "Learning rate": ("train/learning_rate",),
}
RL_PANELS = tuple(list(DEFAULT_PANELS)[:6])
# Which default panels a stage fills, by its `name`; a stage not listed gets every panel.
STAGE_PANELS = {
    "sft": ("SFT / RM / DPO loss",),
    "rm": ("Preference accuracy", "SFT / RM / DPO loss"),
    "dpo": ("Preference accuracy", "SFT / RM / DPO loss"),
    **{name: RL_PANELS for name in ("rl", "ppo", "rloo", "grpo", "reinforce")},
}
LOG_PANELS = ("Learning rate",)
SHORT_NAMES = {
    "objective/scores": "proxy reward",
    "objective/gold_scores": "gold reward",
    "objective/rlhf_reward": "reward - beta KL",
    "rm/accuracy": "RM train acc",
    "rm/val_accuracy": "RM val acc",
    "rewards/accuracy": "DPO acc",
    "loss/policy": "policy loss",
    "loss/value": "value loss",
    "loss/sft": "SFT loss",
    "loss/rm": "RM loss",
    "loss/dpo": "DPO loss",
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
DASHES = ("solid", "dash", "dot", "dashdot")
LATE_VIEW_SYNC_S = 2.0  # how often a running dashboard refreshes the state late views start from
ACTIVE = ("running",)


def clean_message(exc: BaseException | str) -> str:
    """One readable line for a status label: the message without the chained traceback."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    text = text.split("\n\n", 1)[0].strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Traceback")]
    return " ".join(lines)[:500] or "error"


def error_html(exc: BaseException | str) -> str:
    """`clean_message` as escaped, error-coloured HTML for a status widget."""
    return f'<span style="color:var(--jp-error-color1)">{html.escape(clean_message(exc))}</span>'


def ema(values: Sequence[float], smoothing: float) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing); smoothing=0 returns the values."""
    if smoothing <= 0:
        return list(values)
    out, acc, weight = [], 0.0, 0.0
    for value in values:
        acc = smoothing * acc + (1 - smoothing) * value
        weight = smoothing * weight + (1 - smoothing)
        out.append(acc / weight)
    return out


def _panels(metrics: Any) -> dict[str, tuple[str, ...]]:
    if metrics is None:
        return dict(DEFAULT_PANELS)
    if isinstance(metrics, Mapping):
        return {str(title): tuple(names) for title, names in metrics.items()}
    return {name: (name,) for name in metrics}


class Dashboard:
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
        self._trace_index: dict[tuple[str, str], int] = {}
        self._latest: dict[str, Any] = {}
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._draw_lock = threading.RLock()
        self._ticker: threading.Thread | None = None
        self._last_sync = 0.0
        self._unsubscribe = []
        self._stage_rank: dict[str, int] = {}
        self.figure = self._build_figure()
        self._build_controls()
        for stage in self.stages:
            self._attach(stage)
        self.smoothing = smoothing
        self.flush()

    # ------------------------------------------------------------------ figure
    def _choose_panels(self) -> dict[str, tuple[str, ...]]:
        """Every panel asked for; by default only those the attached stages fill (all if unknown)."""
        if not self._auto_panels or not self.stages:
            return dict(self._all_panels)
        wanted = {"Learning rate"}
        for stage in self.stages:
            wanted.update(STAGE_PANELS.get(str(getattr(stage, "name", "")), DEFAULT_PANELS))
        return {title: names for title, names in self._all_panels.items() if title in wanted}

    def _build_figure(self):
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        self.panels = self._choose_panels()
        titles = list(self.panels)
        self._columns = max(1, min(self._columns_wanted, len(titles)))
        rows = math.ceil(len(titles) / self._columns)
        self._cell = {
            title: (i // self._columns + 1, i % self._columns + 1) for i, title in enumerate(titles)
        }
        self._panel_of = {name: title for title, names in self.panels.items() for name in names}
        self._trace_index = {}
        base = make_subplots(
            rows=rows,
            cols=self._columns,
            subplot_titles=titles,
            shared_xaxes="all",
            vertical_spacing=min(0.12, 0.5 / rows),
            horizontal_spacing=0.08,
        )
        figure = go.FigureWidget(base)
        figure.update_layout(
            # a fixed size: the widget is often rendered before its cell has a width to autosize to
            # (about the width of a JupyterLab output area at 1400 px).
            width=300 * self._columns + 60,
            height=self._height or 150 + 230 * rows,
            margin={"l": 50, "r": 10, "t": 75, "b": 50},
            template="plotly_white",
            legend={
                "orientation": "h",
                "yref": "container",
                "y": 1,
                "yanchor": "top",
                "x": 0,
                "font": {"size": 11},
            },
            hovermode="x unified",
            uirevision="keep",  # zoom survives redraws
        )
        for col in range(1, self._columns + 1):
            figure.update_xaxes(title_text="lab_step", row=rows, col=col)
        for title in LOG_PANELS:
            if title in self._cell:
                row, col = self._cell[title]
                figure.update_yaxes(type="log", exponentformat="power", row=row, col=col)
        return figure

    def _rebuild_figure_if_needed(self) -> None:
        if self._choose_panels().keys() == self.panels.keys():
            return
        with self._draw_lock:
            old = self.figure
            self.figure = self._build_figure()
            self.widget.children = (*self.widget.children[:-1], self.figure)
            self._render(set(self._raw))
            old.close()

    # ------------------------------------------------------------------ controls
    def _build_controls(self) -> None:
        def layout() -> W.Layout:
            return W.Layout(width="auto")

        self.buttons = {
            "step": W.Button(description="Step 1", icon="step-forward", layout=layout()),
            "step_n": W.Button(description="Step N", icon="fast-forward", layout=layout()),
            "run": W.Button(description="Run", icon="play", button_style="success", layout=layout()),
            "pause": W.Button(description="Pause", icon="pause", layout=layout()),
            "stop": W.Button(description="Stop", icon="stop", button_style="danger", layout=layout()),
        }
        self.n_steps = W.BoundedIntText(
            value=10, min=1, max=100_000, description="N", layout=W.Layout(width="130px")
        )
        self.n_steps.style.description_width = "18px"
        for name, method in (
            ("step", self._on_step),
            ("step_n", self._on_step_n),
            ("run", self._on_run),
            ("pause", self._on_pause),
            ("stop", self._on_stop),
        ):
            self.buttons[name].on_click(self._guarded(method))

        self.stage_picker = W.Dropdown(
            options=[(f"{getattr(s, 'name', 'stage')} #{i + 1}", i) for i, s in enumerate(self.stages)],
            value=len(self.stages) - 1 if self.stages else None,
            description="Stage",
            layout=W.Layout(width="200px", display="" if len(self.stages) > 1 else "none"),
        )
        self.stage_picker.style.description_width = "40px"
        style = {"description_width": "90px"}

        def wide() -> W.Layout:  # one Layout each: hiding one slider must not hide the others
            return W.Layout(width="330px")

        self.sliders = {
            "beta": W.FloatLogSlider(
                value=0.1,
                base=10,
                min=-3,
                max=0.5,
                step=0.05,
                description="beta (KL)",
                continuous_update=False,
                readout_format=".3g",
                style=style,
                layout=wide(),
            ),
            "learning_rate": W.FloatLogSlider(
                value=1e-4,
                base=10,
                min=-7,
                max=-1,
                step=0.1,
                description="learning rate",
                continuous_update=False,
                readout_format=".2e",
                style=style,
                layout=wide(),
            ),
            "temperature": W.FloatSlider(
                value=1.0,
                min=0.1,
                max=2.0,
                step=0.05,
                description="temperature",
                continuous_update=False,
                readout_format=".2f",
                style=style,
                layout=wide(),
            ),
        }
        for name, slider in self.sliders.items():
            slider.observe(self._guarded(lambda change, name=name: self._on_slider(name, change)), "value")
        self.smoothing_slider = W.FloatSlider(
            value=0.0,
            min=0.0,
            max=0.99,
            step=0.01,
            description="smoothing",
            continuous_update=False,
            style=style,
            layout=wide(),
        )
        self.smoothing_slider.observe(lambda change: self._redraw_all(), "value")
        self.status = W.HTML(value="", layout=W.Layout(min_height="22px"))
        self.status.add_class("rl-dash-status")
        self.stage_picker.observe(lambda change: self._sync_controls(), "value")

        self._syncing = False
        self._sync_controls()
        buttons = W.HBox(
            [self.stage_picker, *self.buttons.values(), self.n_steps],
            layout=W.Layout(flex_flow="row wrap", align_items="center", gap="4px"),
        )
        sliders = W.HBox(
            [*self.sliders.values(), self.smoothing_slider],
            layout=W.Layout(flex_flow="row wrap", gap="2px 12px"),
        )
        self.widget = W.VBox([buttons, sliders, self.status, self.figure])
        self.widget.add_class("rl-dashboard")

    @property
    def smoothing(self) -> float:
        return float(self.smoothing_slider.value)

    @smoothing.setter
    def smoothing(self, value: float) -> None:
        self.smoothing_slider.value = float(value)

    @property
    def stage(self) -> Any:
        """The stage the controls act on."""
        if not self.stages:
            return None
        return self.stages[self.stage_picker.value if self.stage_picker.value is not None else -1]

    def _guarded(self, fn):
        """Wrap a control callback: an exception becomes a status message, never a traceback."""

        def wrapper(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                self._show_status(error=clean_message(exc))
            else:
                self._show_status()

        return wrapper

    def _require_stage(self) -> Any:
        if self.stage is None:
            raise ValueError("no stage attached: Dashboard(stage) or dashboard.attach(stage)")
        return self.stage

    def _on_step(self, _button: Any = None) -> None:
        self._require_stage().step(1, progress=False)
        self.flush()

    def _on_step_n(self, _button: Any = None) -> None:
        self._require_stage().step(int(self.n_steps.value), progress=False)
        self.flush()

    def _on_run(self, _button: Any = None) -> None:
        stage = self._require_stage()
        if getattr(stage, "status", None) == "paused":
            try:
                stage.resume()  # a paused background run continues
            except StageError:
                stage.run()  # paused by step()/an error, with no run to resume
        else:
            stage.run()
        self._ensure_ticker()

    def _on_pause(self, _button: Any = None) -> None:
        self._require_stage().pause(wait=False)
        self._ensure_ticker()

    def _on_stop(self, _button: Any = None) -> None:
        self._require_stage().stop(timeout=10)
        self.flush()

    def _on_slider(self, name: str, change: dict) -> None:
        if self._syncing:
            return
        self._require_stage().set(**{name: float(change["new"])})

    def _sync_controls(self) -> None:
        """Show the sliders the selected stage can change, at its current values."""
        stage = self.stage
        mutable = set(getattr(stage, "mutable_hparams", ()) or ())
        config = getattr(stage, "config", None)
        self._syncing = True
        try:
            for name, slider in self.sliders.items():
                value = getattr(config, name, None)
                usable = name in mutable and isinstance(value, (int, float)) and not isinstance(value, bool)
                slider.layout.display = "" if usable else "none"
                if usable and value > 0:
                    slider.value = float(value)
        finally:
            self._syncing = False
        self._show_status()

    # ------------------------------------------------------------------ status
    def _show_status(self, error: str | None = None) -> None:
        import html

        stage = self.stage
        if stage is None:
            self.status.value = "<span style='color:var(--jp-ui-font-color2)'>No stage attached.</span>"
            return
        state = getattr(stage, "status", "?")
        message = error or getattr(stage, "error_message", None)
        parts = [f"<b>{html.escape(str(getattr(stage, 'name', 'stage')))}</b>: {html.escape(str(state))}"]
        if getattr(stage, "step_count", None) is not None:
            parts.append(f"step {int(stage.step_count)}")
        if self._latest.get("lab_step") is not None:
            parts.append(f"lab_step {int(self._latest['lab_step'])}")
        text = " · ".join(parts)
        if message:
            text += (
                " &nbsp; <span class='rl-dash-error' style='color:var(--jp-error-color1,#d32f2f);font-weight:600'>"
                f"{html.escape(clean_message(message))}</span>"
            )
        self.status.value = text

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
        with self._lock:
            if self._ticker is not None and self._ticker.is_alive():
                return
            self._ticker = threading.Thread(target=self._tick, name="rlhf-lab-dashboard", daemon=True)
            self._ticker.start()

    def _busy(self) -> bool:
        return any(getattr(s, "status", None) in ACTIVE for s in self.stages)

    def _tick(self) -> None:
        interval = 1.0 / self.max_fps
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

    def flush(self) -> None:
        """Draw every row received so far now (also the final ones) and sync late views."""
        self._draw_pending()
        self._show_status()
        self._sync_late_views()

    def wait(self, timeout: float | None = 10.0) -> None:
        """Block until the ticker has drawn everything and gone idle (for scripts and tests)."""
        ticker = self._ticker
        if ticker is not None:
            ticker.join(timeout)
        self.flush()

    def _draw_pending(self) -> None:
        with self._draw_lock:
            with self._lock:
                rows, self._pending = self._pending, []
            if not rows:
                return
            changed = set()
            for row in rows:
                stage_name = str(row.get("stage", "stage"))
                x = row.get("lab_step", row.get("step"))
                if x is None:
                    continue
                self._latest.update({k: v for k, v in row.items() if v is not None})
                for name in self._all_metrics():
                    value = row.get(name)
                    if (
                        not isinstance(value, (int, float))
                        or isinstance(value, bool)
                        or not math.isfinite(value)
                    ):
                        continue
                    xs, ys = self._raw.setdefault((stage_name, name), ([], []))
                    xs.append(x)
                    ys.append(float(value))
                    changed.add((stage_name, name))
            self._render(changed)

    def _all_metrics(self) -> list[str]:
        return [name for names in self._all_panels.values() for name in names]

    def _redraw_all(self) -> None:
        with self._draw_lock:
            self._render(set(self._raw))
        self._sync_late_views()

    def _render(self, keys: set[tuple[str, str]]) -> None:
        if not keys:
            return
        import plotly.graph_objects as go

        smoothing = self.smoothing
        keys = {key for key in keys if key[1] in self._panel_of}
        with self.figure.batch_update():
            for key in sorted(keys):
                xs, ys = self._raw[key]
                if key not in self._trace_index:
                    stage_name, name = key
                    panel = self._panel_of[name]
                    row, col = self._cell[panel]
                    # colour = which metric of its panel, dash = which stage
                    color = PALETTE[self.panels[panel].index(name) % len(PALETTE)]
                    dash = DASHES[
                        self._stage_rank.setdefault(stage_name, len(self._stage_rank)) % len(DASHES)
                    ]
                    self.figure.add_trace(
                        go.Scatter(
                            x=[],
                            y=[],
                            name=f"{stage_name}: {SHORT_NAMES.get(name, name)}",
                            mode="lines",
                            line={"color": color, "width": 2, "dash": dash},
                            meta=name,
                            # a one-metric panel is named by its title; the legend is for the others
                            showlegend=len(self.panels[panel]) > 1 or len(self.stages) > 1,
                        ),
                        row=row,
                        col=col,
                    )
                    self._trace_index[key] = len(self.figure.data) - 1
                trace = self.figure.data[self._trace_index[key]]
                trace.x = list(xs)
                trace.y = ema(ys, smoothing)
                trace.mode = "lines+markers" if len(xs) < 40 else "lines"
        self.redraws += 1

    def _sync_late_views(self) -> None:
        # FigureWidget sends updates as one-shot messages; a view attached later (page reload,
        # second tab, Voila) reads the synced _widget_data/_widget_layout, which plotly refreshes
        # only in _repr_mimebundle_. Nested in a VBox that is never called, so refresh it here.
        with self._draw_lock:
            self.figure._widget_data = copy.deepcopy(self.figure._data)
            self.figure._widget_layout = copy.deepcopy(self.figure._layout_obj._props)
            self._last_sync = time.monotonic()

    def points(self, metric: str, stage: str | None = None) -> tuple[list[float], list[float]]:
        """The raw (unsmoothed) x, y drawn for a metric (of one stage, or the first that has it)."""
        for (stage_name, name), (xs, ys) in self._raw.items():
            if name == metric and (stage is None or stage == stage_name):
                return list(xs), list(ys)
        return [], []

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
