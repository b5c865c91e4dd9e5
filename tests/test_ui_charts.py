"""Charts that read at a glance (issue 14): colours, legends, gaps, ticks and the labs' bar panels."""

import math
import time

import pandas as pd
import pytest
from ui_fakes import FakeStage

from rlhf_lab.stages.base import StepClock
from rlhf_lab.ui.chart_style import metric_colors, segments
from rlhf_lab.ui.curves import RL_PANELS
from rlhf_lab.ui.dashboard import DEFAULT_PANELS, Dashboard, ema


class FakeRM(FakeStage):
    """Reward-model-shaped rows, and an evaluation row on the lab clock as `evaluate()` writes one."""

    name = "rm"

    def _train_step(self):
        n = self.step_count + 1
        return {"loss/rm": 0.7 / n, "rm/accuracy": 0.5 + 0.4 * (1 - 1 / n), "train/learning_rate": 1e-4}

    def evaluate(self, accuracy):
        row = {"stage": self.name, "step": self.step_count, "lab_step": self.clock.value}
        self._publish({**row, "wall_time": time.time(), "rm/val_accuracy": accuracy})


def curves(dash, metric):
    return [t for t in dash.figure.data if t.meta == metric]


def legend_entries(dash):
    """(legend, name) of every entry shown (plotly shows a trace unless showlegend is False)."""
    return [(t.legend or "legend", t.name) for t in dash.figure.data if t.showlegend is not False]


def test_every_metric_has_a_colour_of_its_own():
    colors = metric_colors(DEFAULT_PANELS)
    assert len(set(colors.values())) == len(colors)  # across the whole dashboard, not only per panel
    stage = FakeStage()
    dash = Dashboard(stage)
    stage.step(2, progress=False)
    dash.wait()
    color = {t.meta: t.line.color for t in dash.figure.data if t.meta in colors}
    assert color["loss/policy"] != color["objective/scores"]  # both were blue
    for names in dash.panels.values():
        drawn = [color[n] for n in names if n in color]
        assert len(set(drawn)) == len(drawn)
    # unknown metrics get free colours, distinct within their panel
    custom = metric_colors({"a": ("x/one", "x/two", "objective/scores"), "b": ("objective/kl",)})
    assert len(set(custom.values())) == 4 and custom["objective/scores"] == colors["objective/scores"]


def test_each_panel_with_several_metrics_has_its_own_legend_of_metric_names():
    stage = FakeStage(name="ppo")
    dash = Dashboard(stage)
    stage.step(3, progress=False)
    dash.wait()
    entries = legend_entries(dash)
    reward_legend = curves(dash, "objective/scores")[0].legend
    assert reward_legend and reward_legend != "legend"
    assert curves(dash, "objective/gold_scores")[0].legend == reward_legend
    assert curves(dash, "loss/policy")[0].legend not in (reward_legend, "legend")
    assert sorted(n for legend, n in entries if legend == reward_legend) == ["gold reward", "proxy reward"]
    assert len(entries) == 4  # proxy, gold | policy, value loss: one-metric panels go by their title
    # the panel's legend sits at the panel's top left, under its title
    row, col = dash._cell["Reward"]
    layout = dash.figure.layout[reward_legend]
    assert layout.x == pytest.approx(dash.figure.get_subplot(row, col).xaxis.domain[0])
    assert layout.yanchor == "bottom" and all(a.yshift > 0 for a in dash.figure.layout.annotations)


