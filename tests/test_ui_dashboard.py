"""Dashboard driven headless: rows from a fake stage, button clicks and slider moves from Python."""

import time

import pytest
from ui_fakes import FakeConfig, FakeStage, run_cell

from rlhf_lab.stages.base import StepClock
from rlhf_lab.ui.dashboard import Dashboard, clean_message, ema


@pytest.fixture()
def stage():
    s = FakeStage()
    yield s
    s.stop(timeout=5)


def test_many_rows_few_redraws_last_row_drawn(stage):
    dash = Dashboard(stage, max_fps=4)
    before = dash.redraws
    started = time.monotonic()
    stage.step(400, progress=False)
    dash.wait()
    elapsed = time.monotonic() - started
    xs, ys = dash.points("objective/kl")
    assert xs[-1] == 400 and len(xs) == 400 and ys[-1] == pytest.approx(80.0)
    frames = dash.redraws - before
    # at most one frame per 1/max_fps (plus the final flushes), however long the steps took
    assert frames <= elapsed * 4 + 3
    assert frames < 40  # 400 rows were batched, not drawn one by one
    trace = next(t for t in dash.figure.data if t.meta == "objective/kl")
    assert trace.x[-1] == 400  # the figure itself, not only our buffer


def test_background_run_is_drawn_to_the_end(stage):
    dash = Dashboard(stage, max_fps=20)
    stage.run(steps=30)
    stage.wait(10)
    dash.wait()
    assert dash.points("objective/scores")[0][-1] == 30


def test_late_views_get_the_current_state(stage):
    dash = Dashboard(stage)
    stage.step(5, progress=False)
    dash.wait()
    synced = {t["meta"]: t for t in dash.figure._widget_data}
    assert list(synced["objective/kl"]["x"]) == [1, 2, 3, 4, 5]


def test_past_rows_are_drawn_on_attach_and_stages_share_lab_step():
    clock = StepClock()
    sft = FakeStage(name="sft", clock=clock)
    sft.step(3, progress=False)
    ppo = FakeStage(name="ppo", clock=clock)
    dash = Dashboard(sft)
    dash.attach(ppo)
    ppo.step(2, progress=False)
    dash.wait()
    assert dash.points("objective/kl", stage="sft")[0] == [1, 2, 3]
    assert dash.points("objective/kl", stage="ppo")[0] == [4, 5]
    assert dash.stage is ppo  # controls follow the newest stage


def test_smoothing_is_a_debiased_ema_and_the_slider_redraws(stage):
    assert ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert ema([0.0, 10.0], 0.5) == pytest.approx([0.0, 10.0 * 0.5 / 0.75])
    assert ema([3.0, 4.0], 0.0) == [3.0, 4.0]
    dash = Dashboard(stage, smoothing=0.0)
    stage.step(10, progress=False)
    dash.wait()
    trace = next(t for t in dash.figure.data if t.meta == "loss/policy")
    raw = list(trace.y)
    dash.smoothing_slider.value = 0.8
    assert list(trace.y) != raw and trace.y[-1] > raw[-1]  # a falling loss, smoothed, lags above it


def test_step_buttons_call_step(stage):
    dash = Dashboard(stage)
    dash.buttons["step"].click()
    assert stage.step_count == 1
    dash.n_steps.value = 4
    dash.buttons["step_n"].click()
    assert stage.step_count == 5
    assert "step 5" in dash.status.value


def test_run_pause_resume_stop_buttons(stage):
    stage.set(sleep_s=0.01)
    dash = Dashboard(stage)
    dash.buttons["run"].click()
    assert stage.status == "running"
    dash.buttons["pause"].click()
    stage.pause()  # wait until parked
    assert stage.status == "paused"
    count = stage.step_count
    dash.buttons["run"].click()  # resumes the paused run
    assert stage.status == "running"
    dash.buttons["stop"].click()
    assert stage.status == "stopped" and stage.step_count >= count
    dash.wait()
    assert "stopped" in dash.status.value


