"""The notebook UI in a real JupyterLab 4 + headless chromium: what a person clicks and types.

One notebook (ui_fixture.ipynb, a temp copy) is opened and run once per module; the tests then
label with mouse and keyboard, check the store on disk, check that widget keys never reach
JupyterLab, check that hostile model text renders as text, and watch the dashboard plot grow.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import urllib.request
from pathlib import Path

import pytest
from browser_helpers import (
    ALL_RUN,
    COUNT_RESTARTS,
    DEAD,
    KERNEL_READY,
    N_CODE_CELLS,
    PANEL,
    run_all_cells,
)

from rlhf_lab.store import PreferenceStore

pytestmark = pytest.mark.browser

# The points of the dashboard's KL line: 0 until plotly has drawn it, which on a loaded machine can be
# seconds after the plot's element exists.
KL_POINTS = (
    "() => { const g = document.querySelector('.rl-dashboard .js-plotly-plot'); "
    "const t = g && g.data && g.data.find(t => t.meta === 'objective/kl'); return t ? t.x.length : 0; }"
)


@pytest.fixture(scope="module")
def notebook(jupyter_lab, new_page, page_log):
    """The fixture notebook, opened and run all; yields (page, notebook folder)."""
    base, token, folder = jupyter_lab
    page = new_page()
    page.goto(f"{base}/lab/tree/ui_fixture.ipynb?reset&token={token}")
    page.wait_for_function(KERNEL_READY, timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(ALL_RUN, arg=N_CODE_CELLS, timeout=180_000)
    page.locator(".rl-labeller").first.wait_for(timeout=60_000)
    page.locator(".rl-dashboard .js-plotly-plot").wait_for(timeout=60_000)
    yield page, folder
    page.close()


def main_labeller(page):
    return page.locator(".rl-labeller").first


def wait_session_count(page, n):
    main_labeller(page).locator(".rl-progress", has_text=f"{n} labelled this session").wait_for(
        timeout=30_000
    )


def test_widgets_render_without_errors(notebook, page_log):
    page, _ = notebook
    assert page.locator(".rl-labeller").count() == 4
    assert page.get_by_text("Error displaying widget").count() == 0
    assert page.get_by_text("Loading widget...").count() == 0
    assert not [line for line in page_log if "pageerror" in line], page_log


def test_label_with_mouse_and_keyboard_then_undo(notebook, artifacts):
    page, folder = notebook
    labeller = main_labeller(page)
    labeller.screenshot(path=str(artifacts / "labeller.png"))

    def prompt_is(i):
        labeller.locator(".rl-prompt-text", has_text=f"Question {i}:").wait_for(timeout=30_000)

    # three with the mouse; the first is a double click, which must record once
    prompt_is(1)
    labeller.get_by_role("button", name="A is better").dblclick()
    wait_session_count(page, 1)
    prompt_is(2)
    labeller.get_by_role("button", name="B is better").click()
    wait_session_count(page, 2)
    prompt_is(3)
    labeller.get_by_role("button", name="Tie").click()
    wait_session_count(page, 3)
    prompt_is(4)

    # two with the keyboard: focus the widget by clicking its prompt, then press 1 and 2
    code_cells = page.locator(f"{PANEL} .jp-CodeCell").count()
    labeller.locator(".rl-prompt-text").click()
    page.keyboard.press("1")
    wait_session_count(page, 4)
    prompt_is(5)
    page.keyboard.press("2")
    wait_session_count(page, 5)
    prompt_is(6)
    # keys that are not the widget's must not reach JupyterLab's command mode either:
    # a = insert cell above, m = make markdown, x = cut cell, d d = delete cell
    for key in ("a", "m", "x", "d", "d", "Escape"):
        page.keyboard.press(key)
    page.wait_for_timeout(300)
    # (command mode would also have turned the active cell into a heading on "1"/"2")
    assert page.locator(f"{PANEL} .jp-CodeCell").count() == code_cells
    assert page.locator(f"{PANEL} .jp-MarkdownCell").count() == 1
    prompt_is(6)

    # typing in the note field must not fire shortcuts
    note = labeller.locator(".rl-note")
    note.click()
    note.type("b1t2 is fine")
    assert note.input_value() == "b1t2 is fine"
    page.wait_for_timeout(300)
    prompt_is(6)

    # undo the keyboard "2" (item 5 comes back)
    labeller.locator(".rl-prompt-text").click()
    page.keyboard.press("u")
    wait_session_count(page, 4)
    prompt_is(5)

    with PreferenceStore(folder / "labels.sqlite") as store:
        labels = store.labels()
    assert [(label.prompt.split(":")[0], label.judgement.value) for label in labels] == [
        ("Question 1", "A"),
        ("Question 2", "B"),
        ("Question 3", "tie"),
        ("Question 4", "A"),
    ]
    assert {label.annotator for label in labels} == {"browser"}
    labeller.screenshot(path=str(artifacts / "labeller-after.png"))

    # a participant types their name (its letters are not shortcuts), then labels under it
    name = labeller.locator(".rl-annotator-name")
    name.fill("")
    name.type("bat")  # b = both bad / insert below, a = insert above, t = tie
    name.press("Enter")
    labeller.locator(".rl-status", has_text="Now labelling as 'bat'").wait_for(timeout=30_000)
    prompt_is(5)
    labeller.get_by_role("button", name="A is better").click()
    wait_session_count(page, 5)
    with PreferenceStore(folder / "labels.sqlite") as store:
        assert [(label.annotator, label.prompt.split(":")[0]) for label in store.labels()][-1] == (
            "bat",
            "Question 5",
        )
        assert store.count() == 5
    assert page.locator(f"{PANEL} .jp-CodeCell").count() == code_cells


def test_hostile_text_renders_literally(notebook, artifacts):
    page, _ = notebook
    xss = page.locator(".rl-labeller").nth(1)
    xss.scroll_into_view_if_needed()
    card = xss.locator(".rl-response-text").first
    assert card.inner_text() == '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    assert "<b>bold?</b>" in xss.locator(".rl-prompt-text").inner_text()
    assert xss.locator("img, script, b, i").count() == 0  # no markup was created from data
    assert page.evaluate("() => window.__xss === undefined")
    xss.screenshot(path=str(artifacts / "labeller-xss.png"))


def test_playground_answers_what_a_person_types(notebook, artifacts):
    """Type a prompt (the keys must stay in the box: in command mode 'a' and 'b' would add cells),
    press Answer, and read one answer per model; the prompt shows as text, not markup."""
    page, _ = notebook
    play = page.locator(".rl-playground")
    play.scroll_into_view_if_needed()
    cells = page.locator(f"{PANEL} .jp-Cell").count()
    box = play.locator("textarea")
    box.click()
    box.press_sequentially("<b>bold</b> a review, about bees")
    assert page.locator(f"{PANEL} .jp-Cell").count() == cells
    play.get_by_role("button", name="Answer").click()
    cards = play.locator(".rl-playground-results .rl-playground-card")
    cards.nth(1).wait_for(timeout=60_000)
    assert cards.count() == 2  # the snapshot and the current policy, one answer each
    results = play.locator(".rl-playground-results")
    assert "<b>bold</b> a review, about bees" in results.inner_text()
    assert results.locator("b").count() == 0
    assert "START" in results.inner_text().upper() and "CURRENT POLICY" in results.inner_text().upper()
    play.screenshot(path=str(artifacts / "playground.png"))


def test_rank_by_keys_and_rate_by_clicks(notebook, artifacts):
    page, folder = notebook
    ranker, rater = page.locator(".rl-labeller").nth(2), page.locator(".rl-labeller").nth(3)
    ranker.scroll_into_view_if_needed()
    ranker.locator(".rl-prompt-text").click()
    for key in ("2", "3", "1"):  # best first: "Hello there!", "Go away.", "Hi."
        page.keyboard.press(key)
    assert [b.inner_text() for b in ranker.locator(".rl-rank-badge").all()] == ["#3", "#1", "#2"]
    ranker.screenshot(path=str(artifacts / "labeller-rank.png"))
    page.keyboard.press("Enter")
    ranker.locator(".rl-empty").wait_for(state="visible", timeout=30_000)

    rater.scroll_into_view_if_needed()
    cards = rater.locator(".rl-card")
    cards.nth(0).locator(".rl-likert-btn", has_text="2").click()
    cards.nth(1).locator(".rl-likert-btn", has_text="5").click()
    rater.screenshot(path=str(artifacts / "labeller-likert.png"))
    rater.get_by_role("button", name="Submit scores").click()
    rater.locator(".rl-empty").wait_for(state="visible", timeout=30_000)

    with PreferenceStore(folder / "modes.sqlite") as store:
        labels = {label.annotator: label for label in store.labels()}
    assert labels["ranker"].ranking == (1, 2, 0)
    assert labels["rater"].likert == (2, 5)


def test_dashboard_plot_gains_points_during_a_run(notebook, artifacts):
    page, _ = notebook
    dash = page.locator(".rl-dashboard")
    dash.scroll_into_view_if_needed()
    # Once drawn, the line holds the 3 steps run before the dashboard was displayed, no more.
    page.wait_for_function(f"() => ({KL_POINTS})() > 0", timeout=30_000)
    assert page.evaluate(KL_POINTS) == 3
    dash.get_by_role("button", name="Run").click()
    dash.locator(".rl-dash-status", has_text="running").wait_for(timeout=30_000)
    page.wait_for_function(f"() => ({KL_POINTS})() >= 15", timeout=60_000)
    dash.get_by_role("button", name="Pause").click()
    dash.locator(".rl-dash-status", has_text="paused").wait_for(timeout=30_000)
    dash.get_by_role("button", name="Stop").click()
    dash.locator(".rl-dash-status", has_text="stopped").wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    final = page.evaluate(KL_POINTS)
    status = dash.locator(".rl-dash-status").inner_text()
    step = int(status.split("step ")[1].split()[0])
    assert final == step  # every row, including the last ones, reached the plot
    assert page.get_by_text("Error displaying widget").count() == 0
    page.set_viewport_size({"width": 1400, "height": 1400})  # element shots stop at the viewport
    dash.scroll_into_view_if_needed()
    dash.screenshot(path=str(artifacts / "dashboard.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_a_late_view_sees_every_point(notebook, jupyter_lab, new_page):
    """A second tab (like a reload or Voila) builds its views from the kernel's synced state."""
    page, _ = notebook
    base, token, _ = jupyter_lab
    page.locator(".rl-dashboard").scroll_into_view_if_needed()
    page.wait_for_function(f"() => ({KL_POINTS})() > 0", timeout=30_000)
    expected = page.evaluate(KL_POINTS)
    assert expected > 3  # the 3 steps before display and those the dashboard test ran
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
    second = new_page()
    try:
        second.goto(f"{base}/lab/workspaces/late/tree/ui_fixture.ipynb?reset&token={token}")
        second.wait_for_function(KERNEL_READY, timeout=120_000)
        second.locator(".rl-dashboard .js-plotly-plot").wait_for(timeout=60_000)
        second.wait_for_function(f"() => ({KL_POINTS})() > 0", timeout=30_000)
        assert second.evaluate(KL_POINTS) == expected
        assert second.locator(".rl-labeller").count() == 4
        assert second.get_by_text("Error displaying widget").count() == 0
    finally:
        second.close()


