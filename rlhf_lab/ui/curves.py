"""The dashboard's curves: which panels, one plotly subplot each, smoothed lines per stage and metric.

Colour is the metric, dash the stage (rlhf_lab.ui.chart_style); a curve breaks where its stage's
lab_step jumped because other stages ran meanwhile. Panels only RL stages fill share one x range
and the rest another (zooming one panel zooms its group): in a flywheel, SFT and reward-model steps
would otherwise squeeze the RL curves into the right edge of every RL panel.

    >>> from rlhf_lab.ui.curves import DEFAULT_PANELS, ema
    >>> ema([1.0, 0.0, 0.0], smoothing=0.5)      # TensorBoard-style debiased smoothing
    [1.0, 0.3333333333333333, 0.14285714285714285]

`CurvesMixin` is the drawing half of `Dashboard` (rlhf_lab.ui.dashboard): it builds the
FigureWidget, turns metric rows into traces and keeps late views in sync (rlhf_lab.ui.plotly_sync).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rlhf_lab.ui.chart_style import (
    DASHES,
    LEGEND_ROOM_PX,
    MARK_COLOR,
    STAGE_KEY_COLOR,
    STAGE_KEY_LEGEND,
    metric_colors,
    panel_legend,
    segments,
)
from rlhf_lab.ui.plotly_sync import sync_late_views

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
RL_METRICS = frozenset(name for title in RL_PANELS for name in DEFAULT_PANELS[title])
RL_METRIC_PREFIXES = ("objective/", "policy/", "response/", "val/")
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
TOP_MARGIN_PX, STAGE_KEY_PX = 60, 25
INTEGER_TICKS_BELOW = 8  # an x range shorter than this many steps gets a tick at every step


def ema(values: Sequence[float], smoothing: float) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing); smoothing=0 returns the values.

    Each output is a weighted mean of the values so far, so it is kept within their min and max:
    without that, rounding makes a constant 24 come out as 24.000000000000004 and plotly labels a
    tick "24.00000000000000355".
    """
    if smoothing <= 0:
        return list(values)
    out, acc, weight = [], 0.0, 0.0
    low, high = math.inf, -math.inf
    for value in values:
        acc = smoothing * acc + (1 - smoothing) * value
        weight = smoothing * weight + (1 - smoothing)
        low, high = min(low, value), max(high, value)
        out.append(min(max(acc / weight, low), high))
    return out


def x_group(names: Sequence[str]) -> str:
    """ "rl" for a panel of RL metrics only, "all" for one any stage may fill (its own x range).

    >>> x_group(["objective/kl"]), x_group(["loss/sft"]), x_group(["train/learning_rate"])
    ('rl', 'all', 'all')
    """
    rl = all(name in RL_METRICS or name.startswith(RL_METRIC_PREFIXES) for name in names)
    return "rl" if names and rl else "all"


def _panels(metrics: Any) -> dict[str, tuple[str, ...]]:
    if metrics is None:
        return dict(DEFAULT_PANELS)
    if isinstance(metrics, Mapping):
        return {str(title): tuple(names) for title, names in metrics.items()}
    return {name: (name,) for name in metrics}


