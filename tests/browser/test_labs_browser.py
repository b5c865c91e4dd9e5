"""The labs as a participant runs them: Run All, label, restart, re-run (JupyterLab and Voila); Pause.

Copies of labs 02 and 03 (QUICK schedules, patched where a test needs a longer run) run in the
session's JupyterLab, lab 02 also in Voila. Heavy: each test runs a whole lab once; a re-run is
followed as far as its check needs, then its kernel is shut down. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from browser_helpers import (
    ALL_RUN,
    COUNT_RESTARTS,
    DEAD,
    KERNEL_READY,
    PANEL,
    PROMPTS,
    VOILA,
    run_all_cells,
    voila,
)
from notebook_progress import FIRST_PROGRESS_S, SILENCE_LIMIT_S, describe, silent_cells

from rlhf_lab.bundled import load_preferences
from rlhf_lab.store import PreferenceStore

pytestmark = pytest.mark.browser

LABS = Path(__file__).resolve().parents[2] / "labs"
IDLE = f"""() => {{ const i = document.querySelector('{PANEL} .jp-Notebook-ExecutionIndicator');
  return i && i.dataset.status === 'idle'; }}"""
STDERR = f"""() => [...document.querySelectorAll('{PANEL} [data-mime-type="application/vnd.jupyter.stderr"]')]
  .map(e => e.textContent.slice(-1500))"""


def copy_lab(
    folder: Path, name: str, replace: dict[str, str] | None = None, until: str | None = None
) -> Path:
    """A copy of a lab with QUICK on (and any source replacements) in ``folder``; with ``until``, the
    copy ends before the first markdown cell that starts with it (a test that checks only the cells
    above it need not wait for the rest)."""
    src = next(LABS.glob(f"{name}_*.ipynb"))
    nb = nbformat.read(src, as_version=4)
    if until is not None:
        end = next(
            i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith(until)
        )
        nb.cells = nb.cells[:end]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = cell.source.replace('bool(os.environ.get("RLHF_LAB_QUICK"))', "True")
            for old, new in (replace or {}).items():
                cell.source = cell.source.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / src.name
    nbformat.write(nb, path)
    return path


def n_code_cells(path: Path) -> int:
    return sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)


def open_notebook(page, base: str, token: str, path: str) -> None:
    page.goto(f"{base}/lab/tree/{path}?reset&token={token}")
    page.wait_for_function(KERNEL_READY, timeout=120_000)


def all_run(page, n: int, timeout: int = 400_000) -> None:
    """Every code cell shows an execution count (none queued or running), and the kernel is idle.

    Run All stops at the first cell that raises: a timeout reports the prompts and the tracebacks.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(ALL_RUN, arg=n, timeout=timeout)
        page.wait_for_function(IDLE, timeout=60_000)
    except PlaywrightTimeout as e:
        raise AssertionError(f"Run All did not end: {page.evaluate(PROMPTS)}\n{page.evaluate(STDERR)}") from e


