"""A real JupyterLab (loopback, token on, throw-away config) and headless Debian chromium via Playwright.

Playwright drives Debian's chromium (`executable_path=/usr/bin/chromium`, no downloaded browser).
Everything here is skipped (not failed) when chromium or playwright is missing, so the fast suite
runs anywhere; CI installs both.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
from pathlib import Path

import pytest
from browser_helpers import free_port, serve
from kernel_progress import kernel_env

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if Path(p).exists()), None)
JUPYTER_LAB = Path(sys.executable).with_name("jupyter-lab")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # required as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def pytest_collection_modifyitems(config, items):
    reason = None
    if CHROMIUM is None:
        reason = "chromium is not installed (apt-get install chromium)"
    elif not JUPYTER_LAB.exists():
        reason = f"{JUPYTER_LAB} not found"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            reason = "playwright is not installed"
    if reason:
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab server over a temp folder holding a copy of the notebook fixture: (base url, token, folder)."""
    tmp = tmp_path_factory.mktemp("jlab")
    notebooks = tmp / "nb"
    notebooks.mkdir()
    shutil.copy(Path(__file__).with_name("ui_fixture.ipynb"), notebooks / "ui_fixture.ipynb")
    settings = tmp / "settings"
    for name, value in {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
            "doNotDisturbMode": True,
        },
    }.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), encoding="utf-8")
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        # every kernel times its cells' progress (tests/kernel_progress.py) into tmp/progress: cell_timings
        **kernel_env(tmp / "ipy", tmp / "progress"),
        "JUPYTER_CONFIG_DIR": str(tmp / "cfg"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "rt"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "ws"),
    }
    base = f"http://127.0.0.1:{port}"
    with serve(
        [
            str(JUPYTER_LAB),
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={notebooks}",
            "--ServerApp.port_retries=0",
            "--ServerApp.allow_root=True",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ],
        env=env,
        log_path=tmp / "server.log",
        ready_url=f"{base}/api/status?token={token}",
        name="jupyter lab",
    ):
        yield base, token, notebooks


@pytest.fixture(scope="session")
def cell_timings(jupyter_lab):
    """`rows(path)`: each cell's progress timing (tests/kernel_progress.py) as the kernel of the notebook
    at `path` (relative to the server's root) ran it, one row per cell, in the order they ran."""
    import urllib.parse

    folder = jupyter_lab[2].parent / "progress"

    def rows(path: str) -> list[dict]:
        # the kernel names its notebook by its full path (jupyter_server's JPY_SESSION_NAME)
        logs = [f for f in folder.glob("*.jsonl") if urllib.parse.unquote(f.stem).endswith("/" + path)]
        assert len(logs) == 1, f"no single progress log for {path} in {folder}: {sorted(folder.glob('*'))}"
        return [json.loads(line) for line in logs[0].read_text(encoding="utf-8").splitlines()]

    return rows


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def page_log():
    return []


@pytest.fixture(scope="module")
def new_page(browser, page_log):
    """Pages in a 1400x1000 context that cannot reach anything but loopback; console errors are logged."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.route(
        re.compile(r"^(?![a-z]+://(127\.0\.0\.1|localhost)[:/])[a-z]+://"), lambda route: route.abort()
    )

    def make():
        page = context.new_page()
        page.on(
            "console", lambda m: page_log.append(f"console.{m.type}: {m.text}") if m.type == "error" else None
        )
        page.on("pageerror", lambda e: page_log.append(f"pageerror: {e}"))
        return page

    yield make
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