class CurvesMixin:
    """The figure of a Dashboard: panels, traces and redraws (state set up by Dashboard.__init__)."""

    stages: list[Any]
    _marks: list[tuple[float, str]]
    _metric_x_range: dict[str, tuple[float, float]]
    _draw_lock: threading.RLock
    _lock: threading.Lock

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
        self._colors = metric_colors(self.panels)
        # a legend of its own for each panel with several metrics (legend2, legend3, ...)
        multi = [title for title, names in self.panels.items() if len(names) > 1]
        self._legend_of = {title: f"legend{i + 2}" for i, title in enumerate(multi)}
        self._trace_index = {}
        self._key_index: dict[tuple[str, str], int] = {}  # legend-only traces: metric and stage keys
        self._x_ticks_every_step: dict[str, bool] = {}  # per x group (`x_group`)
        base = make_subplots(
            rows=rows,
            cols=self._columns,
            subplot_titles=titles,
            vertical_spacing=min(0.12, 0.5 / rows),
            horizontal_spacing=0.08,
        )
        self._share_x_within_groups(base)
        figure = go.FigureWidget(base)
        figure.update_layout(
            # a fixed size: the widget is often rendered before its cell has a width to autosize to
            # (about the width of a JupyterLab output area at 1400 px).
            width=300 * self._columns + 60,
            height=self._height or 150 + 230 * rows,
            # r: room for the vertical modebar, so it never covers a legend or a curve
            margin={"l": 50, "r": 35, "t": TOP_MARGIN_PX, "b": 50},
            template="plotly_white",
            legend=STAGE_KEY_LEGEND,
            modebar={"orientation": "v"},
            hovermode="x unified",
            uirevision="keep",  # zoom survives redraws
        )
        for title, legend in self._legend_of.items():
            figure.layout[legend] = panel_legend(figure, *self._cell[title])
        if self._legend_of:
            for annotation in figure.layout.annotations:  # titles up: their legends sit below them
                annotation.yshift = LEGEND_ROOM_PX
        for col in range(1, self._columns + 1):  # the axis title under each column's lowest panel
            lowest = max((r for r, c in self._cell.values() if c == col), default=None)
            if lowest is not None:
                figure.update_xaxes(title_text="lab_step", row=lowest, col=col)
        for title in LOG_PANELS:
            if title in self._cell:
                row, col = self._cell[title]
                figure.update_yaxes(type="log", exponentformat="power", row=row, col=col)
        for at, label in self._marks:
            self._draw_mark(figure, at, label)
        return figure

    def _share_x_within_groups(self, figure: Any) -> None:
        """Link the x axes of each group of panels (`x_group`); tick labels where the next panel down differs.

        A panel's ticks are hidden only when the panel right below it shares its axis range, so every
        group keeps its own labelled scale.
        """
        self._group_of = {title: x_group(names) for title, names in self.panels.items()}
        first_axis: dict[str, str] = {}
        for title, (row, col) in self._cell.items():
            axis = figure.get_subplot(row, col).xaxis
            group = self._group_of[title]
            name = axis.plotly_name.replace("axis", "")  # "xaxis4" -> "x4", as `matches` wants it
            anchor = first_axis.setdefault(group, name)
            if anchor != name:
                axis.matches = anchor
            below = next((t for t, cell in self._cell.items() if cell == (row + 1, col)), None)
            if below is not None and self._group_of[below] == group:
                axis.showticklabels = False

    def mark(self, label: str, at: float | None = None) -> float:
        """A dotted vertical line across every panel at lab_step `at`, labelled in the top row.

        Marks an event the curves alone do not show: a flywheel round's retrained reward model, a
        changed beta, a new batch of labels. `at` defaults to the newest lab_step drawn so far, so
        `dash.mark("round 2")` right after the event marks where the curves go on from. Returns the
        x used. Marks survive a redraw (attaching a stage) and show in late views.

            >>> dash.mark("reward model retrained (round 1)")
        """
        label = str(label)
        with self._draw_lock:
            self._draw_pending()  # rows that arrived before the event belong left of its line
            if at is None:
                at = max((high for _, high in self._metric_x_range.values()), default=0)
            at = float(at)
            if not math.isfinite(at):
                raise ValueError(f"mark position must be a finite lab_step, got {at!r}")
            self._marks.append((at, label))
            self._draw_mark(self.figure, at, label)
        self._sync_late_views()
        return at

    def _draw_mark(self, figure: Any, at: float, label: str) -> None:
        line = {"dash": "dot", "color": MARK_COLOR, "width": 1}
        # The label once per column (top row), written upwards along the left of its line: marks a
        # few steps apart (flywheel rounds) would overlap if their labels ran sideways. Without
        # annotation_text plotly adds no annotation (an annotation_* option alone adds "new text").
        label_options = {
            "annotation_text": label,
            "annotation_position": "top left",
            "annotation_textangle": -90,
            "annotation_font": {"size": 10, "color": MARK_COLOR},
        }
        for row, col in self._cell.values():
            figure.add_vline(
                x=at,
                line=line,
                row=row,
                col=col,
                exclude_empty_subplots=False,  # a panel may have no curve yet
                **(label_options if row == 1 else {}),
            )

    def _rebuild_figure_if_needed(self) -> None:
        if self._choose_panels().keys() == self.panels.keys():
            return
        with self._draw_lock:
            old = self.figure
            self.figure = self._build_figure()
            self.widget.children = (*self.widget.children[:-1], self.figure)
            self._render(set(self._raw))
            old.close()

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
                step = row.get("step")
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
                    low, high = self._metric_x_range.get(name, (math.inf, -math.inf))
                    self._metric_x_range[name] = (min(low, x), max(high, x))
                    xs.append(x)
                    ys.append(float(value))
                    self._steps.setdefault((stage_name, name), []).append(
                        step if isinstance(step, (int, float)) else None
                    )
                    changed.add((stage_name, name))
            self._render(changed)

    def _all_metrics(self) -> list[str]:
        return [name for names in self._all_panels.values() for name in names]

    def _redraw_all(self) -> None:
        with self._draw_lock:
            self._render(set(self._raw))
        self._sync_late_views()

    def _dash_rank(self, stage_name: str) -> int:
        """Stages rank by the order they were attached (then by first row), the same in every panel."""
        for name in dict.fromkeys(str(getattr(s, "name", "stage")) for s in self.stages):
            self._stage_rank.setdefault(name, len(self._stage_rank))
        return self._stage_rank.setdefault(stage_name, len(self._stage_rank))

    def _dash(self, stage_name: str) -> str:
        return DASHES[self._dash_rank(stage_name) % len(DASHES)]

    def _add_key(self, key: tuple[str, str], trace: Any, legend: str) -> None:
        """A legend-only trace (no points): one entry per metric of a panel, or per stage."""
        meta = f"key:{key[0]}:{key[1]}"  # every trace has a meta; a metric name only on curves
        trace.update(x=[None], y=[None], mode="lines", legend=legend, hoverinfo="skip", meta=meta)
        self.figure.add_trace(trace)
        self._key_index[key] = len(self.figure.data) - 1

    def _render(self, keys: set[tuple[str, str]]) -> None:
        if not keys:
            return
        import plotly.graph_objects as go

        smoothing = self.smoothing
        keys = {key for key in keys if key[1] in self._panel_of}
        with self.figure.batch_update():
            for key in sorted(keys, key=self._draw_order):
                stage_name, name = key
                panel = self._panel_of[name]
                legend = self._legend_of.get(panel)
                if legend and ("metric", name) not in self._key_index:
                    line = {"color": self._colors[name], "width": 2}
                    self._add_key(
                        ("metric", name),
                        go.Scatter(name=SHORT_NAMES.get(name, name), line=line, legendgroup=name),
                        legend,
                    )
                if key not in self._trace_index:
                    row, col = self._cell[panel]
                    self.figure.add_trace(
                        go.Scatter(
                            x=[],
                            y=[],
                            name=f"{stage_name}: {SHORT_NAMES.get(name, name)}",  # in hover labels
                            mode="lines",
                            line={"color": self._colors[name], "width": 2, "dash": self._dash(stage_name)},
                            meta=name,
                            legend=legend or "legend",
                            # its panel's legend entry shows/hides the metric's curve in every stage
                            legendgroup=name if legend else None,
                            showlegend=False,
                        ),
                        row=row,
                        col=col,
                    )
                    self._trace_index[key] = len(self.figure.data) - 1
                self._draw_trace(key, smoothing)
            self._update_stage_key()
            self._update_x_ticks()
        self.redraws += 1

    def _draw_order(self, key: tuple[str, str]) -> tuple[int, int]:
        """Stages in attach order, metrics in their panel's order (the order of legend entries)."""
        stage_name, name = key
        return self._dash_rank(stage_name), self.panels[self._panel_of[name]].index(name)

    def _draw_trace(self, key: tuple[str, str], smoothing: float) -> None:
        """Set a trace's points: one line per run of consecutive steps, a None gap between runs."""
        xs, ys = self._raw[key]
        x: list[float | None] = []
        y: list[float | None] = []
        sizes: list[int] = []
        few = len(xs) < 40
        for start, end in segments(xs, self._steps.get(key, [None] * len(xs))):
            if x:
                x.append(None)
                y.append(None)
                sizes.append(0)
            x.extend(xs[start:end])
            y.extend(ema(ys[start:end], smoothing))  # smoothing restarts with each run
            sizes.extend([6 if few or end - start == 1 else 0] * (end - start))
        trace = self.figure.data[self._trace_index[key]]
        trace.x = x
        trace.y = y
        lone = any(sizes) and not few  # a one-point run is a marker, or it would not show at all
        trace.mode = "lines+markers" if few or lone else "lines"
        trace.marker = {"size": sizes if lone else 6}

    def _update_stage_key(self) -> None:
        """With several stages drawn, one key entry per stage: its dash style."""
        import plotly.graph_objects as go

        drawn = sorted({stage for stage, _ in self._trace_index}, key=self._dash_rank)
        if len(drawn) < 2:
            return
        if self.figure.layout.margin.t != TOP_MARGIN_PX + STAGE_KEY_PX:  # room for the key on top
            self.figure.layout.margin.t = TOP_MARGIN_PX + STAGE_KEY_PX
        for stage_name in drawn:
            if ("stage", stage_name) not in self._key_index:
                line = {"color": STAGE_KEY_COLOR, "width": 2, "dash": self._dash(stage_name)}
                self._add_key(("stage", stage_name), go.Scatter(name=stage_name, line=line), "legend")

    def _update_x_ticks(self) -> None:
        """A tick at every lab_step while a group's range is short (plotly would tick at 1.5, 2, 2.5...)."""
        for group in set(self._group_of.values()):
            titles = [title for title, g in self._group_of.items() if g == group]
            low, high = math.inf, -math.inf
            for title in titles:
                for name in self.panels[title]:
                    a, b = self._metric_x_range.get(name, (math.inf, -math.inf))
                    low, high = min(low, a), max(high, b)
            every_step = high - low < INTEGER_TICKS_BELOW
            if every_step == self._x_ticks_every_step.get(group):
                continue
            self._x_ticks_every_step[group] = every_step
            ticks = (
                {"tickmode": "linear", "tick0": 0, "dtick": 1}
                if every_step
                else {"tickmode": None, "tick0": None, "dtick": None}
            )
            for title in titles:
                row, col = self._cell[title]
                self.figure.update_xaxes(row=row, col=col, **ticks)

    def _sync_late_views(self) -> None:
        with self._draw_lock:
            sync_late_views(self.figure)
            self._last_sync = time.monotonic()

    def points(self, metric: str, stage: str | None = None) -> tuple[list[float], list[float]]:
        """The raw (unsmoothed) x, y drawn for a metric (of one stage, or the first that has it)."""
        for (stage_name, name), (xs, ys) in self._raw.items():
            if name == metric and (stage is None or stage == stage_name):
                return list(xs), list(ys)
        return [], []
