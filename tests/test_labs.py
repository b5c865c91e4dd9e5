"""The labs: committed without outputs, and each one runs top to bottom on the tiny preset, with
visible progress within 5 s in every cell that runs longer (tests/notebook_progress.py times them)."""

import json
from pathlib import Path

import nbformat
import pytest

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


FIRST_PROGRESS_S = 5.0
"""A cell shows something within this many seconds, or it ends (issue 14: no silent long cells)."""
SILENCE_LIMIT_S = 15.0
"""...and never goes longer than this without more: room for one step that cannot report inside
itself (torch's import after a "Loading ..." line, one slow model call), not for a silent loop."""


def silent_cells(report: list[dict]) -> list[dict]:
    """The cells that showed nothing for their first FIRST_PROGRESS_S seconds, or went quiet for longer
    than SILENCE_LIMIT_S.

    Seconds are counted at the pace of an idle machine: a stretch's wall time times the share of it
    the kernel had a CPU (`pace`, the cell's CPU time over its wall time), so a cell that waited for a
    busy machine is not blamed for it, and one that computed silently for 5 s of CPU is.
    """
    return [
        row
        for row in report
        if row["first_progress"] * row["pace"] > FIRST_PROGRESS_S
        or row["longest_silence"] * row["pace"] > SILENCE_LIMIT_S
    ]


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
