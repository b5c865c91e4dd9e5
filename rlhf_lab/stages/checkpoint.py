"""Checkpoint files of a stage: configs as JSON, weights as safetensors, RNG and optimizer state.

    >>> from rlhf_lab.stages.checkpoint import save_model, model_path
    >>> save_model(folder, "policy", model, tokenizer)     # folder/models/policy, safetensors
    >>> model_path(folder, "policy")

`Stage.save` / `Stage.load` (rlhf_lab.stages.base) use these to write a checkpoint atomically; a
stage's `_save_state` / `_from_checkpoint` use them for its own weights and state.

Trust: `manifest.json`, written last, lists every file's size and sha256. A save goes to a staging
folder; only when it is complete does the checkpoint at `path` move to `.<name>.old` (the previous
good checkpoint, kept) and the new one take its place. `verified_checkpoint(path)` checks the
manifest and falls back to the previous checkpoint with a warning naming the damaged file, or
raises a `CheckpointError` naming it. Checkpoints from before manifests (stage.json "format" 1) are
taken as complete when their stage.json is there.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import threading
import warnings
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhf_lab.errors import CheckpointError

MANIFEST = "manifest.json"
FORMAT = 2  # 2: with a manifest


def config_to_dict(config: Any) -> dict[str, Any]:
    """The JSON-able fields of a config dataclass (or items of a mapping, e.g. a `set()`'s changes)."""
    if is_dataclass(config):
        items = {f.name: getattr(config, f.name) for f in fields(config)}
    elif isinstance(config, dict):
        items = config
    else:
        return {}
    return {name: value for name, value in items.items() if _jsonable(value)}


def plain_value(value: Any) -> Any:
    """A metric as JSON writes it: a one-element tensor or NumPy number as a Python number, a tensor as a list."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def config_from_dict(config_cls: type, data: dict[str, Any], **overrides: Any) -> Any:
    """The config saved in a checkpoint (older field names mapped, unknown ones dropped)."""
    names = {f.name for f in fields(config_cls)}
    renames = getattr(config_cls, "deprecated_names", {})
    values = {renames.get(k, k): v for k, v in {**data, **overrides}.items()}
    return config_cls(**{k: v for k, v in values.items() if k in names})


def rng_state() -> dict[str, Any]:
    """Every RNG a step draws from, as tensors and plain lists (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(_flatten_python_state(random.getstate())),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _flatten_python_state(state: tuple) -> tuple:
    version, internal, gauss = state
    return version, list(internal), gauss


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())


def previous_checkpoint(path: Path) -> Path:
    """Where the previous good checkpoint of `path` is kept."""
    return path.with_name(f".{path.name}.old")


def check_save_target(path: Path) -> None:
    """CheckpointError when `path` holds something other than a stage checkpoint (or an empty folder).

    A save swaps whatever is at `path` out to `.<name>.old`, and the save after that deletes it: a
    notebook's `stage.save("runs")` would first hide and then delete the labels.sqlite beside it.
    """
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        entries = sorted(p.name for p in path.iterdir())
        if not entries or "stage.json" in entries or MANIFEST in entries:
            return
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        what = f"a folder of other files ({shown})"
    else:
        what = "a file"
    raise CheckpointError(
        f"Not saving to {path}: it is {what}, not a stage checkpoint, and a save replaces what is there. "
        f"Save to a new folder, e.g. {path / 'checkpoint'}."
    )


def _swap_into_place(staging: Path, path: Path) -> None:
    """Put the complete `staging` at `path`; the checkpoint that was there becomes the previous one.

    At every moment a good checkpoint exists at `path` or at its previous location.
    """
    old = previous_checkpoint(path)
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)
    os.replace(staging, path)


def write_atomically(path: Path, fill: Callable[[Path], None]) -> Path:
    """Have `fill` write a checkpoint into a staging folder beside `path`, then add the manifest,
    flush it to disk and swap it into place; on any failure the staging folder goes and `path` is
    as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        fill(staging)
        write_manifest(staging)  # written last: every file's size and sha256
        _fsync_tree(staging)
        _swap_into_place(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Write `folder/manifest.json`: every other file's size and sha256 (call it last)."""
    files = {
        file.relative_to(folder).as_posix(): {"size": file.stat().st_size, "sha256": _sha256(file)}
        for file in sorted(folder.rglob("*"))
        if file.is_file() and file.name != MANIFEST
    }
    _write_json(folder / MANIFEST, {"format": 1, "files": files})


def checkpoint_problem(folder: Path) -> str | None:
    """None when `folder` is a complete, undamaged checkpoint; otherwise what is wrong, naming the file."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    manifest = folder / MANIFEST
    if not manifest.is_file():
        try:
            meta = json.loads((folder / "stage.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return f"{folder / 'stage.json'} is missing (the save did not finish)"
        except (OSError, ValueError) as exc:
            return f"{folder / 'stage.json'} is unreadable ({exc})"
        if not isinstance(meta, dict) or meta.get("format", 1) >= 2:
            return f"{manifest} is missing"
        return None  # a checkpoint from before manifests
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        entries = [(name, int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{manifest} is unreadable ({type(exc).__name__}: {exc})"
    if "stage.json" not in files:
        return f"{manifest} does not list stage.json"
    for name, size, sha256 in entries:
        file = folder / name
        if not file.is_file():
            return f"{file} is missing"
        actual = file.stat().st_size
        if actual != size:
            return f"{file} has {actual} bytes; the manifest says {size} (truncated or overwritten)"
        if _sha256(file) != sha256:
            return f"{file} does not match its sha256 in the manifest (damaged)"
    return None


def verified_checkpoint(path: Path) -> Path:
    """`path` when it verifies; else the previous good checkpoint, with a warning saying what was
    damaged; else a `CheckpointError` naming the damaged file (FileNotFoundError when neither exists)."""
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    old = previous_checkpoint(path)
    if not path.exists() and not old.exists():
        raise FileNotFoundError(f"No complete stage checkpoint at {path}")
    old_problem = checkpoint_problem(old) if old.exists() else "there is no previous checkpoint"
    if old_problem is None:
        warnings.warn(
            f"Checkpoint {path} is damaged: {problem}. Loading the previous good checkpoint {old} instead.",
            RuntimeWarning,
            stacklevel=3,
        )
        return old
    raise CheckpointError(
        f"Cannot load the checkpoint at {path}: {problem}. Previous checkpoint: {old_problem}."
    )


def model_path(folder: Path, key: str) -> Path:
    return folder / "models" / key


def save_model(folder: Path, key: str, model: Any, tokenizer: Any | None = None) -> None:
    """save_pretrained as safetensors (never pickle for weights), plus the tokenizer."""
    target = model_path(folder, key)
    model.save_pretrained(target, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(target)


def save_training_state(
    folder: Path, optimizer: Any, scheduler: Any | None = None, key: str = "optim"
) -> None:
    state = {"optimizer": optimizer.state_dict()}
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    torch.save(state, folder / f"{key}.pt")


def load_training_state(
    folder: Path, optimizer: Any, scheduler: Any | None = None, key: str = "optim"
) -> None:
    state = torch.load(folder / f"{key}.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
