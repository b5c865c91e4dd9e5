"""The settings a preset fills in for each stage, on a given machine: one table that the Lab and
`rlhf-lab export-trl` both read, so a config means the same run either way.

    >>> from rlhf_lab.models.presets import PRESETS
    >>> from rlhf_lab.preset_settings import defaults_on_device, stage_defaults
    >>> defaults = defaults_on_device(PRESETS["smollm2-135m"].defaults, on_cpu=False, cpu_bf16_native=False)
    >>> stage_defaults(defaults, "rl", "rloo")   # {'learning_rate': 3e-05, ..., 'batch_size': 4}
"""

from __future__ import annotations

from typing import Any

from rlhf_lab.rl.config import samples_per_prompt as answers_per_prompt

# The fields of each stage's config that a Lab fills from its preset's defaults (field: preset key) unless
# the caller gives them; every stage also gets "mixed_precision".
PRESET_FIELDS: dict[str, dict[str, str]] = {
    "sft": {"learning_rate": "sft_learning_rate", "max_length": "max_length"},
    "reward_model": {"learning_rate": "rm_learning_rate", "max_length": "max_length", "steps": "rm_steps"},
    "dpo": {"learning_rate": "dpo_learning_rate", "max_length": "max_length"},
    "rl": {
        "learning_rate": "rl_learning_rate",
        "max_new_tokens": "max_new_tokens",
        "num_epochs": "rl_num_epochs",
        "num_minibatches": "rl_num_minibatches",
        "gradient_accumulation_steps": "rl_gradient_accumulation_steps",
    },
}


def defaults_on_device(defaults: dict[str, Any], *, on_cpu: bool, cpu_bf16_native: bool) -> dict[str, Any]:
    """A preset's defaults for one machine: "cpu_<key>" entries become "<key>" on a CPU and are dropped
    elsewhere (a laptop's RAM wants smaller passes; a GPU runs the rows in one), and "cpu_bf16" turns into
    mixed_precision="bf16" on a CPU that multiplies bf16 natively."""
    resolved = dict(defaults)
    if resolved.pop("cpu_bf16", False) and on_cpu and cpu_bf16_native:
        resolved["mixed_precision"] = "bf16"
    for key in [k for k in resolved if k.startswith("cpu_")]:
        value = resolved.pop(key)
        if on_cpu:
            resolved[key.removeprefix("cpu_")] = value
    return resolved


def stage_defaults(
    defaults: dict[str, Any], section: str, estimator: str = "ppo", samples_per_prompt: int | None = None
) -> dict[str, Any]:
    """The config fields that device-resolved preset `defaults` fill in for a stage of `section` ("sft",
    "reward_model", "dpo" or "rl"). An RL stage's prompts per step follow from the preset's rollouts per
    step (the compute budget), which RLOO/GRPO spend as k answers per prompt.

        >>> stage_defaults({"rollouts_per_step": 16, "rl_learning_rate": 3e-5}, "rl", "rloo")
        {'learning_rate': 3e-05, 'batch_size': 4}
    """
    keys = {**PRESET_FIELDS[section], "mixed_precision": "mixed_precision"}
    filled = {name: defaults[key] for name, key in keys.items() if key in defaults}
    if section == "rl" and "rollouts_per_step" in defaults:
        # A 0 takes the default here too: RLConfig then refuses it with its own message.
        k = answers_per_prompt(estimator, samples_per_prompt or None)
        filled["batch_size"] = max(1, defaults["rollouts_per_step"] // k)
    return filled
