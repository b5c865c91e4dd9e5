"""The labs: committed without outputs, and each one runs top to bottom on the tiny preset, with
visible progress within 5 s in every cell that runs longer (tests/notebook_progress.py times them).

A lab that tests/browser/test_labs_browser.py runs with Run All in Chromium is checked there instead,
the same way (tests/kernel_progress.py times its cells inside the kernel), when both are selected."""

import json
from pathlib import Path

import nbformat
import pytest
from notebook_progress import FIRST_PROGRESS_S, SILENCE_LIMIT_S, silent_cells

LABS = Path(__file__).resolve().parent.parent / "labs"
NOTEBOOKS = sorted(LABS.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_labs():
    assert len(NOTEBOOKS) >= 8, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_is_committed_clean(path):
    # Every cell has its own id (nbformat 4.5): nbformat.read would add missing ones silently, with a
    # warning that it "will become a hard error", so read the file itself.
    ids = [cell.get("id") for cell in json.loads(path.read_text())["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), f"{path.name}: cells without an id, or repeated ids"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state must not be stored"
    first_code = next(c.source for c in nb.cells if c.cell_type == "code")
    assert "PRESET" in first_code, f"{path.name}: the first code cell should set PRESET (one switch CPU/GPU)"


def test_silent_cells_counts_idle_seconds():
    def row(cell, pace, first, longest):
        return {
            "cell": cell,
            "seconds": 60.0,
            "pace": pace,
            "first_progress": first,
            "longest_silence": longest,
        }

    rows = [
        row(1, 1.0, 30.0, 30.0),  # 30 s of silent work
        row(2, 0.1, 30.0, 30.0),  # 3 s of work on a busy machine
        row(3, 1.0, 0.1, 4.0),  # a bar every 4 s
        row(4, 1.0, 0.0, 10.0),  # a status line, then a 10 s step
        row(5, 1.0, 0.0, 40.0),  # a status line, then 40 s of silence
    ]
    assert [r["cell"] for r in silent_cells(rows)] == [1, 5]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_runs_top_to_bottom(path, tmp_path, monkeypatch):
    from notebook_progress import describe, run_copy

    env = {"RLHF_LAB_PRESET": "tiny", "RLHF_LAB_QUICK": "1", "RLHF_LAB_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits the test's environment
    nb, client = run_copy(path, tmp_path, timeout=600)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"
    ]
    assert not errors
    report = client.cell_report(nb)
    print("\n".join(describe(row) for row in report))  # shown with -s or -rA: every cell's timing
    silent = silent_cells(report)
    assert not silent, (
        f"{path.name}: cells that showed nothing for {FIRST_PROGRESS_S:g} s, or then went quiet for "
        f"{SILENCE_LIMIT_S:g} s (seconds at an idle machine's pace):\n"
        + "\n".join(describe(r) for r in silent)
    )


@pytest.mark.slow
def test_the_kernel_times_progress_as_the_client_does(tmp_path, monkeypatch):
    """tests/kernel_progress.py (inside the kernel: the browser tests' timing) and ProgressClient
    (nbclient's messages: this file's) see the same progress in the same cells."""
    from kernel_progress import kernel_env, log_path
    from notebook_progress import ProgressClient

    env = kernel_env(tmp_path / "ipy", tmp_path / "progress")
    for key, value in {**env, "JPY_SESSION_NAME": "/nb/check.ipynb"}.items():
        monkeypatch.setenv(key, value)  # the kernel inherits the test's environment
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('import time\nprint("a", flush=True)\ntime.sleep(1.5)\nprint("b")'),
        nbformat.v4.new_code_cell("time.sleep(1.0)  # silent"),
        nbformat.v4.new_code_cell(
            "import ipywidgets\nbar = ipywidgets.IntProgress(max=3)\ndisplay(bar)\n"
            "for i in range(3):\n    time.sleep(0.4)\n    bar.value = i + 1"
        ),
    ]
    client = ProgressClient(nb, timeout=120, kernel_name="python3", store_widget_state=False)
    client.execute()
    from_client = client.cell_report(nb)
    lines = log_path(tmp_path / "progress", "/nb/check.ipynb").read_text().splitlines()
    from_kernel = [json.loads(line) for line in lines]
    assert len(from_kernel) == len(from_client) == 3
    for kernel, outside in zip(from_kernel, from_client):
        assert kernel["progress_events"] > 0 or kernel["first_progress"] == kernel["seconds"]
        assert (kernel["progress_events"] > 0) == (outside["progress_events"] > 0), (kernel, outside)
        assert kernel["longest_silence"] == pytest.approx(outside["longest_silence"], abs=0.4)
    assert from_kernel[0]["longest_silence"] == pytest.approx(1.5, abs=0.4)  # between "a" and the end
    assert from_kernel[1]["progress_events"] == 0
    assert from_kernel[2]["progress_events"] >= 4  # the bar shown, then each of its 3 moves