def test_legend_entries_stay_few_with_many_stages_and_rounds():
    clock = StepClock()
    stages = [FakeStage(name=f"run{i}", clock=clock) for i in range(10)]
    dash = Dashboard(stages[0])
    for stage in stages:
        if stage is not stages[0]:
            dash.attach(stage)
        stage.step(2, progress=False)
    dash.wait()
    entries = legend_entries(dash)
    assert len(entries) == 4 + 10  # four metrics of two-metric panels, then each stage once
    stage_key = [name for legend, name in entries if legend == "legend"]
    assert stage_key == [f"run{i}" for i in range(10)]
    dashes = {
        t.name: t.line.dash for t in dash.figure.data if t.legend == "legend" and t.showlegend is not False
    }
    assert len(set(list(dashes.values())[:6])) == 6  # six dash styles before they repeat

    # lab 08: rounds of PPO and reward-model refits add segments, not legend entries
    clock = StepClock()
    rm, ppo = FakeRM(clock=clock), FakeStage(name="ppo", clock=clock)
    rm.step(4, progress=False)
    dash = Dashboard(rm, ppo)
    counts = []
    for _ in range(4):
        ppo.step(3, progress=False)
        rm.step(2, progress=False)
        rm.evaluate(0.7)
        dash.wait()
        counts.append(len(legend_entries(dash)))
    assert counts[0] == counts[-1] == 2 + 2 + 2 + 1 + 2  # reward, losses, RM accs, RM loss | rm, ppo
    assert curves(dash, "objective/kl")[0].x.count(None) == 3  # four rounds: four segments


def test_a_curve_breaks_where_other_stages_took_the_steps():
    clock = StepClock()
    ppo = FakeStage(name="ppo", clock=clock)
    dash = Dashboard(ppo, smoothing=0.6)
    ppo.step(50, progress=False)
    FakeStage(name="ppo", clock=clock).step(40, progress=False)  # lab 03's beta sweep, not on the dashboard
    ppo.step(1, progress=False)
    dash.wait()
    (kl,) = curves(dash, "objective/kl")
    assert list(kl.x[-3:]) == [50, None, 91] and kl.y[-2] is None
    assert kl.y[-1] == pytest.approx(0.2 * 51)  # smoothing starts again after the gap
    assert "markers" in kl.mode and kl.marker.size[-1] > 0 and kl.marker.size[0] == 0  # the lone point shows
    assert dash.points("objective/kl")[0][-2:] == [50, 91]  # the raw points have no gap
    assert segments([1, 2, 3, 3, 9], [1, 2, 3, 3, 4]) == [(0, 4), (4, 5)]  # same step twice: no break
    assert segments([5, 6, 1, 2], [5, 6, 1, 2]) == [(0, 2), (2, 4)]  # a restart breaks too
    assert segments([1, 2, 4], [None, None, None]) == [(0, 3)]  # no steps: breaks only where x goes back


def test_smoothing_a_constant_gives_exactly_the_constant():
    # 24.000000000000004 made plotly label a tick "24.00000000000000355" (lab 03's response length)
    assert ema([24.0] * 60, 0.6) == [24.0] * 60
    assert ema([0.1] * 30, 0.9) == [0.1] * 30
    values = [math.sin(i) for i in range(50)]
    smoothed = ema(values, 0.8)
    assert all(min(values[: i + 1]) <= s <= max(values[: i + 1]) for i, s in enumerate(smoothed))


def test_x_axis_ticks_every_step_while_the_run_is_short():
    stage = FakeStage()
    dash = Dashboard(stage)
    stage.step(3, progress=False)
    dash.wait()
    assert dash.figure.layout.xaxis.dtick == 1 and dash.figure.layout.xaxis.tickmode == "linear"
    stage.step(30, progress=False)
    dash.wait()
    assert dash.figure.layout.xaxis.dtick is None and dash.figure.layout.xaxis.tickmode is None


def test_rl_panels_span_the_rl_steps_not_the_whole_lab_clock():
    # Lab 08: 120 SFT/RM steps then a few PPO steps; one shared x range squeezed PPO into the right edge.
    clock = StepClock()
    rm, ppo = FakeRM(clock=clock), FakeStage(name="ppo", clock=clock)
    dash = Dashboard(rm, ppo)
    rm.step(120, progress=False)
    ppo.step(5, progress=False)
    dash.wait()

    def axis(title):
        return dash.figure.get_subplot(*dash._cell[title]).xaxis

    def linked_to(title):  # the axis whose range this panel follows
        return axis(title).matches or axis(title).plotly_name.replace("axis", "")

    rl = [t for t in dash.panels if t in DEFAULT_PANELS and t in RL_PANELS]
    others = [t for t in dash.panels if t not in rl]
    assert len(rl) == 6 and len(others) == 3
    assert len({linked_to(t) for t in rl}) == 1 and len({linked_to(t) for t in others}) == 1
    assert linked_to(rl[0]) != linked_to(others[0])  # RL panels zoom together, apart from the rest
    assert axis("KL to reference (nats/seq)").dtick == 1  # 5 PPO steps: a tick at each
    assert axis("SFT / RM / DPO loss").dtick is None  # 125 steps: plotly's own ticks
    # tick labels under the lowest panel of each group in a column, hidden above a panel of the same group
    assert axis("Reward").showticklabels is False and axis("Policy / value loss").showticklabels is not False


