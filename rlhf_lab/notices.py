"""Warnings written for the person at the notebook: one plain line, no file name or source line.

    >>> import warnings
    >>> from rlhf_lab.notices import LabNotice
    >>> warnings.warn("This reward model is nearly flat ...", LabNotice)   # prints "Note: This reward ..."

A `LabNotice` is an ordinary warning: `pytest.warns`, `warnings.catch_warnings` and
`warnings.filterwarnings("ignore" | "error", category=...)` treat it like any other. Only its display
differs. Python's default shows `path/stage.py:231: RuntimeWarning: ...` and then the source line that
called `warnings.warn`, which tells a newcomer nothing; in a notebook it also lands on stderr, in a red
box. Here it is one line, on stdout inside a Jupyter kernel (stderr elsewhere). The display hook wraps
`warnings.showwarning` (Python's documented hook for replacing how warnings are shown) when this module
is first imported; warnings of other categories go to whatever hook was there before.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, TextIO


class LabNotice(UserWarning):
    """A warning meant for a person: shown as one plain line starting "Note:"."""

    label = "Note"


class KLWarning(LabNotice, RuntimeWarning):
    """The policy has moved far from its reference (KL above `kl_warning`): look for reward hacking.

    Also a RuntimeWarning, so `filterwarnings(..., category=RuntimeWarning)` still matches it."""

    label = "KL alarm"


def format_notice(message: Warning | str, category: type[Warning]) -> str:
    """The one line a notice prints: "<label>: <message>" (no path, no source line)."""
    return f"{getattr(category, 'label', 'Note')}: {message}\n"


def _in_kernel() -> bool:
    return type(sys.stdout).__module__.startswith("ipykernel")


def _show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if isinstance(category, type) and issubclass(category, LabNotice):
        stream = file or (sys.stdout if _in_kernel() else sys.stderr)
        try:
            stream.write(format_notice(message, category))
        except (OSError, AttributeError):  # no usable stream (e.g. pythonw): drop it, as Python does
            pass
        return
    _previous(message, category, filename, lineno, file, line)


if getattr(warnings.showwarning, "__module__", None) != __name__:  # else installed already (a reload)
    _previous: Any = warnings.showwarning
    warnings.showwarning = _show