def test_sliders_call_set_and_only_show_what_the_stage_can_change(stage):
    dash = Dashboard(stage)
    assert dash.sliders["beta"].value == pytest.approx(0.1)
    dash.sliders["beta"].value = 0.3
    dash.sliders["learning_rate"].value = 1e-3
    dash.sliders["temperature"].value = 0.7
    assert stage.config.beta == pytest.approx(0.3)
    assert stage.config.learning_rate == pytest.approx(1e-3)
    assert stage.config.temperature == pytest.approx(0.7)
    assert stage.step(1)[0]["objective/beta"] == pytest.approx(0.3)  # acts on the next step

    class NoBeta(FakeStage):
        mutable_hparams = ("learning_rate",)

    other = Dashboard(NoBeta())
    assert other.sliders["beta"].layout.display == "none"
    assert other.sliders["learning_rate"].layout.display == ""


def test_a_failing_click_shows_a_clean_message(stage):
    stage.set(sleep_s=0.02)
    dash = Dashboard(stage)
    stage.run()
    dash.buttons["step"].click()  # step() while running raises StageBusyError
    assert "StageBusyError" in dash.status.value and "pause()" in dash.status.value
    stage.stop()


def test_background_error_shown_without_traceback():
    stage = FakeStage(FakeConfig(fail_at=3))
    dash = Dashboard(stage, max_fps=20)
    dash.buttons["run"].click()
    stage._thread.join(5)
    dash.wait()
    assert "the fake stage failed on purpose" in dash.status.value
    assert "Traceback" not in dash.status.value and "File " not in dash.status.value
    dash.buttons["step"].click()  # the stage re-raises its error: still a status message
    assert "Traceback" not in dash.status.value and "_train_step" not in dash.status.value


def test_clean_message_drops_the_chained_traceback():
    message = 'StageError: ppo stopped at step 3: ValueError("x")\n\nTraceback (most recent call last):\n  File "a.py"'
    assert clean_message(message) == 'StageError: ppo stopped at step 3: ValueError("x")'


def test_text_fallback_summarises_latest_metrics(stage):
    dash = Dashboard(stage)
    stage.step(3, progress=False)
    bundle = dash._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    text = bundle["text/plain"]
    assert "fake: idle, step 3" in text and "objective/kl=0.6" in text


def test_custom_metric_panels(stage):
    dash = Dashboard(stage, metrics=["objective/kl", "response/length"])
    stage.step(2, progress=False)
    dash.wait()
    assert [a.text for a in dash.figure.layout.annotations] == ["objective/kl", "response/length"]
    assert {t.meta for t in dash.figure.data} == {"objective/kl", "response/length"}


def test_panels_follow_the_stages_and_attach_rebuilds():
    clock = StepClock()
    ppo = FakeStage(name="ppo", clock=clock)
    ppo.step(2, progress=False)
    dash = Dashboard(ppo)
    titles = [a.text for a in dash.figure.layout.annotations]
    assert "Reward" in titles and "Preference accuracy" not in titles and "SFT / RM / DPO loss" not in titles
    old = dash.figure
    dash.attach(FakeStage(name="rm", clock=clock))
    assert dash.figure is not old and dash.widget.children[-1] is dash.figure
    assert "Preference accuracy" in [a.text for a in dash.figure.layout.annotations]
    trace = next(t for t in dash.figure.data if t.meta == "objective/kl")
    assert list(trace.x) == [1, 2]  # the earlier curve is redrawn in the new figure
    lr_axis = dash.figure.layout[f"yaxis{len(dash.panels) if len(dash.panels) > 1 else ''}"]
    assert list(dash.panels)[-1] == "Learning rate" and lr_axis.type == "log"


def test_until_done_awaits_a_background_run_and_reraises_nothing_on_success():
    from rlhf_lab.ui.dashboard import until_done

    stage = FakeStage()
    stage.run(steps=3)
    run_cell(until_done(stage, poll_s=0.01))
    assert stage.status == "done" and stage.step_count == 3


