"""An IPython extension that times, inside the kernel, when each cell first showed progress and its
longest silence: what tests/notebook_progress.py measures from the client side, for kernels a real
JupyterLab starts (tests/browser: Run All in Chromium).

The browser tests' JupyterLab starts its kernels under `kernel_env(...)`: they load it (their IPYTHONDIR's
ipython_kernel_config.py names it) and each cell then appends one JSON row to
`$RLHF_LAB_PROGRESS_DIR/<quoted notebook path>.jsonl` (jupyter_server names the notebook in the
kernel's JPY_SESSION_NAME):

    {"cell": 3, "seconds": 12.0, "pace": 0.9, "first_progress": 0.4, "longest_silence": 3.1, ...}

"Visible progress" is the same as there (`VisibleOutput`); the times are the kernel's clock when it
sent each message, from IPython's pre_run_cell to post_run_cell; pace is the kernel process's CPU time
over that wall time. Nothing heavy is imported: this runs at every kernel start.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

OUTPUT_TYPES = {"stream", "display_data", "update_display_data"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class VisibleOutput:
    """Says which kernel messages a person sees appear while a cell runs: printed text, a displayed
    object, and updates of a widget already on screen. Widgets never displayed do not count (tqdm
    builds its widgets before it shows them), nor does the cell's value (it shows when the cell ends)."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}  # widget model id -> the container it sits in
        self._shown: set[str] = set()  # widget model ids that were displayed

    def _displayed(self, model_id: str) -> bool:
        seen = set()
        while model_id and model_id not in seen:
            if model_id in self._shown:
                return True
            seen.add(model_id)
            model_id = self._parent.get(model_id, "")
        return False

    def counts(self, kind: str, content: dict[str, Any]) -> bool:
        """Whether a message of type `kind` is visible progress (it also learns which widgets are shown)."""
        if kind in OUTPUT_TYPES or kind == "execute_result":
            view = (content.get("data") or {}).get(WIDGET_VIEW)
            if view:
                self._shown.add(view["model_id"])
            return kind != "execute_result"  # a cell's value (e.g. `dash` on its last line) shows at its end
        if kind in ("comm_open", "comm_msg"):
            data = content.get("data") or {}
            state = data.get("state") or {}
            comm_id = content.get("comm_id", "")
            for child in state.get("children") or []:
                if isinstance(child, str) and child.startswith("IPY_MODEL_"):
                    self._parent[child[len("IPY_MODEL_") :]] = comm_id
            # "update": a widget's state changed; "custom": a message to its front end (anywidget's send)
            changed = bool(state) or data.get("method") == "custom"
            return kind == "comm_msg" and changed and self._displayed(comm_id)
        return False


def cell_row(
    cell: int, start: float, end: float, cpu: float, events: list[float], source: str
) -> dict[str, Any]:
    """One cell's timing: `events` are the times it showed progress, `cpu` the CPU seconds it used."""
    marks = [start, *sorted(t for t in events if start <= t <= end), end]
    seconds = end - start
    return {
        "cell": cell,
        "seconds": seconds,
        # the share of the wall time the kernel had a CPU; 1 on an idle machine (one torch thread)
        "pace": min(1.0, cpu / seconds) if seconds > 0 else 1.0,
        "first_progress": marks[1] - start,  # == seconds when the cell showed nothing
        "longest_silence": max(b - a for a, b in zip(marks, marks[1:])),
        "progress_events": len(marks) - 2,
        "source": source.strip().splitlines()[0][:70] if source.strip() else "",
    }


def log_path(folder: str | os.PathLike, notebook: str) -> Path:
    """Where the rows of the notebook at `notebook` (its path under the server's root) go."""
    return Path(folder) / (urllib.parse.quote(notebook, safe="") + ".jsonl")


def kernel_env(ipython_dir: Path, progress_dir: Path) -> dict[str, str]:
    """The environment under which every IPython kernel started loads this extension and writes its rows
    to `progress_dir`: an IPYTHONDIR (`ipython_dir`, created) whose kernel config names the extension,
    and this folder on PYTHONPATH so that the kernel can import it."""
    config = ipython_dir / "profile_default" / "ipython_kernel_config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('c.InteractiveShellApp.extensions = ["kernel_progress"]\n', encoding="utf-8")
    here = str(Path(__file__).resolve().parent)
    return {
        "IPYTHONDIR": str(ipython_dir),
        "PYTHONPATH": os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])]),
        "RLHF_LAB_PROGRESS_DIR": str(progress_dir),
    }


class _Recorder:
    def __init__(self, shell: Any, out: Path) -> None:
        self.shell, self.out = shell, out
        self.visible = VisibleOutput()
        self.lock = threading.Lock()
        self.events: dict[str, list[float]] = {}  # execute request id -> times it showed progress
        self.cells = 0
        self.current: tuple[str, float, float, str] | None = None
        session = shell.kernel.session
        original = session.send

        def send(stream: Any, msg_or_type: Any, content: Any = None, parent: Any = None, *a: Any, **k: Any):
            try:
                self._note(msg_or_type, content, parent)
            except Exception:  # never let the timing break the kernel
                pass
            return original(stream, msg_or_type, content, parent, *a, **k)

        session.send = send

    def _note(self, msg_or_type: Any, content: Any, parent: Any) -> None:
        if isinstance(msg_or_type, dict):
            kind, content = msg_or_type["header"]["msg_type"], msg_or_type.get("content")
            parent = parent or msg_or_type.get("parent_header")
        else:
            kind = msg_or_type
        request = ((parent or {}).get("header") or parent or {}).get("msg_id")
        with self.lock:
            if self.visible.counts(kind, content or {}) and request:
                self.events.setdefault(request, []).append(time.time())

    def pre_run_cell(self, info: Any) -> None:
        parent = self.shell.kernel.get_parent() or {}
        request = (parent.get("header") or {}).get("msg_id", "")
        self.current = (request, time.time(), time.process_time(), info.raw_cell or "")

    def post_run_cell(self, result: Any) -> None:
        if self.current is None:
            return
        request, start, cpu_start, source = self.current
        end, cpu = time.time(), time.process_time() - cpu_start
        self.current = None
        with self.lock:
            events = self.events.pop(request, [])
        self.cells += 1
        row = cell_row(self.cells, start, end, cpu, events, source)
        with self.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def load_ipython_extension(shell: Any) -> None:
    folder, notebook = os.environ.get("RLHF_LAB_PROGRESS_DIR"), os.environ.get("JPY_SESSION_NAME")
    if not folder or not notebook or getattr(shell, "kernel", None) is None:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    recorder = _Recorder(shell, log_path(folder, notebook))
    shell.events.register("pre_run_cell", recorder.pre_run_cell)
    shell.events.register("post_run_cell", recorder.post_run_cell)
