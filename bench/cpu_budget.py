"""What each lab stage costs: seconds per step on the `tiny` and `smollm2-135m` presets, CPU or GPU.

    python bench/cpu_budget.py                                          # tiny and smollm2-135m on the CPU
    python bench/cpu_budget.py --presets smollm2-135m --device cuda     # on a GPU
    python bench/cpu_budget.py --smoke                                  # tiny only, seconds (CI)

Prints ONE JSON line. Each preset runs as a notebook would: `Lab.from_preset(name, device=...)`
(so the lab's CPU thread setting applies), each stage with the preset's defaults, median over a few
steps after one warm-up step. The per-step figures times the steps a lab makes give its compute:
`ppo_step_s` (the preset's rollout batch and max_new_tokens, against the preset's reward-model
backbone), `rloo_step_s` / `grpo_step_s` (lab 08's 4 prompts x 4 samples), `sft_step_s`,
`dpo_step_s`, `rm_step_s` (one optimizer step of a cold reward-model fit on bundled labels), and
`generate_16_s` (16 prompts sampled at the preset's max_new_tokens: a batch of pairs to label, or
of held-out answers to judge). `load_s` is `Lab.from_preset` itself (warm model cache).

"rm_retrain_s" is the flywheel's wait: seconds for a warm-start `fit()` (the RMConfig's
`warm_start_epochs`, default 1 pass) after 10 new labels arrive in the store, on a reward model
already fitted on the bundled positive_review gold labels (RM_BASE_LABELS of them), median over
`--steps` rounds. Each preset uses its own reward backbone (tiny: the tiny GPT-2 head; smollm2-135m:
all-MiniLM-L6-v2).

Adding a measurement: write a function `(lab, args) -> float` and register it in MEASUREMENTS
under the key it reports; every preset then reports it next to "ppo_step_s".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlhf_lab import Lab  # noqa: E402
from rlhf_lab.rl import ModelReward  # noqa: E402

PROMPTS = [
    "Write a short positive review of a film you enjoyed.",
    "Explain why the sky looks blue, in two sentences.",
    "Give me three tips for a first day at a new job.",
    "Describe a quiet morning in a small town.",
    "What should I pack for a weekend hike?",
    "Summarise the plot of a heist movie in one paragraph.",
    "How do I make a simple tomato sauce?",
    "Tell a friendly joke about cats.",
]


def _sync(lab: Lab) -> None:
    if lab.device.type == "cuda":
        torch.cuda.synchronize(lab.device)


def _seconds(lab: Lab, work: Callable[[], Any]) -> float:
    """Wall seconds of `work()`, with the lab's GPU (if any) idle before and done after."""
    _sync(lab)
    started = time.perf_counter()
    work()
    _sync(lab)
    return time.perf_counter() - started


def _median_step_s(lab: Lab, stage, steps: int) -> float:
    """Median seconds of `stage.step()` over `steps` steps after one warm-up step; releases the stage."""
    stage.step(progress=False)  # warm-up: first-call allocations, lazy imports, autotuning
    times = [_seconds(lab, lambda: stage.step(progress=False)) for _ in range(steps)]
    stage.release()
    return statistics.median(times)


def _bundled_labels(n: int) -> list[dict]:
    from rlhf_lab.bundled import load_preferences

    rows = load_preferences("positive_review")[:n]
    return [
        {"prompt": r["prompt"], "responses": r["responses"], "judgement": r["judgements"]["gold"]}
        for r in rows
    ]


def measure_ppo_step(lab: Lab, args: argparse.Namespace) -> float:
    """Median seconds per PPO step (preset defaults, reward = the preset's reward backbone)."""
    reward_model, reward_tokenizer = lab.new_reward_backbone()
    stage = lab.ppo(PROMPTS, reward=ModelReward(reward_model, reward_tokenizer))
    return _median_step_s(lab, stage, args.steps)


def _measure_group_step(estimator: str) -> Callable[[Lab, argparse.Namespace], float]:
    def measure(lab: Lab, args: argparse.Namespace) -> float:
        reward_model, reward_tokenizer = lab.new_reward_backbone()
        stage = lab.rl(  # lab 08's GRPO / RLOO runs: 4 prompts x 4 samples
            PROMPTS,
            reward=ModelReward(reward_model, reward_tokenizer),
            estimator=estimator,
            batch_size=4,
            samples_per_prompt=4,
        )
        return _median_step_s(lab, stage, args.steps)

    measure.__doc__ = f"Median seconds per {estimator.upper()} step (4 prompts x 4 samples, as lab 08)."
    return measure


def measure_sft_step(lab: Lab, args: argparse.Namespace) -> float:
    """Median seconds per SFT step on the bundled positive_review demonstrations (preset defaults)."""
    from rlhf_lab.bundled import load_demos

    return _median_step_s(lab, lab.sft(load_demos("positive_review")), args.steps)


