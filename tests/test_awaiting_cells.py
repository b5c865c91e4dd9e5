"""Cells that await (`await until_done(ppo)`, `await labeller.finished()`) and the cell after them.

ipykernel 7.4.0 can leave the cell after an awaiting cell showing `[*]` for ever when that cell awaits
too (rlhf_lab/ui/awaiting.py says why). The labs keep such a cell free of `await`; the slow test
checks against a real kernel that this is enough: a plain cell after an awaiting one, with widget
messages arriving as the awaiting cell ends, always reports its own end.
"""

from __future__ import annotations

import ast
import inspect
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

LABS = Path(__file__).resolve().parent.parent / "labs"
NOTEBOOKS = sorted(LABS.glob("[0-9][0-9]_*.ipynb"))


def awaits(source: str) -> bool:
    """Whether IPython runs this cell as a coroutine (top-level await), as its kernel decides."""
    python = TransformerManager().transform_cell(source)
    code = compile(python, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    return bool(code.co_flags & inspect.CO_COROUTINE)


def test_awaits_tells_awaiting_cells_from_plain_ones():
    assert awaits("x = 1\nif x:\n    await f()")  # an await in a branch not taken still counts
    assert awaits("async for item in feed():\n    pass")
    assert not awaits("async def f():\n    await g()\n\nx = f")  # awaits only inside a function
    assert not awaits("%time x = 1\nprint(x)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_lab_cell_awaits_right_after_an_awaiting_cell(path):
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    pairs = [
        (a.get("id"), b.get("id")) for a, b in zip(code, code[1:]) if awaits(a.source) and awaits(b.source)
    ]
    assert not pairs, f"{path.name}: these cells await right after an awaiting cell: {pairs}"


def one_run(client, comm_id: str, first: str, second: str) -> tuple[bool, bool]:
    """Run two cells while widget messages arrive as the first ends: (second's end seen, its output seen)."""
    first_id, second_id = client.execute(first), client.execute(second)
    ends = time.monotonic() + 0.6  # the first cell awaits 0.3 s
    while time.monotonic() < ends:
        client.session.send(
            client.shell_channel.socket,
            client.session.msg("comm_msg", {"comm_id": comm_id, "data": {"click": 1}}),
        )
        time.sleep(0.002)
    idle, printed = False, False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not idle:
        try:
            message = client.get_iopub_msg(timeout=0.5)
        except Exception:  # queue.Empty: nothing more yet
            continue
        if message["parent_header"].get("msg_id") != second_id:
            continue
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            idle = True
        printed |= message["msg_type"] == "stream" and "second ran" in message["content"]["text"]
    assert first_id != second_id
    return idle, printed


AWAITING_CELL = "import asyncio\nawait asyncio.sleep(0.3)"
NEXT_CELLS = {"plain": "print('second ran')", "awaiting": "await asyncio.sleep(0)\nprint('second ran')"}


@contextmanager
def probe_kernel() -> Iterator[tuple[Any, str]]:
    """A fresh kernel with a comm the client can flood, as widget views do: (client, comm id)."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        client.execute_interactive(
            "from comm import get_comm_manager\n"
            "get_comm_manager().register_target('probe', lambda comm, msg: comm.on_msg(lambda m: None))",
            timeout=60,
        )
        comm_id = uuid.uuid4().hex
        client.session.send(
            client.shell_channel.socket,
            client.session.msg("comm_open", {"comm_id": comm_id, "target_name": "probe", "data": {}}),
        )
        yield client, comm_id
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.mark.slow
def test_a_plain_cell_after_an_awaiting_one_always_reports_its_end():
    with probe_kernel() as (client, comm_id):
        results = [one_run(client, comm_id, AWAITING_CELL, NEXT_CELLS["plain"]) for _ in range(25)]
    assert all(idle and printed for idle, printed in results), results


STAGE_CELL = """
import time
from rlhf_lab.stages.base import Stage
from rlhf_lab.ui import until_done

class Slow(Stage):
    name = "slow"
    def _train_step(self):
        time.sleep(0.05)
        return {}
    _save_state = _from_checkpoint = None  # never saved here

stage = Slow(None)
stage.run(steps=400)
print("waiting", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("wait", ["await until_done(stage)", "stage.wait()"])
def test_the_stop_button_on_a_cell_that_waits_for_a_run_pauses_the_run(wait):
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        waiting = client.execute(STAGE_CELL + wait)
        said, error, interrupted = "", None, False
        deadline = time.monotonic() + 120  # torch's import alone can take a minute on a busy machine
        while time.monotonic() < deadline:
            message = client.get_iopub_msg(timeout=120)
            if message["parent_header"].get("msg_id") != waiting:
                continue
            if message["msg_type"] == "stream":
                said += message["content"]["text"]
                if "waiting" in said and not interrupted:  # the press lands on the wait, not the imports
                    time.sleep(0.5)
                    manager.interrupt_kernel()
                    interrupted = True
            if message["msg_type"] == "error":
                error = message["content"]["ename"]
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        assert error in ("CancelledError", "KeyboardInterrupt"), error
        assert "Interrupted: slow pauses after its current step" in said, said
        reply = client.execute_interactive(
            "time.sleep(0.5); n = stage.step_count; time.sleep(0.5)\n"
            "assert stage.status == 'paused' and stage.step_count == n < 400, (stage.status, n)\n"
            "try:\n"
            "    stage.run(steps=5)\n"  # an interrupted Thread.join once made the run look finished
            "except Exception as error:\n"
            "    assert 'paused with a run in progress' in str(error), error\n"
            "else:\n"
            "    raise AssertionError('a second run started beside the paused one')",
            timeout=30,
        )
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


if (
    __name__ == "__main__"
):  # python tests/test_awaiting_cells.py [runs]: the figures in rlhf_lab/ui/awaiting.py
    import sys

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    for kind, second in NEXT_CELLS.items():
        with probe_kernel() as (client, comm_id):
            lost = sum(not all(one_run(client, comm_id, AWAITING_CELL, second)) for _ in range(runs))
        print(f"next cell {kind}: lost its end (idle status or output) in {lost} of {runs} runs", flush=True)
