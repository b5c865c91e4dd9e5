"""Run a notebook and time, for each cell, when it first showed progress and its longest silence.

Used by tests/test_labs.py. Run it by hand to see a lab's cell timings (full schedules too):

    RLHF_LAB_PRESET=tiny .venv/bin/python tests/notebook_progress.py labs/06_*.ipynb

"Visible progress" is output a person sees appear while the cell runs: printed text (stdout or
stderr), a displayed object (a table, a figure, a widget such as a tqdm bar) and updates of a widget
already on screen (a progress bar moving, a dashboard's curves); tests/kernel_progress.py's
VisibleOutput says which messages count. The times are the kernel's message timestamps (header.date)
and nbclient's per-cell timing (record_timing: iopub.execute_input to shell.execute_reply). The browser
tests time their Run All the same way from inside the kernel (kernel_progress.py); `silent_cells` judges
both.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Any

from kernel_progress import VisibleOutput, cell_row
from nbclient import NotebookClient


def _seconds(stamp: Any) -> float:
    if isinstance(stamp, datetime.datetime):
        return stamp.timestamp()
    return datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


class ProgressClient(NotebookClient):
    """A NotebookClient that records when each cell showed visible progress (`events[cell_index]`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, record_timing=True, **kwargs)
        self.events: dict[int, list[float]] = {}
        self.cpu: dict[int, float] = {}  # cell index -> kernel CPU seconds it used
        self._visible = VisibleOutput()

    def _kernel_cpu(self) -> float | None:
        """CPU seconds the kernel process has used so far (Linux /proc), or None."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        try:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (AttributeError, OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        before = self._kernel_cpu()
        try:
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        finally:
            after = self._kernel_cpu()
            if before is not None and after is not None:
                self.cpu[cell_index] = after - before

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        visible = self._visible.counts(msg["msg_type"], msg.get("content", {}))
        if visible and "date" in msg.get("header", {}):
            self.events.setdefault(cell_index, []).append(_seconds(msg["header"]["date"]))
        return super().process_message(msg, cell, cell_index)

    def cell_report(self, nb: Any) -> list[dict[str, Any]]:
        """Per code cell: index, seconds it ran, its longest silent stretch, and the first source line."""
        rows = []
        for index, cell in enumerate(nb.cells):
            timing = cell.get("metadata", {}).get("execution", {})
            if cell.cell_type != "code" or "iopub.execute_input" not in timing:
                continue
            start, end = _seconds(timing["iopub.execute_input"]), _seconds(timing["shell.execute_reply"])
            cpu = self.cpu.get(index, end - start)  # unknown: counted as a full pace
            rows.append(cell_row(index, start, end, cpu, self.events.get(index, []), cell.source))
        return rows


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


def describe(row: dict[str, Any]) -> str:
    return (
        f"cell {row['cell']:>2}: {row['seconds']:6.1f} s (pace {row['pace']:.2f}), first progress after "
        f"{row['first_progress']:5.1f} s, longest silence {row['longest_silence']:5.1f} s, "
        f"{row['progress_events']:>4} progress messages | {row['source']}"
    )


def run_copy(path: Path, folder: Path, timeout: int = 1800) -> tuple[Any, ProgressClient]:
    """Run notebook `path` in a copy of its folder under `folder` (no stores or checkpoints copied);
    returns the executed notebook and the client holding its timings."""
    import shutil

    import nbformat

    work = folder / "labs"
    shutil.copytree(
        path.parent, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.sqlite*", "runs")
    )
    nb = nbformat.read(work / path.name, as_version=4)
    client = ProgressClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()
    return nb, client


def main(names: list[str]) -> None:
    """Run each notebook in a copy of its folder and print its per-cell timings."""
    import tempfile

    for name in names:
        path = Path(name).resolve()
        with tempfile.TemporaryDirectory() as tmp:
            nb, client = run_copy(path, Path(tmp))
        preset, quick = os.environ.get("RLHF_LAB_PRESET", "tiny"), os.environ.get("RLHF_LAB_QUICK")
        print(f"{path.name} ({preset}, QUICK={quick})")
        for row in client.cell_report(nb):
            print(f"  {describe(row)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
