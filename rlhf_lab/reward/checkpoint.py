"""Saving and loading a reward-model stage's checkpoint (weights, optimizer, pairs, splits, offset).

`RewardModelStage.save(folder)` / `Stage.load(folder)` call these; the files sit beside the ones every
stage writes (rlhf_lab.stages.checkpoint).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rlhf_lab.device import choose_device
from rlhf_lab.reward.config import RMConfig
from rlhf_lab.reward.pairs import PairRecord
from rlhf_lab.stages.base import (
    StepClock,
    config_from_dict,
    load_training_state,
    model_path,
    save_model,
    save_training_state,
)


def save_rm_state(stage: Any, folder: Path) -> None:
    """Write `stage`'s model, optimizer, pair snapshot and split assignment into `folder`."""
    save_model(folder, "reward", stage.model, stage.tokenizer)
    save_training_state(folder, stage.optimizer)
    with open(folder / "data.jsonl", "w", encoding="utf-8") as f:
        for pair in stage.pairs:
            f.write(json.dumps(asdict(pair), ensure_ascii=False) + "\n")
    state = {
        "split_of": stage.split_of,
        "samples_seen": stage.samples_seen,
        "data_version": stage.data_version,
        "has_data": stage._units is not None,
        "offset": stage.scorer.offset,
        "pretrained": stage.pretrained,
        "pretrained_task": stage.pretrained_task,
        "fits": stage.fits,
    }
    (folder / "rm_state.json").write_text(json.dumps(state, ensure_ascii=False))


def load_rm_stage(
    cls: type,
    folder: Path,
    meta: dict[str, Any],
    *,
    data: Any = None,
    device: str | torch.device | None = None,
    clock: StepClock | None = None,
    **kwargs: Any,
) -> Any:
    """A `cls` (RewardModelStage) rebuilt from `folder`; `data=store` re-attaches a live store."""
    source = model_path(folder, "reward")
    model = AutoModelForSequenceClassification.from_pretrained(source).to(choose_device(device))
    tokenizer = AutoTokenizer.from_pretrained(source)
    with open(folder / "data.jsonl", encoding="utf-8") as f:
        snapshot = [PairRecord(**json.loads(line)) for line in f if line.strip()]
    config = config_from_dict(RMConfig, meta["config"])
    stage = cls(model, tokenizer, data if data is not None else snapshot, config, clock=clock, **kwargs)
    stage._initial_state = None  # the backbone's starting weights are not in the checkpoint
    load_training_state(folder, stage.optimizer)
    state = json.loads((folder / "rm_state.json").read_text(encoding="utf-8"))
    stage.pairs, stage.split_of = snapshot, state["split_of"]
    if state["has_data"]:
        stage._build_units()
    stage.samples_seen, stage.data_version = state["samples_seen"], state["data_version"]
    stage.scorer.offset = state["offset"]
    stage.pretrained = state.get("pretrained")
    stage.pretrained_task, stage.fits = state.get("pretrained_task"), state.get("fits", [])  # older: none
    return stage
