"""The labs as a participant runs them in JupyterLab: Run All, label, restart, re-run; Pause during a run.

Copies of labs 02 and 03 (QUICK schedules, patched where a test needs a longer run) run in the
session's JupyterLab. Heavy: each test runs a whole lab, lab 02 twice. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import nbformat
import pytest
from browser_helpers import ALL_RUN, KERNEL_READY, PANEL

from rlhf_lab.store import PreferenceStore

# Not yet passing: on the first run (a busy shared 2-core machine) lab 02's Run All ended with the
# last cell unexecuted and the kernel idle, so all_run timed out; the cause is not yet known.
# Skipped rather than xfail: each waits up to 400 s for a Run All that does not complete yet, which would
# cost CI minutes and prove nothing; issue 14 stays open until these pass.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skip(
        reason="work in progress (issue 14): Run All of the lab copy did not complete in JupyterLab"
    ),
]

LABS = Path(__file__).resolve().parents[2] / "labs"
RUN_ALL = "() => window.jupyterapp.commands.execute('notebook:run-all-cells')"
IDLE = f"""() => {{ const i = document.querySelector('{PANEL} .jp-Notebook-ExecutionIndicator');
  return i && i.dataset.status === 'idle'; }}"""


def copy_lab(folder: Path, name: str, replace: dict[str, str] | None = None) -> Path:
    """A copy of a lab with QUICK on (and any source replacements) in the server's folder."""
    src = next(LABS.glob(f"{name}_*.ipynb"))
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = cell.source.replace('bool(os.environ.get("RLHF_LAB_QUICK"))', "True")
            for old, new in (replace or {}).items():
                cell.source = cell.source.replace(old, new)
    path = folder / src.name
    nbformat.write(nb, path)
    return path


def n_code_cells(path: Path) -> int:
    return sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)


def all_run(page, n: int, timeout: int = 400_000) -> None:
    """Every code cell shows an execution count (none queued or running), and the kernel is idle."""
    page.wait_for_function(ALL_RUN, arg=n, timeout=timeout)
    page.wait_for_function(IDLE, timeout=60_000)


def restart_kernel(base: str, token: str) -> None:
    """Kernel > Restart without the dialog: the REST call the menu makes."""
    with urllib.request.urlopen(f"{base}/api/kernels?token={token}") as reply:
        kernels = json.load(reply)
    for kernel in kernels:
        request = urllib.request.Request(
            f"{base}/api/kernels/{kernel['id']}/restart?token={token}", method="POST", data=b""
        )
        urllib.request.urlopen(request).close()


def test_lab02_run_all_label_restart_rerun_keeps_every_label(jupyter_lab, new_page, artifacts):
    base, token, root = jupyter_lab
    folder = root / "lab02"
    folder.mkdir()
    path = copy_lab(folder, "02")
    n = n_code_cells(path)
    page = new_page()
    try:
        page.goto(f"{base}/lab/tree/lab02/{path.name}?reset&token={token}")
        page.wait_for_function(KERNEL_READY, timeout=120_000)
        page.evaluate(RUN_ALL)
        all_run(page, n)
        labeller = page.locator(".rl-labeller").first
        # the header counts the crowd's labels, added by a cell below the labeller
        labeller.locator(".rl-progress", has_text="crowd-1").wait_for(timeout=30_000)
        # on tiny the labeller shows readable SmolLM2 answers, not the policy's half-words
        assert len(labeller.locator(".rl-response-text").first.inner_text().split()) >= 5

        labeller.get_by_role("button", name="A is better").click()
        labeller.locator(".rl-progress", has_text="1 labelled this session").wait_for(timeout=30_000)
        labeller.locator(".rl-prompt-text").click()  # the widget takes the keyboard
        page.keyboard.press("2")
        labeller.locator(".rl-progress", has_text="you 2").wait_for(timeout=30_000)
        with PreferenceStore(folder / "runs" / "lab02-tiny" / "labels.sqlite") as store:
            assert store.count_by_annotator()["you"] == 2
        labeller.screenshot(path=str(artifacts / "lab02-labelled.png"))

        restart_kernel(base, token)
        page.wait_for_function(KERNEL_READY, timeout=120_000)
        # the old widget knows its kernel is gone: a click says so and claims nothing
        labeller.get_by_role("button", name="A is better").click()
        labeller.locator(".rl-status", has_text="re-run this cell").wait_for(timeout=30_000)
        assert "you 2" in labeller.locator(".rl-progress").inner_text()
        assert "Recorded" not in labeller.locator(".rl-status").inner_text()
        labeller.screenshot(path=str(artifacts / "lab02-dead-kernel.png"))
        with PreferenceStore(folder / "runs" / "lab02-tiny" / "labels.sqlite") as store:
            assert store.count_by_annotator()["you"] == 2

        page.evaluate(RUN_ALL)
        page.wait_for_function(
            f"() => [...document.querySelectorAll('{PANEL} .jp-InputArea-prompt')].some(e => e.textContent.includes('*'))",
            timeout=60_000,
        )
        all_run(page, n)
        fresh = page.locator(".rl-labeller").first
        fresh.locator(".rl-progress", has_text="0 labelled this session").wait_for(timeout=120_000)
        fresh.locator(".rl-progress", has_text="you 2").wait_for(timeout=30_000)
        fresh.screenshot(path=str(artifacts / "lab02-after-restart.png"))
    finally:
        page.screenshot(path=str(artifacts / "lab02.png"))
        page.close()


def test_lab03_pause_during_run_all_stops_the_step_counter(jupyter_lab, new_page, artifacts):
    base, token, root = jupyter_lab
    folder = root / "lab03"
    folder.mkdir()
    path = copy_lab(folder, "03", {"PPO_STEPS = (8 if QUICK else 60)": "PPO_STEPS = (300 if QUICK else 60)"})
    page = new_page()
    status = page.locator(".rl-dashboard .rl-dash-status").first

    def step() -> int:
        return int(re.search(r"step (\d+)", status.inner_text()).group(1))

    try:
        page.goto(f"{base}/lab/tree/lab03/{path.name}?reset&token={token}")
        page.wait_for_function(KERNEL_READY, timeout=120_000)
        page.evaluate(RUN_ALL)
        status.filter(has_text=re.compile(r"running · step [3-9]")).wait_for(timeout=300_000)
        page.locator(".rl-dashboard").first.get_by_role("button", name="Pause").click()
        status.filter(has_text="paused").wait_for(timeout=30_000)
        page.wait_for_timeout(1500)  # the step in flight when Pause was pressed may still land
        paused_at = step()
        page.wait_for_timeout(4000)
        assert step() == paused_at and "paused" in status.inner_text()
        page.locator(".rl-dashboard").first.screenshot(path=str(artifacts / "lab03-paused.png"))
        page.locator(".rl-dashboard").first.get_by_role("button", name="Stop").click()
        all_run(page, n_code_cells(path))  # the waiting cell ends with the run, the rest runs
    finally:
        page.screenshot(path=str(artifacts / "lab03.png"))
        page.close()