def test_until_done_says_once_when_the_buttons_cannot_act_during_the_wait(monkeypatch, capsys):
    from rlhf_lab.ui.dashboard import until_done

    monkeypatch.setattr("rlhf_lab.ui.awaiting.in_ipykernel", lambda: True)
    monkeypatch.setattr("rlhf_lab.ui.awaiting.ipykernel_version", lambda: (6, 29))
    stage = FakeStage(FakeConfig(sleep_s=0.05))
    stage.run(steps=3)
    run_cell(until_done(stage, poll_s=0.01))
    out = capsys.readouterr().out
    assert stage.status == "done" and out.count("buttons act only after this cell ends") == 1
    assert "ipykernel (6.29)" in out
    run_cell(until_done(stage, poll_s=0.01))  # nothing running: nothing to say
    assert capsys.readouterr().out == ""


def test_interrupting_a_cell_that_awaits_a_run_pauses_the_run(capsys):
    import asyncio

    from rlhf_lab.ui.dashboard import until_done

    stage = FakeStage(FakeConfig(sleep_s=0.03))
    stage.run(steps=40)

    async def cell():  # the stop button: ipykernel cancels the awaiting cell's task
        waiting = asyncio.ensure_future(until_done(stage, poll_s=0.01))
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    run_cell(cell())
    stage._parked.wait(5)  # parks after the step it was in
    steps = stage.step_count
    time.sleep(0.2)
    assert stage.status == "paused" and stage.step_count == steps < 40  # no step after the pause
    assert "Interrupted: fake pauses after its current step" in capsys.readouterr().out
    stage.resume()  # what Run in the dashboard does: it goes on from there
    stage.wait()
    assert stage.status == "done" and stage.step_count == 40


def test_interrupting_wait_pauses_the_run(monkeypatch, capsys):
    stage = FakeStage(FakeConfig(sleep_s=0.03))
    stage.run(steps=40)

    def interrupted(*args, **kwargs):
        time.sleep(0.1)
        raise KeyboardInterrupt

    monkeypatch.setattr("rlhf_lab.stages.base.wait_with_progress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stage.wait()
    stage._parked.wait(5)
    assert stage.status == "paused" and stage.step_count < 40
    assert "call resume() to go on" in capsys.readouterr().out
    stage.stop()
    assert stage.status == "stopped"


def _tickers() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "rlhf-lab-dashboard"]


def test_interrupting_dashboard_wait_keeps_one_ticker():
    # The stop button raises KeyboardInterrupt in the main thread; inside Thread.join that made CPython
    # 3.11/3.12 mark the running ticker stopped, and the next row started a second one beside it.
    import signal
    import threading

    # A process started in the background by a non-interactive shell inherits SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler: install the one a notebook kernel has.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    stage = FakeStage(FakeConfig(sleep_s=0.02))
    dash = Dashboard(stage, max_fps=20)
    stage.run(steps=100)
    try:
        deadline = time.monotonic() + 5
        while dash._ticker is None and time.monotonic() < deadline:  # the first row starts the ticker
            time.sleep(0.01)
        main = threading.main_thread().ident
        threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT)).start()  # as the stop button
        with pytest.raises(KeyboardInterrupt):
            dash.wait(timeout=5)
        time.sleep(0.2)  # rows keep arriving; each one asks for a ticker
        assert len(_tickers()) == 1
    finally:
        stage.stop(timeout=5)
        signal.signal(signal.SIGINT, previous)
    dash.wait()
    assert dash.points("objective/kl")[0][-1] == stage.step_count


def test_a_drawing_error_does_not_stop_later_rows_being_drawn(stage, monkeypatch):
    dash = Dashboard(stage, max_fps=50)
    calls = []
    draw = dash._draw_pending

    def fails_once():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a drawing error")
        draw()

    monkeypatch.setattr(dash, "_draw_pending", fails_once)
    monkeypatch.setattr("threading.excepthook", lambda args: None)  # the ticker's traceback: expected
    stage.step(2, progress=False)
    dash._ticker_done.wait(5)
    stage.step(3, progress=False)
    dash.wait()
    assert dash.points("objective/kl")[0][-1] == 5
