"""LoRA adapters (peft) for every stage: wrap a policy, save and load it, fold it back in.

    >>> from rlhf_lab.lora import wrap_lora, is_peft_model, save_base, load_lora
    >>> policy = wrap_lora(policy, r=8, alpha=16, dropout=0.05)   # only the adapter trains
    >>> is_peft_model(policy)
    True
    >>> save_base(policy, folder / "base")          # the frozen base, adapter layers removed
    >>> policy.save_pretrained(folder / "adapter")  # peft writes the adapter alone
    >>> policy = load_lora(folder / "base", folder / "adapter")
    >>> plain = policy.merge_and_unload()            # one ordinary model again

Everything here is peft's own API (`get_peft_model`, `save_pretrained`, `unload`,
`PeftModel.from_pretrained`); peft is imported only when a LoRA function runs. Each stage's
config carries its LoRA hyper-parameters (SFTConfig.lora_r, RLConfig.lora_r, ...).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

# One set of LoRA defaults for every stage (SFTConfig, DPO and RLConfig refer to these). Rank 16 with
# alpha = 2 * rank on every linear layer is the common recipe for models of this size (the QLoRA paper,
# Dettmers et al. 2023, adapts all linear layers; peft's "all-linear" selects them and skips the output layer).
LORA_R = 16
LORA_ALPHA = 32
LORA_TARGET_MODULES = "all-linear"


@contextlib.contextmanager
def _without_peft_deprecation_noise() -> Iterator[None]:
    """peft 0.21's PeftModel reads `model.is_gradient_checkpointing` (peft/peft_model.py), an alias that
    transformers 5 deprecated: a FutureWarning a LoRA user can do nothing about, so it is left out."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def is_peft_model(model: Any) -> bool:
    """True for a peft model carrying an adapter (checked without importing peft)."""
    return getattr(model, "peft_config", None) is not None and hasattr(model, "disable_adapter")


def wrap_lora(
    model: torch.nn.Module,
    *,
    r: int,
    alpha: int,
    dropout: float = 0.0,
    target_modules: str | list[str] | None = None,
) -> torch.nn.Module:
    """`model` with a LoRA adapter on `target_modules` (peft's default set when None); a peft model
    is returned as it is (e.g. one rebuilt by a stage's `load`)."""
    if is_peft_model(model):
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        # GPT-2 stores its projections as Conv1D (transposed weights).
        fan_in_fan_out=getattr(getattr(model, "config", None), "model_type", "") == "gpt2",
    )
    with _without_peft_deprecation_noise():
        return get_peft_model(model, config)


def save_base(model: torch.nn.Module, path: str | Path, tokenizer: Any | None = None) -> None:
    """Write the frozen base model of a peft `model` (adapter layers removed, safetensors) to `path`.

    peft's `unload()` is destructive, so it runs on a copy; the live model keeps its adapter.
    """
    base = copy.deepcopy(model).unload()
    base.save_pretrained(path, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def load_lora(base: str | Path | torch.nn.Module, adapter: str | Path) -> torch.nn.Module:
    """A trainable peft model: the adapter at `adapter` on `base` (a model, or a folder to load it from)."""
    from peft import PeftModel

    if not isinstance(base, torch.nn.Module):
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(base)
    with _without_peft_deprecation_noise():
        return PeftModel.from_pretrained(base, adapter, is_trainable=True)


def has_adapter_layers(model: torch.nn.Module) -> bool:
    """True when peft's LoRA layers sit inside `model` itself: a plain model some peft wrapper (an SFT
    stage's) injected an adapter into. A peft wrapper is not "plain": it answers `is_peft_model`."""
    return not is_peft_model(model) and any(
        hasattr(module, "base_layer") and hasattr(module, "lora_A") for module in model.modules()
    )


def check_no_foreign_adapter(policy: torch.nn.Module, stage: str) -> None:
    """Refuse a policy that carries another stage's LoRA layers (a ValueError saying what to do): a
    stage on it would train only that adapter, against a reference from before it."""
    if has_adapter_layers(policy):
        raise ValueError(
            f"The policy carries a LoRA adapter that another stage put in it (an SFT stage with lora=True): "
            f"fold it in first (sft.merge()), or create the {stage} stage from the Lab (lab.{stage}(...)), "
            "which folds it for you."
        )


def fold_adapter_layers(model: torch.nn.Module) -> int:
    """Merge the LoRA layers inside `model` into their base layers and put the plain layers back, in
    place; every weight trains again afterwards. Returns how many layers were folded.

    What peft's `merge_and_unload` does (peft/tuners/tuners_utils.py, `_unload_and_optionally_merge`,
    peft 0.21), for a model whose peft wrapper is not at hand, e.g. a deep copy of one.

        >>> snapshot = copy.deepcopy(lab.policy)       # still carries the SFT stage's adapter layers
        >>> fold_adapter_layers(snapshot)              # 24: one plain model, the adapter's update in it
    """
    names = [
        name
        for name, module in model.named_modules()
        if hasattr(module, "base_layer") and hasattr(module, "lora_A")
    ]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = getattr(parent, child)
        layer.merge()
        setattr(parent, child, layer.get_base_layer())
    if names:
        model.requires_grad_(True)  # peft froze the base weights for the adapter's sake
    return len(names)
