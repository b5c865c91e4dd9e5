"""The labeller in the other two front-ends: Notebook 7 (issue 6) and Voila workshop mode (issue 9).

Notebook 7 is served by the same jupyter_server as the Lab tests (the ``notebook`` server extension
is enabled on install), at ``/notebooks/<path>``; its copy of the fixture sits in its own folder so
its kernel writes its own ``labels.sqlite``. Voila runs standalone on its own port, as a workshop
would. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser_helpers import ALL_RUN, KERNEL_READY, N_CODE_CELLS, PANEL, VOILA, voila

from rlhf_lab.store import PreferenceStore

pytestmark = pytest.mark.browser

FIXTURE = Path(__file__).with_name("ui_fixture.ipynb")


def stored(folder: Path) -> list[tuple[str, str]]:
    with PreferenceStore(folder / "labels.sqlite") as store:
        return [(label.prompt.split(":")[0], label.judgement.value) for label in store.labels()]


def wait_session_count(labeller, n: int) -> None:
    labeller.locator(".rl-progress", has_text=f"{n} labelled this session").wait_for(timeout=30_000)


def test_notebook7_run_all_then_label_by_click_and_key(jupyter_lab, new_page, page_log, artifacts):
    base, token, root = jupyter_lab
    folder = root / "nb7"
    folder.mkdir()
    shutil.copy(FIXTURE, folder / "ui_fixture.ipynb")
    page = new_page()
    try:
        page.goto(f"{base}/notebooks/nb7/ui_fixture.ipynb?token={token}")
        assert "/notebooks/" in page.url  # Notebook 7 itself, not a redirect into Lab
        page.wait_for_function(KERNEL_READY, timeout=120_000)
        # Notebook 7 does not expose window.jupyterapp: run all from the menu, as a user would
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.get_by_role("menuitem", name="Run All Cells").first.click()
        page.wait_for_function(ALL_RUN, arg=N_CODE_CELLS, timeout=180_000)
        labeller = page.locator(".rl-labeller").first
        labeller.wait_for(timeout=60_000)
        page.locator(".rl-dashboard .js-plotly-plot").wait_for(timeout=60_000)

        labeller.get_by_role("button", name="A is better").click()
        wait_session_count(labeller, 1)
        labeller.locator(".rl-prompt-text", has_text="Question 2:").click()  # focus the widget
        page.keyboard.press("2")
        wait_session_count(labeller, 2)
        assert stored(folder) == [("Question 1", "A"), ("Question 2", "B")]
        # "2" went to the widget, not to Notebook 7's command mode (which would make a heading cell)
        assert page.locator(f"{PANEL} .jp-MarkdownCell").count() == 1
        assert page.locator(".rl-labeller").count() == 4
        assert page.get_by_text("Error displaying widget").count() == 0
        assert page.get_by_text("Loading widget...").count() == 0
        labeller.screenshot(path=str(artifacts / "notebook7-labeller.png"))
    finally:
        page.screenshot(path=str(artifacts / "notebook7.png"))
        page.close()


@pytest.fixture(scope="module")
def voila_server(tmp_path_factory):
    """Standalone Voila over a fresh copy of the fixture: (base url, token, notebook folder)."""
    if not VOILA.exists():
        pytest.skip(f"{VOILA} not found (pip install voila)")
    tmp = tmp_path_factory.mktemp("voila")
    folder = tmp / "nb"
    folder.mkdir()
    shutil.copy(FIXTURE, folder / "ui_fixture.ipynb")
    with voila(folder / "ui_fixture.ipynb", tmp) as (base, token):
        yield base, token, folder


def test_voila_renders_the_labeller_and_records_a_click(voila_server, new_page, artifacts):
    base, token, folder = voila_server
    page = new_page()
    try:
        page.goto(f"{base}/?token={token}", timeout=120_000)  # the GET runs the whole notebook
        labeller = page.locator(".rl-labeller").first
        labeller.locator(".rl-prompt-text", has_text="Question 1:").wait_for(timeout=120_000)
        labeller.get_by_role("button", name="A is better").click()
        wait_session_count(labeller, 1)
        assert stored(folder) == [("Question 1", "A")]
        assert page.locator(".rl-labeller").count() == 4
        assert page.get_by_text("Error displaying widget").count() == 0
        labeller.screenshot(path=str(artifacts / "voila-labeller.png"))
    finally:
        page.screenshot(path=str(artifacts / "voila.png"), full_page=True)
        page.close()
