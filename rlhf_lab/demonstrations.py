"""Demonstrations for SFT: load them from anything a notebook has at hand, and check them.

A demonstration is a prompt and the response we want the policy to give. Accepted sources:

- a list of dicts with `prompt` and `response` (or TRL's `completion`), or chat-form `messages`
  (a list of {"role", "content"} ending with the assistant's turn, which becomes the response),
- a list of `(prompt, response)` tuples or of `Demo` objects,
- a pandas DataFrame with those columns,
- a path to a JSONL file with one such dict per line.

    >>> from rlhf_lab.demonstrations import load_demos
    >>> demos = load_demos([{"prompt": "Say hi.", "response": "Hi!"}])
    >>> demos[0].response
    'Hi!'

Problems are reported with the row (or file line) they are on, before any training starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rlhf_lab.errors import RLHFLabError

# A response this long (in characters) is almost certainly a data bug (a whole file in one cell).
MAX_CHARS = 100_000
ROLES = ("system", "user", "assistant")

Messages = list[dict[str, str]]


class DemoError(RLHFLabError, ValueError):
    """A demonstration is malformed; the message names the row and what is wrong with it."""


@dataclass(frozen=True)
class Demo:
    """One demonstration. `prompt` is a string or, for multi-turn chats, the messages before the answer."""

    prompt: str | Messages
    response: str

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict that `load_demos` reads back into the same Demo."""
        if isinstance(self.prompt, str):
            return {"prompt": self.prompt, "response": self.response}
        return {"messages": [*self.prompt, {"role": "assistant", "content": self.response}]}


def load_demos(source: Any, *, max_chars: int = MAX_CHARS) -> list[Demo]:
    """Read and validate demonstrations from a list, DataFrame or JSONL path (see module docstring)."""
    if isinstance(source, (str, os.PathLike)):
        return _from_jsonl(Path(source), max_chars)
    if isinstance(source, pd.DataFrame):
        records: Iterable[Any] = source.to_dict(orient="records")
    elif isinstance(source, Mapping):
        raise DemoError("Expected a list of demonstrations, got a single dict; wrap it in a list.")
    elif isinstance(source, Iterable):
        records = source
    else:
        raise DemoError(f"Cannot read demonstrations from a {type(source).__name__}.")
    demos = [_parse(record, f"row {i}", max_chars) for i, record in enumerate(records)]
    if not demos:
        raise DemoError("No demonstrations given: SFT needs at least one (prompt, response) pair.")
    return demos


def save_demos(demos: Iterable[Demo], path: str | os.PathLike) -> Path:
    """Write demonstrations as JSONL (one `Demo.to_record()` per line)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for demo in demos:
            f.write(json.dumps(demo.to_record(), ensure_ascii=False) + "\n")
    return path


def _from_jsonl(path: Path, max_chars: int) -> list[Demo]:
    if not path.is_file():
        raise DemoError(f"No such demonstrations file: {path}")
    demos = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"line {number} of {path.name}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DemoError(
                    f"{where}: not UTF-8 text (byte {exc.start}); save the file as UTF-8."
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DemoError(f"{where}: not valid JSON ({exc.msg}).") from None
            except RecursionError:
                raise DemoError(f"{where}: JSON nested too deeply to read.") from None
            demos.append(_parse(record, where, max_chars))
    if not demos:
        raise DemoError(f"{path} holds no demonstrations.")
    return demos


def _parse(record: Any, where: str, max_chars: int) -> Demo:
    if isinstance(record, Demo):
        return Demo(
            _check_prompt(record.prompt, where, max_chars),
            _check_text(record.response, where, "response", max_chars),
        )
    if isinstance(record, tuple) and len(record) == 2:
        record = {"prompt": record[0], "response": record[1]}
    if not isinstance(record, Mapping):
        raise DemoError(
            f"{where}: expected a dict with prompt/response or messages, got {type(record).__name__}."
        )
    if "messages" in record and record["messages"] is not None:
        return _from_messages(record["messages"], where, max_chars)
    response_key = "completion" if "completion" in record and "response" not in record else "response"
    missing = [key for key in ("prompt", response_key) if key not in record]
    if missing:
        raise DemoError(
            f"{where}: missing column {missing[0]!r} (found {sorted(map(str, record))}); "
            "each demonstration needs 'prompt' and 'response', or chat-form 'messages'."
        )
    prompt = _check_prompt(record["prompt"], where, max_chars)
    return Demo(prompt, _check_text(record[response_key], where, "response", max_chars))


def _from_messages(messages: Any, where: str, max_chars: int) -> Demo:
    if not isinstance(messages, list) or len(messages) < 2:
        raise DemoError(f"{where}: 'messages' must be a list of at least a user and an assistant turn.")
    turns = [_check_message(m, f"{where}, message {j}", max_chars) for j, m in enumerate(messages)]
    if turns[-1]["role"] != "assistant":
        raise DemoError(
            f"{where}: the last message must be the assistant's answer, got role {turns[-1]['role']!r}."
        )
    if not any(t["role"] == "user" for t in turns[:-1]):
        raise DemoError(f"{where}: 'messages' has no user turn before the answer.")
    return Demo(turns[:-1], turns[-1]["content"])


def _check_message(message: Any, where: str, max_chars: int) -> dict[str, str]:
    if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
        raise DemoError(f"{where}: each message needs 'role' and 'content'.")
    if message["role"] not in ROLES:
        raise DemoError(f"{where}: unknown role {message['role']!r} (expected one of {ROLES}).")
    return {"role": message["role"], "content": _check_text(message["content"], where, "content", max_chars)}


def _check_prompt(prompt: Any, where: str, max_chars: int) -> str | Messages:
    if isinstance(prompt, list):
        return [_check_message(m, f"{where}, prompt message {j}", max_chars) for j, m in enumerate(prompt)]
    return _check_text(prompt, where, "prompt", max_chars)


def _check_text(value: Any, where: str, name: str, max_chars: int) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or a DataFrame NaN
        raise DemoError(f"{where}: {name} is missing (None/NaN).")
    if not isinstance(value, str):
        raise DemoError(f"{where}: {name} must be text, got {type(value).__name__}.")
    if not value.strip():
        raise DemoError(f"{where}: {name} is empty.")
    if len(value) > max_chars:
        raise DemoError(
            f"{where}: {name} is {len(value):,} characters long (limit {max_chars:,}); "
            "this is usually a data bug. Pass max_chars= to allow it."
        )
    return value
