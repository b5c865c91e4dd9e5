"""Run a ``bench/`` script in a subprocess and read the JSON line it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(
    script: str, *args: str, timeout: float, env: dict[str, str] | None = None, only_line: bool = False
) -> dict:
    """``python ROOT/script *args`` from ROOT; it must exit 0, and its last non-empty stdout line is JSON.

    ``env`` adds to the inherited environment; ``only_line`` also requires that line to be all it printed.
    """
    done = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, done.stderr[-2000:]
    if only_line:
        assert len(lines) == 1, done.stdout
    return json.loads(lines[-1])
