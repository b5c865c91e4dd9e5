"""Export what the lab trained as plain transformers folders, with a short model card.

    >>> rm.export("exports/reward")       # AutoModelForSequenceClassification + AutoTokenizer load it
    >>> sft.export("exports/policy")      # AutoModelForCausalLM; LoRA merged, tokenizer + chat template

Reward models: the lab's reward is `(raw - scorer.offset) * scale` (the centring offset of
`RMConfig.center_rewards`, and a gain where the scorer has one). The export folds that affine map
into the weights so the exported model's logit *is* the lab's reward: the head's weight is
multiplied by `scale` and `-offset * scale` goes into the head's bias. Heads without a bias
(GPT-2's `score`, Llama's) read the last hidden state straight after a final LayerNorm; where that
LayerNorm has a bias (GPT-2's `ln_f`), the offset goes there instead: with head weight w, adding
`d = -offset * scale * w / |w|^2` to the LayerNorm bias adds exactly `w . d` to the logit. Models with
neither (RMSNorm backbones) raise, unless `fold_offset=False` (the card then says to subtract it).

Policies: a copy of the model with any peft adapter merged (`merge_and_unload`, peft's API), saved
with `save_pretrained` (safetensors), its tokenizer (chat template included) and generation config.
The live stage keeps training with its adapter.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from rlhf_lab.lora import is_peft_model

CARD = "README.md"
_BOOKKEEPING = ("stage", "step", "lab_step", "wall_time", "elapsed_s", "time/step_s")


def export_stage(stage: Any, path: str | os.PathLike, *, fold_offset: bool = True) -> Path:
    """`stage.export(path)`: a reward model for reward stages, a merged policy for the others."""
    if hasattr(stage, "scorer"):
        return export_reward_model(stage, path, fold_offset=fold_offset)
    return export_policy(stage, path)


# ---------------------------------------------------------------------- reward models
def _head_linear(model: torch.nn.Module) -> torch.nn.Linear:
    """The scalar head's last Linear (GPT-2/Llama `score`, BERT `classifier`, RoBERTa `classifier.out_proj`)."""
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Linear):
            return head
        if isinstance(getattr(head, "out_proj", None), torch.nn.Linear):
            return head.out_proj
    raise ValueError(f"cannot find the scalar head of {type(model).__name__} (looked for score, classifier)")


def _final_layer_norm(model: torch.nn.Module) -> torch.nn.LayerNorm | None:
    """The LayerNorm applied just before a bias-free head (GPT-2's transformer.ln_f), if it has a bias."""
    backbone = getattr(model, "transformer", None)
    norm = getattr(backbone, "ln_f", None)
    if isinstance(norm, torch.nn.LayerNorm) and norm.bias is not None:
        return norm
    return None


@torch.no_grad()
def fold_affine(model: torch.nn.Module, offset: float, scale: float = 1.0) -> str:
    """Make `model`'s logit equal `(logit - offset) * scale` in place; returns where the offset went."""
    head = _head_linear(model)
    if head.out_features != 1:
        raise ValueError(f"expected a scalar reward head, got {head.out_features} outputs")
    head.weight.mul_(scale)
    if head.bias is not None:
        head.bias.mul_(scale).sub_(offset * scale)
        return "head bias"
    if offset == 0.0:
        return "nothing to fold"
    norm = _final_layer_norm(model)
    w = head.weight[0].to(torch.float64)
    if norm is None or not float(w @ w) > 0:
        raise ValueError(
            f"{type(model).__name__} has no bias in its reward head or final LayerNorm to fold the centring "
            f"offset {offset} into; export with fold_offset=False and subtract it from the logits."
        )
    shift = -offset * scale * w / (w @ w)
    norm.bias.add_(shift.to(norm.bias.dtype))
    return "final LayerNorm bias (the head has none)"


