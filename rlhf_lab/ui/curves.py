"""The dashboard's curves: which panels, one plotly subplot each, smoothed lines per stage and metric.

    >>> from rlhf_lab.ui.curves import DEFAULT_PANELS, ema
    >>> ema([1.0, 0.0, 0.0], smoothing=0.5)      # TensorBoard-style debiased smoothing

`CurvesMixin` is the drawing half of `Dashboard` (rlhf_lab.ui.dashboard): it builds the
FigureWidget, turns metric rows into traces and keeps late views in sync (rlhf_lab.ui.plotly_sync).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

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


class CurvesMixin:
    """The figure of a Dashboard: panels, traces and redraws (state set up by Dashboard.__init__)."""

    stages: list[Any]
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
        with self._draw_lock:
            sync_late_views(self.figure)
            self._last_sync = time.monotonic()

    def points(self, metric: str, stage: str | None = None) -> tuple[list[float], list[float]]:
        """The raw (unsmoothed) x, y drawn for a metric (of one stage, or the first that has it)."""
        for (stage_name, name), (xs, ys) in self._raw.items():
            if name == metric and (stage is None or stage == stage_name):
                return list(xs), list(ys)
        return [], []
