"""What an awaiting notebook cell needs from the kernel, checked before a cell relies on it.

`await labeller.finished()` and `await until_done(stage)` wait in a cell while the widgets stay live.
That works only where the kernel handles widget (comm) messages while a cell awaits: ipykernel 7.4
does (`Kernel.shell_main` dispatches comm messages at once while a cell holds the shell lock);
7.3 and earlier queue them behind the awaiting cell, so the clicks it waits for never arrive.

ipykernel 7.4.0 has a race in that same path: a comm message that arrives while a cell awaits
restores the shell's parent message when it is done, and if the next cell has started and itself
awaits (yields to the event loop) by then, the restore lands on it. That cell's "idle" status then
goes out under the previous cell's message, and the front end shows `[*]` on it for ever (its
printed output still arrives). Measured with jupyter_client, a burst of comm messages around the
end of an `await asyncio.sleep` cell: the next cell lost its idle in 8 of 20 runs when it awaited,
0 of 40 when it did not (tests/test_awaiting_cells.py keeps the second case). Waiting inside the
awaiting cell for the comm dispatches to finish does not help (18 of 40): ipykernel's own code after
the cell's last line yields too. So in the labs, the cell after an awaiting cell never awaits.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

FIRST_GOOD_IPYKERNEL = (7, 4)


def in_ipykernel() -> bool:
    """True inside a Jupyter kernel (ipykernel), False in plain Python or a terminal IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def ipykernel_version() -> tuple[int, int] | None:
    """(major, minor) of the installed ipykernel, or None when it is not installed or unreadable."""
    try:
        major, minor, *_ = version("ipykernel").split(".")
        return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)
    except (PackageNotFoundError, ValueError):
        return None


def widgets_answer_while_awaiting() -> bool:
    """Whether widget clicks reach Python while a cell awaits: True outside a kernel (nothing to
    deliver) and with ipykernel >= 7.4 (or a version that cannot be read: no false alarm)."""
    if not in_ipykernel():
        return True
    found = ipykernel_version()
    return found is None or found >= FIRST_GOOD_IPYKERNEL


def upgrade_hint() -> str:
    found = ipykernel_version()
    shown = ".".join(map(str, found)) if found else "unknown"
    want = ".".join(map(str, FIRST_GOOD_IPYKERNEL))
    return (
        f"this kernel's ipykernel ({shown}) holds widget clicks back while a cell awaits; "
        f'ipykernel >= {want} delivers them (pip install "ipykernel>={want}", then restart the kernel)'
    )
