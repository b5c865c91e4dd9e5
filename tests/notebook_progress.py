"""Run a notebook and time, for each cell, when it first showed progress and its longest silence.

Used by tests/test_labs.py. Run it by hand to see a lab's cell timings (full schedules too):

    RLHF_LAB_PRESET=tiny .venv/bin/python tests/notebook_progress.py labs/06_*.ipynb

"Visible progress" is output a person sees appear while the cell runs: printed text (stdout or
stderr), a displayed object (a table, a figure, a widget such as a tqdm bar) and updates of a widget
already on screen (a progress bar moving, a dashboard's curves). Widget messages for widgets that were
never displayed do not count (tqdm builds its widgets before it shows them), nor does the cell's
return value, which appears only when the cell ends. The times are the kernel's message timestamps
(header.date) and nbclient's per-cell timing (record_timing: iopub.execute_input to shell.execute_reply).
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Any

from nbclient import NotebookClient

OUTPUT_TYPES = {"stream", "display_data", "update_display_data"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


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
        self._parent: dict[str, str] = {}  # widget model id -> the container it sits in
        self._shown: set[str] = set()  # widget model ids that were displayed

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

    def _visible(self, model_id: str) -> bool:
        seen = set()
        while model_id and model_id not in seen:
            if model_id in self._shown:
                return True
            seen.add(model_id)
            model_id = self._parent.get(model_id, "")
        return False

    def _note_children(self, model_id: str, state: dict[str, Any]) -> None:
        for child in state.get("children") or []:
            if isinstance(child, str) and child.startswith("IPY_MODEL_"):
                self._parent[child[len("IPY_MODEL_") :]] = model_id

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        kind, content = msg["msg_type"], msg.get("content", {})
        visible = False
        if kind in OUTPUT_TYPES or kind == "execute_result":
            visible = (
                kind != "execute_result"
            )  # a cell's value (e.g. `dash` on its last line) shows at its end
            view = (content.get("data") or {}).get(WIDGET_VIEW)
            if view:
                self._shown.add(view["model_id"])
        elif kind in ("comm_open", "comm_msg"):
            data = content.get("data") or {}
            state = data.get("state") or {}
            self._note_children(content.get("comm_id", ""), state)
            # "update": a widget's state changed; "custom": a message to its front end (anywidget's send)
            changed = bool(state) or data.get("method") == "custom"
            visible = kind == "comm_msg" and changed and self._visible(content.get("comm_id", ""))
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
            marks = [start, *sorted(t for t in self.events.get(index, []) if start <= t <= end), end]
            seconds = end - start
            # pace: the share of the wall time the kernel had a CPU; 1 on an idle machine (one torch thread)
            pace = min(1.0, self.cpu[index] / seconds) if index in self.cpu and seconds > 0 else 1.0
            rows.append(
                {
                    "cell": index,
                    "seconds": seconds,
                    "pace": pace,
                    "first_progress": marks[1] - start,  # == seconds when the cell showed nothing
                    "longest_silence": max(b - a for a, b in zip(marks, marks[1:])),
                    "progress_events": len(marks) - 2,
                    "source": cell.source.strip().splitlines()[0][:70] if cell.source.strip() else "",
                }
            )
        return rows


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
