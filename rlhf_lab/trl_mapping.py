"""Which lab settings become which TRL 1.16 config fields, and which a TRL run does not take.

    >>> from rlhf_lab.trl_mapping import not_carried
    >>> not_carried("rl", {"target_kl": 6.0, "beta": 0.05})
    {'target_kl': 'TRL 1.16 keeps beta fixed: no adaptive KL controller'}

`rlhf-lab export-trl` maps each stage's settings by `MAPPING` (trl/trainer/{sft,dpo,reward,grpo,rloo}_config.py
in TRL 1.16) and names, in the recipe and on the command line, every setting of the user's config that the
TRL run will not honour (`not_carried`), so none is dropped without a word.
"""

from __future__ import annotations

import re
from typing import Any

# lab field -> TRL field, per stage.
MAPPING: dict[str, dict[str, str]] = {
    "sft": {
        "steps": "max_steps",
        "learning_rate": "learning_rate",
        "batch_size": "per_device_train_batch_size",
        "max_length": "max_length",
        "weight_decay": "weight_decay",
        "warmup_steps": "warmup_steps",
        "max_grad_norm": "max_grad_norm",
        "seed": "seed",
    },
    "dpo": {
        "steps": "max_steps",
        "beta": "beta",
        "loss_type": "loss_type",
        "label_smoothing": "label_smoothing",
        "learning_rate": "learning_rate",
        "batch_size": "per_device_train_batch_size",
        "max_length": "max_length",
        "weight_decay": "weight_decay",
        "max_grad_norm": "max_grad_norm",
        "seed": "seed",
    },
    "reward": {
        "steps (when epochs is unset)": "max_steps",
        "epochs": "num_train_epochs",
        "learning_rate": "learning_rate",
        "batch_size": "per_device_train_batch_size",
        "max_length": "max_length",
        "weight_decay": "weight_decay",
        "max_grad_norm": "max_grad_norm",
        "seed": "seed",
    },
    "rl": {
        "steps": "max_steps",
        "samples_per_prompt": "num_generations",
        "batch_size * samples_per_prompt / num_minibatches": "per_device_train_batch_size",
        "num_minibatches": "steps_per_generation",
        "num_epochs": "num_iterations",
        "clip_range": "epsilon",
        "beta": "beta",
        "max_new_tokens": "max_completion_length",
        "temperature": "temperature",
        "top_k": "top_k",
        "top_p": "top_p",
        "learning_rate": "learning_rate",
        "max_grad_norm": "max_grad_norm",
        "seed": "seed",
    },
}

_LORA = {"lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"}
USED_OTHERWISE: dict[str, set[str]] = {
    # settings the export reads without a one-to-one TRL field (LoRA -> peft's LoraConfig; the reward
    # model's `steps` -> max_steps unless epochs are set; the RL stage's choice of trainer and reward)
    "sft": _LORA,
    "dpo": _LORA,
    "reward": _LORA | {"soft_labels", "use_margin"},  # soft labels -> TRL's margin column
    "rl": _LORA | {"estimator", "reward", "route"},
}

NOT_CARRIED: dict[str, dict[str, str]] = {
    # settings that change what is learned, which a TRL 1.16 run does not take, and why
    "sft": {"mixed_precision": "accelerate's --mixed_precision decides it"},
    "dpo": {
        "soft_targets": "TRL's pairs are oriented by their target, ties dropped",
        "dropout": "TRL turns dropout off (disable_dropout=True)",
        "mixed_precision": "accelerate's --mixed_precision decides it",
    },
    "reward": {
        "loss": "TRL's RewardTrainer fits pairs (Bradley-Terry), not rankings",
        "ties": "TRL's pairs leave ties out",
        "both_bad": "TRL's pairs leave 'both bad' pairs out",
        "center_rewards": "the lab subtracts the mean training reward afterwards; TRL's "
        "center_rewards_coefficient is an extra loss term, left off",
        "split": "TRL trains on every pair (hold pairs out yourself to measure)",
        "split_seed": "TRL trains on every pair",
        "early_stopping": "TRL trains for the steps or epochs given",
        "patience": "TRL trains for the steps or epochs given",
        "schedule": "TRL's learning rate stays constant (lr_scheduler_type)",
        "warmup_ratio": "TRL's learning rate stays constant (lr_scheduler_type)",
        "mixed_precision": "accelerate's --mixed_precision decides it",
        "fit": "TRL's RewardTrainer always trains the reward model",
    },
    "rl": {
        "stop_on_eos": "TRL ends each answer at EOS",
        "target_kl": "TRL 1.16 keeps beta fixed: no adaptive KL controller",
        "kl_horizon": "TRL 1.16 keeps beta fixed: no adaptive KL controller",
        "kl_estimator": "TRL estimates KL per token its own way (k3)",
        "kl_limit": "TRL does not stop a run at a KL limit",
        "missing_eos_penalty": "TRL's GRPO and RLOO have no penalty for an answer without EOS",
        "reward_clip": "TRL does not clip rewards",
        "whiten_rewards": "TRL normalises rewards within each prompt's group of answers",
        "whiten_advantages": "TRL normalises rewards within each prompt's group of answers",
        "normalize_reward": "train_trl.py rescales each of several reward models on its first batch",
        "reward_norm_samples": "with one reward model TRL takes its scores as they are (train_trl.py "
        "rescales several, on this many fresh answers)",
        "reward_scale": "train_trl.py trains the reward models again, so a scale pinned for the lab's would "
        "not fit theirs: each is rescaled on its first batch",
        "ent_coef": "TRL's GRPO and RLOO have no entropy bonus",
        "mixed_precision": "accelerate's --mixed_precision decides it",
    },
}

