"""Which model files an RL checkpoint holds, and how they come back.

    folder/models/policy      the policy (with LoRA: its base, adapter layers removed, by peft)
    folder/models/adapter     the LoRA adapter (LoRA only)
    folder/models/reference   the frozen reference (not with LoRA: the adapter-off policy is the reference)
    folder/models/value_model the separate value model's backbone (value="separate")
    folder/value_head.safetensors  the value head (PPO)

`RLStage._save_state` / `_from_checkpoint` call these and add the step state (prompt order, KL
controller, kept samples). Weights are safetensors throughout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rlhf_lab.lora import load_lora, save_base
from rlhf_lab.rl.kl import kl_controller_from_state
from rlhf_lab.stages.checkpoint import model_path, save_model


def save_models(folder: Path, stage: Any) -> None:
    """Write the policy, reference, value model and value head of an RLStage to `folder`."""
    if stage.uses_lora:  # the base (adapter layers removed) and the adapter, both by peft
        save_base(stage.policy, model_path(folder, "policy"), stage.tokenizer)
        stage.policy.save_pretrained(model_path(folder, "adapter"), safe_serialization=True)
    else:
        save_model(folder, "policy", stage.policy, stage.tokenizer)
        save_model(folder, "reference", stage.ref_policy)
    if stage.value_head is not None:
        save_file(stage.value_head.state_dict(), folder / "value_head.safetensors")
    if stage.value_model is not None:
        save_model(folder, "value_model", stage.value_model.backbone)
        save_file(stage.value_model.head.state_dict(), folder / "value_head.safetensors")


def load_models(folder: Path, config: Any, device: torch.device) -> dict[str, Any]:
    """tokenizer, policy, ref_policy (None with LoRA) and value_model (a backbone, or None)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(key: str) -> torch.nn.Module:
        return AutoModelForCausalLM.from_pretrained(model_path(folder, key), dtype="auto").to(device)

    if config.lora:
        policy, ref = load_lora(model_path(folder, "policy"), model_path(folder, "adapter")).to(device), None
    else:
        policy, ref = load("policy"), load("reference")
    separate = config.value == "separate" and config.estimator == "ppo"
    return {
        "tokenizer": AutoTokenizer.from_pretrained(model_path(folder, "policy")),
        "policy": policy,
        "ref_policy": ref,
        "value_model": load("value_model") if separate else None,
    }


def load_value_head(folder: Path, stage: Any, device: torch.device) -> None:
    """Put the saved value head weights into the stage's head (PPO), if it has one."""
    head = stage.value_head if stage.value_head is not None else getattr(stage.value_model, "head", None)
    if head is not None:
        head.load_state_dict(load_file(folder / "value_head.safetensors", device=str(device)))


def save_loop_state(folder: Path, stage: Any) -> None:
    """The RL loop's own state: prompt order, KL controller, reward normalisation, prompts."""
    state = {
        "prompt_order": stage.order.state_dict(),
        "kl_controller": stage.kl_ctl.state_dict(),
        "kl_warned": stage._kl_warned,
        "reward_normalizer": stage.normalizer.state_dict(),
        "objective_normalizers": stage.objective_normalizers.state_dict(),
    }
    (folder / "rl_state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    (folder / "prompts.json").write_text(json.dumps(stage.prompts), encoding="utf-8")


def load_loop_state(folder: Path, stage: Any) -> None:
    state = json.loads((folder / "rl_state.json").read_text(encoding="utf-8"))
    stage.order.load_state_dict(state["prompt_order"])
    stage.kl_ctl = kl_controller_from_state(state["kl_controller"])
    stage._kl_warned = state["kl_warned"]
    if "reward_normalizer" in state:  # checkpoints from before reward normalisation have none
        stage.normalizer.load_state_dict(state["reward_normalizer"])
    stage.objective_normalizers.load_state_dict(state.get("objective_normalizers", {}))
