"""Headless training from one YAML file, on one process or data-parallel under `accelerate launch`.

    $ rlhf-lab train examples/ppo_tiny.yaml
    $ accelerate launch --multi_gpu --num_processes 2 -m rlhf_lab.cli train examples/ppo_tiny.yaml

    >>> from rlhf_lab.headless import load_config, train
    >>> summary = train(load_config("examples/ppo_tiny.yaml"))

The config (every section but `task` is optional; unknown keys are errors)::

    preset: tiny                  # a preset name, or instead:
    # policy: HuggingFaceTB/SmolLM2-135M-Instruct
    # reward_backbone: sentence-transformers/all-MiniLM-L6-v2   (with policy; used by reward: rm)
    task: positive_review         # bundled rlhf_lab.bundled task: its prompts, demos, preferences
    seed: 0
    output_dir: runs/ppo_tiny     # checkpoints: sft/, reward_model/, rl/ and summary.json
    threads: null                 # torch CPU threads (default: the cores split between ranks)
    sft:                          # supervised warm-up on the task's demos
      steps: 20
      learning_rate: 2.0e-4       # ...any SFTConfig field
    reward_model:                 # only read when rl.reward is rm
      epochs: 2                   # fit() passes over the task's bundled preference pairs
      learning_rate: 1.0e-4       # ...any RMConfig field
    rl:
      estimator: ppo              # ppo | rloo | grpo | reinforce
      steps: 2
      reward: gold                # gold: the task's gold judge; rm: a reward model fitted on the preferences
      batch_size: 8               # ...any RLConfig field (beta, learning_rate, max_new_tokens, ...)

It prints one JSON summary line (also written to output_dir/summary.json).

On a machine without GPUs, `--multi_gpu` still starts N CPU processes (gloo); accelerate's
`--cpu` flag would start only one (its multi-CPU mode goes through mpirun). torchrun works too:
`python -m torch.distributed.run --nproc_per_node 2 -m rlhf_lab.cli train CONFIG.yaml`.

Scale-out: under `accelerate launch` (or torchrun) with more than one process, SFT and the reward
model run replicated (same seed, same data, so identical on every rank) and RL is data-parallel:
rank r draws its rollouts from every world_size-th prompt starting at r, samples with its own
seed, and gradients are averaged across ranks before each optimizer step (see
rlhf_lab.rl.distributed). Ranks start from identical weights and stay identical; rank 0 saves
the checkpoints and prints the summary, every rank writes output_dir/ranks/rank<r>.json with a
SHA-256 of its trained weights. Limits: RL metrics are rank 0's own (not averaged), and an
error that pauses one rank (kl_limit, a NaN) leaves the others waiting at the next all-reduce.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

TOP_LEVEL = {
    "preset",
    "policy",
    "reward_backbone",
    "reward_model",
    "task",
    "seed",
    "output_dir",
    "threads",
    "sft",
    "rl",
}
RANK_SEED_STRIDE = 1000  # rank r samples with seed + 1000 * r


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a headless YAML config (see the module docstring)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the config must be a mapping, got {type(config).__name__}.")
    return check_config(config)


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    unknown = set(config) - TOP_LEVEL
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(TOP_LEVEL)}.")
    if "task" not in config:
        raise ValueError("the config needs a task (a bundled rlhf_lab.bundled task, e.g. positive_review).")
    if "preset" in config and "policy" in config:
        raise ValueError("give either preset or policy, not both.")
    for section in ("sft", "reward_model", "rl"):
        if config.get(section) is not None and not isinstance(config[section], dict):
            raise ValueError(f"{section} must be a mapping of settings.")
    rl = config.get("rl") or {}
    if rl.get("reward", "gold") not in ("gold", "rm"):
        raise ValueError(f"rl.reward must be 'gold' or 'rm', got {rl.get('reward')!r}.")
    return config


def _distributed() -> tuple[int, int]:
    """(rank, world_size); initialises the process group through accelerate when launched by it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1  # single process: never import accelerate (fast path)
    from accelerate import PartialState

    # Reads the launcher's env and inits torch.distributed; without CUDA accelerate only picks
    # its multi-CPU (gloo) mode when told cpu=True.
    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    state = PartialState(cpu=cpu)
    return state.process_index, state.num_processes


