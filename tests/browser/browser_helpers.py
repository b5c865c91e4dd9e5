"""Shared by the browser tests: JupyterLab page selectors, a free loopback port, and a server run for a test.

Imported by ``conftest.py`` (the JupyterLab server) and the test modules (Voila, the selectors).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
# The toolbar names a kernel and shows it idle and, in JupyterLab (Notebook 7 has no window.jupyterapp),
# the panel's session holds a connected, idle kernel: a Run All before that clears the cells instead of
# running them (JupyterLab 4's runCell, hasNoKernel).
KERNEL_READY = f"""() => {{ const p = document.querySelector('{PANEL}');
  if (!p) return false; const n = ((p.querySelector('.jp-Toolbar-kernelName') || {{}}).textContent || '').trim();
  const i = p.querySelector('.jp-Notebook-ExecutionIndicator');
  if (!(n && n !== 'No Kernel' && i && i.dataset.status === 'idle')) return false;
  if (!window.jupyterapp) return true;
  const w = [...window.jupyterapp.shell.widgets('main')].find(w => w.node === p);
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }}"""
# The prompts of the visible notebook's code cells: "[*]:" queued or running, "[3]:" done, "[ ]:" never run.
PROMPTS = f"""() => [...document.querySelectorAll('{PANEL} .jp-CodeCell .jp-InputArea-prompt')]
  .map(e => e.textContent.trim())"""
ALL_RUN = f"""n => {{ const ps = ({PROMPTS})(); return ps.length >= n && ps.every(t => /^\\[\\d+\\]:$/.test(t)); }}"""
N_CODE_CELLS = 6
# Not awaited: page.evaluate waits for a returned promise, and this command's settles only when the
# whole run has ended (or stopped at an error).
RUN_ALL = f"""() => {{ const app = window.jupyterapp, node = document.querySelector('{PANEL}');
  if (node && node.id) app.shell.activateById(node.id); app.commands.execute('notebook:run-all-cells'); }}"""
# Some code cell is queued or running, or shows another prompt than before the Run All (a re-run after a
# restart keeps the old counts on screen, so "some cell shows a count" would be true before it began).
RUN_STARTED = f"""before => ({PROMPTS})().some((t, i) => t === '[*]:' || (/^\\[\\d+\\]:$/.test(t) && t !== before[i]))"""
# Counts the kernel restarts the page sees (Kernel > Restart, or the server's auto-restart after a crash).
COUNT_RESTARTS = """() => { window.restarts = 0; window.jupyterapp.shell.currentWidget.sessionContext.statusChanged
  .connect((_, s) => { if (s === 'restarting' || s === 'autorestarting') window.restarts++; }); }"""
DEAD = "no longer connected: re-run this cell"  # the labeller's words once its kernel has gone (widgets/labeller.js)
VOILA = Path(sys.executable).with_name("voila")


def run_all_cells(page, started_within_ms: int = 30_000) -> None:
    """Run > Run All Cells on the visible notebook, made sure to have begun.

    The notebook is activated first: the command acts on JupyterLab's current widget. On a loaded
    2-core machine, once in about fifty runs, a Run All still queued no cell at all; it is issued once
    more if no cell shows a queued or running prompt, or a new count, within ``started_within_ms``.
    Works for a re-run too: counts left on screen by an earlier run do not count as a start.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    before = page.evaluate(PROMPTS)
    page.evaluate(RUN_ALL)
    try:
        page.wait_for_function(RUN_STARTED, arg=before, timeout=started_within_ms)
    except PlaywrightTimeout:
        print("Run All queued no cell: issued again")
        page.evaluate(RUN_ALL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(
    command: Sequence[str],
    *,
    env: dict[str, str],
    log_path: Path,
    ready_url: str,
    name: str,
    cwd: Path | None = None,
    any_reply: bool = False,
) -> Iterator[subprocess.Popen]:
    """Start ``command`` in its own process group, wait (60 s) until ``ready_url`` answers, kill the group after.

    Ready means a 200 reply, or with ``any_reply`` any HTTP reply at all (error statuses included).
    """
    log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kernels go with it
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as reply:
                    if any_reply or reply.status == 200:
                        break
            except urllib.error.HTTPError:
                if any_reply:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield server
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@contextmanager
def voila(notebook: Path, tmp: Path) -> Iterator[tuple[str, str]]:
    """Standalone Voila serving ``notebook`` (its folder is the kernels' cwd): yields (base url, token).

    Every page GET starts a kernel and runs the whole notebook, so readiness is probed on a static file
    (a 403 without a cookie still means "up").
    """
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp / "cfg"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "rt"),
        "IPYTHONDIR": str(tmp / "ipy"),
    }
    base = f"http://127.0.0.1:{port}"
    with serve(
        [
            str(VOILA),
            notebook.name,
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            f"--Voila.root_dir={notebook.parent}",
            f"--Voila.token={token}",
            "--show_tracebacks=True",
        ],
        cwd=notebook.parent,
        env=env,
        log_path=tmp / "voila.log",
        ready_url=f"{base}/voila/static/extension.js",
        name="voila",
        any_reply=True,
    ):
        yield base, token
