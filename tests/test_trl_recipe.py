"""`rlhf-lab export-trl`: TRL-format data, mapped TRL 1.16 configs and a script that runs (tiny, CPU)."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from rlhf_lab.cli import main
from rlhf_lab.trl_recipe import export_trl

RECIPE = {
    "preset": "tiny",
    "task": "positive_review",
    "seed": 3,
    "sft": {"steps": 2, "batch_size": 4, "learning_rate": 1e-3},
    "dpo": {"steps": 2, "batch_size": 4, "beta": 0.2, "loss_type": "ipo"},
    "reward_model": {"epochs": 1, "batch_size": 8},
    "rl": {
        "estimator": "grpo",
        "steps": 2,
        "reward": "rm",
        "batch_size": 2,
        "samples_per_prompt": 2,
        "num_minibatches": 2,
        "num_epochs": 1,
        "max_new_tokens": 6,
        "beta": 0.0,
        "clip_range": 0.1,
    },
}


def test_recipe_maps_the_lab_settings_and_writes_trl_data(tmp_path):
    recipe = export_trl(RECIPE, tmp_path / "out")
    stages = {s["kind"]: s for s in recipe["stages"]}
    assert [s["kind"] for s in recipe["stages"]] == ["sft", "dpo", "reward", "rl"]
    sft, dpo, rm, rl = (stages[k]["args"] for k in ("sft", "dpo", "reward", "rl"))
    assert (sft["max_steps"], sft["per_device_train_batch_size"], sft["learning_rate"], sft["seed"]) == (
        2,
        4,
        1e-3,
        3,
    )
    assert sft["max_length"] == 192  # the tiny preset's default, as in the lab
    assert (dpo["beta"], dpo["loss_type"], dpo["learning_rate"]) == (0.2, ["ipo"], 1e-3)
    assert (rm["num_train_epochs"], rm["per_device_train_batch_size"], rm["center_rewards_coefficient"]) == (
        1,
        8,
        None,
    )
    assert "max_steps" not in rm  # epochs set: TRL's max_steps would override them
    assert stages["reward"]["model"] == "models/reward_backbone"
    assert (rl["num_generations"], rl["per_device_train_batch_size"], rl["steps_per_generation"]) == (2, 2, 2)
    assert (rl["epsilon"], rl["max_completion_length"], rl["num_iterations"], rl["beta"]) == (0.1, 6, 1, 0.0)
    assert stages["rl"]["trainer"] == "GRPOTrainer"
    out = tmp_path / "out"
    sft_row = json.loads((out / "data" / "sft.jsonl").read_text().splitlines()[0])
    assert sft_row["prompt"][0]["role"] == "user" and sft_row["completion"][0]["role"] == "assistant"
    pref = json.loads((out / "data" / "preferences.jsonl").read_text().splitlines()[0])
    assert {"prompt", "chosen", "rejected", "margin"} <= set(pref)
    assert (
        json.loads((out / "data" / "prompts.jsonl").read_text().splitlines()[0])["prompt"][0]["role"]
        == "user"
    )
    assert (out / "train_trl.py").is_file() and (out / "models" / "policy" / "config.json").is_file()
    readme = (out / "README.md").read_text()
    assert "accelerate launch train_trl.py" in readme and "`clip_range` | `epsilon`" in readme


@pytest.mark.parametrize("section", ["sft", "reward_model", "dpo", "rl"])
def test_export_fills_what_the_lab_fills_from_the_tiny_preset(section):
    from rlhf_lab import Lab
    from rlhf_lab.trl_recipe import with_preset

    lab_filled = Lab.from_preset("tiny", device="cpu").preset_settings(section, "rloo")
    lab_filled.pop("mixed_precision", None)
    kind = {"reward_model": "reward"}.get(section, section)
    assert with_preset(kind, {"estimator": "rloo"} if kind == "rl" else {}, "tiny") == {
        **lab_filled,
        **({"estimator": "rloo"} if kind == "rl" else {}),
    }


def test_export_maps_the_preset_budget_as_the_lab_spends_it():
    from rlhf_lab.trl_recipe import stage_args, with_preset

    # SmolLM2's preset: 16 rollouts a step in one update pass; RLOO spends them as 4 prompts x 4 answers.
    rl, _ = stage_args("rl", with_preset("rl", {"estimator": "rloo"}, "smollm2-135m"), seed=0)
    assert (rl["num_generations"], rl["per_device_train_batch_size"]) == (4, 16)
    assert (rl["steps_per_generation"], rl["num_iterations"], rl["learning_rate"]) == (1, 1, 3e-5)
    assert rl["gradient_accumulation_steps"] == 1  # the preset's 4 slices are for a CPU's RAM only
    # A reward model fits the preset's 80 optimizer steps unless epochs are given.
    rm, _ = stage_args("reward", with_preset("reward", {}, "smollm2-135m"), seed=0)
    assert (rm["max_steps"], rm["learning_rate"], rm["max_length"]) == (80, 1e-4, 384)
    rm, _ = stage_args("reward", with_preset("reward", {"steps": 30}, "tiny"), seed=0)
    assert rm["max_steps"] == 30


def test_cpu_only_preset_defaults_apply_on_a_cpu_only():
    from rlhf_lab.models.presets import PRESETS
    from rlhf_lab.preset_settings import defaults_on_device

    smollm2 = PRESETS["smollm2-135m"].defaults
    on_cpu = defaults_on_device(smollm2, on_cpu=True, cpu_bf16_native=True)
    assert (on_cpu["rl_gradient_accumulation_steps"], on_cpu["mixed_precision"]) == (4, "bf16")
    assert "mixed_precision" not in defaults_on_device(smollm2, on_cpu=True, cpu_bf16_native=False)
    on_gpu = defaults_on_device(smollm2, on_cpu=False, cpu_bf16_native=True)
    assert not any(key.startswith("cpu_") or key == "rl_gradient_accumulation_steps" for key in on_gpu)
    assert "mixed_precision" not in on_gpu


def test_ppo_is_refused_with_the_alternatives(tmp_path):
    with pytest.raises(ValueError, match="grpo or rloo"):
        export_trl({"task": "positive_review", "rl": {"estimator": "ppo"}}, tmp_path)


@pytest.mark.slow  # four TRL trainers, 1 step each, on the tiny preset: ~30-60 s on 2 cores
@pytest.mark.parametrize("kind", ["sft", "dpo", "reward", "rl"])
def test_every_lab_setting_is_mapped_or_said_not_carried_or_quiet(kind):
    """A new lab setting must be placed by hand: mapped, named as not carried (with why), or quiet."""
    from dataclasses import fields

    from rlhf_lab.reward.config import RMConfig
    from rlhf_lab.rl.config import RLConfig
    from rlhf_lab.stages.dpo import DPOConfig
    from rlhf_lab.stages.sft import SFTConfig
    from rlhf_lab.trl_mapping import NOT_CARRIED, QUIET, mapped_settings

    config = {"sft": SFTConfig, "dpo": DPOConfig, "reward": RMConfig, "rl": RLConfig}[kind]
    placed = mapped_settings(kind) | set(NOT_CARRIED[kind]) | QUIET
    assert not [f.name for f in fields(config) if f.name not in placed]


def test_the_settings_trl_will_not_take_are_named_with_why(tmp_path, capsys):
    config = {
        **RECIPE,
        "reward_model": {"epochs": 1, "batch_size": 8, "ties": "exclude", "loss": "ranking"},
        "rl": {
            **RECIPE["rl"],
            "target_kl": 6.0,
            "kl_estimator": "k3",  # what TRL does: not flagged
            "compile_update": True,  # speed only: not flagged
            "reward_norm_samples": 64,
        },
    }
    recipe = export_trl(config, tmp_path / "out")
    assert list(recipe["not_carried"]) == ["reward_model.loss", "rl.target_kl", "rl.reward_norm_samples"]
    assert "adaptive KL" in recipe["not_carried"]["rl.target_kl"]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "- `rl.target_kl`: TRL 1.16 keeps beta fixed" in readme
    assert json.loads((tmp_path / "out" / "recipe.json").read_text())["not_carried"] == recipe["not_carried"]
    assert export_trl(RECIPE, tmp_path / "plain")["not_carried"] == {}

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["export-trl", str(path), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert (
        "Not carried over to TRL (3;" in out
        and "  rl.reward_norm_samples: with one reward model TRL takes" in out
    )


def test_the_generated_script_runs_every_stage_on_tiny_models(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(RECIPE))
    assert main(["export-trl", str(config), "--out", str(tmp_path / "out")]) == 0
    assert "accelerate launch" in capsys.readouterr().out
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, str(tmp_path / "out" / "train_trl.py"), "--cpu", "--max-steps", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"stage"')]
    assert [d["stage"] for d in done] == ["sft", "dpo", "reward", "rl"]
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "outputs" / "rl")
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "outputs" / "reward")


def test_the_grpo_example_exports(tmp_path):
    from pathlib import Path

    from rlhf_lab.headless import load_config

    example = Path(__file__).resolve().parent.parent / "examples" / "grpo_tiny.yaml"
    recipe = export_trl(load_config(example), tmp_path)
    assert [s["trainer"] for s in recipe["stages"]] == ["SFTTrainer", "RewardTrainer", "GRPOTrainer"]


@pytest.mark.slow  # one TRL SFTTrainer run of 1 step, then a resumed one: ~15 s on 2 cores
def test_the_generated_script_resumes_a_stopped_stage_from_its_checkpoint(tmp_path):
    config = {"preset": "tiny", "task": "positive_review", "checkpoint_every": 1, "sft": {"steps": 2}}
    recipe = export_trl(config, tmp_path / "out")
    assert (
        recipe["stages"][0]["args"]["save_strategy"] == "steps"
        and recipe["stages"][0]["args"]["save_steps"] == 1
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    script = [sys.executable, str(tmp_path / "out" / "train_trl.py"), "--cpu"]

    def run(*extra):
        done = subprocess.run(script + list(extra), env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((tmp_path / "out" / "outputs" / "sft" / "done.json").read_text())

    sft = tmp_path / "out" / "outputs" / "sft"
    assert run("--max-steps", "1")["steps"] == 1
    first = (sft / "checkpoint-1" / "trainer_state.json").stat().st_mtime_ns
    (sft / "done.json").unlink()  # as if the job died before the end
    assert run("--max-steps", "2", "--resume")["steps"] == 2
    # Step 2 was taken from checkpoint-1, which a run starting over would have written again.
    assert (sft / "checkpoint-2").is_dir() and (
        sft / "checkpoint-1" / "trainer_state.json"
    ).stat().st_mtime_ns == first
    finished = (sft / "model.safetensors").stat().st_mtime_ns
    assert run("--max-steps", "2", "--resume")["steps"] == 2
    assert (sft / "model.safetensors").stat().st_mtime_ns == finished  # a finished stage is kept as it is
