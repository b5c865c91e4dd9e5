"""Small HTML helpers the views share (status lines, error messages).

>>> from rlhf_lab.ui.html import clean_message, error_html
>>> status.value = error_html(exc)     # one escaped, error-coloured line, no traceback

The side-by-side views (`BeforeAfter`, `Playground`) draw a prompt over columns of answers with
`prompt_html`, `heading_html`, `text_html` and `BOX_STYLE`; every piece of text is escaped.
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


HEADING_STYLE = "font-size:11px;font-weight:700;color:var(--jp-ui-font-color2);text-transform:uppercase"
BOX_STYLE = "border:1px solid var(--jp-border-color2);border-radius:6px;padding:6px 8px"
"""A bordered box around one answer (inline CSS: the theme's colours, light or dark)."""


def prompt_html(prompt: str) -> str:
    """A prompt in bold above the answers to it."""
    return f'<div style="font-weight:600;white-space:pre-wrap;margin:6px 0 4px">{html.escape(prompt)}</div>'


def heading_html(text: str) -> str:
    """A small upper-case label (a model's name) over its column or inside its box."""
    return f'<div style="{HEADING_STYLE}">{html.escape(text)}</div>'


def text_html(text: str) -> str:
    """Model output as text: line breaks kept, long words wrapped, nothing read as markup."""
    return f'<div style="white-space:pre-wrap;overflow-wrap:anywhere">{html.escape(text)}</div>'