def shut_down_kernel(base: str, token: str, path: str) -> None:
    """Kernel > Shut Down for the notebook at ``path`` (the REST call the menu makes)."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}") as reply:
        kernel = next(s["kernel"]["id"] for s in json.load(reply) if s["path"] == path)
    request = urllib.request.Request(f"{base}/api/kernels/{kernel}?token={token}", method="DELETE")
    urllib.request.urlopen(request).close()


def labels_by(store_path: Path) -> dict[str, int]:
    with PreferenceStore(store_path) as store:
        return store.count_by_annotator()


def label_one_by_click_one_by_key(page, labeller) -> None:
    labeller.get_by_role("button", name="A is better").click()
    labeller.locator(".rl-progress", has_text="1 labelled this session").wait_for(timeout=30_000)
    labeller.locator(".rl-prompt-text").click()  # the widget takes the keyboard
    page.keyboard.press("2")
    labeller.locator(".rl-progress", has_text="2 labelled this session").wait_for(timeout=30_000)


PLOTLY_IN_MODEL = """() => { const m = window.jupyterapp.shell.currentWidget.content.model; let n = 0;
  for (let i = 0; i < m.cells.length; i++) { const c = m.cells.get(i); if (c.type !== 'code') continue;
    for (let j = 0; j < c.outputs.length; j++) n += 'application/vnd.plotly.v1+json' in (c.outputs.get(j).data || {}); }
  return n; }"""


def check_every_output_drawn(page, name: str, path: Path, page_errors: list[str], report: list[dict]) -> None:
    """After a whole lab's Run All: no traceback, no widget that failed to load or never rendered, every
    plotly figure (outputs and dashboards) drawn by the interactive renderer, no script error on the
    page (``page_errors``: the page log since the run began); and no cell that ran silently for long
    (``report``: the kernel's cell timings), the check tests/test_labs.py makes under nbconvert."""
    assert "Traceback" not in "".join(page.evaluate(STDERR))
    panel = page.locator(PANEL)
    for stuck in ("Error displaying widget", "Loading widget...", "Failed to load model class"):
        assert panel.get_by_text(stuck).count() == 0, f"lab {name}: {stuck!r} on the page"
    sent = page.evaluate(PLOTLY_IN_MODEL)
    assert panel.locator(".jp-RenderedPlotly").count() == sent
    plots = panel.locator(".js-plotly-plot")  # those figures and the dashboards' (widgets)
    assert plots.count() >= 1
    for i in range(plots.count()):  # off screen the renderer may show a figure's PNG; in view, the plot
        plots.nth(i).scroll_into_view_if_needed()
        plots.nth(i).locator(".main-svg .cartesianlayer").first.wait_for(timeout=30_000)
    assert not [line for line in page_errors if "pageerror" in line], page_errors
    print("\n".join(describe(row) for row in report))  # shown with -s or -rA: every cell's timing
    assert len(report) == n_code_cells(path)
    silent = silent_cells(report)
    assert not silent, (
        f"lab {name}: cells that showed nothing for {FIRST_PROGRESS_S:g} s, or then went quiet for "
        f"{SILENCE_LIMIT_S:g} s (seconds at an idle machine's pace):\n" + "\n".join(map(describe, silent))
    )


def test_lab02_run_all_label_restart_rerun_keeps_every_label(
    jupyter_lab, new_page, page_log, artifacts, cell_timings
):
    base, token, root = jupyter_lab
    path = copy_lab(root / "lab02", "02")
    rel = f"lab02/{path.name}"
    store = root / "lab02" / "runs" / "lab02-tiny" / "labels.sqlite"
    page = new_page()
    errors_before = len(page_log)
    try:
        open_notebook(page, base, token, rel)
        run_all_cells(page)
        all_run(page, n_code_cells(path))
        # the whole lab ran: the checks the other labs' Run All gets (tests/test_labs.py skips lab 02)
        check_every_output_drawn(page, "02", path, page_log[errors_before:], cell_timings(rel))
        labeller = page.locator(".rl-labeller").first
        # the header counts the crowd's labels, added by a cell below the labeller
        labeller.locator(".rl-progress", has_text="crowd-1").wait_for(timeout=30_000)
        # on tiny the labeller shows the bundled SmolLM2 answers, not the policy's own
        shown = " ".join(labeller.locator(".rl-response-text").first.inner_text().split())
        first_pair = load_preferences("positive_review")[0]["responses"]
        assert shown in [" ".join(text.split()) for text in first_pair], shown
        label_one_by_click_one_by_key(page, labeller)
        labeller.locator(".rl-progress", has_text="you 2)").wait_for(timeout=30_000)
        assert labels_by(store)["you"] == 2
        labeller.screenshot(path=str(artifacts / "lab02-labelled.png"))

        # Kernel > Restart Kernel..., confirmed in its dialog
        page.evaluate(COUNT_RESTARTS)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:restart-kernel'); }")
        page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()  # "Restart"
        page.wait_for_function("() => window.restarts > 0", timeout=60_000)
        page.wait_for_function(KERNEL_READY, timeout=120_000)
        # the old widget knows its kernel is gone: a click says so and claims nothing
        labeller.get_by_role("button", name="A is better").click()
        labeller.locator(".rl-status", has_text=DEAD).wait_for(timeout=30_000)
        assert "Recorded" not in labeller.locator(".rl-status").inner_text()
        assert labels_by(store)["you"] == 2

        run_all_cells(page)  # after the restart: old counts on screen, no start yet
        fresh = page.locator(".rl-labeller").first
        fresh.locator(".rl-progress", has_text="0 labelled this session").wait_for(timeout=300_000)
        fresh.locator(".rl-progress", has_text="you 2)").wait_for(timeout=30_000)
        fresh.screenshot(path=str(artifacts / "lab02-after-restart.png"))
        shut_down_kernel(base, token, rel)  # the rest of the re-run checks nothing new
    finally:
        page.screenshot(path=str(artifacts / "lab02.png"))
        page.close()


def test_lab02_in_voila_label_then_reload_keeps_every_label(tmp_path, new_page, artifacts):
    if not VOILA.exists():
        pytest.skip(f"{VOILA} not found (pip install voila)")
    # up to the crowd's labels: the reward model below them adds nothing to what this test checks
    # (the JupyterLab test above runs the whole lab), and each page load runs the copy again
    path = copy_lab(tmp_path / "nb", "02", until="The bundled preference file")
    store = path.parent / "runs" / "lab02-tiny" / "labels.sqlite"
    page = new_page()
    try:
        with voila(path, tmp_path) as (base, token):
            # each page load is a fresh kernel running the whole lab (Voila's Run All); a reload restarts it
            page.goto(f"{base}/?token={token}", timeout=400_000)
            labeller = page.locator(".rl-labeller").first
            labeller.locator(".rl-progress", has_text="crowd-1").wait_for(timeout=120_000)
            label_one_by_click_one_by_key(page, labeller)
            labelled = labels_by(store)
            assert labelled["you"] == 2

            page.reload(timeout=400_000)
            labeller = page.locator(".rl-labeller").first
            labeller.locator(".rl-progress", has_text="you 2)").wait_for(timeout=120_000)
            assert "0 labelled this session" in labeller.locator(".rl-progress").inner_text()
            # the same pairs come again, but the two already labelled are not asked a second time
            assert "2 item(s) 'you' already labelled" in labeller.locator(".rl-status").inner_text()
            assert labels_by(store) == labelled  # the re-run kept every label and added no crowd labels
            labeller.screenshot(path=str(artifacts / "voila-lab02-after-reload.png"))
    finally:
        page.screenshot(path=str(artifacts / "voila-lab02.png"), full_page=True)
        page.close()


def test_lab03_pause_during_run_all_stops_the_step_counter(jupyter_lab, new_page, artifacts):
    base, token, root = jupyter_lab
    path = copy_lab(
        root / "lab03", "03", {"PPO_STEPS = (8 if QUICK else 60)": "PPO_STEPS = (300 if QUICK else 60)"}
    )
    page = new_page()
    dashboard = page.locator(".rl-dashboard").first
    status = dashboard.locator(".rl-dash-status")

    def step() -> int:
        return int(re.search(r"step (\d+)", status.inner_text()).group(1))

    try:
        open_notebook(page, base, token, f"lab03/{path.name}")
        run_all_cells(page)
        status.filter(has_text=re.compile(r"running · step [3-9]")).wait_for(timeout=300_000)
        dashboard.get_by_role("button", name="Pause").click()
        status.filter(has_text="paused").wait_for(timeout=30_000)
        page.wait_for_timeout(1500)  # the step in flight when Pause was pressed may still land
        paused_at = step()
        page.wait_for_timeout(4000)
        assert step() == paused_at and "paused" in status.inner_text()
        dashboard.screenshot(path=str(artifacts / "lab03-paused.png"))
        dashboard.get_by_role("button", name="Stop").click()
        status.filter(has_text="stopped").wait_for(timeout=30_000)
        assert step() == paused_at
        shut_down_kernel(base, token, f"lab03/{path.name}")  # the cells after the run check nothing here
    finally:
        page.screenshot(path=str(artifacts / "lab03.png"))
        page.close()


def test_lab08_run_all_waits_for_a_person_to_label_each_round(jupyter_lab, new_page, artifacts):
    """SIMULATE = False: under Run All (QUICK: two rounds) each round shows the labeller and waits; a
    participant labels the pairs (clicks and keys), the rounds go on, every label is in the store under
    their name, and the rendered dashboard shows a labelled line per reward-model refit."""
    base, token, root = jupyter_lab
    path = copy_lab(root / "lab08-person", "08", {"SIMULATE = True  #": "SIMULATE = False  #"})
    store = path.parent / "runs" / "lab08-tiny" / "labels.sqlite"
    page = new_page()
    n = n_code_cells(path)
    a_is_better = page.get_by_role("button", name="A is better")  # visible only while a pair is shown
    given, by_key = 0, False
    try:
        open_notebook(page, base, token, f"lab08-person/{path.name}")
        run_all_cells(page)
        deadline = time.monotonic() + 400
        while not page.evaluate(ALL_RUN, n):
            assert time.monotonic() < deadline, f"Run All did not end: {page.evaluate(PROMPTS)}"
            if a_is_better.count() == 0:
                page.wait_for_timeout(500)
                continue
            view = page.locator(".rl-labeller").filter(has=a_is_better).last  # the round's own view
            if by_key:  # every other pair by keyboard: the widget takes the keys once clicked
                view.locator(".rl-prompt-text").click()
                page.keyboard.press("2")
            else:
                view.get_by_role("button", name="A is better").click()
            by_key = not by_key
            given += 1
            # recorded (the header counts it) before the next action, so no click lands twice
            # (any view: they all show one widget; the last pair of a round leaves this one without buttons)
            page.locator(
                ".rl-labeller .rl-progress", has_text=f"{given} labelled this session"
            ).first.wait_for(timeout=30_000)
        page.wait_for_function(IDLE, timeout=60_000)
        assert not page.evaluate(STDERR) or "Traceback" not in "".join(page.evaluate(STDERR))
        text = page.locator(PANEL).inner_text()
        counts = labels_by(store)
        assert given >= 4 and counts.get("me") == given, (given, counts)
        queued, by_you = map(int, re.search(r"(\d+) pairs queued, (\d+) labelled by you", text).groups())
        assert queued == by_you > 0  # round 1 went on only once its pairs were labelled
        assert "Waiting for your labels" in text
        assert "All done for now" in page.locator(".rl-labeller .rl-empty").last.inner_text()
        # both rounds were recorded in the round table, after the person's labels
        assert re.search(r"^\s*2\s+\d+", text, re.M), "round 2 missing from the round table"
        # plotly draws each refit's annotation as an SVG text in the figure's info layer...
        dashboard = page.locator(".rl-dashboard").first
        labels = dashboard.locator(".annotation-text")
        for round_ in (1, 2):
            assert labels.filter(has_text=f"RM refit {round_}").count() >= 1
        # ...and its mark as one dotted line per panel, in the shape layer
        panels = dashboard.locator(".cartesianlayer > .subplot").count()
        dotted = dashboard.locator(".shapelayer path[style*='stroke-dasharray']")
        assert panels >= 4 and dotted.count() >= 2 * panels
        dashboard.scroll_into_view_if_needed()
        dashboard.screenshot(path=str(artifacts / "lab08-dashboard.png"))
    finally:
        page.screenshot(path=str(artifacts / "lab08-person.png"), full_page=True)
        page.close()


# The labs no test above runs in the browser: each one's Run All (QUICK), then every output it drew.
# tests/conftest.py leaves these out of test_labs.py's runs when this test runs them.
RUN_ALL_LABS = ["01", "04", "05", "06", "07", "09"]


@pytest.mark.parametrize("name", RUN_ALL_LABS)
def test_lab_run_all_draws_every_output_without_an_error(
    name, jupyter_lab, new_page, page_log, artifacts, cell_timings
):
    """Run All of a whole lab, then check_every_output_drawn."""
    base, token, root = jupyter_lab
    path = copy_lab(root / f"lab{name}", name)
    rel = f"lab{name}/{path.name}"
    page = new_page()
    errors_before = len(page_log)
    try:
        open_notebook(page, base, token, rel)
        run_all_cells(page)
        all_run(page, n_code_cells(path))
        check_every_output_drawn(page, name, path, page_log[errors_before:], cell_timings(rel))
    finally:
        page.screenshot(path=str(artifacts / f"lab{name}.png"))
        page.close()
