"""How long each lab takes end to end: run the notebooks top to bottom and time them.

    python bench/lab_times.py --preset smollm2-135m                 # all the labs (GPU: minutes)
    python bench/lab_times.py --preset smollm2-135m --labs 03 01    # some of them, in this order
    python bench/lab_times.py --preset tiny --quick --budget 300    # CI schedules, stop after 300 s
    python bench/lab_times.py --smoke                               # lab 07 on tiny, QUICK (CI)

Prints ONE JSON line per lab as it finishes (so a run cut short keeps what it measured): the lab,
`wall_s` from the first cell to the last, `ok` and the error's last line if a cell failed, and the
slowest cells (index, seconds, first line of source). Each notebook runs in a fresh kernel with
RLHF_LAB_PRESET (and RLHF_LAB_QUICK) set, in a temporary folder, so nothing is written beside the
labs. This is how the lab times in labs/README.md are meant to be measured (there, by hand, with
`jupyter nbconvert --execute`); a lab is skipped once `--budget` seconds are spent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

LABS = Path(__file__).resolve().parents[1] / "labs"


def pick_labs(prefixes: list[str] | None) -> list[Path]:
    """The lab notebooks whose names start with one of `prefixes`, in the order given (so that a budget
    cut drops the labs named last), each once; all of them, in order, for None or []."""
    notebooks = sorted(LABS.glob("[0-9][0-9]_*.ipynb"))
    if not prefixes:
        return notebooks
    return list(dict.fromkeys(p for prefix in prefixes for p in notebooks if p.stem.startswith(prefix)))


def cell_seconds(cell) -> float | None:
    """Seconds a cell ran, from nbclient's record_timing metadata (None if it did not run)."""
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    from datetime import datetime

    parse = lambda s: datetime.fromisoformat(str(s).replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def run_lab(path: Path, preset: str, quick: bool, timeout_s: float) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    notebook = nbformat.read(path, as_version=4)
    os.environ["RLHF_LAB_PRESET"] = preset
    if quick:
        os.environ["RLHF_LAB_QUICK"] = "1"
    else:
        os.environ.pop("RLHF_LAB_QUICK", None)
    error = None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lab_times-") as folder:
        client = NotebookClient(
            notebook,
            timeout=max(1, int(timeout_s)),
            kernel_name="python3",
            record_timing=True,
            resources={"metadata": {"path": folder}},
        )
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError) as exc:
            error = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
        except Exception as exc:  # a kernel that died, a missing kernel: report, go on with the next lab
            error = f"{type(exc).__name__}: {exc}"[:300]
    wall = time.perf_counter() - started
    cells = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and (seconds := cell_seconds(cell)) is not None:
            cells.append(
                (index, round(seconds, 1), cell.source.strip().splitlines()[0][:80] if cell.source else "")
            )
    cells.sort(key=lambda row: -row[1])
    return {
        "lab": path.stem,
        "wall_s": round(wall, 1),
        "ok": error is None,
        "error": error,
        "cells_run": len(cells),
        "slowest_cells": cells[:3],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--labs", nargs="*", default=None, help="lab numbers or name prefixes (default: all)")
    parser.add_argument("--quick", action="store_true", help="RLHF_LAB_QUICK=1: the CI schedules")
    parser.add_argument("--budget", type=float, default=None, help="seconds; later labs are skipped")
    parser.add_argument("--smoke", action="store_true", help="lab 07 on tiny with --quick (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.quick, args.labs = "tiny", True, ["07"]

    notebooks = pick_labs(args.labs)
    if not notebooks:
        parser.error(f"no lab matches {args.labs}")
    command = "python bench/lab_times.py " + " ".join(argv if argv is not None else sys.argv[1:])
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    started, rows = time.perf_counter(), []
    for path in notebooks:
        left = None if args.budget is None else args.budget - (time.perf_counter() - started)
        row = {"bench": "lab_times", "command": command, "preset": args.preset, "quick": args.quick}
        if left is not None and left < 30:
            row.update(lab=path.stem, skipped="budget spent")
        else:
            row.update(device=device, **run_lab(path, args.preset, args.quick, left or 3600))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
