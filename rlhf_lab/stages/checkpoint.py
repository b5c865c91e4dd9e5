"""Checkpoint files of a stage: configs as JSON, weights as safetensors, RNG and optimizer state.

    >>> from rlhf_lab.stages.checkpoint import save_model, model_path
    >>> save_model(folder, "policy", model, tokenizer)     # folder/models/policy, safetensors
    >>> model_path(folder, "policy")

`Stage.save` / `Stage.load` (rlhf_lab.stages.base) use these to write a checkpoint atomically; a
stage's `_save_state` / `_from_checkpoint` use them for its own weights and state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


def config_to_dict(config: Any) -> dict[str, Any]:
    if is_dataclass(config):
        return {f.name: getattr(config, f.name) for f in fields(config) if _jsonable(getattr(config, f.name))}
    return {}


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


def _swap_into_place(staging: Path, path: Path) -> None:
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def _recover(path: Path) -> Path:
    """A crash between the two renames of a save leaves `.name.old`: use it."""
    if (path / "stage.json").is_file():
        return path
    old = path.with_name(f".{path.name}.old")
    if (old / "stage.json").is_file():
        return old
    raise FileNotFoundError(f"No complete stage checkpoint at {path}")


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
