"""The dashboard's controls: Step/Run/Pause/Stop, hyper-parameter sliders and the status line.

`ControlsMixin` is the control half of `Dashboard` (rlhf_lab.ui.dashboard). Buttons call the
selected stage's public methods (`step`, `run`, `pause`, `resume`, `stop`), sliders call
`set(...)` (applied from the next step), and errors become a status message, never a traceback.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from rlhf_lab.errors import StageError
from rlhf_lab.ui.html import clean_message


class ControlsMixin:
    """Buttons, sliders and status of a Dashboard (state set up by Dashboard.__init__)."""

    stages: list[Any]
    _latest: dict[str, Any]

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