def export_reward_model(stage: Any, path: str | os.PathLike, *, fold_offset: bool = True) -> Path:
    """Write the reward model so that its logit on `stage.encode(p, r)` equals `stage(p, r)`."""
    path = Path(path)
    scorer = stage.scorer
    offset = float(scorer.offset)
    scale = float(getattr(scorer, "scale", 1.0))
    with stage._step_lock:
        model = copy.deepcopy(scorer.model).to("cpu").float().eval()
    folded = fold_affine(model, offset, scale) if fold_offset else "not folded"
    model.config.pad_token_id = stage.tokenizer.pad_token_id
    _save(model, stage.tokenizer, path)
    notes = {
        "centring offset": offset,
        "scale": scale,
        "folded into": folded,
        "text layout": scorer.layout,
        "max_length": scorer.max_length,
    }
    if not fold_offset:
        notes["use"] = f"reward = (logit - {offset}) * {scale}"
    write_card(
        stage,
        path,
        kind="reward model",
        data=f"{len(getattr(stage, 'pairs', []))} preference pairs",
        notes=notes,
    )
    return path


# ---------------------------------------------------------------------- policies
def _policy_module(stage: Any) -> torch.nn.Module:
    model = getattr(stage, "model", None)  # SFT keeps its (peft) model here; DPO and RL in `policy`
    return model if isinstance(model, torch.nn.Module) else stage.policy


def export_policy(stage: Any, path: str | os.PathLike) -> Path:
    """A merged (LoRA folded in) causal LM, its tokenizer and chat template, and a model card."""
    path = Path(path)
    with stage._step_lock:
        source = _policy_module(stage)
        lora = is_peft_model(source)
        model = copy.deepcopy(source).to("cpu")
    if lora:
        model = model.merge_and_unload()
    model = model.float().eval()
    tokenizer = stage.tokenizer
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    _save(model, tokenizer, path)
    write_card(stage, path, kind="policy", data=_data_description(stage), notes={"LoRA merged": lora})
    return path


def _data_description(stage: Any) -> str:
    for attr, what in (("demos", "demonstrations"), ("pairs", "preference pairs"), ("prompts", "prompts")):
        value = getattr(stage, attr, None)
        if value is not None and hasattr(value, "__len__"):
            return f"{len(value)} {what}"
    return "not recorded"


def check_export_target(path: Path) -> None:
    """ValueError when `path` is a file, or a folder of files that is not a model folder (no
    config.json): an export writes README.md, config.json and the tokenizer's files there, and would
    overwrite a project's own README. An earlier export (or any model folder) is overwritten."""
    if path.is_dir() and (not any(path.iterdir()) or (path / "config.json").is_file()):
        return
    if path.exists():
        what = "a file" if not path.is_dir() else "a folder that holds other files and no config.json"
        raise ValueError(
            f"Not exporting to {path}: it is {what}; an export writes README.md, config.json and the "
            f"weights there. Export to a new folder, e.g. {path / 'export'}."
        )


def _save(model: torch.nn.Module, tokenizer: Any, path: Path) -> None:
    from rlhf_lab.models.presets import quiet_loading

    check_export_target(path)
    path.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)  # tokenizer.json, its config and chat_template.jinja


# ---------------------------------------------------------------------- model card
def final_metrics(stage: Any) -> dict[str, float]:
    """The last value of every numeric metric in the stage's history."""
    latest: dict[str, float] = {}
    for row in stage.rows:
        for key, value in row.items():
            if key in _BOOKKEEPING or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(float(value)):
                latest[key] = float(value)
    return latest


def write_card(stage: Any, path: Path, *, kind: str, data: str, notes: dict[str, Any]) -> Path:
    """A short README.md model card: what was trained, on what, for how long, and the metrics at export."""
    metrics = final_metrics(stage)
    config = getattr(stage, "config", None)
    settings = {}
    if config is not None and hasattr(config, "__dataclass_fields__"):
        from rlhf_lab.stages.base import config_to_dict

        settings = config_to_dict(config)
    lines = [
        "---",
        "library_name: transformers",
        "tags: [rlhf-lab, " + ("reward-model" if kind == "reward model" else "text-generation") + "]",
        "---",
        f"# {type(stage).__name__} ({stage.name}) {kind}, exported by rlhf-lab",
        "",
        f"- Exported: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Data: {data}",
        f"- Steps: {stage.step_count} (lab step {stage.clock.value})",
        *[f"- {key}: {value}" for key, value in notes.items()],
        "",
        "## Metrics at export",
        "",
        *([f"- `{k}`: {v:.6g}" for k, v in sorted(metrics.items())] or ["- none recorded"]),
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(settings, indent=1, default=str, sort_keys=True),
        "```",
        "",
    ]
    card = path / CARD
    card.write_text("\n".join(lines), encoding="utf-8")
    return card
