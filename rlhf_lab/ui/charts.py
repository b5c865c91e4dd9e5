"""Static comparison charts for the labs' result tables.

    >>> from rlhf_lab.ui import bar_panels
    >>> bar_panels(table, ["proxy reward", "gold reward", "length (tokens)"])   # one panel per column

Rows (often long policy names) become horizontal bars, so their labels are written once, level, on
the left of the first panel, with the margin sized to fit them (plotly's `automargin`), and never
run into the next panel as rotated x labels do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlhf_lab.ui.chart_style import METRIC_COLORS, PALETTE

# The colours the dashboard gives these metrics, for the labs' tables' column names.
COLUMN_COLORS = {
    "proxy reward": METRIC_COLORS["objective/scores"],
    "gold reward": METRIC_COLORS["objective/gold_scores"],
    "length (tokens)": METRIC_COLORS["response/length"],
    "KL (nats)": METRIC_COLORS["objective/kl"],
}


def bar_panels(
    table: Any,
    columns: Sequence[str],
    *,
    titles: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    width: int = 960,
    digits: int = 2,
) -> Any:
    """One panel per column of `table` (a DataFrame), one horizontal bar per row, rows top to bottom.

    The row labels are shown once, on the shared y axis of the first panel; each bar carries its
    value (rounded to `digits`) where it fits, and in its hover label. Returns a plotly `go.Figure`.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    columns = list(columns)
    titles = list(titles) if titles is not None else columns
    if len(titles) != len(columns):
        raise ValueError(f"{len(titles)} titles for {len(columns)} columns")
    colors = (
        list(colors)
        if colors is not None
        else [COLUMN_COLORS.get(c, PALETTE[i % len(PALETTE)]) for i, c in enumerate(columns)]
    )
    labels = [str(label) for label in table.index]
    fig = make_subplots(
        rows=1, cols=len(columns), subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.04
    )
    for col, (column, color) in enumerate(zip(columns, colors), start=1):
        values = [float(v) for v in table[column]]
        fig.add_trace(
            go.Bar(
                x=values,
                y=labels,
                orientation="h",
                marker_color=color,
                name=titles[col - 1],
                text=[f"{v:.{digits}f}" for v in values],
                textposition="inside",  # outside, a negative bar's value would cover the row labels
                textangle=0,
                insidetextanchor="end",
                hovertemplate="%{y}: %{x:.3g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_yaxes(autorange="reversed", automargin=True)  # first row on top, labels fit the margin
    fig.update_xaxes(automargin=True, zeroline=True, zerolinecolor="#999")
    fig.update_layout(
        width=width,
        height=110 + 34 * max(1, len(labels)),
        showlegend=False,
        template="plotly_white",
        margin={"l": 10, "r": 20, "t": 60, "b": 30},  # t: the modebar sits above the titles
        uniformtext={"minsize": 9, "mode": "hide"},  # a value too long for its bar: in the hover only
    )
    return fig