def _chosen_rejected(n: int) -> list[dict]:
    """Up to `n` bundled pairs the gold judge decides, as prompt / chosen / rejected."""
    pairs = []
    for label in _bundled_labels(2 * n):
        if label["judgement"] in ("A", "B") and len(pairs) < n:
            chosen, rejected = label["responses"] if label["judgement"] == "A" else label["responses"][::-1]
            pairs.append({"prompt": label["prompt"], "chosen": chosen, "rejected": rejected})
    return pairs


def measure_dpo_step(lab: Lab, args: argparse.Namespace) -> float:
    """Median seconds per DPO step on bundled gold-labelled pairs (preset defaults)."""
    return _median_step_s(lab, lab.dpo(_chosen_rejected(64)), args.steps)


def measure_rm_step(lab: Lab, args: argparse.Namespace) -> float:
    """Seconds per optimizer step of a cold reward-model fit (the preset's backbone, bundled labels)."""
    rm = lab.reward_model(_chosen_rejected(64))
    rm.fit(warm_start=False, max_steps=1, progress=False)  # warm-up
    steps = 4 * args.steps
    return _seconds(lab, lambda: rm.fit(warm_start=False, max_steps=steps, progress=False)) / steps


def measure_generate(lab: Lab, args: argparse.Namespace) -> float:
    """Median seconds to sample 16 prompts at the preset's max_new_tokens."""
    prompts = (PROMPTS * 2)[:16]
    lab.generate(prompts, seed=0)  # warm-up
    times = [_seconds(lab, lambda s=seed: lab.generate(prompts, seed=s)) for seed in range(1, args.steps + 1)]
    return statistics.median(times)


RM_BASE_LABELS = 40  # labels the reward model is first fitted on
RM_NEW_LABELS = 10  # labels that arrive before each timed warm-start retrain


def measure_rm_retrain(lab: Lab, args: argparse.Namespace) -> float:
    """Median seconds of a warm-start reward-model fit() after RM_NEW_LABELS new labels."""
    from rlhf_lab.store import PreferenceStore

    rounds = args.steps
    labels = _bundled_labels(RM_BASE_LABELS + RM_NEW_LABELS * rounds)
    with tempfile.TemporaryDirectory() as folder:
        store = PreferenceStore(Path(folder) / "labels.sqlite")
        for label in labels[:RM_BASE_LABELS]:
            store.add(**label, annotator="bench")
        rm = lab.reward_model(store)
        rm.fit(warm_start=False, epochs=1, progress=False)  # the model the new labels top up
        times = []
        for i in range(rounds):
            start = RM_BASE_LABELS + i * RM_NEW_LABELS
            for label in labels[start : start + RM_NEW_LABELS]:
                store.add(**label, annotator="bench")
            times.append(_seconds(lab, lambda: rm.fit(warm_start=True, progress=False)))
        store.close()
    return statistics.median(times)


MEASUREMENTS: dict[str, Callable[[Lab, argparse.Namespace], float]] = {
    "ppo_step_s": measure_ppo_step,
    "rm_retrain_s": measure_rm_retrain,
    "rloo_step_s": _measure_group_step("rloo"),
    "grpo_step_s": _measure_group_step("grpo"),
    "sft_step_s": measure_sft_step,
    "dpo_step_s": measure_dpo_step,
    "rm_step_s": measure_rm_step,
    "generate_16_s": measure_generate,
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny preset only, 2 steps (CI)")
    parser.add_argument(
        "--steps", type=int, default=None, help="measured steps per preset (default 3; smoke 2)"
    )
    parser.add_argument("--presets", nargs="*", default=None, help="default: tiny smollm2-135m (smoke: tiny)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument(
        "--only", nargs="*", choices=list(MEASUREMENTS), help="measure these only (default: all)"
    )
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.smoke else 3)
    presets = args.presets or (["tiny"] if args.smoke else ["tiny", "smollm2-135m"])

    result: dict = {
        "bench": "cpu_budget",
        "command": "python bench/cpu_budget.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "smoke": args.smoke,
        "torch": torch.__version__,
        "presets": {},
    }
    device = None if args.device == "auto" else args.device
    for name in presets:
        started = time.perf_counter()
        lab = Lab.from_preset(name, device=device)
        row = {
            "device": str(lab.device),
            "gpu": torch.cuda.get_device_name(lab.device) if lab.device.type == "cuda" else None,
            "load_s": round(time.perf_counter() - started, 2),
            "threads": lab.threads,
            **{k: lab.defaults[k] for k in ("rollouts_per_step", "max_new_tokens")},
            # "bf16" where the preset asks for it and the CPU multiplies bf16 natively (Lab.__init__).
            "mixed_precision": lab.defaults.get("mixed_precision", "stage default"),
        }
        if lab.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(lab.device)
        for key, measure in MEASUREMENTS.items():
            if args.only is None or key in args.only:
                row[key] = round(measure(lab, args), 4)
        if lab.device.type == "cuda":
            row["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(lab.device) / 2**30, 2)
        result["presets"][name] = row
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
