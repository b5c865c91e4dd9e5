"""The labs: committed without outputs, and each one runs top to bottom on the tiny preset, with
visible progress in every cell that runs longer than 5 s (tests/notebook_progress.py times them)."""

import os
import shutil
from pathlib import Path

import nbformat
import pytest

LABS = Path(__file__).resolve().parent.parent / "labs"
NOTEBOOKS = sorted(LABS.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_labs():
    assert len(NOTEBOOKS) >= 8, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state must not be stored"
    first_code = next(c.source for c in nb.cells if c.cell_type == "code")
    assert "PRESET" in first_code, f"{path.name}: the first code cell should set PRESET (one switch CPU/GPU)"


SILENCE_LIMIT_S = 5.0
"""No cell may run longer than this without visible progress (issue 14)."""


def silent_cells(report: list[dict], limit: float = SILENCE_LIMIT_S) -> list[dict]:
    """The cells that went longer than `limit` seconds without visible progress.

    Seconds are counted at the pace of an idle machine: a stretch's wall time times the share of it
    the kernel had a CPU (`pace`, its CPU time over its wall time), so a cell that waited for a busy
    machine is not blamed for it, and one that computed silently for 5 s of CPU is.
    """
    return [row for row in report if row["longest_silence"] * row["pace"] > limit]


def test_silent_cells_counts_idle_seconds():
    rows = [
        {"cell": 1, "seconds": 60.0, "pace": 1.0, "longest_silence": 30.0},  # 30 s of silent work
        {"cell": 2, "seconds": 60.0, "pace": 0.1, "longest_silence": 30.0},  # 3 s of work on a busy machine
        {"cell": 3, "seconds": 60.0, "pace": 1.0, "longest_silence": 4.0},  # a bar every 4 s
    ]
    assert [row["cell"] for row in silent_cells(rows)] == [1]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_runs_top_to_bottom(path, tmp_path):
    from notebook_progress import ProgressClient, describe

    work = tmp_path / "labs"
    shutil.copytree(LABS, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.sqlite*", "runs"))
    nb = nbformat.read(work / path.name, as_version=4)
    env = {"RLHF_LAB_PRESET": "tiny", "RLHF_LAB_QUICK": "1", "RLHF_LAB_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the test's environment
    try:
        client = ProgressClient(
            nb,
            timeout=600,
            kernel_name="python3",
            store_widget_state=False,
            resources={"metadata": {"path": str(work)}},
        )
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"
    ]
    assert not errors
    report = client.cell_report(nb)
    print("\n".join(describe(row) for row in report))  # shown with -s or -rA: every cell's timing
    silent = silent_cells(report)
    assert not silent, f"{path.name}: cells silent for more than {SILENCE_LIMIT_S:g} s:\n" + "\n".join(
        describe(row) for row in silent
    )