def _gold_reward(judge: Any):
    def gold(prompts: list[str], responses: list[str]) -> list[float]:
        return [float(judge.score(p, r)) for p, r in zip(prompts, responses)]

    gold.__name__ = "gold"
    return gold


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def train(config: dict[str, Any]) -> dict[str, Any]:
    """Build the stages via Lab, run them, save checkpoints; returns the summary dict."""
    from rlhf_lab.bundled import load_demos, load_prompts, preference_pairs
    from rlhf_lab.lab import Lab
    from rlhf_lab.raters import get_judge
    from rlhf_lab.rl.distributed import params_sha256

    config = check_config(dict(config))
    started = time.perf_counter()
    rank, world = _distributed()
    seed = int(config.get("seed", 0))
    task = config["task"]
    out = Path(config.get("output_dir") or "rlhf_lab_runs/headless")
    threads = config.get("threads") or (max(1, (os.cpu_count() or 1) // world) if world > 1 else None)
    lab_kwargs = {
        "seed": seed,
        "threads": threads,
        "store": out / "labels.sqlite",
        "device": "cpu" if world > 1 else None,
    }
    if world > 1 and torch.cuda.is_available():
        lab_kwargs["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    if "policy" in config:
        lab = Lab.from_pretrained(config["policy"], config.get("reward_backbone"), **lab_kwargs)
    else:
        lab = Lab.from_preset(config.get("preset", "tiny"), **lab_kwargs)
    summary: dict[str, Any] = {"task": task, "preset": config.get("preset"), "world_size": world}

    sft_cfg = dict(config.get("sft") or {})
    if sft_cfg:
        steps = int(sft_cfg.pop("steps", 20))
        sft_cfg.setdefault("seed", seed)  # a config exported from a notebook may carry its own
        sft = lab.sft(load_demos(task), **sft_cfg)
        rows = sft.step(steps, progress=False)
        summary["sft"] = {
            "steps": steps,
            "loss_first": rows[0]["loss/sft"],
            "loss_last": rows[-1]["loss/sft"],
        }
        if rank == 0:
            sft.save(out / "sft")

    rl_cfg = dict(config.get("rl") or {})
    if rl_cfg:
        steps = int(rl_cfg.pop("steps", 10))
        reward_kind = rl_cfg.pop("reward", "gold")
        estimator = rl_cfg.pop("estimator", "ppo")
        judge = get_judge(task)
        if reward_kind == "rm":
            rm_cfg = dict(config.get("reward_model") or {})
            epochs = rm_cfg.pop("epochs", None)
            rm = lab.reward_model(preference_pairs(task), **rm_cfg)
            fit = rm.fit(epochs=epochs, warm_start=False, progress=False)
            summary["reward_model"] = {k: v for k, v in fit.items() if isinstance(v, (int, float, str))}
            if rank == 0:
                rm.save(out / "reward_model")
            reward: Any = rm
        else:
            reward = _gold_reward(judge)
        prompts = [row["prompt"] for row in load_prompts(task, "train")]
        rl_cfg.setdefault("seed", seed)  # same seed on every rank: identical value head and reference
        rl = lab.rl(prompts[rank::world], reward, estimator=estimator, gold=judge, **rl_cfg)
        if world > 1:
            # Built identically on every rank; from here on each rank samples differently.
            torch.manual_seed(seed + RANK_SEED_STRIDE * rank)
        rows = rl.step(steps, progress=False)
        summary["rl"] = {
            "estimator": estimator,
            "reward": reward_kind,
            "steps": steps,
            "scores_first": rows[0].get("objective/scores"),
            "scores_last": rows[-1].get("objective/scores"),
            "kl_last": rows[-1].get("objective/kl"),
            "rl_config": {k: v for k, v in dataclasses.asdict(rl.config).items() if k in rl_cfg},
        }
        trained = rl.params
        if rank == 0:
            rl.save(out / "rl")
    else:
        trained = list(lab.policy.parameters())

    summary["param_sha256"] = params_sha256(trained)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["output_dir"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    if world > 1:
        (out / "ranks").mkdir(exist_ok=True)
        rank_info = {
            "rank": rank,
            "world_size": world,
            "param_sha256": summary["param_sha256"],
            "scores_first": summary.get("rl", {}).get("scores_first"),  # differs: own prompts and seed
        }
        (out / "ranks" / f"rank{rank}.json").write_text(json.dumps(rank_info), encoding="utf-8")
        torch.distributed.barrier()
    if rank == 0:
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        print(json.dumps(summary), flush=True)
    if world > 1:
        torch.distributed.destroy_process_group()
    return summary