def kill_kernel_process(base: str, token: str, path: str) -> None:
    """SIGKILL the kernel of the notebook at ``path``, as a crash would (the server then restarts it)."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}") as reply:
        kernel = next(s["kernel"]["id"] for s in json.load(reply) if s["path"] == path)
    for proc in Path("/proc").iterdir():
        try:
            if f"kernel-{kernel}.json" in (proc / "cmdline").read_text():
                os.kill(int(proc.name), signal.SIGKILL)
                return
        except (OSError, ValueError):
            continue
    raise AssertionError(f"no process runs kernel {kernel}")


def test_a_click_after_the_kernel_died_says_so_and_records_nothing(jupyter_lab, new_page, artifacts):
    base, token, root = jupyter_lab
    folder = root / "dead"
    folder.mkdir()
    shutil.copy(Path(__file__).with_name("ui_fixture.ipynb"), folder / "ui_fixture.ipynb")
    page = new_page()
    try:
        page.goto(f"{base}/lab/tree/dead/ui_fixture.ipynb?reset&token={token}")
        page.wait_for_function(KERNEL_READY, timeout=120_000)
        run_all_cells(page)
        page.wait_for_function(ALL_RUN, arg=N_CODE_CELLS, timeout=180_000)
        labeller = main_labeller(page)
        labeller.get_by_role("button", name="A is better").click()
        wait_session_count(page, 1)

        page.evaluate(COUNT_RESTARTS)
        kill_kernel_process(base, token, "dead/ui_fixture.ipynb")
        page.wait_for_function("() => window.restarts > 0", timeout=60_000)
        dialog = page.locator(".jp-Dialog", has_text="appears to have died")  # JupyterLab's notice
        dialog.get_by_role("button", name="Ok").click()
        labeller.get_by_role("button", name="B is better").click()
        labeller.locator(".rl-status", has_text=DEAD).wait_for(timeout=30_000)
        assert "Recorded" not in labeller.locator(".rl-status").inner_text()
        assert "1 labelled this session" in labeller.locator(".rl-progress").inner_text()
        labeller.screenshot(path=str(artifacts / "labeller-dead-kernel.png"))
        with PreferenceStore(folder / "labels.sqlite") as store:
            assert [label.judgement.value for label in store.labels()] == ["A"]
    finally:
        page.screenshot(path=str(artifacts / "dead-kernel.png"))
        page.close()
