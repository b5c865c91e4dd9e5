"""Small HTML helpers the views share (status lines, error messages).

>>> from rlhf_lab.ui.html import clean_message, error_html
>>> status.value = error_html(exc)     # one escaped, error-coloured line, no traceback
"""

from __future__ import annotations

import html


def clean_message(exc: BaseException | str) -> str:
    """One readable line for a status label: the message without the chained traceback."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    text = text.split("\n\n", 1)[0].strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Traceback")]
    return " ".join(lines)[:500] or "error"


def error_html(exc: BaseException | str) -> str:
    """`clean_message` as escaped, error-coloured HTML for a status widget."""
    return f'<span style="color:var(--jp-error-color1)">{html.escape(clean_message(exc))}</span>'