MATCHED: dict[str, dict[str, Any]] = {
    # a not-carried setting at these values asks for what the TRL run does anyway
    "dpo": {"soft_targets": False, "dropout": False},
    "reward": {
        "loss": "bradley_terry",
        "ties": "exclude",
        "both_bad": "exclude",
        "early_stopping": False,
        "schedule": "constant",
        "center_rewards": False,
        "fit": True,
    },
    "rl": {
        "stop_on_eos": True,
        "target_kl": None,
        "kl_horizon": None,
        "kl_estimator": "k3",
        "kl_limit": None,
        "missing_eos_penalty": None,
        "reward_clip": None,
        "whiten_rewards": False,
        "normalize_reward": True,
        "ent_coef": 0.0,
    },
}

QUIET: set[str] = {
    # settings of speed, memory or reporting only, and those GRPO/RLOO do not use (the value function)
    "eval_batch_size",
    "calibration_bins",
    "compile_generation",
    "compile_update",
    "logprob_chunk_rows",
    "keep_sample_steps",
    "kl_warning",
    "gradient_accumulation_steps",
    "lora_save_base",
    "max_new_tokens",  # DPO's: the length of the answers it samples to show, not a training setting
    "warm_start_steps",  # the flywheel's refits, which export-trl refuses
    "warm_start_learning_rate",
    "warm_start_epochs",
    "group_std_eps",
    "value",
    "value_learning_rate",
    "value_clip_range",
    "vf_coef",
    "gamma",
    "lam",
}


def mapped_settings(kind: str) -> set[str]:
    """The lab settings of a `kind` section the export carries over (directly or through another field)."""
    named = {name for key in MAPPING[kind] for name in re.findall(r"[a-z_]+", key.split(" (")[0])}
    return named | USED_OTHERWISE[kind]


def not_carried(kind: str, section: dict[str, Any]) -> dict[str, str]:
    """The settings of one lab config section (as the user wrote it) that a TRL 1.16 run will not
    honour, each with why. Settings of speed, memory or reporting only (`QUIET`) are left out."""
    carried, reasons, matched = mapped_settings(kind), NOT_CARRIED[kind], MATCHED.get(kind, {})
    out = {}
    for key, value in section.items():
        if key in carried or (key in QUIET and key not in reasons):
            continue
        if key in matched and value == matched[key]:
            continue
        out[key] = reasons.get(key, "TRL 1.16 has no counterpart")
    return out


def config_not_carried(config: dict[str, Any]) -> dict[str, str]:
    """`not_carried` over a whole (checked) headless config: {"rl.target_kl": why, ...}, keyed by where
    each setting is written (`reward_model.X`, `rl.reward.<name>.X` for one objective's own)."""
    from rlhf_lab.headless_rewards import OBJECTIVE_KEYS, reward_objectives

    sections: list[tuple[str, str, dict[str, Any]]] = [
        (kind, kind, dict(config.get(kind) or {})) for kind in ("sft", "dpo") if config.get(kind)
    ]
    rl = dict(config.get("rl") or {})
    if reward_objectives(config):
        sections.append(("reward", "reward_model", dict(config.get("reward_model") or {})))
        if isinstance(rl.get("reward"), dict):
            for name, entry in rl["reward"].items():
                own = entry if isinstance(entry, dict) else {}
                sections.append(
                    ("reward", f"rl.reward.{name}", {k: v for k, v in own.items() if k not in OBJECTIVE_KEYS})
                )
    if rl:
        several = isinstance(rl.get("reward"), dict)  # train_trl.py fits their scales on fresh answers
        sections.append(
            ("rl", "rl", {k: v for k, v in rl.items() if not (several and k == "reward_norm_samples")})
        )
    return {
        f"{where}.{key}": why
        for kind, where, section in sections
        for key, why in not_carried(kind, section).items()
    }