def test_the_modebar_stays_clear_of_the_legends():
    clock = StepClock()
    dash = Dashboard(FakeRM(clock=clock), FakeStage(name="ppo", clock=clock), columns=2)
    for stage in dash.stages:
        stage.step(2, progress=False)
    dash.wait()
    layout = dash.figure.layout
    assert layout.modebar.orientation == "v" and layout.margin.r >= 30  # in the right margin
    legends = [
        layout[name] for name in dir(layout) if name.startswith("legend") and layout[name].x is not None
    ]
    assert legends and all(legend.xanchor in (None, "left") and legend.x < 0.6 for legend in legends)


def test_bar_panels_write_long_row_labels_once_and_level():
    from rlhf_lab.ui import bar_panels

    table = pd.DataFrame(
        {
            "policy": ["SFT (no RL)", "PPO, β=0.01, ensemble of 3 (mean − std)"],
            "proxy reward": [0.2, 1.5],
            "gold reward": [0.3, 0.4],
            "length (tokens)": [14.0, 24.0],
        }
    ).set_index("policy")
    fig = bar_panels(table, ["proxy reward", "gold reward", "length (tokens)"])
    assert [t.orientation for t in fig.data] == ["h"] * 3
    assert list(fig.data[0].y) == list(table.index) and list(fig.data[2].x) == [14.0, 24.0]
    assert fig.layout.yaxis.automargin and fig.layout.yaxis2.matches == "y"  # labels once, on the left
    assert fig.layout.xaxis.tickangle is None  # nothing rotated into the next panel
    assert [a.text for a in fig.layout.annotations] == ["proxy reward", "gold reward", "length (tokens)"]
    assert fig.data[0].marker.color != fig.data[1].marker.color
    with pytest.raises(ValueError, match="2 titles for 3 columns"):
        bar_panels(table, ["proxy reward", "gold reward", "length (tokens)"], titles=["a", "b"])


def test_marks_draw_a_labelled_line_in_every_panel_and_survive_a_redraw():
    clock = StepClock()
    rm, ppo = FakeRM(clock=clock), FakeStage(name="ppo", clock=clock)
    dash = Dashboard(ppo)
    ppo.step(3, progress=False)  # rows still pending: mark() draws them before it reads the position
    at = dash.mark("round 1: reward model retrained")
    assert at == clock.value == 3

    def lines(figure):
        return [s for s in figure.layout.shapes if s.type == "line"]

    def labels(figure):
        return [a.text for a in figure.layout.annotations if a.text == "round 1: reward model retrained"]

    shapes = lines(dash.figure)
    assert len(shapes) == len(dash.panels) and all(s.x0 == s.x1 == 3 for s in shapes)
    assert {(s.xref, s.line.dash) for s in shapes} >= {("x", "dot")}
    assert len({s.xref for s in shapes}) == len(dash.panels)  # one line per panel, not one per figure
    assert len(labels(dash.figure)) == dash._columns  # the label once per column, in the top row
    assert len(dash.figure.layout.annotations) == len(dash.panels) + dash._columns  # titles + labels only
    assert "round 1: reward model retrained (lab_step 3)" in dash.summary()

    # attaching a stage with other panels rebuilds the figure: the mark is drawn again
    dash.attach(rm)
    rm.step(2, progress=False)
    dash.wait()
    assert len(lines(dash.figure)) == len(dash.panels) and len(labels(dash.figure)) == dash._columns
    dash.mark("explicit", at=1)
    assert sum(s.x0 == 1 for s in lines(dash.figure)) == len(dash.panels)
    with pytest.raises(ValueError, match="finite"):
        dash.mark("nowhere", at=float("nan"))
