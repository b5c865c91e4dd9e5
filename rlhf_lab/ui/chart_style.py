"""How the dashboard's curves look: a colour per metric, a dash style per stage, segments and legends.

    >>> from rlhf_lab.ui.chart_style import metric_colors, segments
    >>> metric_colors({"Reward": ("objective/scores", "objective/gold_scores")})
    {'objective/scores': '#1f77b4', 'objective/gold_scores': '#2ca02c'}
    >>> segments([1, 2, 3, 10], [1, 2, 3, 4])     # lab_step jumped 3 -> 10 while step went 3 -> 4
    [(0, 3), (3, 4)]

Colour says which metric (the same colour in every panel and stage), dash says which stage (the same
dash in every panel). Panels with several metrics get a small legend of their own above the plot
(plotly's multiple legends, `layout.legend2`..., plotly >= 5.15); a dashboard with several stages
gets one key of the stages' dash styles at the top. The legends list each metric and each stage
once, however many stages or rounds are drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Fixed colours for the metrics the stages emit, so a metric keeps its colour whatever the panels
# (proxy blue, gold green, length grey: the colours lab 04's bar chart uses too). Mostly plotly's
# qualitative "D3" palette, then the darker "category20b" shades (d3-scale-chromatic).
METRIC_COLORS: dict[str, str] = {
    "objective/scores": "#1f77b4",
    "objective/gold_scores": "#2ca02c",
    "objective/rlhf_reward": "#9467bd",
    "objective/kl": "#ff7f0e",
    "policy/entropy": "#17becf",
    "loss/policy": "#d62728",
    "loss/value": "#8c564b",
    "policy/clipfrac": "#e377c2",
    "response/length": "#7f7f7f",
    "response/eos_rate": "#bcbd22",
    "rm/accuracy": "#393b79",
    "rm/val_accuracy": "#e6550d",
    "rewards/accuracy": "#7b4173",
    "loss/sft": "#8c6d31",
    "loss/rm": "#637939",
    "loss/dpo": "#ce6dbd",
    "train/learning_rate": "#5254a3",
}
# For metrics without a fixed colour: the D3 palette, then category20b's other shades.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#5254a3",
)
# Plotly's named dash styles, one per stage in the order the stages were attached.
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
MARK_COLOR = "#888888"  # Dashboard.mark's event lines: grey, dotted, behind nothing that matters
STAGE_KEY_COLOR = "#444444"  # the stage key shows dash styles only, in a neutral colour
LEGEND_ROOM_PX = 22  # how far subplot titles move up to make room for their panel's legend


def metric_colors(panels: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """One colour per metric: its fixed colour, else the first palette colour no other metric has.

    Two metrics of one panel never share a colour; across panels too while the palette lasts.
    """
    wanted = {name for names in panels.values() for name in names}
    used = {METRIC_COLORS[name] for name in wanted if name in METRIC_COLORS}
    colors: dict[str, str] = {}
    for names in panels.values():
        in_panel = {colors[name] for name in names if name in colors}
        for name in names:
            if name not in colors:
                fixed = METRIC_COLORS.get(name)
                if fixed and fixed not in in_panel:
                    colors[name] = fixed
                else:
                    free = [c for c in PALETTE if c not in in_panel]
                    colors[name] = next((c for c in free if c not in used), free[0] if free else PALETTE[0])
            used.add(colors[name])
            in_panel.add(colors[name])
    return colors


def segments(xs: Sequence[float], steps: Sequence[float | None]) -> list[tuple[int, int]]:
    """Split one stage's points where its x axis jumped: [(start, end), ...] index ranges.

    A stage's `lab_step` and its own `step` advance together unless other stages on the same clock
    ran in between (or the stage restarted). Where the two moved by different amounts, or x went
    back, the curve breaks rather than draw a straight line over steps it did not take.
    """
    bounds = [0]
    for i in range(1, len(xs)):
        step, previous = steps[i], steps[i - 1]
        jumped = step is not None and previous is not None and xs[i] - xs[i - 1] != step - previous
        if jumped or xs[i] < xs[i - 1]:
            bounds.append(i)
    bounds.append(len(xs))
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def panel_legend(figure, row: int, col: int) -> dict:
    """Layout of a panel's own legend: one row just above its plot, under its (raised) title."""
    subplot = figure.get_subplot(row, col)
    return {
        "x": subplot.xaxis.domain[0],
        "y": subplot.yaxis.domain[1],
        "xref": "paper",
        "yref": "paper",
        "xanchor": "left",
        "yanchor": "bottom",
        "orientation": "h",
        "font": {"size": 10},
        "bgcolor": "rgba(0,0,0,0)",
        "itemwidth": 30,
        "tracegroupgap": 0,
    }


STAGE_KEY_LEGEND = {
    # the key of stage dash styles, top left of the figure; clicking it hides nothing
    "orientation": "h",
    "yref": "container",
    "y": 1,
    "yanchor": "top",
    "x": 0,
    "font": {"size": 11},
    "title": {"text": "stages:", "side": "left"},
    "itemclick": False,
    "itemdoubleclick": False,
}
